"""The one in-memory dataset type every loader returns and every partitioner indexes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Dataset:
    """Features x (float32, [N, ...]) and labels y (int64, [N]) in [0, n_classes)."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    n_classes: int
    name: str = ""

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32:
            raise ValueError(f"x must be float32, got {self.x.dtype}")
        if self.y.dtype != np.int64:
            raise ValueError(f"y must be int64, got {self.y.dtype}")
        if self.x.ndim < 2:
            raise ValueError(f"x must be [N, ...] with at least 2 dims, got shape {self.x.shape}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"y has shape {self.y.shape}, x has {self.x.shape[0]} rows")
        if self.n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {self.n_classes}")
        if self.y.size and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            low, high = self.y.min(), self.y.max()
            raise ValueError(f"labels must lie in [0, {self.n_classes}), got [{low}, {high}]")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def in_features(self) -> int:
        """Flattened feature count, what an MLP's first layer needs."""
        return int(np.prod(self.feature_shape))

    def subset(self, indices: NDArray[np.int64], name: str | None = None) -> Dataset:
        return Dataset(self.x[indices], self.y[indices], self.n_classes, self.name if name is None else name)

    def label_counts(self) -> NDArray[np.int64]:
        return np.bincount(self.y, minlength=self.n_classes).astype(np.int64)


def concat(parts: list[Dataset], name: str) -> Dataset:
    """Pool datasets that share feature shape and class count (e.g. per-client test splits)."""
    if not parts:
        raise ValueError("nothing to concatenate")
    return Dataset(
        np.concatenate([p.x for p in parts]),
        np.concatenate([p.y for p in parts]),
        max(p.n_classes for p in parts),
        name,
    )
