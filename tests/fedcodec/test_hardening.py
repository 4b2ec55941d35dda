"""Regression tests for failures an attacker-style fuzz found at the Python boundary.

Allocation failures must surface as MemoryError (never PanicException or an abort), the
Accumulator must be shareable across threads and take any bytes-like frame, and arrays that are
contiguous but unaligned must be accepted.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fedcodec as fc
from fedcodec import kernels


def test_a_bitmap_too_large_to_allocate_is_a_memory_error() -> None:
    with pytest.raises(MemoryError):
        kernels.mask_bitmap(2**50, 0.5, 0)


def test_the_accumulator_takes_any_bytes_like_frame() -> None:
    x = np.arange(64, dtype=np.float32)
    frame = fc.from_spec("quant:8").encode(x)
    acc = fc.Accumulator(64)
    for like in (frame, bytearray(frame), memoryview(frame)):
        acc.add(like)
    np.testing.assert_allclose(acc.result(), 3 * fc.decode(frame))
    with pytest.raises(fc.CodecError):
        acc.add("not a frame")  # type: ignore[arg-type]


def test_the_accumulator_is_safe_to_share_across_threads() -> None:
    n = 100_000
    frame = fc.from_spec("topk:0.1+quant:8").encode(np.linspace(-1, 1, n, dtype=np.float32))
    acc = fc.Accumulator(n)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(25):
                acc.add(frame, 0.5)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert acc.count == 100
    np.testing.assert_allclose(acc.result(), 50 * fc.decode(frame), rtol=1e-5, atol=1e-6)


def test_an_add_that_would_overflow_leaves_the_sum_alone() -> None:
    big = fc.from_spec("none").encode(np.array([3e38, 1.0], dtype=np.float32))
    acc = fc.Accumulator(2)
    acc.add(big)
    with pytest.raises(fc.CodecError, match="float32's range"):
        acc.add(big)
    np.testing.assert_array_equal(acc.result(), np.array([3e38, 1.0], dtype=np.float32))
    assert acc.count == 1


def test_none_keeps_negative_zero() -> None:
    x = np.array([-0.0, 0.0, -2.0], dtype=np.float32)
    y = fc.decode(fc.from_spec("none").encode(x))
    assert np.signbit(y).tolist() == [True, False, True]


def test_an_unaligned_contiguous_array_is_accepted() -> None:
    raw = np.zeros(4 * 1000 + 1, dtype=np.uint8)
    x = raw[1:].view(np.float32)
    x[:] = np.linspace(-1, 1, 1000, dtype=np.float32)
    assert not x.flags.aligned
    assert x.flags.c_contiguous
    frame = fc.from_spec("quant:8").encode(x)
    np.testing.assert_allclose(fc.decode(frame), x, atol=2 / 255)
    acc = fc.Accumulator(1000)
    acc.add_array(x)
    np.testing.assert_array_equal(acc.result(), x)


@pytest.mark.parametrize(
    ("spec", "x"),
    [
        ("quant:8", [-3.4028235e38, 3.4028235e38]),
        ("bf16", [3.4028235e38]),
        ("sign", [3.4028235e38] * 8),
        ("qsgd:127", [3.4028235e38, 0.0]),
        ("eden:1", [1e36] * 1000),
    ],
)
def test_the_encoder_writes_only_frames_the_decoder_accepts(spec: str, x: list[float]) -> None:
    frame: bytes | fc.CodecError
    try:
        frame = fc.from_spec(spec).encode(np.array(x, dtype=np.float32))
    except fc.CodecError as e:
        frame = e
    if isinstance(frame, bytes):
        assert np.isfinite(fc.decode(frame)).all()
    else:
        assert not isinstance(frame, fc.FrameError), "a refusal of the input, not of a frame"
