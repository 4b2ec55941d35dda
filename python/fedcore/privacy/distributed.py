"""Distributed DP on the integer ring: each client adds a Skellam share, the secure sum holds all the noise.

Not wired yet: this waits for the secure-aggregation integration (fixed-point encoding, modular wrap and the
Skellam accountant of Agarwal, Kairouz, Liu 2021 are that integration's job). What is here is the sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class SkellamShares:
    """Split integer noise of variance `total_variance` over `n_shares` clients, exactly.

    Skellam(mu) = Poisson(mu) - Poisson(mu) has variance 2 mu, and Poissons add: n shares of Skellam(mu/n)
    sum to Skellam(mu) exactly (a sum of discrete Gaussians is only close to a discrete Gaussian).
    """

    total_variance: float
    n_shares: int

    def __post_init__(self) -> None:
        if not (self.total_variance > 0.0 and math.isfinite(self.total_variance)):
            raise ValueError(f"total noise variance must be a finite number > 0, got {self.total_variance}")
        if self.n_shares < 1:
            raise ValueError(f"n_shares must be >= 1, got {self.n_shares}")

    @classmethod
    def for_gaussian(cls, noise_multiplier: float, clip: float, scale: float, n_shares: int) -> SkellamShares:
        """Shares summing to the variance of N(0, (z C)^2) in fixed point x -> round(x * scale)."""
        std = noise_multiplier * clip * scale
        return cls(std * std, n_shares)

    @property
    def share_mu(self) -> float:
        """Each Poisson's mean in one client's share: total variance / (2 n)."""
        return self.total_variance / (2.0 * self.n_shares)

    def sample(self, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
        """One client's share: `size` independent Skellam(mu/n) integers from its own seeded generator."""
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        mu = self.share_mu
        return rng.poisson(mu, size).astype(np.int64) - rng.poisson(mu, size).astype(np.int64)
