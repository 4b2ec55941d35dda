"""Every spec is parsed once into a frozen type; its text exists only at the edges and reads back equal."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fedcore.adaptive import CodecLadder
from fedcore.compression import CodecSpec
from fedcore.config import SPEC_FIELDS, FLConfig, load_config
from fedcore.data.spec import DatasetSpec, PartitionSpec
from fedcore.partial import PartialSpec
from fedcore.personalize.spec import PersonalizeSpec
from fedcore.privacy import DPSpec
from fedcore.robust import Robust
from fedcore.robust.attacks import parse as parse_attack
from fedcore.robust.spec import AggregatorSpec
from fedcore.strategies import StrategySpec

ROUND_TRIPS: list[tuple[Callable[[str], object], str]] = [
    (DatasetSpec.parse, "digits"),
    (DatasetSpec.parse, "mnist1d"),
    (DatasetSpec.parse, "mnist1d:8000"),
    (DatasetSpec.parse, "synthetic:0.5,1"),
    (DatasetSpec.parse, "npz:data/my clients.npz"),
    (DatasetSpec.parse, "leaf:femnist/train.json"),
    (PartitionSpec.parse, "iid"),
    (PartitionSpec.parse, "dirichlet:0.1"),
    (PartitionSpec.parse, "shards:2"),
    (StrategySpec.parse, "fedyogi"),
    (StrategySpec.parse, "fedprox:0.01"),
    (CodecSpec.parse, "randk:0.25+eden:1"),
    (CodecSpec.parse, "none"),
    (CodecLadder.parse, "none,quant:8,eden:1"),
    (PartialSpec.parse, "random:0.5"),
    (PartialSpec.parse, "topk:0.1,0.25"),
    (PartialSpec.parse, "fixed:masks/first_layer.npy"),
    (PersonalizeSpec.parse, "finetune:5"),
    (PersonalizeSpec.parse, "fedrep"),
    (PersonalizeSpec.parse, "fedrep:3,1"),
    (PersonalizeSpec.parse, "ditto:0.1"),
    (AggregatorSpec.parse, "mean"),
    (AggregatorSpec.parse, "bucket:2+krum:1"),
    (DPSpec.parse, "central:1"),
    (DPSpec.parse, "local:1,1.1"),
    (parse_attack, "alie:1.5"),
    (parse_attack, "backdoor:0"),
]


@pytest.mark.parametrize(("parse", "text"), ROUND_TRIPS)
def test_a_spec_prints_text_that_parses_back_to_the_same_spec(parse: Callable[[str], object], text: str) -> None:
    spec = parse(text)
    assert parse(str(spec)) == spec
    assert hash(spec) == hash(parse(str(spec)))  # frozen: usable as a key, safe to share across workers


def test_numbers_print_as_users_write_them() -> None:
    assert str(PartitionSpec.parse("dirichlet:0.5")) == "dirichlet:0.5"
    assert str(StrategySpec.parse("fedprox:1")) == "fedprox:1"
    assert str(DatasetSpec.parse("synthetic:1,1")) == "synthetic:1,1"
    assert str(CodecSpec.parse(" NONE ")) == "none"


def test_a_codec_spec_names_its_stages_in_order() -> None:
    assert CodecSpec.parse("topk:0.1+quant:8").stages == (("topk", "0.1"), ("quant", "8"))
    assert CodecSpec.parse("randk:0.25").stages == (("randk", "0.25"),)


def test_the_config_holds_parsed_specs_and_its_dict_holds_their_text() -> None:
    config = FLConfig(
        dataset="mnist1d:4000",  # type: ignore[arg-type]  # text is accepted at the edge
        strategy="fedprox:0.01",  # type: ignore[arg-type]
        codec="topk:0.05+quant:8",  # type: ignore[arg-type]
        error_feedback=True,
        aggregator="trimmed:0.2",  # type: ignore[arg-type]
    )
    assert config.dataset == DatasetSpec("mnist1d", samples=4000)
    assert config.strategy == StrategySpec("fedprox", 0.01)
    assert config.codec == CodecSpec("topk:0.05+quant:8")
    assert isinstance(config.aggregator.robust, Robust)
    settings = config.to_dict()
    assert all(isinstance(settings[name], str | None) for name in SPEC_FIELDS)
    assert settings["aggregator"] == "trimmed:0.2"
    assert FLConfig(**settings) == config  # the text round trips through summary.json and --print-config


def test_the_defaults_read_as_the_cli_documents_them() -> None:
    settings = FLConfig().to_dict()
    assert (settings["dataset"], settings["partition"], settings["strategy"], settings["aggregator"]) == (
        "digits",
        "dirichlet:0.5",
        "fedavg",
        "mean",
    )


def test_a_config_file_and_a_typed_config_agree(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "run.toml"
    path.write_text('codec = "eden:1"\npartial = "random:0.5"\nrounds = 3\n')
    typed = FLConfig(codec=CodecSpec("eden:1"), partial=PartialSpec("random", 0.5), rounds=3)
    assert load_config(path) == typed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "mnist1d:lots"}, "dataset must be"),
        ({"partition": "dirichlet:0"}, "partition must be"),
        ({"strategy": "fedprx"}, "unknown strategy"),
        ({"codec": "quant:99"}, "--codec quant:99: invalid parameter"),
        ({"codec": 8}, "codec must be a spec or its text"),
        ({"aggregator": "medain"}, "did you mean 'median'"),
    ],
)
def test_bad_spec_text_is_refused_when_the_config_is_made(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FLConfig(**changes)  # type: ignore[arg-type]
