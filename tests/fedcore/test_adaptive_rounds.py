"""Adaptive compression in rounds: each client sends the best codec its simulated uplink delivers in time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedcore.adaptive import DEFAULT_LADDER, AdaptiveCodecPolicy, frame_nbytes
from fedcore.cli import main
from fedcore.compression import Encoder
from fedcore.config import FLConfig
from fedcore.records import RoundRecord, without_timing
from fedcore.selection import AvailabilityModel
from fedcore.sim import simulate
from fedcore.sim.uplink import AdaptiveUplink, seconds_per_step

pytest.importorskip("fedcodec")

TINY = FLConfig(clients=12, per_round=4, rounds=3, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)
MIXED = replace(TINY, adaptive_deadline_s=0.25)  # on TINY this deadline makes clients pick across the ladder
FIXED_SIZE_LADDER = "none,quant:8,quant:4,eden:2,eden:1"  # frames whose length depends only on the size


def test_picks_are_recorded_per_round_and_repeat_with_the_seed() -> None:
    first = simulate(MIXED)
    second = simulate(MIXED)
    assert [r.codecs for r in first.records] == [r.codecs for r in second.records]
    assert [r.late for r in first.records] == [r.late for r in second.records]
    assert without_timing(first.summary) == without_timing(second.summary)
    for record in first.records:
        assert record.codecs is not None
        assert record.late is not None
        assert sum(record.codecs.values()) == len(record.clients)
        assert set(record.late) <= set(record.clients)
    totals = first.summary["adaptive_codecs"]
    assert len(totals) >= 3
    assert set(totals) <= set(DEFAULT_LADDER)
    assert sum(totals.values()) == first.summary["updates_aggregated"]
    assert first.summary["late_uploads"] == sum(len(r.late or []) for r in first.records)


def test_each_client_uploads_exactly_the_frame_it_picked() -> None:
    result = simulate(replace(MIXED, adaptive_ladder=FIXED_SIZE_LADDER))
    n = result.summary["model_size"]
    assert len(result.summary["adaptive_codecs"]) >= 2
    for record in result.records:
        assert record.codecs is not None
        expected = sum(count * frame_nbytes(spec, n) for spec, count in record.codecs.items())
        assert record.uplink_bytes == expected


def test_a_tighter_deadline_sends_fewer_bytes_with_stronger_codecs() -> None:
    loose = simulate(replace(TINY, adaptive_deadline_s=0.5))
    tight = simulate(replace(TINY, adaptive_deadline_s=0.2))

    def mean_rung(summary: dict[str, dict[str, int]]) -> float:
        picks = summary["adaptive_codecs"]
        return sum(DEFAULT_LADDER.index(s) * c for s, c in picks.items()) / sum(picks.values())

    assert tight.summary["uplink_bytes"] < 0.6 * loose.summary["uplink_bytes"]
    assert mean_rung(tight.summary) > mean_rung(loose.summary) + 1
    assert tight.summary["late_uploads"] >= loose.summary["late_uploads"]
    assert loose.summary["final_accuracy"] > 0.25  # ten classes: chance is 0.1


def test_slow_devices_and_long_training_get_stronger_codecs() -> None:
    config = replace(TINY, adaptive_deadline_s=1.0)
    uplink = AdaptiveUplink.from_config(config, AvailabilityModel(config.seed))
    assert uplink is not None
    n = 20_000
    picks = uplink.choose(round_num=0, steps={0: 0, 1: 10**6}, n=n)
    assert picks[1].spec == "topk:0.01+quant:8"  # trains past the deadline: the smallest frame, late
    assert not picks[1].meets_deadline
    assert DEFAULT_LADDER.index(picks[0].spec) < DEFAULT_LADDER.index(picks[1].spec)
    assert seconds_per_step(config.seed, 3) == seconds_per_step(config.seed, 3)
    assert seconds_per_step(config.seed, 3) != seconds_per_step(config.seed, 4)
    assert uplink.policy == AdaptiveCodecPolicy(DEFAULT_LADDER, deadline_s=1.0)
    assert AdaptiveUplink.from_config(TINY, AvailabilityModel(TINY.seed)) is None


def test_error_feedback_keeps_residuals_across_codec_changes() -> None:
    lossy = replace(MIXED, adaptive_ladder="quant:4,eden:1", rounds=4)
    plain = simulate(lossy)
    fed_back = simulate(replace(lossy, error_feedback=True))
    assert not plain.clients.residuals
    assert set(fed_back.clients.residuals) == {c for r in fed_back.records for c in r.clients}
    assert len(fed_back.summary["adaptive_codecs"]) == 2
    assert not np.array_equal(plain.weights, fed_back.weights)
    assert fed_back.summary["final_accuracy"] > 0.25


def test_a_raw_upload_delivers_the_whole_residual() -> None:
    x = np.arange(4, dtype=np.float32)
    residual = np.full(4, 0.5, dtype=np.float32)
    payload, left = Encoder("none", error_feedback=True).encode(x, seed=1, residual=residual)
    np.testing.assert_array_equal(payload, x + residual)
    assert left is None


def test_records_without_adaptive_keys_still_load() -> None:
    record = simulate(replace(TINY, rounds=1)).records[0]
    assert record.codecs is None
    assert record.late is None
    old = {k: v for k, v in record.to_dict().items() if k not in ("codecs", "late")}
    assert RoundRecord.from_dict(old) == record


def test_cli_adaptive_writes_picks(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--clients", "10", "--per-round", "3", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]
    ladder = ["--adaptive-ladder", "none, eden:1"]
    assert main(["sim", *flags, "--adaptive", "0.2", *ladder, "--out", str(out)]) == 0
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert all(sum(r["codecs"].values()) == len(r["clients"]) for r in rounds)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["adaptive_codecs"]) <= {"none", "eden:1"}
    assert summary["config"]["adaptive_deadline_s"] == 0.2
    assert main(["sim", *flags, "--adaptive", "0.2", "--codec", "quant:8", "--out", str(out)]) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"codec": "quant:8"}, "drop codec"),
        ({"powersgd": 2}, "drop powersgd"),
        ({"partial": "random:0.5"}, "drop partial"),
        ({"adaptive_deadline_s": 0.0}, "adaptive_deadline_s must be > 0"),
        ({"adaptive_deadline_s": -1.0}, "adaptive_deadline_s must be > 0"),
        ({"adaptive_ladder": "none,quant:99"}, "quant"),
        ({"adaptive_ladder": "none,,eden:1"}, "empty spec"),
        ({"adaptive_deadline_s": None, "adaptive_ladder": "none"}, "needs adaptive_deadline_s"),
    ],
)
def test_config_rejects_bad_adaptive_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(MIXED, **changes)


def test_error_feedback_without_codec_needs_adaptive() -> None:
    with pytest.raises(ValueError, match="error_feedback needs"):
        replace(TINY, error_feedback=True)
    assert replace(MIXED, error_feedback=True).error_feedback
