"""fedcodec.robust: the Rust kernels of robust aggregation against numpy on the same K x d matrix."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

import fedcodec as fc
from fedcodec import robust

F32 = NDArray[np.float32]


def updates(k: int, d: int, seed: int = 0) -> F32:
    return np.random.default_rng(seed).standard_normal((k, d), dtype=np.float32)


# Sizes on both sides of the network/sort switch (256 rows) and of the 64- and 1024-column blocks.
SHAPES = [(1, 1), (2, 3), (5, 64), (7, 1025), (10, 3000), (31, 130), (300, 70)]


@pytest.mark.parametrize(("k", "d"), SHAPES)
def test_median_is_numpys(k: int, d: int) -> None:
    x = updates(k, d, seed=k * d)
    np.testing.assert_array_equal(robust.coordinate_median(x), np.median(x, axis=0))


@pytest.mark.parametrize(("k", "d"), SHAPES)
def test_trimmed_mean_is_the_mean_of_the_sorted_middle(k: int, d: int) -> None:
    x = updates(k, d, seed=k + d)
    trim = (k - 1) // 3
    want = np.sort(x, axis=0)[trim : k - trim].mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(robust.trimmed_mean(x, trim), want, rtol=1e-5, atol=1e-6)


def test_trimming_everything_is_refused() -> None:
    with pytest.raises(fc.CodecError, match="leaves none"):
        robust.trimmed_mean(updates(4, 3), 2)


def test_pairwise_distances_are_numpys() -> None:
    x = updates(20, 5000) + np.float32(30.0)  # a large shared offset: centering keeps precision
    diff = x[:, None, :].astype(np.float64) - x[None, :, :]
    want = np.einsum("ijk,ijk->ij", diff, diff)
    got = robust.pairwise_sq_dists(x)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got.shape == (20, 20)
    assert np.all(np.diag(got) == 0.0)


def test_distances_to_a_point_and_combinations() -> None:
    x = updates(6, 999)
    z = updates(1, 999, seed=1)[0]
    np.testing.assert_allclose(
        robust.sq_dists_to(x, z), ((x.astype(np.float64) - z) ** 2).sum(axis=1), rtol=1e-5
    )
    c = np.linspace(-1.0, 2.0, 6)
    np.testing.assert_allclose(robust.row_combination(x, c), c @ x.astype(np.float64), rtol=1e-5, atol=1e-5)
    m = np.random.default_rng(2).random((3, 6))
    np.testing.assert_allclose(robust.mix_rows(x, m), m @ x.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_krum_scores_sum_the_nearest_squared_distances() -> None:
    x = updates(9, 40)
    dists = robust.pairwise_sq_dists(x)
    f = 2
    want = [np.sort(np.delete(row, i))[: 9 - f - 2].sum() for i, row in enumerate(dists)]
    np.testing.assert_allclose(robust.krum_scores(dists, f), want)
    assert robust.krum_select(dists, f, 3) == list(np.argsort(want, kind="stable")[:3])
    with pytest.raises(fc.CodecError, match="at least 7"):
        robust.krum_scores(dists[:6, :6].copy(), f)


def test_bulyan_coordinates_average_the_values_nearest_the_median() -> None:
    x = updates(11, 300)
    rows = [0, 2, 3, 5, 7, 8, 10]
    beta = 3
    sub = x[rows].astype(np.float64)
    med = np.median(sub, axis=0)
    nearest = np.argsort(np.abs(sub - med), axis=0, kind="stable")[:beta]
    want = np.take_along_axis(sub, nearest, axis=0).mean(axis=0)
    np.testing.assert_allclose(robust.bulyan_coordinates(x, rows, beta), want, rtol=1e-5, atol=1e-6)


def test_geometric_median_satisfies_its_optimality_condition() -> None:
    x = updates(15, 50)
    x[:4] += 40.0  # four far outliers
    w = np.arange(1.0, 16.0)
    z, iters, converged = robust.geometric_median(x, w, 1e-9, 1000, 1e-12)
    assert converged
    assert 1 <= iters < 1000
    diff = z.astype(np.float64) - x
    grad = (w[:, None] * diff / np.linalg.norm(diff, axis=1, keepdims=True)).sum(axis=0)
    assert np.linalg.norm(grad) < 1e-3 * w.sum()


def test_centered_clipping_is_the_formula() -> None:
    x = updates(8, 100) * np.float32(3.0)
    w = np.full(8, 0.125)
    v = np.zeros(100)
    for _ in range(2):
        dev = x - v
        scale = np.minimum(1.0, 4.0 / np.linalg.norm(dev, axis=1))
        v = v + (w[:, None] * scale[:, None] * dev).sum(axis=0)
    got = robust.centered_clip(x, w, np.zeros(100, dtype=np.float32), 4.0, 2)
    np.testing.assert_allclose(got, v, rtol=1e-5, atol=1e-6)


def test_a_nan_from_a_client_is_refused_with_its_index() -> None:
    x = updates(5, 10)
    x[3, 7] = np.nan
    with pytest.raises(fc.CodecError, match=r"update 3 .* coordinate 7"):
        robust.coordinate_median(x)


def test_layouts_numpy_does_not_hand_over_contiguously_are_refused() -> None:
    x = updates(6, 10)
    with pytest.raises(fc.CodecError, match="C-contiguous"):
        robust.coordinate_median(x.T.copy().T)
    with pytest.raises(TypeError):
        robust.coordinate_median(x.astype(np.float64))  # type: ignore[arg-type]
    with pytest.raises(fc.CodecError, match="weights"):
        robust.geometric_median(x, np.ones(5))
