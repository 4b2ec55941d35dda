"""Personalization inside the rounds: FedRep's local head and Ditto's personal model, kept per client."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fakes import kept_stage, raw_frame_nbytes

from fedcore.backends.base import TrainConfig
from fedcore.cli import main
from fedcore.client import ClientApp, ClientState
from fedcore.config import FLConfig
from fedcore.personalize import DittoRounds, make_local_head
from fedcore.personalize.spec import PersonalizeSpec
from fedcore.protocol import Reply, Task
from fedcore.records import without_timing
from fedcore.seeds import CODEC_SEED, PERSONALIZE_SEED, TRAIN_SEED, derive_seed
from fedcore.sim import simulate
from fedcore.sim.personal import kept_heads, kept_personal
from fedcore.sim.workers import build_model, load_data
from fedcore.uplink import encode_frame, mask_to_bytes

pytest.importorskip("fedcodec")

# Every client takes part in every round, so round 2 starts from what round 1 left on each client.
ALL_IN = FLConfig(clients=6, per_round=6, rounds=1, local_epochs=1, batch_size=8, lr=0.1, workers=0, seed=3)
SKEWED = FLConfig(
    clients=10, per_round=5, rounds=4, local_epochs=2, partition="dirichlet:0.1", workers=0, seed=1
)


def _train(config: FLConfig) -> TrainConfig:
    return TrainConfig(epochs=config.local_epochs, lr=config.lr, batch_size=config.batch_size)


def test_a_clients_head_after_one_round_is_the_head_it_starts_the_next_with() -> None:
    config = replace(ALL_IN, local_head=True)
    first = simulate(config)
    assert without_timing(first.summary) == without_timing(simulate(config).summary)
    second = simulate(replace(config, rounds=2))
    data = load_data(config)
    adapter = build_model(config, data)
    local = make_local_head(None, config.local_epochs, adapter.layout)
    cid = 2

    def round_two(head: np.ndarray | None) -> np.ndarray:
        app = ClientApp(config, lambda c: data.client(c).train, adapter=adapter)
        app.store.put(cid, ClientState(head=head))
        task = Task(
            round=1,
            client_id=cid,
            model_version=1,
            model=encode_frame(None, first.weights, 0),
            mask=mask_to_bytes(local.body),  # only the body is shared
            settings={
                "train_seed": derive_seed(config.seed, 1, cid, TRAIN_SEED),
                "codec_seed": derive_seed(config.seed, 1, cid, CODEC_SEED),
            },
        )
        assert isinstance(app.handle(task), Reply)
        kept = app.store.get(cid).head
        assert kept is not None
        return kept

    heads = kept_heads(second.clients)
    np.testing.assert_array_equal(round_two(kept_heads(first.clients)[cid]), heads[cid])
    assert not np.array_equal(round_two(None), heads[cid])
    assert sorted(heads) == list(range(config.clients))


def test_the_head_never_leaves_the_client() -> None:
    config = replace(ALL_IN, rounds=2, local_head=True)
    result = simulate(config)
    initial = build_model(config, load_data(config)).get_weights()
    head = make_local_head(None, 1, build_model(config, load_data(config)).layout).head
    body = int((~head).sum())
    for record in result.records:
        assert record.uplink_bytes == raw_frame_nbytes(body) * len(record.clients)
        assert record.downlink_bytes == 4 * body * record.selected
    assert result.summary["uplink_ratio"] == pytest.approx(4 * head.size / raw_frame_nbytes(body))
    np.testing.assert_array_equal(result.weights[head], initial[head])  # the server never trains a head
    assert not np.array_equal(result.weights[~head], initial[~head])
    own = kept_heads(result.clients)[0]
    assert not np.array_equal(own, initial[head])


def test_a_local_head_goes_through_the_codec_and_error_feedback() -> None:
    config = replace(ALL_IN, rounds=2, local_head=True, codec="quant:8", error_feedback=True)
    result = simulate(config)
    head = make_local_head(None, 1, build_model(config, load_data(config)).layout).head
    assert result.summary["uplink_ratio"] > 3.9 * head.size / (~head).sum()
    residuals = kept_stage(result.clients, "residual")
    assert sorted(residuals) == list(range(config.clients))
    for residual in residuals.values():
        assert not residual[head].any()  # nothing of the head is owed to the server
        assert residual[~head].any()


def test_ditto_keeps_its_personal_model_across_rounds_and_never_uploads_it() -> None:
    config = replace(ALL_IN, personalize="ditto:0.5", ditto_rounds=True)
    # Ditto's clients train one at a time, so the plain run does too (batched training rounds differently).
    plain = simulate(replace(config, rounds=2, personalize=None, ditto_rounds=False, vectorize=False))
    first = simulate(config)
    assert without_timing(first.summary) == without_timing(simulate(config).summary)
    second = simulate(replace(config, rounds=2))
    # The personal step changes nothing the server sees.
    np.testing.assert_array_equal(second.weights, plain.weights)
    assert [r.uplink_bytes for r in second.records] == [r.uplink_bytes for r in plain.records]
    data = load_data(config)
    adapter = build_model(config, data)
    cid = 4
    train = data.client(cid).train
    seed = derive_seed(config.seed, 1, cid, PERSONALIZE_SEED)
    step = replace(_train(config), seed=seed)

    def round_two(personal: np.ndarray | None) -> np.ndarray:
        return DittoRounds(0.5).update(adapter, train.x, train.y, personal, first.weights, step)

    kept = kept_personal(first.clients)[cid]
    personal = kept_personal(second.clients)
    np.testing.assert_array_equal(round_two(kept), personal[cid])
    assert not np.array_equal(round_two(None), personal[cid])
    assert not np.array_equal(kept, first.weights)


def test_ditto_pulls_the_personal_model_toward_the_received_weights() -> None:
    config = replace(ALL_IN, rounds=2, local_epochs=3)
    data = load_data(config)
    adapter = build_model(config, data)
    start = adapter.get_weights()
    train = data.client(0).train
    distance = {}
    for lam in (0.01, 5.0):
        personal = DittoRounds(lam).update(adapter, train.x, train.y, None, start, _train(config))
        distance[lam] = float(np.linalg.norm(personal - start))
    assert distance[5.0] < 0.9 * distance[0.01]


@pytest.mark.parametrize(
    "changes",
    [{"local_head": True}, {"personalize": "ditto:0.1", "ditto_rounds": True}],
    ids=["local-head", "ditto-rounds"],
)
def test_in_round_personalization_beats_the_global_model_on_skewed_clients(
    changes: dict[str, Any],
) -> None:
    global_model = simulate(replace(SKEWED, personalize="finetune:1")).summary["personalization"]
    result = simulate(replace(SKEWED, **changes))
    personal = result.summary["personalization"]
    assert personal["clients"] + personal["skipped"] == SKEWED.clients
    assert personal["in_rounds"] >= 1
    assert personal["mean_after"] > global_model["mean_before"] + 0.2
    assert personal["mean_after"] > personal["mean_before"] + 0.2
    assert personal["worst_decile_after"] > global_model["worst_decile_before"]
    accuracies = [r.personal_accuracy for r in result.records]
    assert all(a is not None for a in accuracies)
    assert result.summary["final_personal_accuracy"] == accuracies[-1]


@pytest.mark.parametrize(
    "changes",
    [{"local_head": True}, {"personalize": "ditto:0.1", "ditto_rounds": True}],
    ids=["local-head", "ditto-rounds"],
)
def test_same_seed_same_run_also_in_worker_processes(changes: dict[str, Any]) -> None:
    config = replace(SKEWED, rounds=2, local_epochs=1, **changes)
    inline = simulate(config)
    first, second = simulate(replace(config, workers=2)), simulate(replace(config, workers=2))
    assert without_timing(first.summary) == without_timing(second.summary)
    assert first.personalization == second.personalization
    kept = kept_heads(first.clients) or kept_personal(first.clients)
    assert kept
    inline_kept = kept_heads(inline.clients) or kept_personal(inline.clients)
    assert sorted(kept) == sorted(inline_kept)
    for cid, vector in kept.items():  # two workers fold in another grouping: only rounding may differ
        np.testing.assert_allclose(vector, inline_kept[cid], atol=1e-4)


def test_local_head_epochs_come_from_the_fedrep_spec() -> None:
    layout = build_model(ALL_IN, load_data(ALL_IN)).layout
    assert (make_local_head(None, 4, layout).head_epochs, make_local_head(None, 4, layout).body_epochs) == (
        4,
        4,
    )
    three_one = make_local_head(PersonalizeSpec.parse("fedrep:3,1"), 4, layout)
    assert (three_one.head_epochs, three_one.body_epochs) == (3, 1)
    three = make_local_head(PersonalizeSpec.parse("fedrep:3"), 4, layout)
    assert (three.head_epochs, three.body_epochs) == (3, 4)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"local_head": True, "stragglers": 0.5}, "drop stragglers"),
        ({"local_head": True, "momentum": 0.9}, "drop momentum"),
        ({"local_head": True, "strategy": "scaffold"}, "drop strategy scaffold"),
        ({"local_head": True, "personalize": "finetune:2"}, "only be fedrep"),
        ({"local_head": True, "personalize": "ditto:0.1", "ditto_rounds": True}, "only be fedrep"),
        ({"ditto_rounds": True}, "needs personalize=ditto"),
        ({"ditto_rounds": True, "personalize": "fedrep"}, "needs personalize=ditto"),
        ({"ditto_rounds": True, "personalize": "ditto:0.1", "backend": "sklearn"}, "torch or mlx"),
    ],
)
def test_config_refuses_combinations_that_make_no_sense(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(ALL_IN, **changes)


@pytest.mark.parametrize(
    "changes",
    [{"partial": "random:0.5"}, {"powersgd": 2}, {"strategy": "fedprox:0.1"}],
    ids=["partial", "powersgd", "fedprox"],
)
def test_a_local_head_composes_with_partial_sharing_powersgd_and_fedprox(changes: dict[str, Any]) -> None:
    config = replace(SKEWED, local_head=True, rounds=3, **changes)
    result = simulate(config)
    model = build_model(config, load_data(config))
    head = make_local_head(None, config.local_epochs, model.layout).head
    np.testing.assert_array_equal(result.weights[head], model.get_weights()[head])  # still no head goes up
    accuracies = [r.personal_accuracy for r in result.records]
    assert all(a is not None and np.isfinite(a) for a in accuracies)
    assert result.summary["personalization"]["mean_after"] > 0.3  # ten classes: chance is 0.1


def test_cli_runs_a_local_head_and_refuses_ditto_rounds_without_ditto(tmp_path: Path) -> None:
    flags = ["--clients", "6", "--per-round", "3", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]
    assert main(["sim", *flags, "--local-head", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["local_head"] is True
    assert summary["final_personal_accuracy"] is not None
    assert summary["personalization"]["method"] == "fedrep:1,1 local head"
    rows = (tmp_path / "run" / "personalization.jsonl").read_text().splitlines()
    assert len(rows) == summary["personalization"]["clients"]
    assert main(["sim", *flags, "--ditto-rounds", "--out", str(tmp_path / "bad")]) == 2
