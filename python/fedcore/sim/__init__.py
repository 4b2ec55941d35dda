"""Simulated federated training: many clients, a few worker processes, one persistent model per worker."""

from fedcore.seeds import derive_seed
from fedcore.sim.engine import SimResult, simulate
from fedcore.sim.output import simulate_to_dir

__all__ = ["SimResult", "derive_seed", "simulate", "simulate_to_dir"]
