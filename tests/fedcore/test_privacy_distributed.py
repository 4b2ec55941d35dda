"""Skellam shares: each client's share is integer noise, and the sum of all shares has the target variance."""

from __future__ import annotations

import numpy as np

from fedcore.privacy import SkellamShares


def test_shares_sum_to_the_target_variance_within_three_standard_errors() -> None:
    shares = SkellamShares(total_variance=400.0, n_shares=10)
    size = 100_000
    rngs = [np.random.default_rng(np.random.SeedSequence([5, client])) for client in range(10)]
    parts = [shares.sample(size, rng) for rng in rngs]
    assert all(p.dtype == np.int64 for p in parts)
    total = np.sum(parts, axis=0)
    var = float(total.astype(np.float64).var())
    # Var of a sample variance is ~ (2 + excess kurtosis) sigma^4 / n; Skellam's kurtosis is small here.
    se = 400.0 * np.sqrt(2.0 / size)
    assert abs(var - 400.0) < 3 * se
    assert abs(float(total.mean())) < 3 * np.sqrt(400.0 / size)
    one = float(parts[0].astype(np.float64).var())
    assert abs(one - 40.0) < 3 * 40.0 * np.sqrt(2.0 / size)


def test_for_gaussian_matches_the_central_noise_in_fixed_point() -> None:
    shares = SkellamShares.for_gaussian(noise_multiplier=1.0, clip=0.5, scale=1000.0, n_shares=4)
    assert shares.total_variance == 500.0**2
    assert shares.share_mu == 500.0**2 / 8


def test_same_seed_same_share() -> None:
    shares = SkellamShares(10.0, 3)
    a = shares.sample(50, np.random.default_rng(1))
    b = shares.sample(50, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
