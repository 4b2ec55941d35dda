"""A fake model over one flat vector whose training is a known move, for exact client-side checks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedcore.backends.base import EvalResult, FitResult, TrainConfig
from fedcore.layout import ParamLayout

# (weights, train config, SCAFFOLD correction or None) -> (new weights, local steps taken)
Move = Callable[[np.ndarray, TrainConfig, np.ndarray | None], tuple[np.ndarray, int]]


class FlatAdapter:
    """A ModelAdapter whose `fit` applies `move` once; evaluation always reports accuracy 1."""

    def __init__(self, size: int, move: Move) -> None:
        self._move = move
        self._w = np.zeros(size, dtype=np.float32)
        self.layout = ParamLayout.from_shapes([("w", (size,))])

    def get_weights(self) -> np.ndarray:
        return self._w.copy()

    def set_weights(self, flat: np.ndarray) -> None:
        self._w = np.asarray(flat, dtype=np.float32).copy()

    def fit(
        self, x: np.ndarray, y: np.ndarray, config: TrainConfig, control: np.ndarray | None = None
    ) -> FitResult:
        self._w, steps = self._move(self._w, config, control)
        return FitResult(len(y), steps, 0.5)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> EvalResult:
        return EvalResult(len(y), 0.0, 1.0)
