"""PowerSGD: low-rank recovery, a warm start that matters, honest error feedback, one float32 frame."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.powersgd import LowRankPart, PowerSGD, PowerSGDPayload, RawPart, decompress, payload_from_vector
from fedcore.seeds import POWERSGD_SEED, derive_seed
from fedcore.uplink import ClientStates, UplinkChain, UplinkContext, decode_frame, encode_frame
from fedcore.uplink.error_feedback import ErrorFeedbackStage
from fedcore.uplink.powersgd import PowerSGDStage

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


def test_payload_is_smaller_than_float32_and_round_trips_through_one_vector() -> None:
    payload = PowerSGD(2, LAYOUT, seed=9).compress(_update({}))
    assert payload.nbytes == 4 * (16 * 2 + 27 * 2 + 40 * 2 + 30 * 2 + 16 + 44)
    assert payload.nbytes < 4 * LAYOUT.size
    values = payload.to_vector()
    assert values.dtype == np.float32
    assert values.nbytes == payload.nbytes  # factors and raw values, nothing else: the plan is shared
    back = payload_from_vector(values, 2, LAYOUT)
    assert [(p.offset, p.p.shape, p.q.shape) for p in back.low_rank] == [
        (p.offset, p.p.shape, p.q.shape) for p in payload.low_rank
    ]
    assert [(r.offset, r.values.size) for r in back.raw] == [(r.offset, r.values.size) for r in payload.raw]
    assert np.array_equal(decompress(back), decompress(payload))
    through_a_frame = payload_from_vector(decode_frame(encode_frame(None, values, 0)), 2, LAYOUT)
    assert np.array_equal(PowerSGD.decompress(through_a_frame), decompress(payload))


def test_payload_from_vector_refuses_values_cut_for_another_plan() -> None:
    values = PowerSGD(2, LAYOUT, seed=10).compress(_update({})).to_vector()
    for wrong in (values[:-1], np.append(values, np.float32(0.0)), np.zeros(0, np.float32)):
        with pytest.raises(ValueError, match="PowerSGD frame holds"):
            payload_from_vector(wrong, 2, LAYOUT)
    with pytest.raises(ValueError, match="rank 3 on this model needs"):
        payload_from_vector(values, 3, LAYOUT)  # the server must cut with the clients' rank
    other = ParamLayout.from_shapes([("fc.w", (40, 30)), ("fc.b", (40,))])
    with pytest.raises(ValueError, match="PowerSGD frame holds"):
        payload_from_vector(values, 2, other)


def test_the_powersgd_stage_sends_one_raw_frame_and_keeps_the_clients_compressor() -> None:
    config = FLConfig(powersgd=2, seed=4)
    chain = UplinkChain.from_config(config)
    assert chain.names == ("powersgd",)  # it replaces the codec
    x = _update({"fc.w": _matrix(40, 30, np.array([5.0, 2.0]), seed=13)}, seed=14)
    twin = PowerSGD(2, LAYOUT, derive_seed(config.seed, 0, 3, POWERSGD_SEED))  # client 3's own seed
    states: ClientStates = {}
    for call in (1, 2):  # the second call starts from the warm start the first one left
        expected = twin.compress(x)
        encoded = chain.encode(x, UplinkContext(LAYOUT, client_id=3, seed=call), states)
        assert encoded.payload == encode_frame(None, expected.to_vector(), 0)
        np.testing.assert_array_equal(encoded.reconstruct(), decompress(expected))
        decoded = chain.decode(encoded.payload, UplinkContext(LAYOUT))
        assert isinstance(decoded, np.ndarray)
        np.testing.assert_array_equal(decoded, decompress(expected))
        compressor = states["powersgd"]
        assert isinstance(compressor, PowerSGD)
        assert compressor.calls == call
    with pytest.raises(ValueError, match="PowerSGD frame holds"):
        chain.decode(encode_frame(None, np.zeros(5, np.float32), 0), UplinkContext(LAYOUT))


def test_an_error_feedback_stage_takes_over_powersgds_own_residual() -> None:
    chain = UplinkChain((ErrorFeedbackStage(), PowerSGDStage(1, run_seed=0, own_error_feedback=False)))
    rng = np.random.default_rng(15)
    states: ClientStates = {}
    sent = np.zeros(LAYOUT.size, dtype=np.float64)
    total = np.zeros(LAYOUT.size, dtype=np.float64)
    for call in range(3):
        x = rng.standard_normal(LAYOUT.size).astype(np.float32)
        payload = chain.encode(x, UplinkContext(LAYOUT, client_id=0, seed=call), states).payload
        decoded = chain.decode(payload, UplinkContext(LAYOUT))
        assert isinstance(decoded, np.ndarray)
        sent += decoded
        total += x
    compressor, residual = states["powersgd"], states["residual"]
    assert isinstance(compressor, PowerSGD)
    assert not compressor.error_feedback
    assert not compressor.residual.any()  # one residual only: the stage's
    assert isinstance(residual, np.ndarray)
    np.testing.assert_allclose(total - sent, residual, atol=1e-4)  # the residual is exactly the debt
    assert np.linalg.norm(residual) > 0.1 * np.linalg.norm(total)  # rank 1 leaves a real debt


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
