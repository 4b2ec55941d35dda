"""PowerSGD: low-rank recovery, a warm start that matters, honest error feedback, a checked wire."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from fedcore.layout import ParamLayout
from fedcore.powersgd import LowRankPart, PowerSGD, PowerSGDPayload, RawPart, decompress

LAYOUT = ParamLayout.from_shapes(
    [("conv.w", (16, 3, 3, 3)), ("conv.b", (16,)), ("fc.w", (40, 30)), ("fc.b", (40,)), ("tiny.w", (2, 2))]
)


def _matrix(rows: int, cols: int, singular: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((rows, len(singular))))
    v, _ = np.linalg.qr(rng.standard_normal((cols, len(singular))))
    return np.asarray((u * singular) @ v.T, dtype=np.float32)


def _update(matrices: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    flat = np.random.default_rng(seed).standard_normal(LAYOUT.size).astype(np.float32)
    for name, m in matrices.items():
        LAYOUT.view(flat, name)[...] = m.reshape(LAYOUT[name].shape)
    return flat


def test_plan_factors_big_matrices_and_sends_the_rest_raw() -> None:
    compressor = PowerSGD(2, LAYOUT, seed=0)
    assert compressor.compressed_names == ("conv.w", "fc.w")
    payload = compressor.compress(_update({}))
    assert [p.offset for p in payload.low_rank] == [LAYOUT["conv.w"].offset, LAYOUT["fc.w"].offset]
    assert [(p.p.shape, p.q.shape) for p in payload.low_rank] == [((16, 2), (27, 2)), ((40, 2), (30, 2))]
    # conv.b and fc.b are separated by fc.w; fc.b and tiny.w are adjacent, so they travel as one span.
    assert [(r.offset, r.values.size) for r in payload.raw] == [
        (LAYOUT["conv.b"].offset, 16),
        (LAYOUT["fc.b"].offset, 44),
    ]
    assert PowerSGD(2, LAYOUT, seed=0, min_compression_rate=8.0).compressed_names == ("fc.w",)


def test_rank_r_matrices_are_recovered_and_raw_parts_are_exact() -> None:
    conv = _matrix(16, 27, np.array([3.0, 1.0]), seed=1)
    fc = _matrix(40, 30, np.array([5.0, 2.0]), seed=2)
    x = _update({"conv.w": conv, "fc.w": fc}, seed=3)
    compressor = PowerSGD(2, LAYOUT, seed=4)
    for _ in range(3):
        y = decompress(compressor.compress(x))
        np.testing.assert_allclose(y, x, atol=1e-5)
    for name in ("conv.b", "fc.b", "tiny.w"):
        assert np.array_equal(LAYOUT.view(y, name), LAYOUT.view(x, name))


def _errors_over_calls(warm_start: bool, calls: int = 10) -> tuple[np.ndarray, float]:
    singular = 0.8 ** np.arange(30)
    fc = _matrix(40, 30, singular, seed=5)
    x = _update({"fc.w": fc})
    compressor = PowerSGD(2, LAYOUT, seed=6, warm_start=warm_start, error_feedback=False)
    errors = [
        np.linalg.norm(LAYOUT.view(decompress(compressor.compress(x)), "fc.w") - fc) for _ in range(calls)
    ]
    best = float(np.sqrt(np.sum(singular[2:] ** 2)))  # Eckart-Young: the best rank-2 error
    return np.array(errors) / best, best


def test_warm_start_converges_to_the_best_rank_r_approximation_and_cold_start_does_not() -> None:
    warm, _ = _errors_over_calls(warm_start=True)
    cold, _ = _errors_over_calls(warm_start=False)
    assert warm[0] == pytest.approx(cold[0])  # the same seeded first Q
    assert warm[-1] < 1.01 < 1.05 < warm[0]
    assert np.all(np.diff(warm) <= 1e-4)  # monotone up to float32 round-off
    assert cold[1:].min() > 1.05  # one power iteration from scratch every time never gets there


def _relative_gaps(updates: np.ndarray, feedback: bool) -> list[float]:
    """|sum of inputs - sum of decompressed| / |sum of inputs| after each call."""
    compressor = PowerSGD(1, LAYOUT, seed=8, error_feedback=feedback)
    gap = np.zeros(LAYOUT.size, dtype=np.float64)
    total = np.zeros(LAYOUT.size, dtype=np.float64)
    relative = []
    for u in updates:
        gap += u - decompress(compressor.compress(u))
        total += u
        relative.append(float(np.linalg.norm(gap) / np.linalg.norm(total)))
    if feedback:
        np.testing.assert_allclose(gap, compressor.residual, atol=1e-3)  # the residual is exactly the debt
    return relative


def test_error_feedback_makes_the_sum_of_payloads_track_the_sum_of_updates() -> None:
    rng = np.random.default_rng(7)
    drift = rng.standard_normal(LAYOUT.size)
    updates = (drift + 0.5 * rng.standard_normal((60, LAYOUT.size))).astype(np.float32)
    with_feedback = _relative_gaps(updates, feedback=True)
    without = _relative_gaps(updates, feedback=False)
    assert with_feedback[-1] < 0.6 * with_feedback[19]  # the debt stays bounded while the sum grows
    assert with_feedback[-1] < 0.4 * without[-1]
    assert without[-1] > 0.8  # rank 1 alone drops most of a full-rank drift, round after round


def test_payload_is_smaller_than_float32_and_round_trips_through_bytes() -> None:
    payload = PowerSGD(2, LAYOUT, seed=9).compress(_update({}))
    assert payload.nbytes == 4 * (16 * 2 + 27 * 2 + 40 * 2 + 30 * 2 + 16 + 44)
    assert payload.nbytes < 4 * LAYOUT.size
    wire = payload.to_bytes()
    assert len(wire) == payload.wire_nbytes
    back = PowerSGDPayload.from_bytes(wire)
    assert np.array_equal(decompress(back), decompress(payload))
    assert np.array_equal(PowerSGD.decompress(back), decompress(payload))


def test_from_bytes_rejects_bad_input() -> None:
    wire = PowerSGD(2, LAYOUT, seed=10).compress(_update({})).to_bytes()
    with pytest.raises(ValueError, match="checksum"):
        PowerSGDPayload.from_bytes(wire[:-9])
    with pytest.raises(ValueError, match="truncated"):
        PowerSGDPayload.from_bytes(wire[:10])
    with pytest.raises(ValueError, match="checksum"):
        PowerSGDPayload.from_bytes(wire[:40] + bytes([wire[40] ^ 1]) + wire[41:])
    with pytest.raises(ValueError, match="magic"):
        PowerSGDPayload.from_bytes(b"XXXX" + wire[4:])
    with pytest.raises(ValueError, match="version"):
        PowerSGDPayload.from_bytes(wire[:4] + b"\x09" + wire[5:])
    with pytest.raises(ValueError, match="max_elements"):
        PowerSGDPayload.from_bytes(wire, max_elements=10)


def test_from_bytes_checks_lengths_before_reading_even_with_a_valid_checksum() -> None:
    body = struct.pack("<4sBxxxQII", b"PSGD", 1, 10, 0, 1) + struct.pack("<QQ", 0, 2**40) + bytes(8)
    with pytest.raises(ValueError, match="truncated"):
        PowerSGDPayload.from_bytes(body + struct.pack("<I", zlib.crc32(body)))
    ok = struct.pack("<4sBxxxQII", b"PSGD", 1, 10, 0, 1) + struct.pack("<QQ", 0, 2) + bytes(8)
    assert np.array_equal(
        PowerSGD.decompress(PowerSGDPayload.from_bytes(ok + struct.pack("<I", zlib.crc32(ok)))),
        np.zeros(10, np.float32),
    )
    extra = ok + bytes(4)
    with pytest.raises(ValueError, match="trailing"):
        PowerSGDPayload.from_bytes(extra + struct.pack("<I", zlib.crc32(extra)))


def test_payload_parts_must_fit_and_not_overlap() -> None:
    values = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        PowerSGDPayload(6, (), (RawPart(0, values), RawPart(2, values)))
    with pytest.raises(ValueError, match="overlaps"):
        PowerSGDPayload(3, (), (RawPart(0, values),))
    with pytest.raises(ValueError, match="rank"):
        LowRankPart(0, np.zeros((2, 1), np.float32), np.zeros((2, 2), np.float32))


def test_compressor_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="rank"):
        PowerSGD(0, LAYOUT, seed=0)
    with pytest.raises(ValueError, match="update"):
        PowerSGD(1, LAYOUT, seed=0).compress(np.zeros(LAYOUT.size, dtype=np.float64))


def test_zero_update_then_nonzero_update_still_compresses() -> None:
    compressor = PowerSGD(2, LAYOUT, seed=11)
    decompress(compressor.compress(np.zeros(LAYOUT.size, dtype=np.float32)))
    fc = _matrix(40, 30, np.array([4.0, 1.0]), seed=12)
    x = _update({"fc.w": fc})
    for _ in range(2):
        y = decompress(compressor.compress(x))
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(LAYOUT.view(y, "fc.w"), fc, atol=1e-4)
