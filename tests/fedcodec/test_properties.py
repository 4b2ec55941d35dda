"""Round trips over arrays and specs hypothesis picks: shapes hold, bounds hold, re-encoding is stable."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

import fedcodec as fc

F32 = NDArray[np.float32]

arrays = hnp.arrays(
    dtype=np.float32,
    shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9),
    elements=st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32),
)
fractions = st.sampled_from(["0.01", "0.1", "0.5", "1"])
chunks = st.sampled_from(["", ":chunk=8", ":chunk=64"])
terminal_specs = st.one_of(
    st.sampled_from(["none", "f16", "bf16", "sign", "sign:chunk=8", "eden:1", "eden:2", "eden:4", "eden:8"]),
    st.builds(
        lambda b, s, c: f"quant:{b}{s}{c}", st.integers(1, 16), st.sampled_from(["", ":stochastic"]), chunks
    ),
    st.builds(lambda s, b: f"qsgd:{s}{b}", st.integers(1, 127), st.sampled_from(["", ":bucket=16"])),
)
sparsifiers = st.one_of(
    st.builds(lambda f, s: f"topk:{f}{s}", fractions, st.sampled_from(["", ":sampled"])),
    st.builds(lambda f: f"randk:{f}", fractions),
)
specs = st.one_of(
    terminal_specs,
    st.builds(lambda chain, end: "+".join([*chain, end]), st.lists(sparsifiers, max_size=2), terminal_specs),
)
# CI replays the same examples every run (a red build names a change, not a draw); elsewhere each run explores
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, derandomize=os.environ.get("CI") == "true")


@PROPERTY_SETTINGS
@given(x=arrays, spec=specs, seed=st.integers(0, 2**64 - 1))
def test_any_codec_decodes_to_a_finite_array_of_the_same_shape(x: F32, spec: str, seed: int) -> None:
    codec = fc.from_spec(spec)
    frame = codec.encode(x, seed=seed)
    y = fc.decode(frame)
    assert y.shape == x.shape
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    info = fc.inspect(frame)
    assert fc.from_spec(info.spec) == codec
    assert (info.shape, info.n, info.nbytes) == (x.shape, x.size, len(frame))
    assert codec.encode(x, seed=seed) == frame


def _assert_within_one_step(x: F32, bits: int, chunk: int) -> None:
    flat = x.ravel()
    y = fc.decode(fc.Quantize(bits, chunk=chunk).encode(x)).ravel()
    for start in range(0, flat.size, chunk):
        part = flat[start : start + chunk].astype(np.float64)
        step = (part.max() - part.min()) / (2**bits - 1)
        # float32 rounding of the values, and of the step itself, which code k multiplies up to 2^bits - 1
        # times (it matters for subnormal inputs, where the step has few significant bits)
        slack = 4 * float(np.spacing(np.float32(np.abs(part).max()))) + (2**bits) * float(
            np.spacing(np.float32(step))
        )
        assert np.max(np.abs(y[start : start + chunk] - part)) <= step + slack


@PROPERTY_SETTINGS
@given(x=arrays, bits=st.integers(1, 16), chunk=st.sampled_from([8, 16, 4096]))
def test_quant_error_stays_within_one_step_of_each_chunk(x: F32, bits: int, chunk: int) -> None:
    _assert_within_one_step(x, bits, chunk)


@pytest.mark.parametrize("bits", [12, 16])
def test_quant_error_bound_holds_for_subnormal_inputs(bits: int) -> None:
    x = (np.random.default_rng(bits).standard_normal(64) * 2.5e-39).astype(np.float32)  # hypothesis found it
    _assert_within_one_step(x, bits, chunk=8)


@PROPERTY_SETTINGS
@given(x=arrays, dtype=st.sampled_from(["float16", "bfloat16"]))
def test_half_precision_is_idempotent(x: F32, dtype: str) -> None:
    codec = fc.Identity(dtype)
    once = fc.decode(codec.encode(x))
    assert np.array_equal(fc.decode(codec.encode(once)), once)


@PROPERTY_SETTINGS
@given(x=arrays, bits=st.integers(1, 16))
def test_requantizing_a_quantized_array_barely_moves_it(x: F32, bits: int) -> None:
    codec = fc.Quantize(bits)
    once = fc.decode(codec.encode(x))
    twice = fc.decode(codec.encode(once))
    # Decoded values sit on the grid already, so a second pass changes them by rounding noise only.
    step = (float(once.max()) - float(once.min())) / (2**bits - 1)
    assert np.max(np.abs(twice - once)) <= step / 2 + 4 * float(np.spacing(np.float32(np.abs(once).max())))


@PROPERTY_SETTINGS
@given(x=arrays, fraction=fractions)
def test_topk_of_a_topk_result_is_itself(x: F32, fraction: str) -> None:
    codec = fc.from_spec(f"topk:{fraction}")
    once = fc.decode(codec.encode(x))
    assert np.array_equal(fc.decode(codec.encode(once)), once)
    kept = np.flatnonzero(once)
    assert np.array_equal(once.ravel()[kept], x.ravel()[kept])


@PROPERTY_SETTINGS
@given(x=arrays, weights=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=4), spec=specs)
def test_accumulator_equals_the_weighted_sum_of_decodes(x: F32, weights: list[float], spec: str) -> None:
    codec = fc.from_spec(spec)
    acc = fc.Accumulator(x.size)
    expected = np.zeros(x.size, dtype=np.float64)
    for seed, weight in enumerate(weights):
        frame = codec.encode(x, seed=seed)
        acc.add(frame, weight=weight)
        expected += np.float32(weight) * fc.decode(frame).ravel().astype(np.float64)
    scale = max(1.0, float(np.abs(x).max())) * sum(abs(w) for w in weights)
    # float32 sums cannot resolve below its smallest subnormal, whatever the weights.
    resolution = len(weights) * float(np.finfo(np.float32).smallest_subnormal)
    np.testing.assert_allclose(acc.result(), expected, rtol=0, atol=1e-5 * scale + resolution)
