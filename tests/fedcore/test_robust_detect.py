"""fedcore.robust.detect: normalised suspicion scores and the SuspectTracker that pools them."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.robust import (
    Median,
    SuspectTracker,
    distance_scores,
    krum_scores,
    sign_disagreement,
    suspicion_scores,
)


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


def test_sign_disagreement_counts_the_others_consensus_coordinates_only() -> None:
    x = np.array(
        [
            [1, 2, 3, 0],
            [1, 1, 1, 1],
            [2, 1, -1, 1],
            [1, 3, 1, -1],
            [-1, -2, -3, 0],  # the first one flipped
        ],
        dtype=np.float32,
    )
    # Update 4's others agree (3 of 4 or more) on columns 0-2, and it points back on all three;
    # update 2's others agree on columns 0-2 too, and it points back on column 2 only.
    np.testing.assert_allclose(sign_disagreement(x), [0.0, 0.0, 1 / 3, 1 / 3, 1.0])


def test_sign_disagreement_reads_zeros_and_no_consensus_as_a_coin() -> None:
    x = np.array([[1, 1], [1, 1], [1, 1], [0, 0]], dtype=np.float32)
    np.testing.assert_allclose(sign_disagreement(x), [0.0, 0.0, 0.0, 0.5])
    split = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], dtype=np.float32)  # the others never agree
    np.testing.assert_allclose(sign_disagreement(split), [0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="K >= 2"):
        sign_disagreement(x[:1])
    with pytest.raises(ValueError, match="agree"):
        sign_disagreement(x, agree=0.0)


def test_sign_disagreement_sees_a_flip_that_distance_misses() -> None:
    # Honest updates share a weak direction under strong own noise: a flipped one is no farther away.
    rng = np.random.default_rng(1)
    d = 2000
    shared = rng.standard_normal(d)
    x = (0.4 * shared + rng.standard_normal((10, d))).astype(np.float32)
    x[0] = -x[0]
    dist = distance_scores(x, Median()(x))
    disagree = sign_disagreement(x)
    assert dist[0] < 1.5  # within the honest spread by distance
    assert disagree[0] > 0.5 > disagree[1:].max()


def test_suspicion_scores_flag_far_and_backwards_updates_only() -> None:
    rng = np.random.default_rng(2)
    d = 2000
    shared = rng.standard_normal(d)
    x = (shared + 0.5 * rng.standard_normal((10, d))).astype(np.float32)
    x[0] = -x[0]  # sign flip
    x[1] = 30.0 * rng.standard_normal(d)  # noise, far away
    round_scores = suspicion_scores(x)
    s = round_scores.scores
    assert s[0] > 1.0  # points back
    assert s[1] > 1.0  # far
    assert s[2:].max() < 1.0
    assert s.max() <= 2.0
    assert round_scores.weight > 0.1  # the honest updates side with the consensus: a telling round
    alone = suspicion_scores(x[:1])
    np.testing.assert_array_equal(alone.scores, np.zeros(1))
    assert alone.weight == 0.0
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
    assert t.history[1] == ((0.6, 1.0), (0.5, 1.0), (0.5, 1.0))


def test_tracker_weighs_each_round_by_its_evidence() -> None:
    t = SuspectTracker().observe([7], [1.8], weight=0.09).observe([7], [0.6], weight=0.01)
    assert t.mean_score(7) == pytest.approx((1.8 * 0.09 + 0.6 * 0.01) / 0.1)  # 1.68: the telling round wins
    assert t.flagged() == frozenset({7})
    silent = SuspectTracker().observe([8], [1.9], weight=0.0)  # a round that says nothing flags nobody
    assert silent.mean_score(8) is None
    assert silent.flagged() == frozenset()
    with pytest.raises(ValueError, match="weight"):
        t.observe([1], [1.0], weight=-1.0)


def test_a_tracker_from_an_old_checkpoint_counts_each_bare_score_once() -> None:
    old = SuspectTracker.__new__(SuspectTracker)
    old.__setstate__({"threshold": 1.05, "m": 10, "min_rounds": 1, "history": {3: (1.2, 1.0)}})
    assert old.history[3] == ((1.2, 1.0), (1.0, 1.0))
    assert old.flagged() == frozenset({3})


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
        round_scores = suspicion_scores(x)
        t = t.observe(list(range(20)), round_scores.scores, round_scores.weight)
    assert t.flagged() == frozenset({0, 1, 2, 3})
