"""Partial model sharing in rounds: a seeded mask per round, half the uplink, the rest of the model held."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.partial import parse_partial
from fedcore.sim import simulate
from fedcore.sim.workers import build_model, load_data

pytest.importorskip("fedcodec")

TINY = FLConfig(clients=12, per_round=4, rounds=8, local_epochs=5, batch_size=8, lr=0.1, workers=0, seed=5)


def test_random_half_mask_halves_the_uplink_and_still_learns() -> None:
    full = simulate(TINY)
    half = simulate(replace(TINY, partial="random:0.5"))
    assert half.summary["uplink_bytes"] <= 0.51 * full.summary["uplink_bytes"]
    assert half.summary["partial"] == "random:0.5"
    assert half.summary["mean_mask_fraction"] == pytest.approx(0.5, abs=0.02)
    assert all(r.mask_fraction == pytest.approx(0.5, abs=0.03) for r in half.records)
    accuracies = [r.accuracy for r in half.records]
    assert accuracies[-1] > accuracies[0] + 0.2
    assert accuracies[-1] > 0.4  # ten classes: chance is 0.1


def test_masked_values_go_through_the_uplink_codec() -> None:
    result = simulate(replace(TINY, rounds=2, partial="random:0.5", codec="quant:8"))
    assert result.summary["uplink_ratio"] > 7.5  # 2x from the mask, ~4x from 8-bit values


def test_coordinates_outside_the_mask_keep_their_weights() -> None:
    # FedAvgM's momentum would move every coordinate; partial sharing holds the unshared ones still.
    config = replace(TINY, partial="random:0.5", strategy="fedavgm")
    after_one = simulate(replace(config, rounds=1)).weights
    after_two = simulate(replace(config, rounds=2)).weights
    layout = build_model(config, load_data(config)).layout
    shared = parse_partial("random:0.5", config.seed).select(1, after_one, layout).to_bool()
    np.testing.assert_array_equal(after_two[~shared], after_one[~shared])
    assert np.mean(after_two[shared] != after_one[shared]) > 0.5


def test_non_seeded_masks_send_their_bitmap_down() -> None:
    result = simulate(replace(TINY, rounds=2, partial="structured:0.5"))
    size = result.summary["model_size"]
    bitmap = -(-size // 8)
    for record in result.records:
        assert record.downlink_bytes == (4 * size + bitmap) * record.selected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"partial": "lottery:0.5"}, "partial spec"),
        ({"partial": "random:0"}, "fraction"),
        ({"partial": "random:0.5", "codec": "topk:0.1", "error_feedback": True}, "error_feedback"),
    ],
)
def test_config_rejects_bad_partial_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)
