"""`fedcore sim` / `fedcore report` end to end, and the TOML-then-flags configuration order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.config import FLConfig, load_config
from fedcore.records import without_timing

TINY_FLAGS = ["--clients", "10", "--per-round", "3", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]
ROUND_KEYS = {"round", "clients", "accuracy", "loss", "uplink_bytes", "downlink_bytes", "wall_s", "dropouts"}
SUMMARY_KEYS = {"final_accuracy", "uplink_bytes", "downlink_bytes", "uplink_ratio", "rounds", "wall_s"}


def test_sim_writes_rounds_and_summary_then_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["sim", *TINY_FLAGS, "--seed", "3", "--out", str(out)]) == 0
    lines = (out / "rounds.jsonl").read_text().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert all(set(r) >= ROUND_KEYS for r in records)
    assert [r["round"] for r in records] == [1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["rounds"] == 2
    assert summary["config"]["seed"] == 3
    assert main(["report", str(out)]) == 0
    assert (out / "report.png").stat().st_size > 1000


def test_toml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('rounds = 7\nlr = 1\nper-round = 4\nstrategy = "fednova"\n')
    config = load_config(path, {"rounds": 3, "seed": None})
    assert (config.rounds, config.lr, config.per_round, str(config.strategy)) == (3, 1.0, 4, "fednova")
    assert config.seed == FLConfig().seed


def test_cli_uses_config_file_and_flag_override(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    out = tmp_path / "out"
    path.write_text(
        f'rounds = 5\nclients = 10\nper_round = 3\nlocal_epochs = 1\nworkers = 0\nout = "{out}"\n'
    )
    assert main(["sim", "--config", str(path), "--rounds", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 1
    assert summary["config"]["clients"] == 10


@pytest.mark.parametrize(
    "flags",
    [
        ["--per-round", "200"],
        ["--strategy", "fedprox"],
        ["--partition", "dirichlet:-1"],
        ["--dataset", "cifar"],
        ["--dropout", "1.0"],
        ["--min-clients", "50"],
    ],
)
def test_invalid_flags_exit_2(flags: list[str], tmp_path: Path) -> None:
    assert main(["sim", *flags, "--out", str(tmp_path)]) == 2


def test_unknown_toml_key_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("roundz = 3\n")
    with pytest.raises(ValueError, match="roundz"):
        load_config(path)


def test_config_rejects_wrong_types() -> None:
    with pytest.raises(ValueError, match="rounds"):
        FLConfig(rounds="3")  # type: ignore[arg-type]


def test_report_without_run_exits_2(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2


def test_same_seed_same_summary_json_except_timing(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["sim", *TINY_FLAGS, "--dropout", "0.3", "--seed", "9", "--out", str(out)]) == 0
        runs.append(json.loads((out / "summary.json").read_text()))
    assert without_timing(runs[0]) == without_timing(runs[1])
    assert set(runs[0]) - set(without_timing(runs[0])) == {"wall_s", "timing"}


def test_partial_powersgd_and_downlink_flags_reach_the_records(tmp_path: Path) -> None:
    out = tmp_path / "partial"
    flags = ["--partial", "random:0.5", "--downlink-codec", "quant:8", "--out", str(out)]
    assert main(["sim", *TINY_FLAGS, *flags]) == 0
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert all(0.4 < r["mask_fraction"] < 0.6 for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["partial"], summary["powersgd_rank"]) == ("random:0.5", None)
    assert summary["downlink_ratio"] > 3.0
    path = tmp_path / "psgd.toml"
    path.write_text(f'powersgd = 2\nout = "{tmp_path / "psgd"}"\n')
    assert main(["sim", "--config", str(path), *TINY_FLAGS]) == 0
    assert json.loads((tmp_path / "psgd" / "summary.json").read_text())["powersgd_rank"] == 2
    assert main(["sim", *TINY_FLAGS, "--powersgd", "2", "--codec", "quant:8", "--out", str(out)]) == 2
