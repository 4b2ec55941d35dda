"""DP-FedAvg pieces on hand cases: clipped norms, noise scale over many draws, the spec strings."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.privacy import CentralDP, DPSpec, Sampling, add_gaussian_noise, clip_update


def test_update_inside_the_ball_is_returned_unchanged_and_not_clipped() -> None:
    update = np.array([0.3, 0.4], dtype=np.float32)  # norm 0.5
    clipped, was_clipped = clip_update(update, 1.0)
    np.testing.assert_array_equal(clipped, update)
    assert not was_clipped
    assert clipped is not update


def test_update_outside_the_ball_is_scaled_onto_it() -> None:
    update = np.array([3.0, 4.0], dtype=np.float32)  # norm 5
    clipped, was_clipped = clip_update(update, 1.0)
    assert was_clipped
    np.testing.assert_allclose(clipped, [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(update, [3.0, 4.0])


def test_clipped_norm_never_exceeds_the_clip_after_float32_rounding() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        update = (rng.standard_normal(1000) * rng.uniform(1, 100)).astype(np.float32)
        clip = float(rng.uniform(0.1, 1.0))
        clipped, _ = clip_update(update, clip)
        norm = np.linalg.norm(clipped.astype(np.float64))
        assert clip * (1 - 1e-6) <= norm <= clip


def test_non_finite_update_is_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        clip_update(np.array([1.0, np.nan], dtype=np.float32), 1.0)


def test_noise_std_is_sigma_times_clip_within_three_standard_errors() -> None:
    n = 200_000
    noised = add_gaussian_noise(np.zeros(n, dtype=np.float32), 0.5, 2.0, np.random.default_rng(1))
    std = float(noised.astype(np.float64).std())
    # Standard error of a sample std of n normal draws: sigma / sqrt(2 n).
    assert abs(std - 1.0) < 3 * 1.0 / np.sqrt(2 * n)
    assert abs(float(noised.mean())) < 3 * 1.0 / np.sqrt(n)


def test_same_seed_same_noise() -> None:
    total = np.ones(10, dtype=np.float32)
    a = add_gaussian_noise(total, 1.0, 1.0, np.random.default_rng(7))
    b = add_gaussian_noise(total, 1.0, 1.0, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_central_dp_divides_the_noised_sum_by_the_expected_cohort() -> None:
    dp = CentralDP(clip_norm=1.0, noise_multiplier=1e-9, sampling=Sampling.fixed(100, 4))
    updates = [np.array([3.0, 4.0], dtype=np.float32), np.array([0.0, 0.5], dtype=np.float32)]
    total = sum(dp.clip(u)[0] for u in updates)
    mean = dp.finish(np.asarray(total, dtype=np.float32), np.random.default_rng(0))
    np.testing.assert_allclose(mean, [0.6 / 4, 1.3 / 4], rtol=1e-5)


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("central:1.0", DPSpec("central", clip=1.0)),
        ("adaptive:0.5", DPSpec("adaptive", quantile=0.5)),
        ("local:1.0,1.1", DPSpec("local", clip=1.0, noise_multiplier=1.1)),
    ],
)
def test_spec_strings_round_trip(text: str, spec: DPSpec) -> None:
    assert DPSpec.parse(text) == spec
    assert str(spec) == text
    assert DPSpec.parse(str(spec)) == spec
    assert spec.user_level == (spec.mode != "local")
