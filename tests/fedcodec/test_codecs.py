"""The fedcodec contract as users meet it: specs, round trips, error bounds, frames, feedback, sums."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch
from numpy.typing import NDArray

import fedcodec as fc

F32 = NDArray[np.float32]

ALL_SPECS = [
    "none",
    "f16",
    "bf16",
    "quant:1",
    "quant:8",
    "quant:16",
    "quant:4:stochastic",
    "quant:8:chunk=1024",
    "qsgd:4",
    "qsgd:8:bucket=512",
    "topk:0.01",
    "topk:0.1:sampled",
    "randk:0.25",
    "eden:1",
    "eden:2",
    "eden:4",
    "eden:8",
    "sign",
    "sign:chunk=512",
    "topk:0.01+quant:8",
    "topk:0.1+f16",
    "randk:0.5+eden:2",
    "randk:0.5+topk:0.1+quant:4:stochastic",
]
STOCHASTIC_SPECS = [
    "quant:2:stochastic",
    "quant:8:stochastic",
    "qsgd:2",
    "qsgd:16",
    "randk:0.5",
    "eden:1",
    "eden:2",
    "eden:4",
]


def normal(n: int, seed: int = 0) -> F32:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def round_trip(spec: str, x: F32, seed: int = 0) -> F32:
    return fc.decode(fc.from_spec(spec).encode(x, seed=seed))


def vnmse(x: F32, y: F32) -> float:
    """Normalised squared error, the figure EDEN and DRIVE report."""
    diff = x.astype(np.float64) - y.astype(np.float64)
    return float(np.dot(diff, diff) / np.dot(x.astype(np.float64), x.astype(np.float64)))


def bf16_round_to_nearest_even(x: F32) -> F32:
    """What any correct float32 -> bfloat16 -> float32 trip gives: keep 16 bits, ties to even."""
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


# --- specs and codec objects -------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_spec_string_round_trips_to_an_equal_codec(spec: str) -> None:
    codec = fc.from_spec(spec)
    assert str(codec) == spec
    assert fc.from_spec(str(codec)) == codec
    assert eval(repr(codec), {"from_spec": fc.from_spec}) == codec


def test_typed_codecs_print_as_their_specs() -> None:
    assert str(fc.Identity()) == "none"
    assert str(fc.Identity("float16")) == "f16"
    assert str(fc.Identity("bfloat16")) == "bf16"
    assert str(fc.Quantize(4, stochastic=True)) == "quant:4:stochastic"
    assert str(fc.QSGD(8, bucket=512)) == "qsgd:8:bucket=512"
    assert str(fc.TopK(0.1, sampled=True)) == "topk:0.1:sampled"
    assert str(fc.RandK(0.25)) == "randk:0.25"
    assert str(fc.Eden(2)) == "eden:2"
    assert str(fc.Sign(chunk=512)) == "sign:chunk=512"


def test_plus_chains_like_the_spec_string() -> None:
    assert fc.TopK(0.01) + fc.Quantize(8) == fc.from_spec("topk:0.01+quant:8")
    assert fc.RandK(0.5) + fc.Eden(2) == fc.from_spec("randk:0.5+eden:2")
    assert fc.RandK(0.5) + (fc.TopK(0.1) + fc.Quantize(4)) == fc.from_spec("randk:0.5+topk:0.1+quant:4")
    # float32 after a sparsifier is implied, so both spellings are one codec.
    assert fc.TopK(0.1) + fc.Identity() == fc.TopK(0.1) == fc.from_spec("topk:0.1+none")
    x = normal(5000)
    chained = (fc.TopK(0.01) + fc.Quantize(8)).encode(x, seed=3)
    assert chained == fc.from_spec("topk:0.01+quant:8").encode(x, seed=3)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: fc.Quantize(0), r"bits.*\b0\b"),
        (lambda: fc.Quantize(17), r"bits.*\b17\b"),
        (lambda: fc.from_spec("quant:17"), r"bits.*\b17\b"),
        (lambda: fc.TopK(0.0), r"fraction.*\b0\b"),
        (lambda: fc.TopK(-0.1), r"fraction.*-0\.1"),
        (lambda: fc.TopK(1.5), r"fraction.*1\.5"),
        (lambda: fc.RandK(1.01), r"fraction.*1\.01"),
        (lambda: fc.from_spec("randk:0"), r"fraction"),
        (lambda: fc.Eden(3), r"eden bits.*\b3\b"),
        (lambda: fc.from_spec("eden:3"), r"eden bits.*\b3\b"),
        (lambda: fc.from_spec("quant:8+topk:0.1"), r"last stage"),
        (lambda: fc.from_spec("zip"), r"unknown codec 'zip'"),
        (lambda: fc.Identity("float64"), r"dtype.*float64"),
    ],
)
def test_bad_parameters_say_what_is_wrong(make: object, needle: str) -> None:
    with pytest.raises(fc.CodecError, match=needle):
        make()  # type: ignore[operator]


def test_codec_error_is_a_value_error_and_frame_errors_are_codec_errors() -> None:
    assert issubclass(fc.CodecError, ValueError)
    assert issubclass(fc.FrameError, fc.CodecError)
    assert issubclass(fc.ChecksumError, fc.FrameError)


# --- exact and bounded round trips ---------------------------------------------------------------


def test_none_is_exact() -> None:
    x = normal(10_000) * np.float32(1e3)
    assert np.array_equal(round_trip("none", x), x)


def test_f16_rounds_like_numpy() -> None:
    x = np.concatenate([normal(10_000), np.array([65504.0, -65504.0, 1e-7, 0.0], dtype=np.float32)])
    assert np.array_equal(round_trip("f16", x), x.astype(np.float16).astype(np.float32))


def test_bf16_rounds_to_nearest_even() -> None:
    x = normal(10_000) * np.float32(1e20)
    y = round_trip("bf16", x)
    assert np.array_equal(y, bf16_round_to_nearest_even(x))
    assert np.max(np.abs(y - x) / np.abs(x)) <= 2.0**-8


def test_f16_refuses_values_it_cannot_hold() -> None:
    with pytest.raises(fc.CodecError, match="float16"):
        fc.Identity("float16").encode(np.array([1.0, 1e5], dtype=np.float32))


@pytest.mark.parametrize("bits", range(1, 17))
def test_quant_error_is_at_most_one_step_of_its_chunk(bits: int) -> None:
    chunk = 4096
    # Each chunk has its own scale (and the last one is partial), so one global scale would fail.
    scales = np.repeat(np.array([1e-3, 1.0, 50.0, 1e4], dtype=np.float32), chunk)[: 3 * chunk + 123]
    x = normal(scales.size) * scales
    y = round_trip(f"quant:{bits}", x)
    for start in range(0, x.size, chunk):
        part = x[start : start + chunk]
        step = (float(part.max()) - float(part.min())) / (2**bits - 1)
        slack = 4 * float(np.spacing(np.abs(part).max()))
        assert np.max(np.abs(y[start : start + chunk] - part)) <= step + slack


def test_quant_chunk_option_changes_the_scale_granularity() -> None:
    x = np.concatenate([normal(1024) * np.float32(1e-3), normal(1024) * np.float32(1e3)])
    coarse = np.abs(round_trip("quant:8", x) - x)[:1024].max()
    fine = np.abs(round_trip("quant:8:chunk=1024", x) - x)[:1024].max()
    assert fine < coarse / 100


def bias_z_statistic(samples: NDArray[np.float64], x: F32) -> float:
    """Mean squared z-score of the sample mean against x; about 1 for an unbiased estimator."""
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    # Values next to a grid point rarely move, so 1,000 draws may show no spread at all: floor the
    # standard error at a tenth of the typical one (and at float32 noise, for exact codecs).
    floor = max(0.1 * float(np.median(se)), 1e-6 * float(np.sqrt(np.mean(x.astype(np.float64) ** 2))))
    se = np.maximum(se, floor)
    z = (samples.mean(axis=0) - x) / se
    return float(np.mean(z**2))


def unbiased_bound(d: int) -> float:
    """Three sigma above the chi-square mean: d z-scores squared average 1 +- sqrt(2/d)."""
    return 1.0 + 3.0 * float(np.sqrt(2.0 / d))


def decoded_samples(spec: str, x: F32, draws: int = 1000) -> NDArray[np.float64]:
    codec = fc.from_spec(spec)
    return np.stack([fc.decode(codec.encode(x, seed=s)).astype(np.float64) for s in range(draws)])


@pytest.mark.parametrize("spec", STOCHASTIC_SPECS)
def test_stochastic_codecs_are_unbiased(spec: str) -> None:
    # 256 elements: enough for a randomized Hadamard rotation to mix (at 64 EDEN's bias is visible).
    x = normal(256, seed=11)
    assert bias_z_statistic(decoded_samples(spec, x), x) <= unbiased_bound(x.size)


def test_unbiasedness_check_catches_a_biased_codec() -> None:
    x = normal(256, seed=11)
    # randk without its 1/fraction rescaling is the classic bias: it halves the update on average.
    samples = decoded_samples("randk:0.5", x) * 0.5
    assert bias_z_statistic(samples, x) > 10 * unbiased_bound(x.size)


@pytest.mark.parametrize(("spec", "limit"), [("eden:1", 0.60), ("eden:2", 0.14), ("eden:4", 0.01)])
def test_eden_vnmse_on_a_million_normal_values(spec: str, limit: float) -> None:
    x = normal(2**20, seed=5)
    assert vnmse(x, round_trip(spec, x, seed=9)) <= limit


def test_topk_keeps_exactly_the_largest_magnitudes() -> None:
    x = normal(10_000, seed=2)
    y = round_trip("topk:0.01", x)
    expected = np.sort(np.argsort(np.abs(x))[-100:])
    assert np.array_equal(np.flatnonzero(y), expected)
    assert np.array_equal(y[expected], x[expected])


def test_randk_sends_its_seed_not_its_indices() -> None:
    x = normal(100_000)
    frame = fc.RandK(0.01).encode(x, seed=1)
    kept = np.flatnonzero(fc.decode(frame))
    assert 850 <= kept.size <= 1150  # binomial(100000, 0.01): 1000 +- 4.7 sigma
    assert len(frame) < 4 * kept.size + 200  # values only, no per-index bytes


EXPECTED_BYTES_PER_ELEMENT = {
    "none": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "quant:16": 2.0,
    "quant:8": 1.0,
    "quant:4": 0.5,
    "quant:1": 1 / 8,
    "eden:8": 1.0,
    "eden:4": 0.5,
    "eden:2": 1 / 4,
    "eden:1": 1 / 8,
    "sign": 1 / 8,
}


@pytest.mark.parametrize(("spec", "per_element"), EXPECTED_BYTES_PER_ELEMENT.items())
def test_frame_size_is_within_two_percent_of_the_information(spec: str, per_element: float) -> None:
    n = 2**20
    frame = fc.from_spec(spec).encode(normal(n), seed=1)
    assert abs(len(frame) / (per_element * n) - 1) <= 0.02


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_same_seed_gives_the_same_bytes(spec: str) -> None:
    x = normal(3000)
    codec = fc.from_spec(spec)
    assert codec.encode(x, seed=42) == codec.encode(x.copy(), seed=42)


@pytest.mark.parametrize("spec", [*STOCHASTIC_SPECS, "randk:0.1+quant:8"])
def test_different_seeds_give_different_bytes(spec: str) -> None:
    x = normal(3000)
    codec = fc.from_spec(spec)
    assert codec.encode(x, seed=1) != codec.encode(x, seed=2)


# --- inputs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(17,), (6, 50), (2, 3, 4, 5)])
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_decode_gives_back_the_shape(spec: str, shape: tuple[int, ...]) -> None:
    x = normal(int(np.prod(shape))).reshape(shape)
    y = round_trip(spec, x)
    assert y.shape == shape
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))


def test_torch_tensors_are_accepted() -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert np.array_equal(round_trip("none", t), t.numpy())  # type: ignore[arg-type]


def test_mlx_arrays_are_accepted() -> None:
    a = mx.arange(12, dtype=mx.float32).reshape(3, 4)
    assert np.array_equal(round_trip("none", a), np.arange(12, dtype=np.float32).reshape(3, 4))  # type: ignore[arg-type]


def test_non_contiguous_input_is_encoded_as_its_copy() -> None:
    x = normal(4000).reshape(40, 100)
    view = x[:, ::3].T
    assert not view.flags.c_contiguous
    for spec in ["none", "quant:8", "topk:0.1+quant:4"]:
        codec = fc.from_spec(spec)
        assert codec.encode(view, seed=3) == codec.encode(np.ascontiguousarray(view), seed=3)


@pytest.mark.parametrize(
    ("x", "needle"),
    [
        (np.ones(10, dtype=np.float64), "float32"),
        (np.ones(10, dtype=np.float16), "float32"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((3, 0), dtype=np.float32), "empty"),
        (np.array([1.0, np.nan, 2.0], dtype=np.float32), r"non-finite.*index 1"),
        (np.array([1.0, 2.0, -np.inf], dtype=np.float32), r"non-finite.*index 2"),
    ],
)
@pytest.mark.parametrize("spec", ["none", "quant:8", "topk:0.5+quant:4", "eden:1"])
def test_bad_input_is_refused_with_a_reason(spec: str, x: NDArray[np.generic], needle: str) -> None:
    with pytest.raises(fc.CodecError, match=needle):
        fc.from_spec(spec).encode(x)


# --- frames --------------------------------------------------------------------------------------


def test_inspect_reads_the_header() -> None:
    x = normal(6000).reshape(60, 100)
    codec = fc.TopK(0.01) + fc.Quantize(8)
    frame = codec.encode(x, seed=7)
    info = fc.inspect(frame)
    assert info.spec == str(codec)
    assert fc.from_spec(info.spec) == codec
    assert info.shape == (60, 100)
    assert info.n == 6000
    assert info.nbytes == len(frame)
    assert info.version == fc.FRAME_VERSION == 1
    assert info.ratio == pytest.approx(4 * 6000 / len(frame))
    assert info.bits_per_element == pytest.approx(8 * len(frame) / 6000)
    assert info.ratio > 40


def test_decode_accepts_bytearray_and_memoryview() -> None:
    x = normal(100)
    frame = fc.Quantize(8).encode(x)
    assert np.array_equal(fc.decode(bytearray(frame)), fc.decode(frame))
    assert np.array_equal(fc.decode(memoryview(frame)), fc.decode(frame))


def test_decode_refuses_frames_larger_than_max_elements() -> None:
    frame = fc.Identity().encode(normal(1000))
    assert fc.decode(frame, max_elements=1000).size == 1000
    with pytest.raises(fc.FrameError, match="limit of 999"):
        fc.decode(frame, max_elements=999)
    with pytest.raises(fc.FrameError, match="limit of 999"):
        fc.inspect(frame, max_elements=999)


# --- decoding over an array the caller keeps ------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_decode_over_an_array_writes_what_decode_returns(spec: str) -> None:
    x = normal(6000).reshape(60, 100)
    frame = fc.from_spec(spec).encode(x, seed=4)
    out = np.full((60, 100), 7.0, dtype=np.float32)
    assert fc.decode(frame, out=out) is out
    np.testing.assert_array_equal(out, fc.decode(frame))


def test_decode_over_an_array_keeps_negative_zero() -> None:
    x = np.array([-0.0, 1.0, -2.5], dtype=np.float32)
    out = np.ones(3, dtype=np.float32)
    fc.decode(fc.Identity().encode(x), out=out)
    assert np.signbit(out[0])


def _unaligned(n: int) -> NDArray[np.float32]:
    return np.frombuffer(bytearray(4 * n + 1), dtype=np.float32, offset=1, count=n)


def _read_only(n: int) -> NDArray[np.float32]:
    out = np.zeros(n, dtype=np.float32)
    out.flags.writeable = False
    return out


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: np.zeros(6, dtype=np.float64), "float32 numpy array, got a float64 array"),
        (lambda: [0.0] * 6, "float32 numpy array, got list"),
        (lambda: np.zeros(7, dtype=np.float32), r"out has shape \(7,\), the frame holds \(6,\)"),
        (lambda: np.zeros((2, 3), dtype=np.float32), r"out has shape \(2, 3\)"),
        (lambda: np.zeros(12, dtype=np.float32)[::2], "C-contiguous"),
        (lambda: _read_only(6), "cannot be written"),
        (lambda: _unaligned(6), "aligned"),
    ],
)
def test_decode_refuses_an_array_it_cannot_write_and_leaves_it_alone(make: object, needle: str) -> None:
    frame = fc.Quantize(8).encode(normal(6))
    out = make()  # type: ignore[operator]
    before = np.array(out, copy=True)
    with pytest.raises(fc.CodecError, match=needle):
        fc.decode(frame, out=out)
    np.testing.assert_array_equal(np.asarray(out), before)


def test_a_damaged_frame_leaves_the_array_alone() -> None:
    frame = bytearray(fc.from_spec("topk:0.1+quant:8").encode(normal(1000)))
    frame[60] ^= 0x01
    out = np.full(1000, 3.0, dtype=np.float32)
    with pytest.raises(fc.ChecksumError):
        fc.decode(frame, out=out)
    assert np.all(out == 3.0)


def test_a_flipped_bit_is_a_checksum_error() -> None:
    frame = bytearray(fc.Quantize(8).encode(normal(100)))
    frame[40] ^= 0x10
    with pytest.raises(fc.ChecksumError, match="checksum"):
        fc.decode(frame)


# --- error feedback ------------------------------------------------------------------------------


def test_error_feedback_residual_is_what_the_frame_did_not_carry() -> None:
    ef = fc.ErrorFeedback(fc.TopK(0.1) + fc.Quantize(4))
    x1, x2 = normal(2000, seed=1), normal(2000, seed=2)
    d1 = fc.decode(ef.encode(x1, seed=1))
    assert ef.residual is not None
    np.testing.assert_allclose(ef.residual, x1 - d1, atol=1e-6)
    corrected = x2 + ef.residual
    d2 = fc.decode(ef.encode(x2, seed=2))
    np.testing.assert_allclose(ef.residual, corrected - d2, atol=1e-5)
    assert ef.residual_norm == pytest.approx(float(np.linalg.norm(corrected - d2)), rel=1e-5)
    ef.reset()
    assert ef.residual is None
    assert ef.residual_norm == 0.0


def test_error_feedback_refuses_a_new_shape() -> None:
    ef = fc.ErrorFeedback(fc.Sign())
    ef.encode(normal(100))
    with pytest.raises(fc.CodecError, match="shape"):
        ef.encode(normal(101))


def drifting_updates(rounds: int, n: int = 1000) -> list[F32]:
    """A persistent direction plus fresh noise, like a client's gradients over rounds."""
    rng = np.random.default_rng(8)
    direction = rng.standard_normal(n, dtype=np.float32)
    return [direction + rng.standard_normal(n, dtype=np.float32) for _ in range(rounds)]


def test_error_feedback_keeps_the_running_sum_on_track() -> None:
    fraction = 0.05
    ef = fc.ErrorFeedback(fc.TopK(fraction))
    updates = drifting_updates(200)
    sent = np.zeros(updates[0].size, dtype=np.float64)
    norms = []
    for t, x in enumerate(updates):
        sent += fc.decode(ef.encode(x, seed=t))
        norms.append(ef.residual_norm)
    total = np.sum(updates, axis=0, dtype=np.float64)
    # Telescoping: what was sent falls short of what was seen by exactly the last residual.
    assert float(np.linalg.norm(total - sent)) == pytest.approx(norms[-1], rel=1e-3)
    # Top-k is a delta-compressor with delta = k/n, so ||e|| <= sqrt(1-d)/(1-sqrt(1-d)) max ||x||.
    shrink = np.sqrt(1 - fraction)
    assert max(norms) <= shrink / (1 - shrink) * max(float(np.linalg.norm(x)) for x in updates)
    assert max(norms[100:]) <= 1.5 * max(norms[:100])  # bounded, not growing


@pytest.mark.parametrize("spec", ["topk:0.05", "sign"])
def test_without_error_feedback_the_running_sum_drifts(spec: str) -> None:
    codec = fc.from_spec(spec)
    ef = fc.ErrorFeedback(codec)
    updates = drifting_updates(200)
    with_ef = np.zeros(updates[0].size, dtype=np.float64)
    without = np.zeros_like(with_ef)
    for t, x in enumerate(updates):
        with_ef += fc.decode(ef.encode(x, seed=t))
        without += fc.decode(codec.encode(x, seed=t))
    total = np.sum(updates, axis=0, dtype=np.float64)
    assert np.linalg.norm(total - without) > 4 * np.linalg.norm(total - with_ef)


# --- aggregation ---------------------------------------------------------------------------------


def test_accumulator_sums_weighted_frames_of_any_codec() -> None:
    n = 5000
    specs = ["none", "quant:8", "topk:0.1+quant:8", "randk:0.5", "eden:2", "sign", "qsgd:4"]
    acc = fc.Accumulator(n)
    expected = np.zeros(n, dtype=np.float64)
    for i, spec in enumerate(specs):
        frame = fc.from_spec(spec).encode(normal(n, seed=i).reshape(50, 100), seed=i)
        weight = float(i + 1)
        acc.add(frame, weight=weight)
        expected += weight * fc.decode(frame).ravel()
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-5, atol=1e-4)
    assert acc.count == len(specs)
    assert acc.total_weight == sum(range(1, len(specs) + 1))
    assert len(acc) == n
    np.testing.assert_allclose(acc.mean(), expected / acc.total_weight, rtol=1e-5, atol=1e-5)


def test_accumulator_adds_plain_arrays() -> None:
    acc = fc.Accumulator(100)
    acc.add_array(np.ones(100, dtype=np.float32), weight=2.0)
    acc.add(fc.Identity().encode(np.full(100, 4.0, dtype=np.float32)), weight=0.5)
    np.testing.assert_array_equal(acc.result(), np.full(100, 4.0, dtype=np.float32))
    np.testing.assert_array_equal(acc.mean(), np.full(100, 1.6, dtype=np.float32))
    acc.reset()
    assert acc.count == 0
    np.testing.assert_array_equal(acc.result(), np.zeros(100, dtype=np.float32))


@pytest.mark.parametrize(
    "bad",
    [
        fc.Identity().encode(normal(99)),
        fc.Identity().encode(normal(101)),
        (fc.TopK(0.1) + fc.Quantize(8)).encode(normal(200)),
        fc.Quantize(8).encode(normal(100))[:-1],
    ],
    ids=["smaller", "larger", "larger-sparse", "truncated"],
)
def test_a_bad_frame_raises_and_leaves_the_sum_unchanged(bad: bytes) -> None:
    acc = fc.Accumulator(100)
    acc.add(fc.Quantize(8).encode(normal(100)), weight=2.0)
    before = acc.result().copy()
    with pytest.raises(fc.CodecError):
        acc.add(bad)
    np.testing.assert_array_equal(acc.result(), before)
    assert acc.count == 1
    assert acc.total_weight == 2.0


def test_accumulator_refuses_bad_weights_and_an_empty_mean() -> None:
    acc = fc.Accumulator(10)
    with pytest.raises(fc.CodecError, match="undefined"):
        acc.mean()
    with pytest.raises(fc.CodecError, match="weight"):
        acc.add(fc.Identity().encode(normal(10)), weight=float("nan"))
    with pytest.raises(fc.CodecError, match="elements"):
        acc.add_array(np.ones(11, dtype=np.float32))
    with pytest.raises(fc.CodecError):
        fc.Accumulator(0)


def test_accumulator_of_a_hundred_topk_frames() -> None:
    # The point is memory: each frame is decoded straight into the one running sum, so 100 clients
    # cost one model, not 100. Memory is not measured here; the sum must simply be right.
    n = 100_000
    codec = fc.TopK(0.01) + fc.Quantize(8)
    acc = fc.Accumulator(n)
    expected = np.zeros(n, dtype=np.float64)
    for client in range(100):
        frame = codec.encode(normal(n, seed=client), seed=client)
        acc.add(frame, weight=1.0)
        expected += fc.decode(frame)
    np.testing.assert_allclose(acc.result(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acc.mean(), expected / 100, rtol=1e-5, atol=1e-6)


def test_a_chain_whose_first_sparsifier_keeps_nothing_still_encodes() -> None:
    # randk:0.01 of 3 elements usually keeps none, leaving the next sparsifier no values at all.
    x = np.ones(3, dtype=np.float32)
    for seed in range(5):
        y = round_trip("randk:0.01+topk:0.1", x, seed=seed)
        assert y.shape == (3,)
        assert np.all(np.isfinite(y))
