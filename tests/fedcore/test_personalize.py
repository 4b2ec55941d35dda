"""Personalization: each method beats the global model on skewed clients; split, specs, determinism, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedcore.backends import TrainConfig, make_adapter
from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.data import FederatedData, build_federated
from fedcore.data.dataset import Dataset
from fedcore.data.federated import ClientData
from fedcore.personalize import (
    ditto,
    fedrep,
    finetune,
    head_mask,
    head_names,
    make_personalizer,
    parse_personalize,
    personalize_clients,
    worst_decile,
)
from fedcore.records import without_timing
from fedcore.sim import simulate

SKEWED = FLConfig(
    clients=10, per_round=5, rounds=3, local_epochs=2, partition="dirichlet:0.1", workers=0, seed=1
)
LOCAL = TrainConfig(epochs=3, lr=0.1, batch_size=8, seed=4)


@pytest.fixture(scope="module")
def data() -> FederatedData:
    return build_federated("digits", 10, "dirichlet:0.1", seed=1)


@pytest.mark.parametrize("spec", ["finetune:5", "fedrep", "fedrep:3,1", "ditto:0.1"])
def test_each_method_beats_the_global_model_on_skewed_clients(spec: str) -> None:
    result = simulate(replace(SKEWED, personalize=spec))
    summary = result.summary["personalization"]
    assert summary["method"] == spec
    assert summary["clients"] + summary["skipped"] == SKEWED.clients
    assert summary["mean_after"] > summary["mean_before"] + 0.2
    assert summary["worst_decile_after"] > summary["worst_decile_before"]
    assert result.personalization is not None
    assert [s.client_id for s in result.personalization.scores] == list(range(SKEWED.clients))


def test_without_personalize_the_summary_says_none() -> None:
    result = simulate(replace(SKEWED, rounds=1))
    assert result.summary["personalization"] is None
    assert result.personalization is None


def test_same_seed_same_personalization() -> None:
    config = replace(SKEWED, rounds=2, personalize="fedrep:2,1")
    first, second = simulate(config), simulate(config)
    assert without_timing(first.summary) == without_timing(second.summary)
    assert first.personalization == second.personalization
    other = simulate(replace(config, seed=2))
    assert other.personalization != first.personalization


def test_head_is_the_last_layer_by_layout() -> None:
    torch_model = make_adapter("torch", "mlp", 64, 10, 0)
    assert head_names(torch_model.layout) == ("5.weight", "5.bias")
    sklearn_model = make_adapter("sklearn", "mlp", 64, 10, 0)
    assert head_names(sklearn_model.layout) == ("coefs.2", "intercepts.2")
    layout = torch_model.layout
    mask = head_mask(layout)
    assert mask.sum() == layout["5.weight"].size + layout["5.bias"].size
    assert mask[layout["5.weight"].offset :].all()
    assert not mask[: layout["5.weight"].offset].any()
    override = head_mask(layout, ["3.bias"])
    assert override.sum() == layout["3.bias"].size
    with pytest.raises(ValueError, match="not in the layout"):
        head_mask(layout, ["9.weight"])
    with pytest.raises(ValueError, match="at least one"):
        head_mask(layout, [])


def test_fedrep_trains_the_head_on_a_frozen_body(data: FederatedData) -> None:
    adapter = make_adapter("torch", "mlp", data.in_features, data.n_classes, 0)
    start = adapter.get_weights()
    head = head_mask(adapter.layout)
    train = data.client(0).train
    head_only = fedrep(adapter, train, start, LOCAL, head)
    np.testing.assert_array_equal(head_only[~head], start[~head])
    assert not np.array_equal(head_only[head], start[head])
    both = fedrep(adapter, train, start, LOCAL, head, body_epochs=1)
    np.testing.assert_array_equal(both[head], head_only[head])
    assert not np.array_equal(both[~head], start[~head])


def test_ditto_stays_closer_to_the_global_model_than_finetuning(data: FederatedData) -> None:
    adapter = make_adapter("torch", "mlp", data.in_features, data.n_classes, 0)
    start = adapter.get_weights()
    train = data.client(1).train
    free = finetune(adapter, train, start, LOCAL)
    pulled = ditto(adapter, train, start, LOCAL, lam=5.0)
    assert np.linalg.norm(pulled - start) < 0.9 * np.linalg.norm(free - start)


def test_clients_without_test_examples_are_skipped(data: FederatedData) -> None:
    empty = Dataset(np.zeros((0, data.in_features), np.float32), np.zeros(0, np.int64), data.n_classes)
    clients = (
        data.client(0),
        ClientData(1, data.client(1).train, empty),
        replace(data.client(2), client_id=2),
    )
    trimmed = FederatedData(data.name, clients, data.central_test)
    adapter = make_adapter("torch", "mlp", data.in_features, data.n_classes, 0)
    personalizer = make_personalizer(parse_personalize("finetune:1"), LOCAL)
    report = personalize_clients(
        adapter, trimmed, adapter.get_weights(), personalizer, "finetune:1", lambda c: c
    )
    assert [s.client_id for s in report.scores] == [0, 2]
    assert report.skipped == 1
    assert report.summary()["clients"] == 2


def test_worst_decile_is_the_mean_of_the_lowest_tenth() -> None:
    assert worst_decile([float(v) for v in range(20)]) == pytest.approx(0.5)
    assert worst_decile([0.9, 0.1, 0.5]) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no values"):
        worst_decile([])


@pytest.mark.parametrize(
    "spec",
    [
        "finetune",
        "finetune:0",
        "finetune:x",
        "fedrep:0",
        "fedrep:2,x",
        "ditto",
        "ditto:0",
        "ditto:-1",
        "ditto:a",
        "knn:3",
    ],
)
def test_bad_specs_raise(spec: str) -> None:
    with pytest.raises(ValueError, match="personaliz"):
        parse_personalize(spec)
    with pytest.raises(ValueError, match="personaliz"):
        FLConfig(personalize=spec)


def test_specs_parse_to_their_numbers() -> None:
    assert parse_personalize("finetune:5").epochs == 5
    assert parse_personalize("fedrep").epochs is None
    assert (parse_personalize("fedrep:3,2").epochs, parse_personalize("fedrep:3,2").body_epochs) == (3, 2)
    assert parse_personalize("ditto:0.1").lam == pytest.approx(0.1)


def test_cli_personalizes_a_compressed_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--clients", "10", "--per-round", "3", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]
    extra = ["--partition", "dirichlet:0.1", "--codec", "quant:8", "--personalize", "finetune:3"]
    assert main(["sim", *flags, *extra, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["uplink_ratio"] > 3.0
    personal = summary["personalization"]
    assert personal["method"] == "finetune:3"
    rows = [json.loads(line) for line in (out / "personalization.jsonl").read_text().splitlines()]
    assert len(rows) == personal["clients"]
    assert set(rows[0]) == {"client_id", "test_examples", "before", "after"}
    assert np.mean([r["after"] for r in rows]) == pytest.approx(personal["mean_after"])
    assert main(["sim", *flags, "--personalize", "ditto:0", "--out", str(tmp_path / "bad")]) == 2
