"""`fedcore` end to end without torch: what `make test-oldest-python` runs under Python 3.10."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import fedcore
from fedcore.cli import main

SKLEARN_RUN = ["--backend", "sklearn", "--model", "logreg", "--clients", "6", "--per-round", "2"]
SKLEARN_RUN += ["--rounds", "2", "--local-epochs", "1", "--workers", "0"]


def test_sim_then_report(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["sim", *SKLEARN_RUN, "--codec", "topk:0.1+quant:8", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["rounds"]) == ("complete", 2)
    assert summary["uplink_ratio"] > 5
    assert main(["report", str(out)]) == 0


def test_toml_and_yaml_configs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.toml").write_text('rounds = 3\nper-round = 2\ncodec = "quant:8"\n')
    (tmp_path / "a.yaml").write_text("rounds: 3\nper-round: 2\ncodec: quant:8\n")
    printed = []
    for name in ("a.toml", "a.yaml"):
        assert main(["sim", "--config", str(tmp_path / name), "--print-config"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]
    assert "rounds = 3" in printed[0]


def test_bad_input_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", *SKLEARN_RUN, "--codec", "bogus", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("fedcore: error: --codec bogus:")
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"fedcore {fedcore.__version__}"
