"""Adaptive quantile clipping: the noise split and convergence of the clip to a target quantile."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.privacy import Accountant, AdaptiveClipping, Sampling, update_noise_multiplier
from fedcore.privacy.adaptive import geometric_clip_update


def test_noise_split_composes_back_to_the_accounted_multiplier() -> None:
    z, sigma_b = 1.0, 5.0
    z_delta = update_noise_multiplier(z, sigma_b)
    assert z_delta == pytest.approx((1.0 - 1.0 / 100.0) ** -0.5)
    # Two Gaussians of multipliers z_delta and 2 sigma_b cost as much as one of multiplier z.
    assert (z_delta**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(z)


def test_geometric_update_moves_against_the_excess_of_unclipped_updates() -> None:
    assert geometric_clip_update(1.0, 0.5, 0.5, 0.2) == 1.0
    assert geometric_clip_update(1.0, 1.0, 0.5, 0.2) == pytest.approx(np.exp(-0.1))
    assert geometric_clip_update(1.0, 0.0, 0.5, 0.2) == pytest.approx(np.exp(0.1))


@pytest.mark.parametrize("quantile", [0.2, 0.5, 0.8])
def test_clip_converges_to_the_target_quantile_of_update_norms(quantile: float) -> None:
    cohort = 100
    sampling = Sampling.fixed(population=10_000, cohort=cohort)
    dp = AdaptiveClipping.for_cohort(quantile, noise_multiplier=1.0, sampling=sampling)
    rng = np.random.default_rng(3)
    state = dp.init_state()  # starts at 0.1, far below the norms (median 2.0)
    fractions = []
    for round_num in range(400):
        norms = rng.lognormal(mean=np.log(2.0), sigma=0.5, size=cohort)
        total = np.zeros(8, dtype=np.float32)
        unclipped = 0
        for norm in norms:
            direction = rng.standard_normal(8)
            update = (direction / np.linalg.norm(direction) * norm).astype(np.float32)
            clipped, bit = dp.clip(update, state)
            total += clipped
            unclipped += bit
        _, state, _ = dp.finish(total, unclipped, state, rng)
        if round_num >= 300:
            fractions.append(unclipped / cohort)
    true_fraction = float(np.mean(rng.lognormal(np.log(2.0), 0.5, 200_000) <= state.clip))
    assert abs(true_fraction - quantile) < 0.05
    assert abs(float(np.mean(fractions)) - quantile) < 0.02


def test_adaptive_accounts_at_the_total_multiplier() -> None:
    sampling = Sampling.poisson(1000, 0.1)
    dp = AdaptiveClipping(0.5, 1.0, 5.0, sampling)
    assert dp.update_noise_multiplier > 1.0
    assert dp.accountant(1e-4, "rdp") == Accountant(sampling, 1.0, 1e-4, "rdp")
