"""Simulated federated training: many clients, a few worker processes, one persistent model per worker."""

from fedcore.sim.engine import SimResult, derive_seed, simulate

__all__ = ["SimResult", "derive_seed", "simulate"]
