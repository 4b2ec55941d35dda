"""The fold every strategy aggregates through, and the state a server carries between rounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig

Vector = NDArray[np.float32]


@dataclass(frozen=True)
class ServerState:
    """Everything a strategy needs from one round to the next, passed in and returned, never kept."""

    round: int
    weights: Vector
    opt_state: dict[str, NDArray[np.float64]] = field(default_factory=dict)


@dataclass(frozen=True)
class FoldSum:
    """Running sums of client updates: adding two folds is the same as folding their clients in turn."""

    delta_sum: NDArray[np.float64]
    control_sum: NDArray[np.float64] | None = None
    weight_sum: float = 0.0
    num_examples: int = 0
    weighted_steps: float = 0.0
    count: int = 0

    @classmethod
    def empty(cls, size: int, with_control: bool = False) -> FoldSum:
        control = np.zeros(size, dtype=np.float64) if with_control else None
        return cls(np.zeros(size, dtype=np.float64), control)

    def __add__(self, other: FoldSum) -> FoldSum:
        if (self.control_sum is None) != (other.control_sum is None):
            raise ValueError("cannot add a fold with control sums to one without")
        control = None
        if self.control_sum is not None and other.control_sum is not None:
            control = self.control_sum + other.control_sum
        return FoldSum(
            delta_sum=self.delta_sum + other.delta_sum,
            control_sum=control,
            weight_sum=self.weight_sum + other.weight_sum,
            num_examples=self.num_examples + other.num_examples,
            weighted_steps=self.weighted_steps + other.weighted_steps,
            count=self.count + other.count,
        )


class Strategy(Protocol):
    """How clients train, how much each update counts, and how a round's fold becomes new weights."""

    @property
    def name(self) -> str: ...

    @property
    def uses_control(self) -> bool:
        """True for SCAFFOLD-like strategies whose clients also send a control-variate delta."""
        ...

    def init_state(self, weights: Vector) -> ServerState: ...

    def client_config(self, base: TrainConfig) -> TrainConfig:
        """The local training settings this strategy wants (FedProx adds its proximal term)."""
        ...

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        """The weight of one client's delta in the running sum."""
        ...

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState: ...
