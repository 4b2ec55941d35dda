"""SCAFFOLD (Karimireddy et al. 2020): control variates correct client drift on non-IID data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig
from fedcore.strategies.base import FoldSum, ServerState, Vector

F64 = NDArray[np.float64]


def client_control_update(
    c_i: NDArray[np.floating], c: NDArray[np.floating], x: Vector, y: Vector, num_steps: int, lr: float
) -> Vector:
    """Option II: c_i+ = c_i - c + (x - y_i) / (K lr); a client that took no step keeps c_i."""
    if num_steps <= 0:
        return np.asarray(c_i, dtype=np.float32).copy()
    drift = (x.astype(np.float64) - y.astype(np.float64)) / (num_steps * lr)
    return (np.asarray(c_i, dtype=np.float64) - c + drift).astype(np.float32)


def server_step(x: Vector, c: F64, fold: FoldSum, num_clients: int, server_lr: float) -> tuple[Vector, F64]:
    """x += lr_g mean(dy); c += |S|/N mean(dc) = sum(dc) / N."""
    if fold.control_sum is None:
        raise ValueError("SCAFFOLD needs a fold with control sums")
    if fold.count == 0:
        return x.copy(), c.copy()
    new_x = x.astype(np.float64) + server_lr * fold.delta_sum / fold.count
    new_c = c + fold.control_sum / num_clients
    return new_x.astype(np.float32), new_c


@dataclass(frozen=True)
class Scaffold:
    """Server side of SCAFFOLD; the per-client controls c_i live with the engine, keyed by client."""

    num_clients: int
    server_lr: float = 1.0

    def __post_init__(self) -> None:
        if self.num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {self.num_clients}")
        if self.server_lr <= 0.0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")

    @property
    def name(self) -> str:
        return "scaffold"

    @property
    def uses_control(self) -> bool:
        return True

    def init_state(self, weights: Vector) -> ServerState:
        control = np.zeros(weights.size, dtype=np.float64)
        return ServerState(0, weights.astype(np.float32, copy=True), {"control": control})

    def client_config(self, base: TrainConfig) -> TrainConfig:
        return base

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        """Every sampled client counts once: the paper's plain mean over S."""
        del num_examples, num_steps
        return 1.0

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState:
        x, c = server_step(state.weights, state.opt_state["control"], fold, self.num_clients, self.server_lr)
        return ServerState(state.round + 1, x, {"control": c})
