"""Client selection: seeded, loss-aware where promised, availability and dropout as users expect."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.selection import (
    AvailabilityModel,
    InsufficientClientsError,
    PerformanceSelector,
    PowerOfChoiceSelector,
    RandomSelector,
    make_selector,
    select_round,
)

IDS = np.arange(20, dtype=np.int64)


@pytest.mark.parametrize("name", ["random", "power-of-choice", "performance", "availability"])
def test_selection_is_deterministic_per_seed_and_round(name: str) -> None:
    losses = {i: float(i % 7) for i in range(0, 20, 2)}
    kwargs = dict(num_clients=20, per_round=5, losses=losses, dropout_rate=0.2)
    avail = AvailabilityModel(seed=3) if name == "availability" else None
    a = select_round(make_selector(name), seed=3, round_num=4, availability=avail, **kwargs)  # type: ignore[arg-type]
    b = select_round(make_selector(name), seed=3, round_num=4, availability=avail, **kwargs)  # type: ignore[arg-type]
    c = select_round(make_selector(name), seed=3, round_num=5, availability=avail, **kwargs)  # type: ignore[arg-type]
    for x, y in zip(vars(a).values(), vars(b).values(), strict=True):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.selected, c.selected)
    assert len(set(a.selected.tolist())) == a.selected.size <= 5


def test_random_selector_covers_everyone_over_rounds() -> None:
    seen: set[int] = set()
    for r in range(40):
        seen.update(RandomSelector().select(np.random.default_rng(r), IDS, 5, {}).tolist())
    assert seen == set(range(20))


def test_power_of_choice_picks_highest_loss_candidates() -> None:
    losses = {i: float(i) for i in range(20)}
    chosen = PowerOfChoiceSelector(candidates=20).select(np.random.default_rng(0), IDS, 3, losses)
    assert chosen.tolist() == [17, 18, 19]
    # With d = k there is no choice: it is plain random sampling of k candidates.
    some = PowerOfChoiceSelector(candidates=3).select(np.random.default_rng(0), IDS, 3, losses)
    assert some.size == 3


def test_power_of_choice_explores_unseen_clients_first() -> None:
    losses = {i: 100.0 for i in range(10)}
    chosen = PowerOfChoiceSelector(candidates=20).select(np.random.default_rng(0), IDS, 10, losses)
    assert chosen.tolist() == list(range(10, 20))


def test_performance_selector_favours_high_loss() -> None:
    losses = {i: (10.0 if i < 5 else 0.1) for i in range(20)}
    counts = np.zeros(20)
    for r in range(200):
        counts[PerformanceSelector().select(np.random.default_rng(r), IDS, 3, losses)] += 1
    assert counts[:5].mean() > 5 * counts[5:].mean()


def test_availability_model_skips_weak_devices() -> None:
    model = AvailabilityModel(seed=1, min_battery=20.0, min_bandwidth_mbps=1.0)
    cond = model.conditions(round_num=2, num_clients=500)
    mask = model.available(2, 500)
    np.testing.assert_array_equal(mask, (cond.battery >= 20.0) & (cond.bandwidth_mbps >= 1.0))
    assert 0.3 < mask.mean() < 0.95  # some, not all, devices sit out
    assert not np.array_equal(mask, model.available(3, 500))  # conditions change per round
    sel = select_round(
        RandomSelector(), seed=1, round_num=2, num_clients=500, per_round=50, losses={}, availability=model
    )
    assert mask[sel.selected].all()
    assert sel.unavailable == int((~mask).sum())


def test_dropout_30_percent_keeps_the_rest() -> None:
    total = dropped = 0
    for r in range(50):
        sel = select_round(
            RandomSelector(), seed=0, round_num=r, num_clients=100, per_round=10, losses={}, dropout_rate=0.3
        )
        assert sorted(sel.answered.tolist() + sel.dropped.tolist()) == sel.selected.tolist()
        total += sel.selected.size
        dropped += sel.dropped.size
    assert 0.2 < dropped / total < 0.4


def test_min_clients_violation_raises() -> None:
    # Seed 0, round 0 at 50 % dropout leaves fewer than all 10 selected clients.
    with pytest.raises(InsufficientClientsError, match="min_clients is 10"):
        select_round(
            RandomSelector(),
            seed=0,
            round_num=0,
            num_clients=100,
            per_round=10,
            losses={},
            dropout_rate=0.5,
            min_clients=10,
        )


def test_unknown_selection_name() -> None:
    with pytest.raises(ValueError, match="unknown selection"):
        make_selector("oort")
