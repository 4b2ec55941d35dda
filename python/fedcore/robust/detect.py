"""Per-round suspicion scores per client and a tracker that accumulates them over the rounds a client joins.

Two signals, each scale-free so one threshold works whatever the update size:
- distance: the L2 distance to the round's coordinate median over the round's median such distance
  (1 is a typical client); noise and boosted updates sit tens of typical distances away;
- direction: the cosine between an update and the coordinate median of the *other* updates of the
  round; honest clients point, on average, the way the others do (cosine > 0), a sign-flipper points
  back (cosine < 0) even when its distance is ordinary.
`suspicion_scores` folds both into one number per client and round, > 1 meaning suspicious; one round
is noisy (an honest update of a late round is mostly its own sampling noise), so `SuspectTracker`
flags a client on the mean of its last scores, not on one round.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from fedcodec import robust as kernels
from fedcore.robust._arrays import F32, F64, as_updates


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


def leave_one_out_medians(updates: ArrayLike) -> list[F32]:
    """For each update, the coordinate median of all the others (K >= 2), from three order statistics.

    Removing one value from a column moves its median to a neighbouring order statistic, so the K
    medians cost one partial sort instead of K: O(K d) rather than O(K^2 d).
    """
    x = as_updates(updates)
    k = x.shape[0]
    if k < 2:
        raise ValueError(f"a median of the others needs K >= 2 updates, got {k}")
    h = k // 2
    if k % 2 == 0:  # K - 1 is odd: the median of the others is the middle value left over
        s = np.partition(x, (h - 1, h), axis=0)
        lo, hi = s[h - 1], s[h]
        return [np.where(row <= lo, hi, lo) for row in x]
    s = np.partition(x, (h - 1, h, h + 1), axis=0)
    below, mid, above = s[h - 1], s[h], s[h + 1]
    upper, lower, both = 0.5 * (mid + above), 0.5 * (below + mid), 0.5 * (below + above)
    return [np.where(row < mid, upper, np.where(row > mid, lower, both)) for row in x]


def direction_scores(updates: ArrayLike) -> F64:
    """Each update's cosine with the coordinate median of the round's other updates (0 for a zero one)."""
    x = as_updates(updates)
    out = np.zeros(x.shape[0], dtype=np.float64)
    for i, (row, others) in enumerate(zip(x, leave_one_out_medians(x), strict=True)):
        norm = float(np.linalg.norm(row)) * float(np.linalg.norm(others))
        out[i] = float(np.dot(row, others)) / norm if norm > 0.0 else 0.0
    return out


def suspicion_scores(updates: ArrayLike, far: float = 4.0) -> F64:
    """max(distance score / far, 1 - direction score), the first capped at 2: 1 is the border.

    Above 1 an update either lies more than `far` typical distances from the round's coordinate
    median, or points away from the median of the others. Both halves live in [0, 2], so one round
    that a colluding majority skews (every honest client then looks far) weighs no more than one
    that points straight back. K < 2 gives no evidence: every score is 0.
    """
    x = as_updates(updates)
    if not far > 0.0:
        raise ValueError(f"far must be > 0, got {far}")
    if x.shape[0] < 2:
        return np.zeros(x.shape[0], dtype=np.float64)
    center = kernels.coordinate_median(x)
    dist = distance_scores(x, center)
    return np.maximum(np.minimum(dist / far, 2.0), 1.0 - direction_scores(x))


@dataclass(frozen=True)
class SuspectTracker:
    """Clients whose mean suspicion score over their last `m` rounds exceeds `threshold`, once seen
    in at least `min_rounds` rounds.

    The default 1.05 asks a client flagged on direction alone to point back on average (mean cosine
    below -0.05), not merely to be unaligned: early in training, or on non-IID shards, honest updates
    hover around cosine 0 and a border at exactly 1 would flag some of them.

    The mean pools the evidence of every round a client took part in: with 10 % of clients drawn per
    round a client joins about 4 rounds in 40, too few for "suspicious in k of the last m" with k > 2.
    A flag is the current verdict, not a sentence: an honest client flagged after one unlucky round
    is cleared once later rounds pull its mean back under the threshold.
    Immutable: `observe` returns the next tracker, so the round driver can store it in its state.
    """

    threshold: float = 1.05
    m: int = 10
    min_rounds: int = 1
    history: Mapping[int, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.m:
            raise ValueError(f"need 1 <= min_rounds <= m, got min_rounds = {self.min_rounds}, m = {self.m}")
        if not self.threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")

    def observe(self, clients: Sequence[int], scores: ArrayLike) -> SuspectTracker:
        """The tracker after one round in which `clients[i]` scored `scores[i]`."""
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(clients),):
            raise ValueError(f"{s.shape[0] if s.ndim else 0} scores for {len(clients)} clients")
        if len(set(clients)) != len(clients):
            raise ValueError("a client appears twice in one round")
        if not np.all(np.isfinite(s)):
            raise ValueError("suspicion scores must be finite")
        history = dict(self.history)
        for client, score in zip(clients, s, strict=True):
            history[client] = (*history.get(client, ()), float(score))[-self.m :]
        return SuspectTracker(self.threshold, self.m, self.min_rounds, history)

    def flagged(self) -> frozenset[int]:
        """Clients seen in >= `min_rounds` rounds whose mean score over the last `m` exceeds the threshold."""
        enough = {c: h for c, h in self.history.items() if len(h) >= self.min_rounds}
        return frozenset(c for c, h in enough.items() if sum(h) / len(h) > self.threshold)
