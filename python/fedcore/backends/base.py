"""The one protocol every training backend (torch, mlx, sklearn) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from fedcore.layout import ParamLayout


@dataclass(frozen=True)
class TrainConfig:
    """How one client trains locally in one round."""

    epochs: int = 1
    lr: float = 0.05
    batch_size: int = 32
    momentum: float = 0.0
    weight_decay: float = 0.0
    prox_mu: float = 0.0  # FedProx: adds mu/2 * ||w - w_global||^2 to the local loss
    max_steps: int | None = None  # cap on local SGD steps (stragglers do fewer)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.prox_mu < 0:
            raise ValueError(f"prox_mu must be >= 0, got {self.prox_mu}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


@dataclass(frozen=True)
class FitResult:
    """What local training reports back besides the new weights."""

    num_examples: int
    num_steps: int
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalResult:
    """Loss and accuracy of a model on some data."""

    num_examples: int
    loss: float
    accuracy: float


@runtime_checkable
class ModelAdapter(Protocol):
    """A model seen as one flat float32 vector that can be trained and evaluated on arrays."""

    @property
    def layout(self) -> ParamLayout: ...

    def get_weights(self) -> NDArray[np.float32]:
        """A copy of the current weights as one flat float32 vector."""
        ...

    def set_weights(self, flat: NDArray[np.float32]) -> None: ...

    def fit(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        config: TrainConfig,
        control: NDArray[np.float32] | None = None,
    ) -> FitResult:
        """Train in place; `control` is SCAFFOLD's (c - c_i) correction added to each gradient."""
        ...

    def evaluate(self, x: NDArray[np.float32], y: NDArray[np.int64]) -> EvalResult: ...
