"""Input checks shared by the aggregators, pre-aggregators, attacks and scores."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def as_updates(updates: ArrayLike) -> F32:
    """The K x d float32, C-contiguous matrix every kernel reads (no copy when it already is one)."""
    x = np.ascontiguousarray(updates, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"updates must be a non-empty K x d matrix, got shape {x.shape}")
    return x


def as_weights(weights: ArrayLike | None, k: int) -> F64:
    """Per-client weights as float64; None counts every client once."""
    if weights is None:
        return np.ones(k, dtype=np.float64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (k,):
        raise ValueError(f"need {k} weights, one per update, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0.0) or w.sum() <= 0.0:
        raise ValueError("weights must be finite, >= 0 and not all zero")
    return w
