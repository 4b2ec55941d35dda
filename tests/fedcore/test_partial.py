"""Partial model sharing: masks round-trip values exactly, stay compact, and rotate until all is synced."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from fedcore.layout import ParamLayout
from fedcore.partial import (
    SEEDED_DESCRIPTOR_BYTES,
    FixedMaskSelector,
    GradientMaskSelector,
    Mask,
    MaskSelector,
    RandomMaskSelector,
    StructuredMaskSelector,
    TopKMagnitudeSelector,
    parse_partial,
)

LAYOUT = ParamLayout.from_shapes(
    [
        ("conv.w", (8, 3, 3, 3)),
        ("conv.b", (8,)),
        ("fc1.w", (64, 32)),
        ("fc1.b", (64,)),
        ("fc2.w", (10, 64)),
        ("fc2.b", (10,)),
    ]
)


def _weights(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(LAYOUT.size).astype(np.float32)


def _both_kinds(n: int) -> list[Mask]:
    seeded = Mask.seeded(n, 0.3, seed=11)
    return [seeded, Mask.from_bool(seeded.to_bool())]


@pytest.mark.parametrize("mask", _both_kinds(1001), ids=["seeded", "explicit"])
def test_mask_views_agree(mask: Mask) -> None:
    flags = mask.to_bool()
    assert mask.size == 1001
    assert flags.shape == (1001,)
    assert mask.count == int(flags.sum())
    assert mask.fraction == pytest.approx(mask.count / 1001)
    idx = mask.indices()
    assert idx.dtype == np.uint32
    assert np.array_equal(idx, np.flatnonzero(flags))
    x = np.arange(1001, dtype=np.float32)
    assert np.array_equal(mask.extract(x), x[flags])


@pytest.mark.parametrize("mask", _both_kinds(1001), ids=["seeded", "explicit"])
def test_scatter_overwrites_selected_coordinates_exactly(mask: Mask) -> None:
    rng = np.random.default_rng(1)
    into = (rng.standard_normal(1001) * 1e8).astype(np.float32)
    before = into.copy()
    values = rng.standard_normal(mask.count).astype(np.float32)
    mask.scatter(values, into)
    flags = mask.to_bool()
    assert np.array_equal(into[flags], values)  # bit-exact despite the 1e8 scale difference
    assert np.array_equal(into[~flags], before[~flags])


def test_scatter_overwrites_non_finite_old_values() -> None:
    mask = Mask.from_indices([1, 3], 5)
    into = np.array([0, np.inf, 2, np.nan, 4], dtype=np.float32)
    mask.scatter(np.array([7, 8], dtype=np.float32), into)
    assert np.array_equal(into, np.array([0, 7, 2, 8, 4], dtype=np.float32))


@pytest.mark.parametrize("mask", _both_kinds(1001), ids=["seeded", "explicit"])
def test_scatter_add_is_weighted_fold(mask: Mask) -> None:
    acc = np.ones(1001, dtype=np.float32)
    values = np.full(mask.count, 2.0, dtype=np.float32)
    mask.scatter_add(values, acc, weight=3.0)
    assert np.array_equal(acc, np.where(mask.to_bool(), 7.0, 1.0).astype(np.float32))


def test_mask_rejects_mismatched_input() -> None:
    mask = Mask.seeded(100, 0.5, seed=2)
    with pytest.raises(ValueError, match="shape"):
        mask.extract(np.zeros(99, dtype=np.float32))
    with pytest.raises(ValueError, match="float32"):
        mask.extract(np.zeros(100, dtype=np.float64))
    with pytest.raises(ValueError, match="values"):
        mask.scatter(np.zeros(mask.count + 1, dtype=np.float32), np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="writeable"):
        mask.scatter(np.zeros(mask.count, dtype=np.float32), np.zeros(200, dtype=np.float32)[::2])


def test_mask_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="bytes"):
        Mask.from_bitmap(b"\x00", 9)
    with pytest.raises(ValueError, match="past the end"):
        Mask.from_bitmap(b"\x00\x02", 9)
    with pytest.raises(ValueError, match="rate"):
        Mask.seeded(10, 0.0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        Mask.seeded(10, 0.5, seed=-1)
    with pytest.raises(ValueError, match="either"):
        Mask(size=10)
    with pytest.raises(ValueError, match="indices"):
        Mask.from_indices([10], 10)


def test_seeded_mask_is_reproducible_and_seed_dependent() -> None:
    a, b, c = Mask.seeded(5000, 0.5, 3), Mask.seeded(5000, 0.5, 3), Mask.seeded(5000, 0.5, 4)
    assert np.array_equal(a.to_bool(), b.to_bool())
    assert not np.array_equal(a.to_bool(), c.to_bool())
    assert Mask.full(17).count == 17


def test_half_random_sharing_sends_at_most_51_percent_of_float32_bytes() -> None:
    n = 100_000
    layout = ParamLayout.from_shapes([("w", (n,))])
    mask = RandomMaskSelector(0.5, seed=9).select(3, np.zeros(n, np.float32), layout)
    assert mask.is_seeded
    assert mask.wire_bytes() == 4 * mask.count + SEEDED_DESCRIPTOR_BYTES  # no index overhead
    assert abs(mask.count - n / 2) < 5 * math.sqrt(n / 4)
    assert mask.wire_bytes() <= 0.51 * 4 * n


def test_explicit_mask_pays_its_bitmap() -> None:
    mask = Mask.from_indices([0, 5, 9], 20)
    assert mask.wire_bytes() == 3 * 4 + 3
    assert mask.wire_bytes(value_bytes_per_element=1) == 3 + 3


def test_random_masks_change_per_round_and_cover_everything_as_expected() -> None:
    n, fraction, rounds = 20_000, 0.5, 10
    layout = ParamLayout.from_shapes([("w", (n,))])
    selector = RandomMaskSelector(fraction, seed=5)
    weights = np.zeros(n, np.float32)
    masks = [selector.select(r, weights, layout) for r in range(30)]
    assert len({m.seed for m in masks}) == 30
    assert selector.select(4, weights, layout) == masks[4]
    covered = np.zeros(n, dtype=bool)
    for m in masks[:rounds]:
        covered |= m.to_bool()
    p_missed = (1 - fraction) ** rounds
    expected, sigma = n * p_missed, math.sqrt(n * p_missed * (1 - p_missed))
    assert abs(int((~covered).sum()) - expected) < 5 * sigma
    union = masks[0]
    for m in masks[1:]:
        union = union | m
    assert union.count == n  # 30 rounds: n * 2**-30 coordinates expected missing


def test_structured_windows_are_contiguous_and_cover_everything_within_ceil_inverse_fraction_rounds() -> None:
    weights = _weights()
    for fraction in (0.5, 0.3, 0.2):
        selector = StructuredMaskSelector(fraction, seed=2)
        period = math.ceil(1 / fraction)
        for start in (0, 7):
            covered = np.zeros(LAYOUT.size, dtype=bool)
            for r in range(start, start + period):
                flags = selector.select(r, weights, LAYOUT).to_bool()
                edges = np.flatnonzero(np.diff(np.r_[flags[-1], flags].astype(np.int8)))
                assert edges.size <= 2  # one window on the circle: whole tensors, a partial slice at each end
                covered |= flags
            assert covered.all()


UNBALANCED = ParamLayout.from_shapes(
    [("fc1.w", (128, 784)), ("fc1.b", (128,)), ("fc2.w", (10, 128)), ("fc2.b", (10,))]
)


@pytest.mark.parametrize("fraction", [0.5, 0.3, 0.1, 0.01])
def test_structured_sends_the_requested_fraction_every_round_on_unbalanced_layers(fraction: float) -> None:
    selector = StructuredMaskSelector(fraction, seed=1)
    weights = np.zeros(UNBALANCED.size, np.float32)
    for r in range(20):
        share = selector.select(r, weights, UNBALANCED).count / UNBALANCED.size
        assert abs(share - fraction) <= 0.02 * fraction + 1 / UNBALANCED.size


def _closed_loop(selector: MaskSelector, rounds: int, seed: int = 0) -> tuple[list[float], float]:
    """What a run feeds a selector: moving weights, and a last change that is zero outside the last mask."""
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(UNBALANCED.size).astype(np.float32)
    change = np.zeros_like(weights)
    covered = np.zeros(UNBALANCED.size, dtype=bool)
    fractions = []
    for r in range(rounds):
        flags = selector.select(r, weights, UNBALANCED, change).to_bool()
        fractions.append(flags.mean())
        covered |= flags
        change = np.zeros_like(weights)
        change[flags] = 0.01 * rng.standard_normal(int(flags.sum())).astype(np.float32)
        weights = weights + change
    return fractions, float(covered.mean())


@pytest.mark.parametrize("spec", ["topk:0.1", "gradient:0.1", "structured:0.1", "random:0.1"])
def test_every_selector_covers_every_coordinate_in_20_rounds_at_a_tenth(spec: str) -> None:
    fractions, coverage = _closed_loop(parse_partial(spec, seed=3), 20)
    assert coverage > 0.85  # random: 1 - 0.9**20 = 0.88 expected
    if not spec.startswith("random"):
        assert all(abs(f - 0.1) <= 0.002 for f in fractions)


@pytest.mark.parametrize("name", ["topk", "gradient"])
def test_score_selectors_explore_every_coordinate_within_their_period(name: str) -> None:
    selector = parse_partial(f"{name}:0.2,0.5", seed=3)
    period = math.ceil(1 / (0.2 * 0.5))  # the exploration slice is a tenth of the model
    _, coverage = _closed_loop(selector, period)
    assert coverage == 1.0


def test_topk_and_gradient_selectors_pick_largest_magnitudes() -> None:
    weights = _weights(3)
    gradient = _weights(4)
    k = round(0.1 * LAYOUT.size)
    top_w = TopKMagnitudeSelector(0.1, explore=0.0).select(0, weights, LAYOUT)
    top_g = GradientMaskSelector(0.1, explore=0.0).select(0, weights, LAYOUT, gradient=gradient)
    assert top_w.count == k
    assert top_g.count == k
    assert np.abs(weights[top_w.to_bool()]).min() >= np.abs(weights[~top_w.to_bool()]).max()
    assert np.abs(gradient[top_g.to_bool()]).min() >= np.abs(gradient[~top_g.to_bool()]).max()
    mixed = GradientMaskSelector(0.1, seed=1).select(0, weights, LAYOUT, gradient=gradient).to_bool()
    assert mixed.sum() == k
    top = top_g.to_bool()
    assert (mixed & top).sum() >= k - round(0.5 * k)  # the largest half is still in
    with pytest.raises(ValueError, match="gradient"):
        GradientMaskSelector(0.1).select(0, weights, LAYOUT)


def test_fixed_mask_from_a_file(tmp_path: Path) -> None:
    flags = np.arange(LAYOUT.size) % 3 == 0
    np.save(tmp_path / "mask.npy", flags)
    selector = parse_partial(f"fixed:{tmp_path}/mask.npy")
    assert np.array_equal(selector.select(4, _weights(), LAYOUT).to_bool(), flags)
    np.save(tmp_path / "floats.npy", np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="booleans or 0/1"):
        parse_partial(f"fixed:{tmp_path}/floats.npy")
    with pytest.raises(ValueError, match="cannot read"):
        parse_partial(f"fixed:{tmp_path}/missing.npy")


def test_fixed_and_custom_selectors() -> None:
    weights = _weights()
    body = np.zeros(LAYOUT.size, dtype=bool)
    body[: LAYOUT["fc2.w"].offset] = True
    fixed = FixedMaskSelector(Mask.from_bool(body))
    assert np.array_equal(fixed.select(5, weights, LAYOUT).to_bool(), body)
    with pytest.raises(ValueError, match="coordinates"):
        FixedMaskSelector(Mask.full(3)).select(0, weights, LAYOUT)

    class EveryOther(MaskSelector):
        def select(
            self,
            round: int,
            weights: NDArray[np.float32],
            layout: ParamLayout,
            gradient: NDArray[np.float32] | None = None,
        ) -> Mask:
            return Mask.from_bool(np.arange(layout.size) % 2 == round % 2)

    assert EveryOther().select(1, weights, LAYOUT).count == LAYOUT.size // 2
    with pytest.raises(TypeError):
        MaskSelector()  # type: ignore[abstract]


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("random:0.5", RandomMaskSelector),
        ("topk:0.3", TopKMagnitudeSelector),
        ("gradient:0.2", GradientMaskSelector),
        ("gradient:0.2,0.25", GradientMaskSelector),
        ("structured:0.5", StructuredMaskSelector),
    ],
)
def test_parse_partial_round_trips(spec: str, kind: type) -> None:
    selector = parse_partial(spec, seed=4)
    assert isinstance(selector, kind)
    assert selector.spec == spec  # type: ignore[attr-defined]
    assert parse_partial(selector.spec, seed=4) == selector  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "spec",
    [
        "random",
        "random:",
        "random:abc",
        "random:0",
        "random:1.5",
        "foo:0.5",
        "topk:nan",
        "topk:0.1,2",
        "random:0.1,0.5",
    ],
)
def test_parse_partial_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"partial spec|fraction"):
        parse_partial(spec)
