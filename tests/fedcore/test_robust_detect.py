"""fedcore.robust.detect: normalised suspicion scores and the SuspectTracker that pools them."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.robust import (
    Median,
    SuspectTracker,
    direction_scores,
    distance_scores,
    krum_scores,
    suspicion_scores,
)
from fedcore.robust.detect import leave_one_out_medians


def round_updates(seed: int, k: int = 20, bad: int = 4, d: int = 500) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(d)
    x = (mean + 0.5 * rng.standard_normal((k, d))).astype(np.float32)
    x[:bad] = -x[:bad]  # sign-flip
    return x


def test_scores_put_attackers_far_above_one() -> None:
    x = round_updates(0)
    dist = distance_scores(x, Median()(x))
    assert np.median(dist) == pytest.approx(1.0)
    assert dist[:4].min() > 2.0 > dist[4:].max()
    kr = krum_scores(x, 4)
    assert kr[:4].min() > kr[4:].max()


def test_identical_updates_score_one() -> None:
    x = np.ones((5, 3), dtype=np.float32)
    np.testing.assert_array_equal(distance_scores(x, x[0]), np.ones(5))


@pytest.mark.parametrize("k", [2, 3, 4, 5, 8, 9])
def test_leave_one_out_medians_match_deleting_the_row(k: int) -> None:
    rng = np.random.default_rng(k)
    x = rng.integers(-3, 4, size=(k, 200)).astype(np.float32)  # small integers: many ties
    for i, m in enumerate(leave_one_out_medians(x)):
        np.testing.assert_array_equal(m, np.median(np.delete(x, i, axis=0), axis=0))
    with pytest.raises(ValueError, match="K >= 2"):
        leave_one_out_medians(x[:1])


def test_direction_scores_see_a_flip_that_distance_misses() -> None:
    # Honest updates share a weak direction under strong own noise: a flipped one is no farther away.
    rng = np.random.default_rng(1)
    d = 2000
    shared = rng.standard_normal(d)
    x = (0.4 * shared + rng.standard_normal((10, d))).astype(np.float32)
    x[0] = -x[0]
    dist = distance_scores(x, Median()(x))
    cos = direction_scores(x)
    assert dist[0] < 1.5  # within the honest spread by distance
    assert cos[0] < 0.0 < cos[1:].min()
    np.testing.assert_array_equal(direction_scores(np.zeros((3, 4), dtype=np.float32)), np.zeros(3))


def test_suspicion_scores_flag_far_and_backwards_updates_only() -> None:
    rng = np.random.default_rng(2)
    d = 2000
    shared = rng.standard_normal(d)
    x = (shared + 0.5 * rng.standard_normal((10, d))).astype(np.float32)
    x[0] = -x[0]  # sign flip
    x[1] = 30.0 * rng.standard_normal(d)  # noise, far away
    s = suspicion_scores(x)
    assert s[0] > 1.0  # points back
    assert s[1] > 1.0  # far
    assert s[2:].max() < 1.0
    assert s.max() <= 2.0
    np.testing.assert_array_equal(suspicion_scores(x[:1]), np.zeros(1))
    with pytest.raises(ValueError, match="far"):
        suspicion_scores(x, far=0.0)


def test_tracker_flags_on_the_mean_of_the_last_m_rounds() -> None:
    t = SuspectTracker(threshold=1.0, m=3, min_rounds=2)
    t = t.observe([1, 2], [1.6, 0.4])
    assert t.flagged() == frozenset()  # one round is not enough evidence
    t = t.observe([1, 3], [0.6, 0.9])
    assert t.flagged() == frozenset({1})  # mean 1.1
    t = t.observe([1], [0.5]).observe([1], [0.5])  # the 1.6 slides out of m = 3: mean 0.53
    assert t.flagged() == frozenset()
    assert t.history[1] == (0.6, 0.5, 0.5)


def test_tracker_is_a_value() -> None:
    t0 = SuspectTracker(min_rounds=1, m=1)
    t1 = t0.observe([5], [9.0])
    assert t0.flagged() == frozenset()
    assert t1.flagged() == frozenset({5})
    with pytest.raises(ValueError, match="min_rounds <= m"):
        SuspectTracker(min_rounds=4, m=3)
    with pytest.raises(ValueError, match="twice"):
        t0.observe([1, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        t0.observe([1], [float("inf")])


def test_over_rounds_the_tracker_finds_the_sign_flippers() -> None:
    t = SuspectTracker()
    for r in range(5):
        x = round_updates(r)
        t = t.observe(list(range(20)), suspicion_scores(x))
    assert t.flagged() == frozenset({0, 1, 2, 3})
