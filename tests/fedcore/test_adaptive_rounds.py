"""Adaptive compression in rounds: each client sends the best codec its simulated uplink delivers in time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fakes import kept_stage, raw_frame_nbytes

from fedcore.adaptive import DEFAULT_LADDER, frame_nbytes
from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.records import RoundRecord, without_timing
from fedcore.sim import simulate
from fedcore.sim.engine import adaptive_planner, seconds_per_step
from fedcore.sim.workers import load_data
from fedcore.uplink import ClientStates, UplinkChain, UplinkContext, decode_frame

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


def sent_nbytes(spec: str, n: int) -> int:
    """The frame a pick sends: the codec's frame, or for `none` the raw float32 frame (frame_nbytes: 4n)."""
    return raw_frame_nbytes(n) if spec == "none" else frame_nbytes(spec, n)


def test_each_client_uploads_exactly_the_frame_it_picked() -> None:
    result = simulate(replace(MIXED, adaptive_ladder=FIXED_SIZE_LADDER))
    n = result.summary["model_size"]
    assert len(result.summary["adaptive_codecs"]) >= 2
    assert "none" in result.summary["adaptive_codecs"]
    for record in result.records:
        assert record.codecs is not None
        expected = sum(count * sent_nbytes(spec, n) for spec, count in record.codecs.items())
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
    plan = adaptive_planner(config, load_data(config))
    assert plan is not None
    n = 20_000
    picks = plan(0, {0: 1, 1: 10**5}, n)  # client 1 trains 10^5 local epochs
    assert picks[1].spec == "topk:0.01+quant:8"  # trains past the deadline: the smallest frame, late
    assert not picks[1].meets_deadline
    assert picks[0].meets_deadline
    assert DEFAULT_LADDER.index(picks[0].spec) < DEFAULT_LADDER.index(picks[1].spec)
    everyone = plan(0, {c: None for c in range(config.clients)}, n)
    assert {choice.spec for choice in everyone.values()} <= set(DEFAULT_LADDER)
    assert seconds_per_step(config.seed, 3) == seconds_per_step(config.seed, 3)
    assert seconds_per_step(config.seed, 3) != seconds_per_step(config.seed, 4)
    assert adaptive_planner(TINY, load_data(TINY)) is None


def test_error_feedback_keeps_residuals_across_codec_changes() -> None:
    lossy = replace(MIXED, adaptive_ladder="quant:4,eden:1", rounds=4)
    plain = simulate(lossy)
    fed_back = simulate(replace(lossy, error_feedback=True))
    assert not kept_stage(plain.clients, "residual")
    assert set(kept_stage(fed_back.clients, "residual")) == {c for r in fed_back.records for c in r.clients}
    assert len(fed_back.summary["adaptive_codecs"]) == 2
    assert not np.array_equal(plain.weights, fed_back.weights)
    assert fed_back.summary["final_accuracy"] > 0.25


def test_a_raw_upload_delivers_the_whole_residual() -> None:
    chain = UplinkChain.from_config(replace(MIXED, error_feedback=True))
    x = np.arange(4, dtype=np.float32)
    residual = np.full(4, 0.5, dtype=np.float32)
    states: ClientStates = {"residual": residual}
    layout = ParamLayout.from_shapes([("w", (4,))])
    frame = chain.encode(x, UplinkContext(layout, client_id=0, seed=1, codec="none"), states).payload
    np.testing.assert_array_equal(decode_frame(frame), x + residual)
    np.testing.assert_array_equal(states["residual"], np.zeros(4))  # nothing left owed


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


def test_adaptive_picks_a_codec_for_the_shared_part_of_a_partial_upload() -> None:
    config = replace(MIXED, partial="random:0.5", adaptive_ladder=FIXED_SIZE_LADDER, rounds=4, local_epochs=5)
    result = simulate(config)
    n = result.summary["model_size"]
    assert sum(result.summary["adaptive_codecs"].values()) == result.summary["updates_aggregated"]
    for record in result.records:
        assert record.codecs is not None
        assert record.mask_fraction == pytest.approx(0.5, abs=0.03)
        shared = round(record.mask_fraction * n)
        assert record.uplink_bytes == sum(
            count * sent_nbytes(s, shared) for s, count in record.codecs.items()
        )
    accuracies = [r.accuracy for r in result.records]
    assert all(np.isfinite(a) for a in accuracies)
    assert accuracies[-1] > 0.25  # ten classes: chance is 0.1


def test_error_feedback_without_codec_needs_adaptive() -> None:
    with pytest.raises(ValueError, match="error_feedback needs"):
        replace(TINY, error_feedback=True)
    assert replace(MIXED, error_feedback=True).error_feedback
