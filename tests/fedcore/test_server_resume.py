"""The server checkpoints after every round: a `kill -9` loses nothing, `resume` ends where a clean run ends."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedcore.client import ClientStateStore
from fedcore.config import FLConfig
from fedcore.server.checkpoint import CheckpointError, load_checkpoint
from fedcore.server.run import run_federation
from fedcore.sim.transport import SimTransport
from fedcore.sim.workers import load_data, make_pool

CONFIG = FLConfig(clients=12, per_round=4, rounds=5, local_epochs=2, workers=0, seed=3, codec="quant:8")

KILLED_AFTER_ROUND_2 = """
import os, signal, sys
from pathlib import Path
from fedcore.client import ClientStateStore
from fedcore.config import FLConfig
from fedcore.server.run import run_federation
from fedcore.sim.transport import SimTransport
from fedcore.sim.workers import load_data, make_pool

config = FLConfig(**{config})
transport = SimTransport(make_pool(config, load_data(config)), ClientStateStore())

def die(record):
    if record.round == 2:
        os.kill(os.getpid(), signal.SIGKILL)

run_federation(config, transport, Path(sys.argv[1]), on_round=die)
"""


def federate(config: FLConfig, out: Path, resume: bool = False) -> dict[str, object]:
    transport = SimTransport(make_pool(config, load_data(config)), ClientStateStore())
    try:
        return run_federation(config, transport, out, resume=resume)
    finally:
        transport.close()


def final_weights(out: Path, config: FLConfig) -> np.ndarray:
    return load_checkpoint(out, config.run_settings()).server.weights


def test_a_server_killed_after_round_two_resumes_to_the_same_final_weights(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    federate(CONFIG, clean)
    killed = tmp_path / "killed"
    script = KILLED_AFTER_ROUND_2.format(config=repr(CONFIG.to_dict()))
    done = subprocess.run([sys.executable, "-c", script, str(killed)], timeout=300, check=False)
    assert done.returncode == -9
    assert load_checkpoint(killed, CONFIG.run_settings()).next_round == 2
    summary = federate(CONFIG, killed, resume=True)
    assert summary["resumed"] is True
    np.testing.assert_array_equal(final_weights(killed, CONFIG), final_weights(clean, CONFIG))
    rounds = [json.loads(line)["round"] for line in (killed / "rounds.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3, 4, 5]
    audit = [json.loads(line) for line in (killed / "audit.jsonl").read_text().splitlines()]
    assert [a["round"] for a in audit] == [1, 2, 3, 4, 5]
    assert all(len(a["answered"]) == 4 and len(a["frames"]) == 4 for a in audit)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    federate(replace(CONFIG, rounds=1), tmp_path)
    with pytest.raises(CheckpointError, match="other settings"):
        load_checkpoint(tmp_path, replace(CONFIG, rounds=1, lr=0.5).run_settings())
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_checkpoint(tmp_path / "empty", CONFIG.run_settings())


def test_the_audit_log_names_every_frame_by_its_hash(tmp_path: Path) -> None:
    federate(replace(CONFIG, rounds=1), tmp_path)
    (entry,) = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert entry["selected"] == entry["answered"]
    assert entry["dropped"] == [] and entry["refused"] == []
    for frame in entry["frames"]:
        assert frame["nbytes"] > 0
        assert all(len(digest) == 64 for digest in frame["sha256"])
