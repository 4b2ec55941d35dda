"""The simulation engine end to end on tiny settings: determinism, dropouts, min_clients, strategies."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from fakes import FOUR_EXAMPLES, FlatAdapter, raw_frame_nbytes

from fedcore.backends.base import TrainConfig
from fedcore.client import ClientApp, ClientState
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.protocol import Failure, Reply, Task
from fedcore.records import without_timing
from fedcore.selection import InsufficientClientsError
from fedcore.sim import simulate
from fedcore.sim.workers import WorkerError
from fedcore.uplink import ClientStates, UplinkChain, UplinkContext, decode_frame, encode_frame

TINY = FLConfig(clients=12, per_round=4, rounds=3, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)


def same_run(a: dict[str, object], b: dict[str, object]) -> bool:
    return without_timing(a) == without_timing(b)


def test_same_seed_same_numbers() -> None:
    first = simulate(TINY)
    second = simulate(TINY)
    assert same_run(first.summary, second.summary)
    assert [without_timing(r.to_dict()) for r in first.records] == [
        without_timing(r.to_dict()) for r in second.records
    ]
    np.testing.assert_array_equal(first.weights, second.weights)
    other = simulate(replace(TINY, seed=6))
    assert not np.array_equal(first.weights, other.weights)


def test_worker_processes_repeat_exactly_and_match_in_process() -> None:
    config = replace(TINY, workers=2)
    first = simulate(config)
    second = simulate(config)
    assert first.summary["timing"]["workers"] == 2
    np.testing.assert_array_equal(first.weights, second.weights)
    assert same_run(first.summary, second.summary)
    inline = simulate(TINY)
    # Two workers fold in a different grouping, so only rounding may differ.
    np.testing.assert_allclose(first.weights, inline.weights, atol=1e-5)
    assert [r.clients for r in first.records] == [r.clients for r in inline.records]


def test_uplink_bytes_are_raw_float32_frames_without_codec() -> None:
    result = simulate(TINY)
    size = result.summary["model_size"]
    for record in result.records:
        assert record.uplink_bytes == raw_frame_nbytes(size) * len(record.clients)
        assert record.downlink_bytes == 4 * size * record.selected
    assert result.summary["uplink_ratio"] == pytest.approx(4 * size / raw_frame_nbytes(size))
    assert 0.99 < result.summary["uplink_ratio"] < 1.0  # the frame header is all a raw upload adds


def test_thirty_percent_dropout_still_trains() -> None:
    config = replace(TINY, clients=30, per_round=10, rounds=6, dropout=0.3, min_clients=1, local_epochs=5)
    result = simulate(config)
    assert result.summary["rounds"] == 6
    assert result.summary["dropouts"] > 0
    for record in result.records:
        assert len(record.clients) + len(record.dropouts) == record.selected
    assert result.summary["final_accuracy"] > 0.3  # ten classes: chance is 0.1


def test_min_clients_violation_raises_quickly() -> None:
    config = replace(TINY, clients=30, per_round=10, rounds=20, dropout=0.5, min_clients=10)
    start = time.perf_counter()
    with pytest.raises(InsufficientClientsError):
        simulate(config)
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(
    "strategy",
    ["fedavg", "fedprox:0.01", "fednova", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "scaffold"],
)
def test_every_strategy_trains(strategy: str) -> None:
    # Adam and Yogi's default server lr (0.01) is tuned for long runs; four rounds need a bolder step.
    server_lr = 0.05 if strategy in ("fedadam", "fedyogi") else None
    result = simulate(replace(TINY, strategy=strategy, rounds=4, local_epochs=2, server_lr=server_lr))
    accuracies = [r.accuracy for r in result.records]
    assert all(np.isfinite(a) for a in accuracies)
    assert max(accuracies) > 0.2


def test_scaffold_doubles_the_bytes_and_evaluates_clients() -> None:
    result = simulate(replace(TINY, strategy="scaffold", eval_clients=True))
    size = result.summary["model_size"]
    record = result.records[0]
    assert record.uplink_bytes == 2 * raw_frame_nbytes(size) * len(record.clients)
    assert result.summary["uplink_ratio"] == pytest.approx(4 * size / raw_frame_nbytes(size))
    assert record.client_accuracy is not None
    assert 0.0 <= record.client_accuracy <= 1.0


def test_availability_selection_skips_devices() -> None:
    result = simulate(replace(TINY, clients=40, per_round=5, selection="availability"))
    assert all(r.unavailable > 0 for r in result.records)


def shift_adapter(size: int) -> FlatAdapter:
    """A fake model whose 'training' moves each weight by -lr * (1 + control) per step, for exact checks."""

    def move(w: np.ndarray, config: TrainConfig, control: np.ndarray | None) -> tuple[np.ndarray, int]:
        steps = 2
        correction = 0.0 if control is None else control
        return (w - steps * config.lr * (1.0 + correction)).astype(np.float32), steps

    return FlatAdapter(size, move)


def scaffold_task(client_id: int, weights: np.ndarray, server_control: np.ndarray) -> Task:
    """Round 0's task for one SCAFFOLD client: the model and the server control, each as a lossless frame."""
    return Task(
        round=0,
        client_id=client_id,
        model_version=0,
        model=encode_frame(None, weights, 0),
        control=encode_frame(None, server_control, 0),
        settings={"train_seed": 1, "codec_seed": 2},
    )


def test_scaffold_client_sends_delta_and_control_delta() -> None:
    # x = [1, 1], c = [0.5, 0.5], c_i = [0.25, 0.25], lr = 0.1, K = 2:
    # y = x - 2*0.1*(1 + c - c_i) = [0.75, 0.75]; c_i+ = c_i - c + (x - y)/(K lr) = [1.0, 1.0].
    app = ClientApp(
        FLConfig(strategy="scaffold", lr=0.1), lambda cid: FOUR_EXAMPLES, adapter=shift_adapter(2)
    )
    app.store.put(3, ClientState(control=np.full(2, 0.25, dtype=np.float32)))
    reply = app.handle(scaffold_task(3, np.ones(2, np.float32), np.full(2, 0.5, np.float32)))
    assert isinstance(reply, Reply)
    assert (reply.round, reply.client_id, reply.num_examples, reply.num_steps) == (0, 3, 4, 2)
    delta, control_delta = (decode_frame(p) for p in reply.payloads)
    kept = app.store.get(3).control
    assert kept is not None
    np.testing.assert_allclose(delta, np.full(2, -0.25), rtol=1e-6)
    np.testing.assert_allclose(kept, np.full(2, 1.0), rtol=1e-5)
    np.testing.assert_allclose(control_delta, np.full(2, 0.75), rtol=1e-5)
    assert reply.nbytes == 2 * raw_frame_nbytes(2)


def test_a_diverged_client_replies_with_a_failure_and_keeps_the_state_it_had() -> None:
    blow_up = FlatAdapter(2, lambda w, config, control: (np.full_like(w, np.inf), 1))
    app = ClientApp(FLConfig(strategy="scaffold"), lambda cid: FOUR_EXAMPLES, adapter=blow_up)
    before = ClientState(control=np.full(2, 0.25, dtype=np.float32))
    app.store.put(3, before)
    answer = app.handle(scaffold_task(3, np.ones(2, np.float32), np.full(2, 0.5, np.float32)))
    assert isinstance(answer, Failure)
    assert (answer.round, answer.client_id, answer.kind) == (0, 3, "diverged")
    assert app.store.get(3) is before


def test_codec_in_the_loop_counts_frame_bytes() -> None:
    fc = pytest.importorskip("fedcodec")
    config = replace(TINY, codec="quant:8", error_feedback=True)
    result = simulate(config)
    assert result.summary["uplink_ratio"] > 3.0
    again = simulate(config)
    assert same_run(result.summary, again.summary)
    assert isinstance(fc.from_spec("quant:8").encode(np.zeros(4, np.float32), seed=1), bytes)


def test_error_feedback_residual_carries_what_the_frame_dropped() -> None:
    chain = UplinkChain.from_config(FLConfig(codec="topk:0.25", error_feedback=True))
    assert chain.names == ("residual", "codec")
    x = np.array([4.0, -3.0, 2.0, 1.0, 0.5, 0.25, -0.125, 8.0], dtype=np.float32)
    layout = ParamLayout.from_shapes([("w", x.shape)])
    states: ClientStates = {}  # the client's own stage states, kept between its rounds
    frame = chain.encode(x, UplinkContext(layout, client_id=0, seed=1), states).payload
    residual = states["residual"]
    assert isinstance(residual, np.ndarray)
    np.testing.assert_allclose(decode_frame(frame) + residual, x, rtol=1e-6)
    frame2 = chain.encode(np.zeros_like(x), UplinkContext(layout, client_id=0, seed=2), states).payload
    residual2 = states["residual"]
    assert isinstance(residual2, np.ndarray)
    np.testing.assert_allclose(decode_frame(frame2) + residual2, residual, rtol=1e-6)
    assert chain.decode(frame2, UplinkContext(layout)) == frame2  # the server folds a codec frame as it came


def test_worker_failure_surfaces_with_its_traceback() -> None:
    config = replace(TINY, backend="sklearn", model="logreg", strategy="scaffold", workers=2)
    with pytest.raises(WorkerError, match="SCAFFOLD"):
        simulate(config)


def test_stragglers_run_fewer_local_epochs_and_change_the_run() -> None:
    full = simulate(TINY)
    straggling = simulate(replace(TINY, stragglers=1.0, local_epochs=4))
    again = simulate(replace(TINY, stragglers=1.0, local_epochs=4))
    np.testing.assert_array_equal(straggling.weights, again.weights)
    assert not np.array_equal(full.weights, straggling.weights)
    with pytest.raises(ValueError, match="stragglers"):
        FLConfig(stragglers=1.5)


def test_a_client_whose_training_diverges_is_dropped_and_the_model_stays_finite() -> None:
    blown_up = simulate(replace(TINY, lr=1e30, rounds=2))
    assert blown_up.summary["diverged_updates"] == 2 * TINY.per_round
    assert all(r.clients == [] and len(r.diverged) == TINY.per_round for r in blown_up.records)
    assert all(r.uplink_bytes == 0 for r in blown_up.records)
    assert np.isfinite(blown_up.weights).all()
    assert simulate(TINY).summary["diverged_updates"] == 0
