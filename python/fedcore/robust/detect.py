"""Per-round suspicion scores per client and a tracker that accumulates them over the rounds a client joins.

Two signals, each scale-free so one threshold works whatever the update size:
- distance: the L2 distance to the round's coordinate median over the round's median such distance
  (1 is a typical client); noise and boosted updates sit tens of typical distances away;
- direction: the share of the coordinates on which three quarters of the *other* updates agree in
  sign where this update points the other way; honest clients side with that consensus more often
  than a coin (< 50 %), a sign-flipper against it (> 50 %) even when its distance is ordinary. Signs
  count every coordinate alike, so the few coordinates that carry a round's shared signal are not
  drowned by the many that carry a client's own noise (as they are in a cosine).
`suspicion_scores` folds both into one number per client and round, > 1 meaning suspicious, and says
how much the round can tell; one round is noisy (an honest update of a late round is mostly its own
sampling noise), so `SuspectTracker` flags a client on the weighted mean of its last scores.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


def sign_disagreement(updates: ArrayLike, agree: float = 0.5) -> F64:
    """Each update's share of the others' consensus coordinates on which it points the other way.

    A coordinate is in update i's consensus when the mean sign of the *other* updates there is at least
    `agree` in size (0.5: three quarters of them agree). A zero coordinate counts half, as a coin would,
    and so does an update with no consensus coordinate at all: 0.5 is no evidence either way, an aligned
    update scores below it and a flipped one above.
    """
    x = as_updates(updates)
    k = x.shape[0]
    if k < 2:
        raise ValueError(f"a consensus of the others needs K >= 2 updates, got {k}")
    if not 0.0 < agree <= 1.0:
        raise ValueError(f"agree must lie in (0, 1], got {agree}")
    signs = np.sign(x).astype(np.int8)
    total = signs.sum(axis=0, dtype=np.int32)
    out = np.full(k, 0.5, dtype=np.float64)
    for i, own in enumerate(signs):
        others = total - own  # (K - 1) times the others' mean sign
        consensus = np.abs(others) >= agree * (k - 1)
        n = int(np.count_nonzero(consensus))
        if n:
            product = own[consensus] * np.sign(others[consensus])
            out[i] = (np.count_nonzero(product < 0) + 0.5 * np.count_nonzero(product == 0)) / n
    return out


@dataclass(frozen=True)
class RoundSuspicion:
    """One round's suspicion score per client (> 1 suspicious) and how much evidence the round holds.

    `weight` is the square of how far the round's median disagreement lies below a coin's 0.5: early
    rounds, where honest updates side with the consensus, say much; late ones, where every update is
    mostly its own sampling noise, say little, and a tracker weighs them so.
    """

    scores: F64
    weight: float


def suspicion_scores(updates: ArrayLike, far: float = 4.0) -> RoundSuspicion:
    """max(distance score / far, direction score), each in [0, 2]: 1 is the border.

    The direction score puts the round's median sign disagreement m at 0, a coin's 0.5 at 1 and the
    mirror image of the median update (1 - m: a flipped honest update) at 2. Above 1 an update either
    lies more than `far` typical distances from the round's coordinate median, or disagrees with the
    others' consensus more often than a coin would. Both halves are capped at 2, so one round that a
    colluding majority skews (every honest client then looks far) weighs no more than one that points
    straight back. K < 2 gives no evidence: every score is 0, and so is the weight.
    """
    x = as_updates(updates)
    if not far > 0.0:
        raise ValueError(f"far must be > 0, got {far}")
    if x.shape[0] < 2:
        return RoundSuspicion(np.zeros(x.shape[0], dtype=np.float64), 0.0)
    center = kernels.coordinate_median(x)
    dist = distance_scores(x, center)
    disagree = sign_disagreement(x)
    gap = 0.5 - float(np.median(disagree))
    direction = np.clip(1.0 + (disagree - 0.5) / gap, 0.0, 2.0) if gap > 0.0 else np.ones_like(disagree)
    return RoundSuspicion(np.maximum(np.minimum(dist / far, 2.0), direction), max(gap, 0.0) ** 2)


@dataclass(frozen=True)
class SuspectTracker:
    """Clients whose weighted mean suspicion score over their last `m` rounds exceeds `threshold`, once
    seen in at least `min_rounds` rounds.

    Each round counts with its `RoundSuspicion.weight`, so a client's verdict rests on the rounds that
    could tell an attacker from an honest client; with the direction score this is the likelihood
    rule "disagrees with the consensus more than a coin, summed over rounds by how much each round
    separates the two". The mean pools the evidence of every round a client took part in: with 10 % of
    clients drawn per round a client joins about 4 rounds in 40, too few for "suspicious in k of the
    last m" with k > 2. A flag is the current verdict, not a sentence: an honest client flagged after
    one unlucky round is cleared once later rounds pull its mean back under the threshold.
    Immutable: `observe` returns the next tracker, so the round driver can store it in its state.
    """

    threshold: float = 1.0
    m: int = 10
    min_rounds: int = 1
    history: Mapping[int, tuple[tuple[float, float], ...]] = field(default_factory=dict)  # (score, weight)

    def __post_init__(self) -> None:
        if not 1 <= self.min_rounds <= self.m:
            raise ValueError(f"need 1 <= min_rounds <= m, got min_rounds = {self.min_rounds}, m = {self.m}")
        if not self.threshold > 0.0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A checkpoint from before round weights kept bare scores: each of those rounds weighs 1."""
        history = {
            c: tuple(e if isinstance(e, tuple) else (float(e), 1.0) for e in h)
            for c, h in state.get("history", {}).items()
        }
        self.__dict__.update({**state, "history": history})

    def observe(self, clients: Sequence[int], scores: ArrayLike, weight: float = 1.0) -> SuspectTracker:
        """The tracker after one round, of `weight`, in which `clients[i]` scored `scores[i]`."""
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(clients),):
            raise ValueError(f"{s.shape[0] if s.ndim else 0} scores for {len(clients)} clients")
        if len(set(clients)) != len(clients):
            raise ValueError("a client appears twice in one round")
        if not np.all(np.isfinite(s)):
            raise ValueError("suspicion scores must be finite")
        if not (math.isfinite(weight) and weight >= 0.0):
            raise ValueError(f"a round's weight must be finite and >= 0, got {weight}")
        history = dict(self.history)
        for client, score in zip(clients, s, strict=True):
            history[client] = (*history.get(client, ()), (float(score), float(weight)))[-self.m :]
        return SuspectTracker(self.threshold, self.m, self.min_rounds, history)

    def mean_score(self, client: int) -> float | None:
        """The client's weighted mean score over its last `m` rounds; None before any round with weight."""
        rounds = self.history.get(client, ())
        total = sum(w for _, w in rounds)
        return sum(s * w for s, w in rounds) / total if total > 0.0 else None

    def flagged(self) -> frozenset[int]:
        """Clients seen in >= `min_rounds` rounds whose weighted mean score exceeds the threshold."""
        flagged = set()
        for client, rounds in self.history.items():
            mean = self.mean_score(client)
            if len(rounds) >= self.min_rounds and mean is not None and mean > self.threshold:
                flagged.add(client)
        return frozenset(flagged)
