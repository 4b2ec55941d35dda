"""FedNova (Wang et al. 2020): normalise each client's delta by its own step count before averaging."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig
from fedcore.strategies.base import FoldSum, ServerState, Vector
from fedcore.strategies.fedavg import apply_delta


def nova_weight(num_examples: int, num_steps: int) -> float:
    """n_i / tau_i: the sample weight p_i (up to 1/n) times the client's own normalisation 1/tau_i."""
    return float(num_examples) / num_steps if num_steps > 0 else 0.0


def effective_steps(fold: FoldSum) -> float:
    """tau_eff = sum_i p_i tau_i with p_i = n_i / n."""
    return fold.weighted_steps / fold.num_examples if fold.num_examples > 0 else 0.0


def nova_delta(fold: FoldSum) -> NDArray[np.float64]:
    """tau_eff * sum_i p_i delta_i / tau_i, folded with coefficients n_i / tau_i."""
    if fold.num_examples <= 0:
        return np.zeros_like(fold.delta_sum)
    return effective_steps(fold) * fold.delta_sum / fold.num_examples


@dataclass(frozen=True)
class FedNova:
    """Removes the objective inconsistency of clients that take different numbers of local steps."""

    server_lr: float = 1.0

    def __post_init__(self) -> None:
        if self.server_lr <= 0.0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")

    @property
    def name(self) -> str:
        return "fednova"

    @property
    def uses_control(self) -> bool:
        return False

    def init_state(self, weights: Vector) -> ServerState:
        return ServerState(0, weights.astype(np.float32, copy=True))

    def client_config(self, base: TrainConfig) -> TrainConfig:
        return base

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        return nova_weight(num_examples, num_steps)

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState:
        weights = apply_delta(state.weights, nova_delta(fold), self.server_lr)
        return ServerState(state.round + 1, weights, state.opt_state)
