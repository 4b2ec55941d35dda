"""Bad input is one line on stderr and exit code 2, naming the flag the user typed; no run folder is left."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fedcore.cli import main

TINY = ["--clients", "6", "--per-round", "2", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]


def _files(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "broken.toml").write_text("rounds = [\n")
    (tmp_path / "typo.toml").write_text("roundz = 3\n")
    (tmp_path / "typo.yaml").write_text("per-rund: 3\n")
    (tmp_path / "broken.yaml").write_text("rounds: [1\n")
    (tmp_path / "junk.npz").write_text("junk\n")
    (tmp_path / "junk.json").write_text("{ nope\n")
    (tmp_path / "no_clients").mkdir()
    (tmp_path / "corrupt_clients").mkdir()
    for cid in range(6):
        np.savez(tmp_path / "corrupt_clients" / f"client-{cid}.npz", x=np.ones((4, 3)), y=np.arange(4))
    (tmp_path / "corrupt_clients" / "client-3.npz").write_text("junk\n")


# (flags, what stderr must contain); every case exits 2.
BAD_INPUTS: list[tuple[list[str], str]] = [
    (["--codec", "bogus"], "--codec bogus: invalid parameter: unknown codec 'bogus'"),
    (["--codec", "topk:2"], "--codec topk:2: invalid parameter: fraction must be in (0, 1]"),
    (["--downlink-codec", "quant:99"], "--downlink-codec quant:99: invalid parameter: quant bits"),
    (["--dataset", "leaf:{tmp}/missing.json"], "--dataset leaf:{tmp}/missing.json: no such LEAF file"),
    (["--dataset", "leaf:{tmp}/junk.json"], "--dataset leaf:{tmp}/junk.json:"),
    (["--dataset", "npz:{tmp}/missing.npz"], "--dataset npz:{tmp}/missing.npz: no such .npz file"),
    (["--dataset", "npz:{tmp}/junk.npz"], "not a readable .npz file"),
    (["--dataset", "npz:{tmp}/no_clients"], "--dataset npz:{tmp}/no_clients: no client .npz files in"),
    (["--dataset", "npz:{tmp}/corrupt_clients"], "corrupt_clients/client-3.npz: not a readable .npz file"),
    (["--model", "mpl"], "--model 'mpl' is neither a built-in (mlp, cnn1d, logreg) nor an import path"),
    (["--model", "no_such_pkg:net"], "--model no_such_pkg:net: cannot import 'no_such_pkg'"),
    (["--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file"),
    (["--config", "{tmp}/broken.toml"], "{tmp}/broken.toml: not valid TOML"),
    (["--config", "{tmp}/broken.yaml"], "{tmp}/broken.yaml: not valid YAML (line 2)"),
    (["--config", "{tmp}/typo.toml"], "unknown key 'roundz'; did you mean 'rounds'?"),
    (["--config", "{tmp}/typo.yaml"], "unknown key 'per_rund'; did you mean 'per_round'?"),
    (["--config", "{tmp}/missing.toml"], "--config {tmp}/missing.toml: no such file"),
    (["--backend", "troch"], "invalid choice: 'troch'"),
    (["--per-rund", "3"], "unrecognized arguments: --per-rund 3; did you mean '--per-round'?"),
    (["--rounds", "x"], "argument --rounds: invalid int value: 'x'"),
    (["--per-round", "200"], "--per-round (200) cannot exceed --clients (6)"),
    (["--local-epochs", "0"], "--local-epochs must be >= 1, got 0"),
    (["--strategy", "fedprx"], "unknown --strategy 'fedprx'; choose from"),
    (["--aggregator", "medain"], "did you mean 'median'?"),
    (["--partial", "gradient:2"], "partial spec 'gradient:2': fraction must be in (0, 1]"),
    (["--partition", "dirichlet:-1"], "--partition must be iid, dirichlet:ALPHA"),
]


@pytest.mark.parametrize(("flags", "expected"), BAD_INPUTS, ids=[" ".join(f) for f, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _files(tmp_path)
    out = tmp_path / "run"
    argv = ["sim", *TINY, "--out", str(out), *(f.replace("{tmp}", str(tmp_path)) for f in flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("fedcore: error: ")
    assert expected.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert not out.exists()  # no empty rounds.jsonl, no empty folder


def test_missing_backend_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    assert main(["sim", *TINY, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "fedcore[torch]" or run with --backend sklearn' in err
    assert not (tmp_path / "run").exists()


def test_failure_in_round_one_leaves_no_empty_rounds_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    flags = ["--dropout", "0.9", "--min-clients", "2", "--seed", "1"]
    assert main(["sim", *TINY, *flags, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fedcore: error: round 1: only")
    assert err.count("\n") == 1
    assert not out.exists()


def test_existing_run_is_kept_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["sim", *TINY, "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete"
    (out / "notes.txt").write_text("mine\n")
    before = (out / "rounds.jsonl").read_text()
    assert main(["sim", *TINY, "--seed", "5", "--out", str(out)]) == 2
    assert "already holds notes.txt, rounds.jsonl, summary.json; pass --overwrite" in capsys.readouterr().err
    assert (out / "rounds.jsonl").read_text() == before
    assert main(["sim", *TINY, "--seed", "5", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["config"]["seed"] == 5
    assert (out / "notes.txt").read_text() == "mine\n"  # --overwrite removes only a run's own files


def test_fixed_mask_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", *TINY, "--partial", f"fixed:{tmp_path}/none.npy", "--out", str(tmp_path / "r")]) == 2
    assert f"cannot read {tmp_path}/none.npy" in capsys.readouterr().err
    np.save(tmp_path / "mask.npy", np.ones(7, dtype=bool))
    assert main(["sim", *TINY, "--partial", f"fixed:{tmp_path}/mask.npy", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "the fixed mask has 7 coordinates, the layout" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert main(["sim", *TINY, "--partial", "gradiant:0.1", "--out", str(tmp_path / "r")]) == 2
    assert "did you mean 'gradient'?" in capsys.readouterr().err
