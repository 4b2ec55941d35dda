"""Partial model sharing in rounds: a seeded mask per round, half the uplink, the rest of the model held."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from fakes import FOUR_EXAMPLES, FlatAdapter, kept_stage

from fedcore.client import ClientApp, ClientState
from fedcore.config import FLConfig
from fedcore.partial import Mask, parse_partial
from fedcore.protocol import Reply, Task
from fedcore.sim import simulate
from fedcore.sim.workers import build_model, load_data
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame, mask_from_bytes, mask_to_bytes

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


@pytest.mark.parametrize("changes", [{"strategy": "fedavgm"}, {"powersgd": 2}], ids=["fedavgm", "powersgd"])
def test_coordinates_outside_the_mask_keep_their_weights(changes: dict[str, object]) -> None:
    # FedAvgM's momentum would move every coordinate, and PowerSGD factors the whole zero-filled matrix;
    # partial sharing holds the unshared ones still.
    config = replace(TINY, partial="random:0.5", **changes)
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
    ],
)
def test_config_rejects_bad_partial_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TINY, **changes)


def step_adapter(step: np.ndarray) -> FlatAdapter:
    """A fake model whose training adds one fixed step to the weights, so the client's delta is known."""
    return FlatAdapter(step.size, lambda w, config, control: (w + step, 1))


def _share(
    config: FLConfig, mask: Mask, step: np.ndarray, residual: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """One client round under `mask`: (what the server rebuilds, on the full vector; the new residual)."""
    app = ClientApp(config, lambda cid: FOUR_EXAMPLES, adapter=step_adapter(step))
    if residual is not None:  # what error feedback kept from this client's last round
        app.store.put(0, ClientState(stages={"residual": residual}))
    weights = np.zeros_like(step)
    task = Task(
        round=0,
        client_id=0,
        model_version=0,
        model=encode_frame(None, weights, 0),
        mask=mask_to_bytes(mask),
        settings={"train_seed": 1, "codec_seed": 2},
    )
    reply = app.handle(task)
    assert isinstance(reply, Reply)
    server_view = UplinkContext(app.adapter.layout, mask=mask)
    delivered = UplinkChain.from_config(config).decode(reply.payloads[0], server_view)
    assert isinstance(delivered, np.ndarray)
    return delivered, app.store.get(0).stages.get("residual")


def test_error_feedback_keeps_everything_the_mask_and_codec_held_back() -> None:
    step = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    old = np.full(64, 0.125, dtype=np.float32)
    owed = step + old
    mask = Mask.seeded(64, 0.5, seed=3)
    shared = mask.to_bool()
    partial = FLConfig(partial="random:0.5")
    delivered, residual = _share(replace(partial, codec="quant:4", error_feedback=True), mask, step, old)
    assert residual is not None
    np.testing.assert_allclose(delivered + residual, owed, atol=1e-6)
    np.testing.assert_array_equal(residual[~shared], owed[~shared])  # unshared: carried over whole
    assert np.abs(residual[shared]).max() > 0  # shared: what 4-bit values lost
    delivered, residual = _share(replace(partial, error_feedback=True), mask, step, old)
    assert residual is not None
    np.testing.assert_array_equal(delivered[shared], owed[shared])  # a raw share arrives whole
    np.testing.assert_array_equal(residual[shared], 0.0)
    np.testing.assert_array_equal(residual[~shared], owed[~shared])
    delivered, residual = _share(partial, mask, step, None)
    assert residual is None  # without error feedback nothing is owed
    np.testing.assert_array_equal(delivered[shared], step[shared])
    np.testing.assert_array_equal(delivered[~shared], 0.0)


def test_error_feedback_with_partial_sharing_needs_no_codec() -> None:
    config = replace(TINY, rounds=4, partial="random:0.5", error_feedback=True)
    result = simulate(config)
    plain = simulate(replace(config, error_feedback=False))
    assert not kept_stage(plain.clients, "residual")
    last = result.records[-1]
    layout = build_model(config, load_data(config)).layout
    shared = parse_partial("random:0.5", config.seed).select(len(result.records) - 1, result.weights, layout)
    for cid in last.clients:
        residual = kept_stage(result.clients, "residual")[cid]
        np.testing.assert_array_equal(residual[shared.to_bool()], 0.0)
        assert np.mean(residual[~shared.to_bool()] != 0.0) > 0.5
    assert not np.array_equal(result.weights, plain.weights)  # clients that return send what they owed


def test_a_task_carries_a_seeded_mask_as_its_seed_and_any_other_as_its_bitmap() -> None:
    seeded = Mask.seeded(1000, 0.3, seed=7)
    explicit = Mask.from_bool(np.arange(13) % 3 == 0)
    for mask in (seeded, explicit):
        back = mask_from_bytes(mask_to_bytes(mask))
        np.testing.assert_array_equal(back.to_bool(), mask.to_bool())
        assert back.is_seeded == mask.is_seeded
    assert len(mask_to_bytes(seeded)) < 32  # nothing of the size of the model travels
    assert len(mask_to_bytes(explicit)) == 9 + len(explicit.to_bitmap())
    for malformed in (b"", b"S", mask_to_bytes(seeded)[:-1], b"X" + mask_to_bytes(explicit)[1:]):
        with pytest.raises(ValueError, match="malformed mask descriptor"):
            mask_from_bytes(malformed)
    with pytest.raises(ValueError, match="bitmap"):
        mask_from_bytes(mask_to_bytes(explicit)[:-1])  # the bitmap is shorter than its size says
