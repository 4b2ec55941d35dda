"""fedcore.robust.detect: normalised suspicion scores and the k-of-m SuspectTracker."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.robust import Median, SuspectTracker, distance_scores, krum_scores


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


def test_tracker_flags_k_of_the_last_m_rounds() -> None:
    t = SuspectTracker(k=2, m=3, threshold=2.0)
    t = t.observe([1, 2], [3.0, 1.0])
    assert t.flagged() == frozenset()
    t = t.observe([1, 3], [2.5, 0.9])
    assert t.flagged() == frozenset({1})
    t = t.observe([1], [1.0]).observe([1], [1.0])  # the two suspicious rounds slide out of m = 3
    assert t.flagged() == frozenset()
    assert t.history[1] == (True, False, False)


def test_tracker_is_a_value() -> None:
    t0 = SuspectTracker(k=1, m=1)
    t1 = t0.observe([5], [9.0])
    assert t0.flagged() == frozenset()
    assert t1.flagged() == frozenset({5})
    with pytest.raises(ValueError, match="k <= m"):
        SuspectTracker(k=4, m=3)
    with pytest.raises(ValueError, match="twice"):
        t0.observe([1, 1], [1.0, 1.0])


def test_over_rounds_the_tracker_finds_the_sign_flippers() -> None:
    t = SuspectTracker(k=3, m=5, threshold=2.0)
    for r in range(5):
        x = round_updates(r)
        t = t.observe(list(range(20)), distance_scores(x, Median()(x)))
    assert t.flagged() == frozenset({0, 1, 2, 3})
