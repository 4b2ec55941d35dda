"""Adaptive quantile clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021): the clip tracks a norm quantile."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.privacy.accountant import Accountant, AccountantKind, Sampling, check_noise_multiplier
from fedcore.privacy.central import add_gaussian_noise, clip_update
from fedcore.privacy.spec import check_clip, check_quantile

F32 = NDArray[np.float32]


def update_noise_multiplier(noise_multiplier: float, count_noise: float) -> float:
    """z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2: the sum and the count together cost one Gaussian of z.

    The count of unclipped clients has sensitivity 1/2 once centred (b - 1/2), so its multiplier is 2 sigma_b.
    """
    check_noise_multiplier(noise_multiplier)
    if not 2.0 * count_noise > noise_multiplier:
        raise ValueError(
            f"count noise sigma_b={count_noise} is too small for noise multiplier z={noise_multiplier}: "
            "need 2*sigma_b > z"
        )
    return float((noise_multiplier**-2 - (2.0 * count_noise) ** -2) ** -0.5)


def geometric_clip_update(clip: float, unclipped_fraction: float, quantile: float, clip_lr: float) -> float:
    """C <- C * exp(-eta_C (b - gamma)): shrink while more than gamma of the updates fit, grow otherwise."""
    return clip * math.exp(-clip_lr * (unclipped_fraction - quantile))


@dataclass(frozen=True)
class AdaptiveClipState:
    """The clip norm for the coming round; the server keeps it and sends it down with the model."""

    clip: float


@dataclass(frozen=True)
class AdaptiveClipping:
    """DP-FedAvg whose clip follows the `target_quantile` of client update norms, privately.

    `noise_multiplier` is the z the accountant charges per round; the update sum gets the larger z_delta
    because part of the budget pays for the noised count (std `count_noise`, paper default cohort/20).
    """

    target_quantile: float
    noise_multiplier: float
    count_noise: float
    sampling: Sampling
    clip_lr: float = 0.2
    initial_clip: float = 0.1

    def __post_init__(self) -> None:
        check_quantile(self.target_quantile)
        check_clip(self.initial_clip)
        if not (self.clip_lr > 0.0 and math.isfinite(self.clip_lr)):
            raise ValueError(f"clip learning rate eta_C must be a finite number > 0, got {self.clip_lr}")
        update_noise_multiplier(self.noise_multiplier, self.count_noise)

    @classmethod
    def for_cohort(
        cls,
        target_quantile: float,
        noise_multiplier: float,
        sampling: Sampling,
        clip_lr: float = 0.2,
        initial_clip: float = 0.1,
    ) -> AdaptiveClipping:
        """The paper's default count noise sigma_b = expected cohort / 20."""
        return cls(
            target_quantile,
            noise_multiplier,
            sampling.expected_cohort / 20.0,
            sampling,
            clip_lr,
            initial_clip,
        )

    @property
    def update_noise_multiplier(self) -> float:
        """The multiplier of the noise on the update sum (z_delta >= z)."""
        return update_noise_multiplier(self.noise_multiplier, self.count_noise)

    def init_state(self) -> AdaptiveClipState:
        """Round one's clip: the paper starts small (0.1) and lets the geometric update grow it."""
        return AdaptiveClipState(self.initial_clip)

    def clip(self, update: F32, state: AdaptiveClipState) -> tuple[F32, int]:
        """Client side: the clipped update and the bit b = 1 if its norm already fit under the clip."""
        clipped, was_clipped = clip_update(update, state.clip)
        return clipped, int(not was_clipped)

    def finish(
        self, total: F32, unclipped_count: int, state: AdaptiveClipState, rng: np.random.Generator
    ) -> tuple[F32, AdaptiveClipState, dict[str, float]]:
        """Server side: noised mean update, the next clip from the noised unclipped fraction, and metrics."""
        cohort = self.sampling.expected_cohort
        noised = add_gaussian_noise(total, state.clip, self.update_noise_multiplier, rng)
        mean = (noised / np.float32(cohort)).astype(np.float32)
        fraction = (unclipped_count + rng.normal(0.0, self.count_noise)) / cohort
        next_clip = geometric_clip_update(state.clip, fraction, self.target_quantile, self.clip_lr)
        metrics = {"dp_clip": state.clip, "dp_unclipped_fraction_noised": fraction, "dp_next_clip": next_clip}
        return mean, AdaptiveClipState(next_clip), metrics

    def accountant(self, delta: float, kind: AccountantKind | None = None) -> Accountant:
        """Charged at z per round: the sum (z_delta) and the count (2 sigma_b) compose to exactly z."""
        return Accountant(self.sampling, self.noise_multiplier, delta, kind)
