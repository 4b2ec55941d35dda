"""Per-round suspicion scores per client and a tracker that flags clients suspicious in k of m rounds.

Scores are normalised by the round's median so that one threshold works whatever the update scale:
a score of 1 is a typical client, 3 is three times as far from the consensus as the typical one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from fedcodec import robust as kernels
from fedcore.robust._arrays import F64, as_updates


def _by_median(raw: F64) -> F64:
    mid = float(np.median(raw))
    return raw / mid if mid > 0.0 else np.where(raw > 0.0, np.inf, 1.0)


def distance_scores(updates: ArrayLike, center: ArrayLike) -> F64:
    """Each update's L2 distance to the robust center, over the round's median such distance."""
    x = as_updates(updates)
    c = np.ascontiguousarray(center, dtype=np.float32)
    return _by_median(np.sqrt(kernels.sq_dists_to(x, c)))


def krum_scores(updates: ArrayLike, f: int) -> F64:
    """Each update's Krum score (summed squared distance to its K - f - 2 nearest), over the median."""
    x = as_updates(updates)
    return _by_median(kernels.krum_scores(kernels.pairwise_sq_dists(x), f))


def suspicious(scores: ArrayLike, threshold: float) -> np.ndarray[tuple[int], np.dtype[np.bool_]]:
    """Which clients score above the threshold this round."""
    return np.asarray(scores, dtype=np.float64) > threshold


@dataclass(frozen=True)
class SuspectTracker:
    """Clients whose score exceeded `threshold` in at least k of the last m rounds they took part in.

    Immutable: `observe` returns the next tracker, so the round driver can store it in its state.
    """

    k: int = 3
    m: int = 5
    threshold: float = 2.0
    history: Mapping[int, tuple[bool, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.m:
            raise ValueError(f"need 1 <= k <= m, got k = {self.k}, m = {self.m}")
        if not self.threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")

    def observe(self, clients: Sequence[int], scores: ArrayLike) -> SuspectTracker:
        """The tracker after one round in which `clients[i]` scored `scores[i]`."""
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(clients),):
            raise ValueError(f"{s.shape[0] if s.ndim else 0} scores for {len(clients)} clients")
        if len(set(clients)) != len(clients):
            raise ValueError("a client appears twice in one round")
        history = dict(self.history)
        for client, flag in zip(clients, suspicious(s, self.threshold), strict=True):
            history[client] = (*history.get(client, ()), bool(flag))[-self.m :]
        return SuspectTracker(self.k, self.m, self.threshold, history)

    def flagged(self) -> frozenset[int]:
        """Clients suspicious in at least k of their last m observed rounds."""
        return frozenset(c for c, h in self.history.items() if sum(h) >= self.k)
