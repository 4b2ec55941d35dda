"""Test helpers: a fake model whose training is a known move, tiny data for it, what clients keep and send."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedcore.backends.base import EvalResult, FitResult, TrainConfig
from fedcore.client import ClientStateStore
from fedcore.data.dataset import Dataset
from fedcore.layout import ParamLayout
from fedcore.uplink import encode_frame

# (weights, train config, SCAFFOLD correction or None) -> (new weights, local steps taken)
Move = Callable[[np.ndarray, TrainConfig, np.ndarray | None], tuple[np.ndarray, int]]

# Four examples of one class: a FlatAdapter never looks at them, a client with none would not train.
FOUR_EXAMPLES = Dataset(np.zeros((4, 1), np.float32), np.zeros(4, np.int64), n_classes=1)


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


def raw_frame_nbytes(n: int) -> int:
    """Bytes of one uncompressed upload of n float32: a fedcodec `none` frame, header included."""
    return len(encode_frame(None, np.zeros(n, np.float32), 0))


def kept_stage(store: ClientStateStore, key: str) -> dict[int, Any]:
    """What one uplink stage keeps on each client that holds something under `key` (e.g. "residual")."""
    return {cid: state.stages[key] for cid in store if key in (state := store.get(cid)).stages}
