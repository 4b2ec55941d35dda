"""Simulated federated training: many clients, a few worker processes, one persistent model per worker."""

from fedcore.sim.engine import SimResult, simulate
from fedcore.sim.output import simulate_to_dir
from fedcore.seeds import derive_seed

__all__ = ["SimResult", "derive_seed", "simulate", "simulate_to_dir"]
