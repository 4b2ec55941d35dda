"""User-level DP at the aggregator: unweighted sum of clipped updates, noise once, a fixed denominator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedcore.privacy.adaptive import geometric_clip_update
from fedcore.privacy.central import add_gaussian_noise
from fedcore.protocol.messages import Failure, Reply
from fedcore.server.aggregation import FoldContext, LinearFold
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self


@dataclass(frozen=True)
class RoundNoise:
    """This round's mechanism: clip C, multiplier on the sum, expected cohort, seed; adaptive's knobs."""

    clip: float
    noise_multiplier: float
    cohort: float
    seed: int
    target_quantile: float | None = None  # adaptive clipping only
    count_noise: float = 0.0
    clip_lr: float = 0.2


class PrivateFold:
    """Wraps the linear fold (built with equal client weights): noise is added once, where the round finishes.

    The mean divides by the expected cohort, not by who answered, so the count is not what the noise hides.
    Adaptive clipping also sums each client's `dp_unclipped` bit and moves the clip toward the target quantile
    of update norms from the noised count (Andrew et al. 2021).
    """

    def __init__(self, ctx: FoldContext, noise: RoundNoise) -> None:
        self._ctx = ctx
        self._noise = noise
        self._inner = LinearFold(ctx)
        self._unclipped = 0.0
        self.metrics: dict[str, float] = {}

    def add(self, reply: Reply) -> Failure | None:
        refusal = self._inner.add(reply)
        if refusal is None:
            self._unclipped += float(reply.metrics.get("dp_unclipped", 0.0))
        return refusal

    def merge(self, other: Self) -> Self:
        merged = type(self)(self._ctx, self._noise)
        merged._inner = self._inner.merge(other._inner)
        merged._unclipped = self._unclipped + other._unclipped
        return merged

    def finish(self) -> FoldSum:
        fold = self._inner.finish()
        noise = self._noise
        rng = np.random.default_rng(noise.seed)
        total = np.asarray(fold.delta_sum, dtype=np.float32)
        noised = add_gaussian_noise(total, noise.clip, noise.noise_multiplier, rng)
        self.metrics = {"dp_clip": noise.clip}
        if noise.target_quantile is not None:
            fraction = (self._unclipped + rng.normal(0.0, noise.count_noise)) / noise.cohort
            self.metrics["dp_unclipped_fraction_noised"] = float(fraction)
            self.metrics["dp_next_clip"] = geometric_clip_update(
                noise.clip, fraction, noise.target_quantile, noise.clip_lr
            )
        return FoldSum(
            delta_sum=noised.astype(np.float64),
            control_sum=None,
            weight_sum=noise.cohort,
            num_examples=fold.num_examples,
            weighted_steps=fold.weighted_steps,
            count=fold.count,
        )
