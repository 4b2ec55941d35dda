"""A noise-aware server step: the round's mean shrinks by its estimated signal share (James-Stein).

The server sees each client's decoded update, so it can measure how noisy the round's mean is: the spread
of the updates around their mean, divided by the number of updates, is the mean's variance (codec noise
and client sampling alike; the codec's is most of it at ~100x, about 5x an update's energy on MNIST-1D).
E||mean||^2 = ||signal||^2 + variance, so the mean is scaled by max(0, 1 - variance / ||mean||^2): a round
that is mostly noise moves the model little, and the step fades by itself once the shared signal does.
Under FedYogi, whose steps are normalised per coordinate, the gain weighs rounds against each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fedcore.config import FLConfig
from fedcore.uplink.base import ServerOnly, Vector

if TYPE_CHECKING:
    from fedcore.strategies.base import FoldSum


def signal_share(kept: Mapping[int, tuple[float, Vector]]) -> float:
    """1 - (variance of the weighted mean) / ||weighted mean||^2, clipped to [0, 1]; 1 with < 2 updates.

    The variance is sum_i c_i^2 ||u_i - mean||^2 / W^2 x K / (K - 1), unbiased for equal weights.
    """
    count = len(kept)
    if count < 2:
        return 1.0
    weights = np.array([kept[cid][0] for cid in sorted(kept)], dtype=np.float64)
    updates = np.stack([kept[cid][1] for cid in sorted(kept)]).astype(np.float64)
    total = float(weights.sum())
    if total <= 0.0:
        return 1.0
    mean = weights @ updates / total
    spread = float(weights**2 @ ((updates - mean) ** 2).sum(axis=1)) / total**2 * count / (count - 1)
    energy = float(mean @ mean)
    if energy <= 0.0:
        return 0.0
    return float(np.clip(1.0 - spread / energy, 0.0, 1.0))


@dataclass(frozen=True)
class ServerShrinkStage(ServerOnly):
    """Client half: nothing. Server half: the fold's mean times its signal share; keeps the last share."""

    @property
    def key(self) -> str:
        return "shrink"

    def remember(
        self, fold: FoldSum, kept: Mapping[int, tuple[float, Vector]], state: float | None
    ) -> tuple[FoldSum, float | None]:
        """The shrunk fold, and this round's signal share (the last one, for a look in a checkpoint)."""
        del state
        if fold.count and not kept:
            raise ValueError(
                "the server shrink needs each client's update; this round's aggregator kept none"
            )
        if fold.count == 0:
            return fold, None
        share = signal_share(kept)
        return replace(fold, delta_sum=fold.delta_sum * share), share


def shrink_from_config(config: FLConfig) -> ServerShrinkStage | None:
    return ServerShrinkStage() if config.server_shrink else None
