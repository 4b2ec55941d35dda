"""fedcore.robust aggregators and pre-aggregators: hand cases, numpy references, specs."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from fedcore import robust
from fedcore.robust import (
    Bucketing,
    Bulyan,
    CenteredClip,
    GeoMed,
    Krum,
    Mean,
    Median,
    MultiKrum,
    NearestNeighborMixing,
    NormBound,
    TrimmedMean,
)

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


def honest_and_byzantine(k: int = 12, f: int = 2, d: int = 200, seed: int = 0) -> F32:
    """k - f updates near a shared mean, then f far away."""
    rng = np.random.default_rng(seed)
    x = (np.ones(d) + 0.1 * rng.standard_normal((k, d))).astype(np.float32)
    x[k - f :] = -50.0
    return x


def sq_dists(x: F32) -> F64:
    diff = x[:, None, :].astype(np.float64) - x[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def krum_scores_ref(x: F32, f: int, rows: list[int] | None = None, neighbours: int | None = None) -> F64:
    rows = list(range(len(x))) if rows is None else rows
    d = sq_dists(x)
    nb = len(rows) - f - 2 if neighbours is None else neighbours
    return np.array([np.sort([d[i, j] for j in rows if j != i])[:nb].sum() for i in rows])


def bulyan_ref(x: F32, f: int) -> F64:
    left = list(range(len(x)))
    picked = []
    while len(picked) < len(x) - 2 * f:
        s = krum_scores_ref(x, f, left, max(len(left) - f - 2, 1))
        picked.append(left.pop(int(np.argmin(s))))
    sub = x[picked].astype(np.float64)
    beta = len(picked) - 2 * f
    near = np.argsort(np.abs(sub - np.median(sub, axis=0)), axis=0, kind="stable")[:beta]
    return np.take_along_axis(sub, near, axis=0).mean(axis=0)


def weiszfeld_ref(x: F32, w: F64, iters: int = 2000) -> F64:
    z = w @ x.astype(np.float64) / w.sum()
    for _ in range(iters):
        b = w / np.maximum(np.linalg.norm(x - z, axis=1), 1e-12)
        z = b @ x / b.sum()
    return z


# --- hand cases ------------------------------------------------------------------------------------


def test_every_rule_ignores_two_far_attackers_that_move_the_mean() -> None:
    x = honest_and_byzantine()
    honest_center = x[:10].mean(axis=0)
    spread = np.linalg.norm(x[:10] - honest_center, axis=1).max()  # Krum returns one honest update
    assert np.linalg.norm(Mean()(x) - honest_center) > 50.0
    for agg in [
        Median(),
        TrimmedMean(0.2),
        Krum(2),
        MultiKrum(2, 5),
        Bulyan(2),
        GeoMed(),
        CenteredClip(1.0),
        robust.parse("nnm:2+trimmed:0.2"),
    ]:
        assert np.linalg.norm(agg(x) - honest_center) <= spread, str(agg)


def test_norm_bounding_limits_a_boosted_update() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0], [300.0, 400.0]], dtype=np.float32)
    # Norms 5, 0, 500 bound to 5, 0, 5: the mean of (3,4), (0,0), (3,4).
    np.testing.assert_allclose(NormBound(5.0)(x), [2.0, 8.0 / 3.0], rtol=1e-6)


def test_trimmed_mean_of_a_hand_case() -> None:
    x = np.array([[-100.0], [1.0], [2.0], [3.0], [100.0]], dtype=np.float32)
    assert TrimmedMean(0.2)(x)[0] == 2.0  # floor(0.2 * 5) = 1 dropped from each end
    assert TrimmedMean(0.0)(x)[0] == pytest.approx(1.2)


def test_krum_returns_one_of_the_updates() -> None:
    x = np.array([[0.0], [0.1], [-0.1], [0.3], [9.0]], dtype=np.float32)
    assert Krum(1)(x)[0] == 0.0


# --- numpy references ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_rules_match_numpy_on_random_updates(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k, d, f = 15, 333, 3
    x = rng.standard_normal((k, d)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, k)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(Mean()(x, w), w @ x64 / w.sum(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(Median()(x, w), np.median(x, axis=0))
    np.testing.assert_allclose(
        TrimmedMean(0.2)(x), np.sort(x64, axis=0)[3 : k - 3].mean(axis=0), rtol=1e-5, atol=1e-6
    )
    scores = krum_scores_ref(x, f)
    np.testing.assert_array_equal(Krum(f)(x), x[np.argmin(scores)])
    kept = np.argsort(scores, kind="stable")[:5]
    want = w[kept] @ x64[kept] / w[kept].sum()
    np.testing.assert_allclose(MultiKrum(f, 5)(x, w), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(Bulyan(f)(x), bulyan_ref(x, f), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(GeoMed(1000, 1e-12, 1e-14)(x, w), weiszfeld_ref(x, w), atol=1e-4)
    norms = np.linalg.norm(x64, axis=1)
    bounded = x64 * np.minimum(1.0, 15.0 / norms)[:, None]
    np.testing.assert_allclose(NormBound(15.0)(x, w), w @ bounded / w.sum(), rtol=1e-5, atol=1e-6)


def test_centered_clipping_starts_at_the_median() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 50)).astype(np.float32)
    v = np.median(x, axis=0).astype(np.float64)
    for _ in range(3):
        dev = x - v
        v = v + (np.minimum(1.0, 2.0 / np.linalg.norm(dev, axis=1))[:, None] * dev).mean(axis=0)
    np.testing.assert_allclose(CenteredClip(2.0)(x), v, rtol=1e-5, atol=1e-6)


def test_nnm_averages_each_update_with_its_nearest_neighbours() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8, 30)).astype(np.float32)
    mixed, w = NearestNeighborMixing(3)(x, np.arange(1.0, 9.0))
    d = sq_dists(x)
    want = np.stack([x[np.argsort(d[i], kind="stable")[:5]].mean(axis=0) for i in range(8)])
    np.testing.assert_allclose(mixed, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(w, np.arange(1.0, 9.0))


def test_bucketing_averages_seeded_buckets_with_their_weights() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 20)).astype(np.float32)
    w = rng.uniform(1.0, 3.0, 7)
    pre = Bucketing(3)
    means, bw = pre(x, w, seed=11)
    groups = pre.buckets(7, 11)
    assert [len(g) for g in groups] == [3, 3, 1]
    assert sorted(np.concatenate(groups).tolist()) == list(range(7))
    want = np.stack([w[g] @ x[g].astype(np.float64) / w[g].sum() for g in groups])
    np.testing.assert_allclose(means, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bw, [w[g].sum() for g in groups])
    assert not np.array_equal(pre.buckets(7, 11)[0], pre.buckets(7, 12)[0]) or not np.array_equal(
        pre.buckets(7, 11)[1], pre.buckets(7, 12)[1]
    )


def test_a_chain_feeds_each_stage_the_previous_output() -> None:
    x = honest_and_byzantine(k=20, f=4, seed=3)
    rule = robust.parse("bucket:2+median")
    means, _ = Bucketing(2)(x, None, seed=9)
    np.testing.assert_array_equal(rule(x, seed=9), np.median(means, axis=0))


# --- specs -----------------------------------------------------------------------------------------

SPECS = [
    "mean",
    "median",
    "trimmed:0.2",
    "krum:3",
    "multikrum:3,5",
    "bulyan:2",
    "geomed",
    "geomed:20",
    "geomed:100,1e-09,1e-12",
    "cclip:10.0",
    "cclip:0.5,1",
    "normbound:2.5",
    "bucket:2+median",
    "nnm:3+krum:3",
    "bucket:2+nnm:1+cclip:1.0",
]


@pytest.mark.parametrize("spec", SPECS)
def test_specs_round_trip(spec: str) -> None:
    rule = robust.parse(spec)
    assert str(rule) == spec
    assert robust.parse(str(rule)) == rule


@pytest.mark.parametrize(
    "spec", ["", "avg", "trimmed", "trimmed:0.5", "krum:-1", "multikrum:2", "median+bucket:2", "nnm:1"]
)
def test_bad_specs_say_what_is_wrong(spec: str) -> None:
    with pytest.raises(ValueError, match="spec"):
        robust.parse(spec)


def test_impossible_rounds_are_refused_with_the_requirement() -> None:
    x = honest_and_byzantine(k=6, f=1)
    with pytest.raises(ValueError, match="at least 11"):
        Bulyan(2)(x)
    with pytest.raises(ValueError, match="weights"):
        Mean()(x, np.zeros(6))
    with pytest.raises(ValueError, match="K x d"):
        Median()(x[0])


# --- properties every robust rule should have ---------------------------------------------------------

EQUIVARIANT = [
    Mean(),
    Median(),
    TrimmedMean(0.2),
    Krum(2),
    MultiKrum(2, 6),
    Bulyan(2),
    GeoMed(),
    CenteredClip(1.0),
]


@pytest.mark.parametrize("rule", EQUIVARIANT, ids=str)
def test_client_order_does_not_matter_and_a_shift_moves_the_result(rule: robust.Aggregator) -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((11, 40)).astype(np.float32)
    base = rule(x)
    perm = rng.permutation(11)
    np.testing.assert_allclose(rule(x[perm]), base, rtol=1e-5, atol=1e-5)
    shift = rng.standard_normal(40).astype(np.float32)
    np.testing.assert_allclose(rule(x + shift), base + shift, rtol=1e-4, atol=1e-4)
