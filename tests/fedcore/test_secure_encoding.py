"""Ring encoding, parameter choice and the modular sum: sums never wrap, compression composes linearly."""

import numpy as np
import pytest

from fedcodec import kernels, secagg
from fedcore.secure import (
    ModularSum,
    RingConfig,
    SecAggParams,
    choose_params,
    decode_mean,
    decode_sum,
    encode_update,
    encoded_length,
    run_secagg_round,
    secure_sum,
    unrounded_update,
)


def test_a_ring_that_could_wrap_is_refused() -> None:
    assert RingConfig(clip=1.0, bits=16, max_clients=1000).ring_bits == 26
    with pytest.raises(ValueError, match="would wrap"):
        RingConfig(clip=1.0, bits=24, max_clients=1000)


def test_uploads_take_at_most_four_bytes_per_param() -> None:
    assert RingConfig(clip=1.0, bits=16, max_clients=100).bytes_per_param(1_000_000) == pytest.approx(2.875)
    assert RingConfig(clip=1.0, bits=8, max_clients=16, fraction=0.25).bytes_per_param(1 << 20) < 0.4


def test_secure_sum_matches_the_clipped_float_sum() -> None:
    rng = np.random.default_rng(0)
    updates = {c: rng.uniform(-1.5, 1.5, 3000).astype(np.float32) for c in range(12)}
    config = RingConfig(clip=1.0, bits=16, max_clients=12, seed=4)
    total, report, _ = secure_sum(updates, config, SecAggParams(6, 3, "test"), drop={"mask": [5]})
    survivors = [updates[c] for c in report.result.included]
    want = np.sum(np.clip(survivors, -1.0, 1.0), axis=0)
    step = 2.0 / config.levels
    assert np.max(np.abs(total - want)) <= len(survivors) * step
    assert report.upload_bytes == (3000 * config.ring_bits + 7) // 8


def test_an_update_rounded_while_it_is_masked_sums_like_its_codes() -> None:
    rng = np.random.default_rng(5)
    config = RingConfig(clip=0.5, bits=12, max_clients=8, seed=2)
    updates = {c: (rng.standard_normal(40_000) * 0.2).astype(np.float32) for c in range(8)}
    unrounded = {c: unrounded_update(x, config, bytes([c]) * 32) for c, x in updates.items()}
    codes = {c: encode_update(x, config, bytes([c]) * 32) for c, x in updates.items()}
    assert all(np.array_equal(unrounded[c].codes(), codes[c]) for c in updates)
    params, drop = SecAggParams(4, 3, "test"), {"mask": [3]}
    fused = run_secagg_round(unrounded, params, config.ring_bits, drop=drop)
    plain = run_secagg_round(codes, params, config.ring_bits, drop=drop)
    assert fused.result.included == plain.result.included
    np.testing.assert_array_equal(fused.result.total, plain.result.total)
    summed = sum(codes[c].astype(np.uint64) for c in fused.result.included)
    np.testing.assert_array_equal(fused.result.total, summed % (1 << config.ring_bits))


def test_rotation_and_random_k_compose_linearly() -> None:
    rng = np.random.default_rng(1)
    n, clients = 1000, 8
    config = RingConfig(clip=0.5, bits=20, max_clients=clients, rotate=True, fraction=0.3, seed=9)
    xs = [(rng.standard_normal(n) * 0.05).astype(np.float32) for _ in range(clients)]
    codes = [encode_update(x, config, secagg.derive_scalar(bytes([i]), b"r")) for i, x in enumerate(xs)]
    assert codes[0].size == encoded_length(n, config) == kernels.mask_count(1024, 0.3, 9)
    total = np.sum(codes, axis=0, dtype=np.uint64).astype(np.uint32)
    # The same rotation and coordinate subset applied to the plain sum, then undone.
    bits = np.random.default_rng([9, 0x5EC]).integers(0, 2, 1024, dtype=np.int8)
    signs = (bits * 2 - 1).astype(np.float32)
    padded = np.zeros(1024, dtype=np.float32)
    padded[:n] = np.sum(xs, axis=0)
    kept = kernels.mask_extract(kernels.fwht(padded * signs), 0.3, 9)
    full = np.zeros(1024, dtype=np.float32)
    kernels.mask_scatter_add(kept, full, 0.3, 9, weight=1 / 0.3)
    want = (kernels.fwht(full) * signs)[:n]
    got = decode_sum(total, clients, n, config)
    assert np.max(np.abs(got - want)) < 1e-3
    np.testing.assert_allclose(decode_mean(total, clients, n, config), got / clients, rtol=1e-6)


def test_modular_sum_adds_merges_and_refuses_what_would_wrap() -> None:
    x = np.arange(100, dtype=np.uint32)
    part_a, part_b = ModularSum.start(100, 9, capacity=3), ModularSum.start(100, 9, capacity=3)
    part_a.add(secagg.pack(x, 9))
    part_b.add(secagg.pack(x, 9))
    part_b.add(secagg.pack(x, 9))
    merged = part_a.merge(part_b)
    np.testing.assert_array_equal(merged.finish(), (3 * x) % 512)
    with pytest.raises(ValueError, match="wrap"):
        merged.add(secagg.pack(x, 9))
    with pytest.raises(ValueError, match="weight 1"):
        part_a.add(secagg.pack(x, 9), weight=2)


def test_parameter_helper_explains_its_choice() -> None:
    chosen = choose_params(1000, dropout=0.1, corrupt=0.05)
    assert (chosen.degree, chosen.threshold) == (38, 19)
    assert "k=38" in chosen.reason
    assert "50 clients collude" in chosen.reason
    small = choose_params(10)
    assert small.degree == 9
    assert "complete graph" in small.reason
    strict = choose_params(1000, malicious_server=True)
    assert 2 * strict.threshold > strict.degree
    with pytest.raises(ValueError, match="no degree and threshold"):
        choose_params(10, malicious_server=True)
