"""Server optimisers over FedAvg's pseudo-gradient: FedAvgM (Hsu 2019), FedAdagrad/Adam/Yogi (Reddi 2021)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig
from fedcore.strategies.base import FoldSum, ServerState, Vector
from fedcore.strategies.fedavg import sample_weight, weighted_mean_delta

F64 = NDArray[np.float64]
ServerOptimizer = Literal["fedavgm", "fedadagrad", "fedadam", "fedyogi"]


def momentum_step(x: F64, m: F64, delta: F64, lr: float, beta: float) -> tuple[F64, F64]:
    """FedAvgM: m = beta m + delta; x += lr m."""
    m = beta * m + delta
    return x + lr * m, m


def adagrad_step(
    x: F64, m: F64, v: F64, delta: F64, lr: float, beta1: float, tau: float
) -> tuple[F64, F64, F64]:
    """FedAdagrad: v accumulates every squared pseudo-gradient."""
    m = beta1 * m + (1.0 - beta1) * delta
    v = v + delta * delta
    return x + lr * m / (np.sqrt(v) + tau), m, v


def adam_step(
    x: F64, m: F64, v: F64, delta: F64, lr: float, beta1: float, beta2: float, tau: float
) -> tuple[F64, F64, F64]:
    """FedAdam: exponential average of squares, no bias correction (as in the paper)."""
    m = beta1 * m + (1.0 - beta1) * delta
    v = beta2 * v + (1.0 - beta2) * delta * delta
    return x + lr * m / (np.sqrt(v) + tau), m, v


def yogi_step(
    x: F64, m: F64, v: F64, delta: F64, lr: float, beta1: float, beta2: float, tau: float
) -> tuple[F64, F64, F64]:
    """FedYogi: v moves towards delta^2 by an additive, sign-controlled step."""
    m = beta1 * m + (1.0 - beta1) * delta
    sq = delta * delta
    v = v - (1.0 - beta2) * sq * np.sign(v - sq)
    return x + lr * m / (np.sqrt(v) + tau), m, v


DEFAULT_SERVER_LR: dict[str, float] = {"fedavgm": 1.0, "fedadagrad": 0.1, "fedadam": 0.01, "fedyogi": 0.01}


@dataclass(frozen=True)
class FedOpt:
    """FedAvg's sample-weighted mean delta used as a pseudo-gradient for a server optimiser."""

    optimizer: ServerOptimizer
    server_lr: float
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3

    def __post_init__(self) -> None:
        if self.optimizer not in DEFAULT_SERVER_LR:
            raise ValueError(
                f"unknown server optimizer {self.optimizer!r}; choose from {sorted(DEFAULT_SERVER_LR)}"
            )
        if self.server_lr <= 0.0:
            raise ValueError(f"server_lr must be > 0, got {self.server_lr}")
        if not 0.0 <= self.beta1 < 1.0 or not 0.0 <= self.beta2 < 1.0:
            raise ValueError(f"betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.tau <= 0.0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    @property
    def name(self) -> str:
        return self.optimizer

    @property
    def uses_control(self) -> bool:
        return False

    def init_state(self, weights: Vector) -> ServerState:
        size = weights.size
        opt_state = {"m": np.zeros(size, dtype=np.float64)}
        if self.optimizer != "fedavgm":
            # Reddi et al. start the second moment at tau^2 so the first steps are not huge.
            opt_state["v"] = np.full(size, self.tau * self.tau, dtype=np.float64)
        return ServerState(0, weights.astype(np.float32, copy=True), opt_state)

    def client_config(self, base: TrainConfig) -> TrainConfig:
        return base

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        return sample_weight(num_examples, num_steps)

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState:
        delta = weighted_mean_delta(fold)
        x = state.weights.astype(np.float64)
        m = state.opt_state["m"]
        if self.optimizer == "fedavgm":
            x, m = momentum_step(x, m, delta, self.server_lr, self.beta1)
            return ServerState(state.round + 1, x.astype(np.float32), {"m": m})
        v = state.opt_state["v"]
        if self.optimizer == "fedadagrad":
            x, m, v = adagrad_step(x, m, v, delta, self.server_lr, self.beta1, self.tau)
        elif self.optimizer == "fedadam":
            x, m, v = adam_step(x, m, v, delta, self.server_lr, self.beta1, self.beta2, self.tau)
        else:
            x, m, v = yogi_step(x, m, v, delta, self.server_lr, self.beta1, self.beta2, self.tau)
        return ServerState(state.round + 1, x.astype(np.float32), {"m": m, "v": v})
