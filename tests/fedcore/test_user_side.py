"""The user's side of `fedcore sim`: Ctrl-C keeps finished rounds, TOML or YAML configs, help, version."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fedcore
from fedcore.cli import _parser, main
from fedcore.config import FLConfig, load_config
from fedcore.help_text import TOML_ONLY

TINY = ["--clients", "6", "--per-round", "2", "--local-epochs", "1"]
PYTHON_PATH = str(Path(fedcore.__file__).parents[1])


def test_ctrl_c_stops_workers_and_keeps_the_complete_rounds(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [*TINY, "--rounds", "500", "--workers", "2", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": PYTHON_PATH}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedcore.cli", "sim", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    rounds = out / "rounds.jsonl"
    deadline = time.monotonic() + 120
    while not (rounds.is_file() and rounds.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pressed = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group: the workers too
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - pressed < 30  # at once on an idle machine (~1 s); generous for a loaded CI box
    assert proc.returncode == 130
    assert err.count("\n") == 1, err
    assert err.startswith("fedcore: interrupted;")
    summary = json.loads((out / "summary.json").read_text())
    lines = rounds.read_text().splitlines()
    assert summary["status"] == "interrupted"
    assert summary["rounds"] == len(lines) >= 2
    assert [json.loads(line)["round"] for line in lines] == list(range(1, len(lines) + 1))


def test_interrupt_in_process_writes_an_interrupted_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import fedcore.sim.output as output

    real = output.simulate

    def stop_after_two(config: FLConfig, on_round, data=None, *model):  # type: ignore[no-untyped-def]
        seen = []

        def record(r):  # type: ignore[no-untyped-def]
            on_round(r)
            seen.append(r)
            if len(seen) == 2:
                raise KeyboardInterrupt

        return real(config, record, data, *model)

    monkeypatch.setattr(output, "simulate", stop_after_two)
    out = tmp_path / "run"
    assert main(["sim", *TINY, "--rounds", "5", "--workers", "0", "--out", str(out)]) == 130
    assert "2 complete round(s)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["rounds"]) == ("interrupted", 2)
    assert summary["uplink_ratio"] == pytest.approx(1.0, rel=1e-3)  # raw float32 frames: a header each


def test_print_config_round_trips_through_toml_and_yaml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("rounds: 7\nper-round: 4\nstrategy: fedprox:0.01\ncodec: topk:0.1+quant:8\n")
    assert main(["sim", "--config", str(yaml_file), "--lr", "0.05", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert 'codec = "topk:0.1+quant:8"' in printed
    assert "# partial = (unset)" in printed
    toml_file = tmp_path / "resolved.toml"
    toml_file.write_text(printed)
    expected = load_config(yaml_file, {"lr": 0.05})
    assert load_config(toml_file) == expected
    assert (expected.rounds, expected.per_round, expected.lr) == (7, 4, 0.05)
    assert not Path(expected.out).exists()  # printing the config runs nothing


def test_every_config_field_is_a_flag_or_listed_as_toml_only(capsys: pytest.CaptureFixture[str]) -> None:
    sim = _parser()._subparsers._group_actions[0].choices["sim"]  # type: ignore[union-attr]
    dests = {a.dest for a in sim._actions}
    fields = {f.name for f in dataclasses.fields(FLConfig)}
    assert fields - dests == set(TOML_ONLY)
    assert not set(TOML_ONLY) & dests
    with pytest.raises(SystemExit):
        main(["sim", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in TOML_ONLY:
        assert f"{name} " in text
    for shown in ("(default: 100)", "(default: dirichlet:0.5)", "STAGE := none | f16", "randk:FRACTION"):
        assert shown in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"fedcore {fedcore.__version__}"


def test_a_worker_whose_parent_is_gone_stops_without_a_traceback() -> None:
    import multiprocessing as mp

    from fedcore.sim.workers import _answer

    parent, child = mp.Pipe()
    parent.close()  # Ctrl-C: the parent stopped reading while this worker still had a result to send
    assert _answer(child, ("ok", None)) is False  # BrokenPipeError is the end, not an error to print
