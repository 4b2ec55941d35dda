"""FedAvg (McMahan et al. 2017) and FedProx (Li et al. 2020): sample-weighted mean of client deltas."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig
from fedcore.strategies.base import FoldSum, ServerState, Vector


def sample_weight(num_examples: int, num_steps: int) -> float:
    """FedAvg weighs a client by how many examples it trained on."""
    del num_steps
    return float(num_examples)


def weighted_mean_delta(fold: FoldSum) -> NDArray[np.float64]:
    """sum_i coef_i * delta_i / sum_i coef_i; an empty fold leaves the model unchanged."""
    if fold.weight_sum <= 0.0:
        return np.zeros_like(fold.delta_sum)
    return fold.delta_sum / fold.weight_sum


def apply_delta(weights: Vector, delta: NDArray[np.float64], server_lr: float) -> Vector:
    return (weights.astype(np.float64) + server_lr * delta).astype(np.float32)


@dataclass(frozen=True)
class FedAvg:
    """FedAvg; with prox_mu > 0 it is FedProx, whose only change is the clients' proximal term."""

    server_lr: float = 1.0
    prox_mu: float = 0.0

    def __post_init__(self) -> None:
        if self.server_lr <= 0.0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")
        if self.prox_mu < 0.0:
            raise ValueError(f"prox_mu must be >= 0, got {self.prox_mu}")

    @property
    def name(self) -> str:
        return f"fedprox:{self.prox_mu:g}" if self.prox_mu > 0.0 else "fedavg"

    @property
    def uses_control(self) -> bool:
        return False

    def init_state(self, weights: Vector) -> ServerState:
        return ServerState(0, weights.astype(np.float32, copy=True))

    def client_config(self, base: TrainConfig) -> TrainConfig:
        return replace(base, prox_mu=self.prox_mu)

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        return sample_weight(num_examples, num_steps)

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState:
        weights = apply_delta(state.weights, weighted_mean_delta(fold), self.server_lr)
        return ServerState(state.round + 1, weights, state.opt_state)
