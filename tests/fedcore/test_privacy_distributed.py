"""Distributed DP: Skellam shares on the SecAgg ring; the unmasked sum carries exactly the designed noise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcodec import secagg
from fedcore.config import FLConfig
from fedcore.privacy import SkellamShares
from fedcore.privacy.distributed import DistributedDP
from fedcore.secure import RingConfig, SecAggParams, decode_sum, encode_update, run_secagg_round
from fedcore.sim import simulate


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


# ---- distributed DP on the SecAgg ring -----------------------------------------------------------------


def _seed(client: int) -> bytes:
    return secagg.derive_scalar(client.to_bytes(8, "little"), b"test rounding")


def _updates(n: int, d: int, scale: float = 0.01) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(7)
    return {c: (scale * rng.standard_normal(d)).astype(np.float32) for c in range(n)}


def test_unmasked_sum_carries_the_designed_noise_variance_within_three_standard_errors() -> None:
    n, d = 8, 40_000
    ring = RingConfig(clip=1.0, bits=12, max_clients=n)
    dp = DistributedDP.for_round(clip=1.0, noise_multiplier=0.8, clients=n, tolerance=0.0)
    ring = ring.with_headroom(dp.headroom_bits(ring, d))
    updates = _updates(n, d)
    noised = {c: dp.ring_input(x, ring, _seed(c)) for c, x in updates.items()}
    clean = {c: dp.rounded_codes(x, ring, _seed(c)) for c, x in updates.items()}
    params = SecAggParams(n - 1, n // 2 + 1, "complete graph")
    report = run_secagg_round(noised, params, ring.ring_bits, seed=3)
    assert sorted(report.result.included) == list(range(n))
    step = 2.0 * ring.clip / ring.levels
    noise = (
        decode_sum(report.result.total, n, d, ring).astype(np.float64)
        - decode_sum(np.sum(list(clean.values()), axis=0).astype(np.uint32), n, d, ring)
    ) / step
    design = dp.total_variance(ring, d)  # noise_floor = n: all n shares together
    var = float(noise.var())
    assert abs(var - design) < 3 * design * np.sqrt(2.0 / d)
    assert abs(float(noise.mean())) < 3 * np.sqrt(design / d)
    assert noise.min() < 0  # the sum went below zero and still decoded (the ring's lower margin)
    # the design: z_eff >= z, and the noise in float units is ~ z C (the rounding adds little at 12 bits)
    assert dp.effective_noise_multiplier(ring, d, design) >= 0.8 * (1 - 1e-12)
    assert np.sqrt(design) * step == pytest.approx(0.8 * 1.0, rel=0.02)


def test_each_share_is_the_total_over_the_noise_floor_so_dropouts_below_it_are_refused() -> None:
    dp = DistributedDP.for_round(clip=1.0, noise_multiplier=1.0, clients=40, tolerance=0.1)
    assert dp.noise_floor == 36
    ring = RingConfig(1.0, 12, 40)
    assert dp.shares(ring, 100).total_variance == pytest.approx(dp.total_variance(ring, 100))
    assert dp.shares(ring, 100).n_shares == 36


def test_conditional_rounding_bounds_every_clients_norm() -> None:
    ring = RingConfig(clip=0.05, bits=8, max_clients=4)
    dp = DistributedDP(clip=1.0, noise_multiplier=1.0, noise_floor=4)
    x = np.full(1_000, 0.9 / np.sqrt(1_000), dtype=np.float32)  # inside C; every coordinate clamps to 0.05
    bound = dp.norm_bound(ring, x.size)
    for c in range(20):
        codes = dp.rounded_codes(x, ring, _seed(c))
        assert np.linalg.norm(codes - ring.levels / 2.0) <= bound


def test_with_headroom_and_no_noise_the_sum_is_still_exact() -> None:
    n, d = 5, 3_000
    ring = RingConfig(clip=1.0, bits=10, max_clients=n, seed=4).with_headroom(6)
    codes = {c: encode_update(x, ring, _seed(c)) for c, x in _updates(n, d, 0.3).items()}
    report = run_secagg_round(codes, SecAggParams(n - 1, 3, "complete"), ring.ring_bits, seed=4)
    exact = np.sum([v.astype(np.int64) for v in codes.values()], axis=0)
    np.testing.assert_array_equal(report.result.total.astype(np.int64), exact)
    step = 2.0 * ring.clip / ring.levels
    np.testing.assert_allclose(
        decode_sum(report.result.total, n, d, ring), exact * step - n * ring.clip, rtol=0, atol=1e-5
    )


def test_a_ring_without_room_for_the_noise_is_refused() -> None:
    ring = RingConfig(clip=1.0, bits=12, max_clients=8)
    dp = DistributedDP(clip=1.0, noise_multiplier=2.0, noise_floor=8)
    x = np.zeros(500, dtype=np.float32)
    with pytest.raises(ValueError, match="could wrap"):
        dp.ring_input(x, ring, _seed(0))
    needed = dp.headroom_bits(ring, 500)
    assert needed >= 1
    dp.ring_input(x, ring.with_headroom(needed), _seed(0))  # enough room: accepted
    with pytest.raises(ValueError, match="could wrap"):
        dp.ring_input(x, ring.with_headroom(needed - 1), _seed(0))
    huge = DistributedDP(clip=1.0, noise_multiplier=1e4, noise_floor=8)
    with pytest.raises(ValueError, match="32-bit ring"):  # noise no 32-bit ring can hold
        huge.headroom_bits(RingConfig(1.0, 20, 8), 500)


def test_the_config_refuses_distributed_dp_without_secagg_or_with_a_ring_that_would_wrap() -> None:
    base = FLConfig(clients=20, per_round=5, rounds=2, workers=0)
    with pytest.raises(ValueError, match="add --secagg"):
        replace(base, dp="distributed:1.0", noise_multiplier=1.0)
    with pytest.raises(ValueError, match="32-bit ring"):
        replace(base, secagg=True, secagg_bits=22, dp="distributed:1.0", noise_multiplier=500.0)
    with pytest.raises(ValueError, match="distributed:CLIP"):
        replace(base, secagg=True, dp="central:1.0", noise_multiplier=1.0)


def test_a_distributed_dp_run_records_epsilon_like_central_dp() -> None:
    config = FLConfig(
        clients=20,
        per_round=5,
        rounds=3,
        local_epochs=1,
        workers=0,
        seed=2,
        secagg=True,
        dp="distributed:0.5",
        noise_multiplier=1.2,
    )
    result = simulate(config)
    central = simulate(replace(config, secagg=False, dp="central:0.5"))
    assert [r.epsilon for r in result.records] == pytest.approx([r.epsilon for r in central.records])
    assert result.summary["epsilon"] == pytest.approx(central.summary["epsilon"])
    assert "Skellam" in result.summary["accountant"]
    for record in result.records:
        assert record.secagg is not None
        assert record.secagg["secagg_dp_effective_noise_multiplier"] >= 1.2 * (1 - 1e-6)
        assert record.secagg["secagg_dp_noise_std"] == pytest.approx(1.2 * 0.5, rel=0.01)


def test_distributed_and_central_dp_release_the_same_clipped_sum_up_to_their_noise() -> None:
    z, clip, cohort = 1e-3, 1.0, 5
    config = FLConfig(
        clients=20,
        per_round=cohort,
        rounds=1,
        local_epochs=1,
        workers=0,
        seed=2,
        dp=f"central:{clip}",
        noise_multiplier=z,
    )
    central = simulate(config).weights
    distributed = simulate(replace(config, secagg=True, dp=f"distributed:{clip}")).weights
    # each model = the same mean of clipped updates + its own N(0, (z C / K)^2) per coordinate
    expected = np.sqrt(2.0 * central.size) * z * clip / cohort
    gap = float(np.linalg.norm(central.astype(np.float64) - distributed))
    assert 0.8 * expected < gap < 1.2 * expected


def test_a_deployed_clients_noise_comes_from_its_own_secret_not_from_public_values() -> None:
    from fedcore.secure.round import SecureSettings
    from fedcore.secure.update import ring_input

    settings = SecureSettings(
        seed=1,
        clip=1.0,
        bits=12,
        per_round=4,
        fraction=1.0,
        weight_cap=1,
        model_size=256,
        dp_clip=1.0,
        dp_noise_multiplier=1.0,
    )
    announced = settings.announce(0, (0, 1, 2, 3))
    assert announced.dp is not None
    assert announced.ring.headroom_bits > 0
    update = np.random.default_rng(0).standard_normal(256).astype(np.float32) * 0.01
    public = ring_input(update, 10, announced, client_id=2)  # the simulation: anyone can recompute it
    assert np.array_equal(public, ring_input(update, 10, announced, client_id=2))
    mine = ring_input(update, 10, announced, client_id=2, secret=b"k" * 32)
    theirs = ring_input(update, 10, announced, client_id=2, secret=b"q" * 32)
    assert not np.array_equal(mine, public)
    assert not np.array_equal(mine, theirs)
    assert np.array_equal(mine, ring_input(update, 10, announced, client_id=2, secret=b"k" * 32))
