"""User-level DP-FedAvg (McMahan et al. 2018): clip each client update on the client, noise the sum once."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.privacy.accountant import Accountant, AccountantKind, Sampling, check_noise_multiplier
from fedcore.privacy.spec import check_clip

F32 = NDArray[np.float32]

# float32 rounding moves each coordinate by at most 2^-24 of itself, so scaling to C * (1 - 2^-22) keeps the
# clipped norm <= C after the cast: the sensitivity bound holds exactly, not just up to rounding.
_CLIP_MARGIN = 1.0 - 2.0**-22


def l2_norm(update: F32) -> float:
    """L2 norm in float64, refusing NaN/inf (a non-finite update has no sensitivity bound)."""
    norm = float(np.linalg.norm(update.astype(np.float64, copy=False)))
    if not math.isfinite(norm):
        raise ValueError("update has non-finite values; it cannot be clipped")
    return norm


def clip_update(update: F32, clip: float) -> tuple[F32, bool]:
    """The update scaled to L2 norm <= clip, and whether it had to be scaled; the input is not modified."""
    check_clip(clip)
    norm = l2_norm(update)
    if norm <= clip:
        return update.astype(np.float32, copy=True), False
    scaled = update.astype(np.float64) * (clip * _CLIP_MARGIN / norm)
    return scaled.astype(np.float32), True


def gaussian_noise(size: int, std: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """N(0, std^2) per coordinate from the caller's seeded generator."""
    if not (std >= 0.0 and math.isfinite(std)):
        raise ValueError(f"noise std must be a finite number >= 0, got {std}")
    return rng.normal(0.0, std, size=size) if std > 0.0 else np.zeros(size)


def add_gaussian_noise(total: F32, clip: float, noise_multiplier: float, rng: np.random.Generator) -> F32:
    """The Gaussian mechanism on a sum of clipped updates: + N(0, (sigma C)^2) per coordinate, added once."""
    check_clip(clip)
    check_noise_multiplier(noise_multiplier)
    noised = total.astype(np.float64) + gaussian_noise(total.size, noise_multiplier * clip, rng)
    return noised.astype(np.float32)


@dataclass(frozen=True)
class CentralDP:
    """DP-FedAvg with a fixed clip: `clip` on each client (uplink stage), `finish` on the server aggregate.

    The mean divides by the expected cohort (a fixed denominator), so the number of replies is not what the
    noise has to hide, and all clients weigh the same (per-example weights would change the sensitivity).
    """

    clip_norm: float
    noise_multiplier: float
    sampling: Sampling

    def __post_init__(self) -> None:
        check_clip(self.clip_norm)
        check_noise_multiplier(self.noise_multiplier)

    def clip(self, update: F32) -> tuple[F32, bool]:
        """Client side: the update to send and whether it was clipped (a metric, never sent in the clear)."""
        return clip_update(update, self.clip_norm)

    def finish(self, total: F32, rng: np.random.Generator) -> F32:
        """Server side: noised sum of the clipped updates divided by the expected cohort size."""
        noised = add_gaussian_noise(total, self.clip_norm, self.noise_multiplier, rng)
        return (noised / np.float32(self.sampling.expected_cohort)).astype(np.float32)

    def accountant(self, delta: float, kind: AccountantKind | None = None) -> Accountant:
        """The accountant for this mechanism: one event per round, PLD for Poisson, RDP for fixed-size."""
        return Accountant(self.sampling, self.noise_multiplier, delta, kind)
