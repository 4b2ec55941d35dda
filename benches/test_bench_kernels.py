"""The pairs of benches/report.py under pytest-benchmark: `pytest benches --benchmark-enable`.

Each pair is one benchmark group, ours beside the numpy/torch way. Without --benchmark-enable
every contender runs once, which checks that the pairs still run.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytest_benchmark.fixture import BenchmarkFixture

import fedcodec as fc
from report import (
    PAIRS,
    REPEATS,
    Contender,
    Inputs,
    make_inputs,
    numpy_dequantize8,
    numpy_fwht,
    numpy_mask_extract,
    numpy_pack_bits,
    numpy_quantize8,
)

CONTENDERS = [
    pytest.param(pair.kernel, contender, id=f"{pair.kernel} | {side}: {contender.label}")
    for pair in PAIRS
    for side, contender in (("ours", pair.ours), ("theirs", pair.theirs))
]


@pytest.fixture(scope="module")
def inputs() -> Inputs:
    return make_inputs()


@pytest.mark.parametrize(("kernel", "contender"), CONTENDERS)
def test_kernel(benchmark: BenchmarkFixture, inputs: Inputs, kernel: str, contender: Contender) -> None:
    benchmark.group = kernel
    benchmark.pedantic(contender.run, args=(inputs,), rounds=REPEATS, warmup_rounds=1, iterations=1)


def test_the_baselines_compute_what_ours_computes() -> None:
    """A benchmark only means something if both sides do the same work."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(3 * 4096 + 5, dtype=np.float32)
    x_pow2 = x[:1024].copy()
    codes = rng.integers(0, 16, size=1001).astype(np.uint16)
    ours = fc.decode(fc.Quantize(8).encode(x))
    theirs = numpy_dequantize8(numpy_quantize8(x))
    step = (x.max() - x.min()) / 255
    assert np.max(np.abs(ours - theirs)) <= step
    np.testing.assert_allclose(numpy_fwht(x_pow2), fc.kernels.fwht(x_pow2), atol=1e-5)
    np.testing.assert_allclose(numpy_fwht(x_pow2.astype(np.float64)), fc.kernels.fwht(x_pow2), atol=1e-5)
    assert numpy_pack_bits(codes, 4) == fc.kernels.pack_bits(codes, 4)
    k = 50
    exact = np.sort(fc.kernels.topk_indices(x, k))
    assert np.array_equal(exact, np.sort(np.argpartition(np.abs(x), -k)[-k:]))
    assert np.array_equal(exact, np.sort(torch.topk(torch.from_numpy(x).abs(), k).indices.numpy()))
    fraction = 0.1
    assert (
        abs(numpy_mask_extract(x, fraction, 3).size - fc.kernels.mask_count(x.size, fraction, 3))
        < 0.05 * x.size
    )
