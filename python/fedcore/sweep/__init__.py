"""`fedcore sweep`: the accuracy-per-byte study over datasets, partitions, upload settings and seeds."""

from fedcore.sweep.plan import RunSpec, Setting, SweepPlan, builtin_plan, load_plan
from fedcore.sweep.runner import run_sweep
from fedcore.sweep.table import Cell, collect_cells

__all__ = [
    "Cell",
    "RunSpec",
    "Setting",
    "SweepPlan",
    "builtin_plan",
    "collect_cells",
    "load_plan",
    "run_sweep",
]
