"""fc.kernels on their own: the building blocks for new codecs and partial model sharing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

import fedcodec as fc
from fedcodec import kernels

F32 = NDArray[np.float32]


def normal(n: int, seed: int = 0) -> F32:
    return np.random.default_rng(seed).standard_normal(n, dtype=np.float32)


def hadamard(n: int) -> NDArray[np.float64]:
    """Sylvester's construction, orthonormal."""
    h: NDArray[np.float64] = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h * (1.0 / math.sqrt(n))


# --- top-k ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(1, 1), (10, 3), (1000, 10), (100_000, 1000), (5000, 5000)])
def test_topk_indices_are_the_k_largest_magnitudes(n: int, k: int) -> None:
    x = normal(n, seed=n)
    idx = kernels.topk_indices(x, k)
    assert idx.dtype == np.uint32
    assert np.array_equal(np.sort(idx), np.sort(np.argsort(np.abs(x))[n - k :]))


def test_topk_indices_compare_magnitudes_not_values() -> None:
    x = np.array([0.5, -3.0, 2.0, -0.1, 1.0], dtype=np.float32)
    assert set(kernels.topk_indices(x, 2).tolist()) == {1, 2}


def test_sampled_topk_picks_about_k_of_the_largest() -> None:
    n, k = 1_000_000, 10_000
    x = normal(n, seed=3)
    idx = kernels.topk_indices(x, k, sampled=True, seed=7)
    assert k // 2 <= idx.size <= 2 * k
    assert np.unique(idx).size == idx.size
    assert idx.max() < n
    # A threshold estimated from a sample: everything it keeps is among the 3k largest.
    assert np.abs(x[idx]).min() >= np.sort(np.abs(x))[n - 3 * k]
    assert np.array_equal(idx, kernels.topk_indices(x, k, sampled=True, seed=7))


@pytest.mark.parametrize("k", [0, 11])
def test_topk_indices_refuses_k_outside_one_to_n(k: int) -> None:
    with pytest.raises(fc.CodecError, match=f"got {k}"):
        kernels.topk_indices(normal(10), k)


# --- Walsh-Hadamard ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 8, 64, 256])
def test_fwht_is_the_orthonormal_hadamard_matrix(n: int) -> None:
    x = normal(n, seed=n)
    np.testing.assert_allclose(kernels.fwht(x), hadamard(n) @ x, rtol=1e-5, atol=1e-5)


def test_fwht_keeps_the_norm_and_undoes_itself() -> None:
    x = normal(2**16)
    y = kernels.fwht(x)
    assert float(np.linalg.norm(y)) == pytest.approx(float(np.linalg.norm(x)), rel=1e-5)
    np.testing.assert_allclose(kernels.fwht(y), x, atol=1e-4)
    assert np.array_equal(x, normal(2**16))  # the input is left alone


@pytest.mark.parametrize("n", [3, 100, 1000])
def test_fwht_refuses_lengths_that_are_not_powers_of_two(n: int) -> None:
    with pytest.raises(fc.CodecError, match=f"power-of-two length, got {n}"):
        kernels.fwht(normal(n))


# --- seeded masks --------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_mask_extract_and_scatter_add_round_trip(fraction: float) -> None:
    n = 100_003
    x = normal(n)
    values = kernels.mask_extract(x, fraction, 42)
    assert values.size == kernels.mask_count(n, fraction, 42)
    assert abs(values.size - fraction * n) <= 6 * np.sqrt(n * fraction * (1 - fraction)) + 1
    out = np.zeros(n, dtype=np.float32)
    kernels.mask_scatter_add(values, out, fraction, 42)
    kept = out != 0
    assert np.array_equal(out[kept], x[kept])
    assert np.count_nonzero(kept) == values.size
    kernels.mask_scatter_add(values, out, fraction, 42, weight=-2.0)
    np.testing.assert_array_equal(out[kept], -x[kept])


def test_masks_depend_on_the_seed_only() -> None:
    x = normal(10_000)
    a = kernels.mask_bitmap(10_000, 0.1, 1)
    assert a == kernels.mask_bitmap(10_000, 0.1, 1)
    assert a != kernels.mask_bitmap(10_000, 0.1, 2)
    assert np.array_equal(kernels.mask_extract(x, 0.1, 1), kernels.mask_extract(x, 0.1, 1))


def test_mask_bitmap_agrees_with_mask_extract() -> None:
    n = 1001
    x = normal(n)
    bitmap = kernels.mask_bitmap(n, 0.3, 9)
    assert len(bitmap) == (n + 7) // 8
    selected = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")[:n].astype(bool)
    assert np.array_equal(kernels.bitmap_extract(x, bitmap), x[selected])
    assert np.array_equal(kernels.mask_extract(x, 0.3, 9), x[selected])
    assert np.count_nonzero(selected) == kernels.mask_count(n, 0.3, 9)
    out = np.zeros(n, dtype=np.float32)
    kernels.bitmap_scatter_add(x[selected], bitmap, out, weight=3.0)
    np.testing.assert_array_equal(out, np.where(selected, 3.0 * x, 0.0).astype(np.float32))


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5, float("nan")])
def test_mask_kernels_refuse_bad_fractions(fraction: float) -> None:
    with pytest.raises(fc.CodecError, match="fraction"):
        kernels.mask_count(100, fraction, 0)
    with pytest.raises(fc.CodecError, match="fraction"):
        kernels.mask_extract(normal(100), fraction, 0)
    with pytest.raises(fc.CodecError, match="fraction"):
        kernels.mask_bitmap(100, fraction, 0)


def test_scatter_refuses_the_wrong_number_of_values_and_leaves_out_alone() -> None:
    n = 1000
    values = kernels.mask_extract(normal(n), 0.2, 3)
    out = np.ones(n, dtype=np.float32)
    with pytest.raises(fc.CodecError):
        kernels.mask_scatter_add(values[:-1], out, 0.2, 3)
    with pytest.raises(fc.CodecError):
        kernels.bitmap_scatter_add(values, kernels.mask_bitmap(n, 0.2, 3)[:-1], out)
    with pytest.raises(fc.CodecError):
        kernels.bitmap_extract(normal(n), b"\xff" * 10)
    np.testing.assert_array_equal(out, np.ones(n, dtype=np.float32))


# --- bit packing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", range(1, 17))
def test_pack_bits_round_trips(bits: int) -> None:
    count = 1003
    codes = np.random.default_rng(bits).integers(0, 2**bits, size=count).astype(np.uint16)
    packed = kernels.pack_bits(codes, bits)
    assert len(packed) == (count * bits + 7) // 8
    assert np.array_equal(kernels.unpack_bits(packed, bits, count), codes)


def test_pack_bits_is_lsb_first() -> None:
    codes = np.random.default_rng(0).integers(0, 2, size=77).astype(np.uint16)
    assert kernels.pack_bits(codes, 1) == np.packbits(codes.astype(np.uint8), bitorder="little").tobytes()
    assert kernels.pack_bits(np.array([0x1, 0x2, 0xF], dtype=np.uint16), 4) == bytes([0x21, 0x0F])
    assert kernels.pack_bits(np.array([0xABC, 0x123], dtype=np.uint16), 12) == bytes([0xBC, 0x3A, 0x12])


@pytest.mark.parametrize("bits", [0, 17])
def test_pack_bits_refuses_widths_outside_1_to_16(bits: int) -> None:
    with pytest.raises(fc.CodecError, match=f"got {bits}"):
        kernels.pack_bits(np.zeros(4, dtype=np.uint16), bits)
    with pytest.raises(fc.CodecError, match=f"got {bits}"):
        kernels.unpack_bits(b"\x00" * 8, bits, 4)


def test_pack_bits_refuses_codes_that_do_not_fit() -> None:
    with pytest.raises(fc.CodecError, match="16 does not fit in 4 bits"):
        kernels.pack_bits(np.array([1, 16], dtype=np.uint16), 4)


def test_unpack_bits_refuses_too_few_bytes() -> None:
    with pytest.raises(fc.FrameError, match="need 2 bytes, got 1"):
        kernels.unpack_bits(b"\x00", 4, 4)
