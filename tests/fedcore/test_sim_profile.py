"""`fedcore sim --profile` says where start-up and round time go."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.sim import simulate
from fedcore.sim.profile import SimProfile, imports_by_package

SMALL = ["--clients", "8", "--per-round", "3", "--rounds", "2", "--local-epochs", "1"]


def test_the_profile_names_every_phase_and_splits_the_rounds(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["sim", *SMALL, "--profile", "--out", str(tmp_path / "run")]) == 0
    printed = capfd.readouterr().out
    assert (tmp_path / "run" / "summary.json").is_file()
    for phase in (
        "interpreter and imports before main",
        "checks and data load",
        "model build",
        "worker start",
        "first round",
        "later rounds",
        "start-up (through the first round)",
    ):
        assert f"\n  {phase} " in printed
    assert "imports by package" in printed
    assert "\n  numpy " in printed  # imported before main, still counted
    assert "a round, 2 rounds" in printed
    for part in ("wall", "train", "encode", "aggregate", "evaluate", "other"):
        assert f"\n  {part} " in printed


def test_each_round_is_split_into_parts_that_fit_in_its_wall_time() -> None:
    profile = SimProfile()
    result = simulate(FLConfig(clients=8, per_round=3, rounds=3, local_epochs=1, workers=0), profile=profile)
    assert [name for name, _, _ in profile.phases] == [
        "data load",
        "model build",
        "worker start",
        "first round",
        "later rounds",
    ]
    assert len(profile.rounds) == 3
    for split, record in zip(profile.rounds, result.records, strict=True):
        assert split["wall_s"] == record.wall_s
        assert split["train_s"] > 0
        parts = sum(split[k] for k in ("train_s", "encode_s", "aggregate_s", "evaluate_s", "other_s"))
        assert parts <= split["wall_s"] * 1.001


def test_import_times_add_up_by_top_level_package() -> None:
    imports = [("numpy", 0.2), ("numpy", 0.1), ("rich", 0.05)] + [(f"m{i}", 0.001) for i in range(12)]
    ranked = imports_by_package(imports)
    assert ranked[0] == ("numpy", pytest.approx(0.3))
    assert ranked[1] == ("rich", 0.05)
    assert ranked[-1][0] == "other (4 packages)"
    assert sum(s for _, s in ranked) == pytest.approx(sum(s for _, s in imports))
