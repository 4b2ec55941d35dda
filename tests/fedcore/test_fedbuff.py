"""FedBuff: staleness weights, a buffer that steps every K replies, and the async simulation on its clock."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.records import without_timing
from fedcore.server.driver import initial_state
from fedcore.server.fedbuff import FedBuffServer, StalenessSpec, staleness_histogram
from fedcore.sim import simulate
from fedcore.sim.clock import MEDIAN_SECONDS_PER_STEP, DeviceClock, device_speeds
from fedcore.sim.workers import load_data
from fedcore.uplink import UplinkChain, decode_frame, encode_frame

ASYNC = FLConfig(
    clients=20,
    per_round=4,
    rounds=6,
    local_epochs=1,
    workers=0,
    seed=3,
    asynchronous=True,
    buffer=3,
    concurrency=6,
    stragglers=0.5,
    speed_spread=10.0,
)


def test_staleness_weights_by_hand() -> None:
    assert StalenessSpec.parse("constant").weight(7) == 1.0
    poly = StalenessSpec.parse("poly:0.5")
    assert [poly.weight(s) for s in (0, 3, 8)] == [1.0, 0.5, pytest.approx(1 / 3)]
    hinge = StalenessSpec.parse("hinge:10,4")
    assert [hinge.weight(s) for s in (0, 4, 5, 6)] == [1.0, 1.0, 1 / 11, 1 / 21]
    for text in ("constant", "poly:0.5", "poly:2", "hinge:10,4", "hinge:0.5,1.5"):
        assert str(StalenessSpec.parse(text)) == text


@pytest.mark.parametrize("text", ["poly:-1", "poly", "hinge:1", "hinge:1,-2", "cubic:2", "poly:nan"])
def test_a_bad_staleness_spec_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="staleness"):
        StalenessSpec.parse(text)


def _server(buffer: int, staleness: str) -> FedBuffServer:
    """A two-weight model at zero, FedAvg with server lr 1: the new weights are the buffer's weighted mean."""
    config = FLConfig(clients=4, per_round=2, asynchronous=True, buffer=buffer, concurrency=4)
    layout = ParamLayout.from_shapes([("w", (2,))])
    return FedBuffServer(
        initial_state(config, np.zeros(2, dtype=np.float32)),
        layout,
        config.make_strategy(),
        UplinkChain.from_config(config),
        buffer=buffer,
        staleness=StalenessSpec.parse(staleness),
        clients=config.clients,
        seed=0,
        evaluate=lambda weights: (float(weights.sum()), 0.0),
    )


def _reply(task: Task, delta: list[float]) -> Reply:
    assert decode_frame(task.model).size == len(delta)  # the task carries the model it was cut from
    frame = encode_frame(None, np.array(delta, dtype=np.float32), 0)
    return Reply(task.round, task.client_id, (frame,), num_examples=1, num_steps=1, loss=0.5)


def test_the_buffer_steps_exactly_every_k_replies() -> None:
    server = _server(buffer=3, staleness="constant")
    tasks = [server.task(cid) for cid in range(4)]
    assert [t.model_version for t in tasks] == [0, 0, 0, 0]
    assert server.receive(_reply(tasks[0], [3.0, 0.0])) is None
    assert server.receive(_reply(tasks[1], [0.0, 3.0])) is None
    record = server.receive(_reply(tasks[2], [3.0, 3.0]), virtual_s=1.5)
    assert record is not None
    assert (record.round, record.clients, record.staleness, record.virtual_s) == (
        1,
        [0, 1, 2],
        [0, 0, 0],
        1.5,
    )
    np.testing.assert_array_equal(server.state.server.weights, [2.0, 2.0])
    assert (server.version, server.buffered) == (1, 0)
    assert server.receive(_reply(tasks[3], [0.0, 0.0])) is None  # one of three: no step yet
    assert server.version == 1


def test_a_stale_update_counts_less() -> None:
    server = _server(buffer=1, staleness="poly:1")
    old = server.task(0)
    fresh = server.task(1)
    server.receive(_reply(fresh, [2.0, 2.0]))  # version 1
    record = server.receive(_reply(old, [2.0, 2.0]))  # trained on version 0: one behind, weight 1/2
    assert record is not None
    assert record.staleness == [1]
    np.testing.assert_array_equal(server.state.server.weights, [3.0, 3.0])


def test_answers_to_unknown_tasks_and_diverged_clients_fill_no_slot() -> None:
    server = _server(buffer=1, staleness="constant")
    task = server.task(2)
    stranger = replace(_reply(task, [1.0, 1.0]), client_id=3)  # another client claiming the task
    assert server.receive(stranger) is None
    assert server.receive(Failure(task.round, 2, "diverged")) is None
    assert server.receive(_reply(task, [1.0, 1.0])) is None  # the task was taken back by the failure
    assert server.version == 0
    record = server.receive(_reply(server.task(2), [1.0, 1.0]))
    assert record is not None
    assert (record.refused, record.diverged) == ([2, 3], [2])  # 2: its late reply to the dropped task


def test_an_async_run_repeats_bit_for_bit_inline_and_on_a_pool() -> None:
    inline = simulate(ASYNC)
    again = simulate(ASYNC)
    pool = simulate(replace(ASYNC, workers=2))
    for other in (again, pool):
        np.testing.assert_array_equal(inline.weights, other.weights)
        assert [without_timing(r.to_dict()) for r in other.records] == [
            without_timing(r.to_dict()) for r in inline.records
        ]


def test_an_async_run_records_versions_staleness_and_virtual_time() -> None:
    result = simulate(replace(ASYNC, rounds=10))
    records = result.records
    assert [r.round for r in records] == list(range(1, 11))
    assert all(len(r.clients) == 3 and len(r.staleness or ()) == 3 for r in records)
    times = [r.virtual_s or 0.0 for r in records]
    assert times == sorted(times)
    assert times[0] > 0.0
    histogram = staleness_histogram(records)
    assert sum(histogram.values()) == 30
    assert max(histogram) > 0  # slow clients come back stale
    assert result.summary["virtual_s"] == times[-1]
    assert result.summary["staleness"] == {str(s): n for s, n in histogram.items()}


def test_a_sync_round_lasts_as_long_as_its_slowest_client() -> None:
    config = replace(ASYNC, asynchronous=False, buffer=None, concurrency=None, rounds=3)
    clock = DeviceClock.of(config, load_data(config))
    result = simulate(config)
    before = 0.0
    for record in result.records:
        slowest = max(clock.task_s(cid) for cid in record.clients)
        assert record.virtual_s == pytest.approx(before + slowest)
        before = record.virtual_s or 0.0


def test_speed_spread_moves_only_the_clock_of_a_sync_run() -> None:
    plain = FLConfig(clients=12, per_round=4, rounds=3, local_epochs=1, workers=0, seed=5)
    spread = simulate(replace(plain, speed_spread=10.0, stragglers=0.5))
    base = simulate(plain)
    assert [r.accuracy for r in spread.records] == [r.accuracy for r in base.records]
    assert spread.summary["virtual_s"] != base.summary["virtual_s"]
    speeds = device_speeds(replace(plain, speed_spread=10.0, stragglers=0.5))
    assert sorted(speeds.tolist()) == [MEDIAN_SECONDS_PER_STEP] * 6 + [10 * MEDIAN_SECONDS_PER_STEP] * 6
    log_uniform = device_speeds(replace(plain, speed_spread=10.0))
    assert MEDIAN_SECONDS_PER_STEP <= log_uniform.min() <= log_uniform.max() <= 10 * MEDIAN_SECONDS_PER_STEP


TINY = ["--clients", "6", "--per-round", "2", "--rounds", "2", "--local-epochs", "1", "--workers", "0"]
BAD_FLAGS: list[tuple[list[str], str]] = [
    (["--async", "--staleness", "poly:-1"], "staleness poly: A must be a finite number >= 0, got -1.0"),
    (["--async", "--buffer", "0"], "--buffer must be >= 1, got 0"),
    (["--async", "--buffer", "4", "--concurrency", "3"], "--concurrency must lie in [buffer=4, clients=6]"),
    (["--async", "--concurrency", "7"], "--concurrency must lie in [buffer=2, clients=6], got 7"),
    (["--buffer", "2"], "--buffer needs --async"),
    (["--async", "--secagg"], "--async (FedBuff) folds each update as it arrives"),
    (["--async", "--strategy", "scaffold"], "drop --strategy scaffold"),
    (["--async", "--stragglers", "0.5"], "drop --stragglers without --speed-spread"),
    (["--async", "--eval-clients"], "drop --eval-clients"),
    (["--async", "--server-memory"], "drop --server-memory"),
    (["--async", "--aggregator", "median"], "drop --aggregator median"),
    (["--speed-spread", "0.5"], "--speed-spread must lie in [1, 1e6), got 0.5"),
]


@pytest.mark.parametrize(("flags", "expected"), BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_a_setting_fedbuff_cannot_run_is_one_line_and_exit_2(
    flags: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["sim", *TINY, "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert expected in err
    assert not out.exists()


def test_fedbuff_from_the_command_line(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--async", "--buffer", "2", "--concurrency", "4", "--staleness", "hinge:1,0"]
    assert main(["sim", *TINY, "--speed-spread", "10", "--stragglers", "0.5", *flags, "--out", str(out)]) == 0
    lines = (out / "rounds.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert '"staleness": [' in lines[0]
    assert '"virtual_s": ' in lines[0]
