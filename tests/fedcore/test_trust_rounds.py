"""Secure aggregation and robust aggregation inside simulated rounds, through the protocol core."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.robust import SuspectTracker
from fedcore.sim import simulate
from fedcore.sim.attack import byzantine_clients

TINY = FLConfig(clients=20, per_round=6, rounds=3, local_epochs=2, workers=0, seed=4)


def test_a_secure_sum_trains_like_the_plain_sum() -> None:
    plain = simulate(TINY)
    secure = simulate(replace(TINY, secagg=True))
    np.testing.assert_allclose(secure.weights, plain.weights, atol=5e-3)  # 16-bit codes, three rounds
    for record in secure.records:
        assert record.secagg is not None
        assert set(record.secagg["secagg_client_seconds"]) == {"advertise", "share", "mask", "unmask"}
        assert record.secagg["secagg_dropped"] == []
        # ring elements of 16 + ceil(log2(6)) = 19 bits, bit-packed: under 4 bytes a parameter
        assert record.uplink_bytes < 4 * secure.summary["model_size"] * len(record.clients)


def test_secure_aggregation_with_seeded_random_k_sends_a_quarter() -> None:
    full = simulate(replace(TINY, secagg=True, rounds=1))
    quarter = simulate(replace(TINY, secagg=True, rounds=1, codec="randk:0.25"))
    assert quarter.records[0].uplink_bytes < 0.3 * full.records[0].uplink_bytes


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"codec": "quant:8"}, "only linear compression composes"),
        ({"strategy": "scaffold"}, "drop --strategy scaffold"),
        ({"secagg_bits": 24, "clients": 600, "per_round": 512}, "would wrap the 32-bit ring"),
        ({"secagg": False, "secagg_neighbors": 4}, "--secagg-neighbors needs --secagg"),
    ],
)
def test_a_secure_config_that_cannot_hold_is_refused(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **{"secagg": True, **flags})


def test_a_robust_aggregator_scores_every_client_every_round() -> None:
    config = replace(TINY, aggregator="trimmed:0.2", attack="gauss", byzantine=0.2)
    result = simulate(config)
    bad = byzantine_clients(config)
    assert len(bad) == 4
    for record in result.records:
        assert record.suspicion is not None
        assert sorted(int(c) for c in record.suspicion) == record.clients
        attackers = [record.suspicion[str(c)] for c in record.clients if c in bad]
        honest = [record.suspicion[str(c)] for c in record.clients if c not in bad]
        if attackers and honest:
            assert min(attackers) > 1.0  # noise stands far from the median
            assert min(attackers) > max(honest)
    assert result.summary["byzantine_clients"] == sorted(bad)


def test_flagged_clients_are_left_out_of_later_rounds() -> None:
    config = replace(
        TINY,
        rounds=10,
        per_round=8,
        aggregator="median",
        attack="gauss",
        byzantine=0.2,
        exclude_suspects=True,
    )
    result = simulate(config)
    bad = byzantine_clients(config)
    tracker = SuspectTracker()
    for record in result.records:  # replay the server's tracker: nobody flagged before a round is drawn in it
        assert not set(record.clients) & tracker.flagged()
        assert record.suspicion is not None
        assert record.suspicion_weight is not None
        tracker = tracker.observe(
            [int(c) for c in record.suspicion], list(record.suspicion.values()), record.suspicion_weight
        )
    assert sorted(tracker.flagged()) == result.summary["suspects"]
    assert set(result.summary["suspects"]) <= bad
    assert result.summary["detection"]["flagged_attackers"] >= 1
    assert result.summary["detection"]["false_positives"] == 0


def test_attacks_hurt_the_mean_and_a_robust_rule_holds() -> None:
    config = replace(TINY, rounds=6, clients=30, per_round=10)
    clean = simulate(config).summary["final_accuracy"]
    attacked = simulate(replace(config, attack="signflip:5", byzantine=0.2)).summary["final_accuracy"]
    defended = simulate(replace(config, attack="signflip:5", byzantine=0.2, aggregator="median")).summary[
        "final_accuracy"
    ]
    assert attacked < clean - 0.1
    assert defended > attacked + 0.1


def test_a_data_attack_poisons_only_the_byzantine_shards() -> None:
    result = simulate(replace(TINY, attack="backdoor:0,3", byzantine=0.2))
    assert all(r.backdoor_accuracy is not None and 0.0 <= r.backdoor_accuracy <= 1.0 for r in result.records)
    with pytest.raises(ValueError, match="needs --attack"):
        replace(TINY, byzantine=0.2)
    with pytest.raises(ValueError, match="drop --partial"):
        replace(TINY, attack="alie", byzantine=0.2, partial="random:0.5")
