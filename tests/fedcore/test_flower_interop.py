"""fedcodec inside Flower: the mod sends frames, the strategy decodes them, Flower's simulation runs both."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import fedcodec
from fedcore.flower.frames import ArraysLayout, decode_update, encode_update
from fedcore.partial import Mask, round_seed

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "flower" / "digits_app.py"


def test_float_arrays_travel_as_one_vector_and_the_rest_passes_through() -> None:
    arrays = {
        "w": np.ones((2, 3), np.float32),
        "steps": np.array([7], np.int64),
        "b": np.zeros(2, np.float16),
    }
    layout = ArraysLayout.of(arrays)
    assert layout.passthrough == ("steps",)
    flat = layout.flatten(arrays)
    assert flat.shape == (8,)
    rebuilt = layout.rebuild(flat + 1, {"steps": np.array([8], np.int64)})
    assert list(rebuilt) == ["w", "steps", "b"]
    assert rebuilt["b"].dtype == np.float16
    assert np.all(rebuilt["b"] == 1)
    assert rebuilt["steps"].tolist() == [8]
    with pytest.raises(ValueError, match="shape"):
        layout.flatten({**arrays, "w": np.ones((3, 2), np.float32)})


def test_error_feedback_owes_what_the_codec_dropped() -> None:
    layout = ArraysLayout.of({"w": np.zeros(1000, np.float32)}).floats
    delta = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    states: dict[str, object] = {}
    frame = encode_update(
        delta, layout, codec="topk:0.05", seed=1, server_round=1, states=states, error_feedback=True
    )
    sent = decode_update(frame, layout)
    assert np.count_nonzero(sent) == 50
    assert np.allclose(sent + states["residual"], delta, atol=1e-6)
    assert len(frame) < 4 * 1000 / 5


def test_a_partial_mask_sends_only_its_coordinates() -> None:
    layout = ArraysLayout.of({"w": np.zeros(1000, np.float32)}).floats
    mask = Mask.seeded(1000, 0.25, seed=3)
    delta = np.arange(1000, dtype=np.float32)
    frame = encode_update(delta, layout, codec=None, seed=0, server_round=1, mask=mask)
    update = decode_update(frame, layout, mask)
    assert np.array_equal(update[mask.to_bool()], delta[mask.to_bool()])
    assert not update[~mask.to_bool()].any()
    assert len(frame) < 4 * 1000 * 0.3


def test_a_frame_of_another_size_is_refused() -> None:
    small = ArraysLayout.of({"w": np.zeros(10, np.float32)}).floats
    large = ArraysLayout.of({"w": np.zeros(11, np.float32)}).floats
    frame = encode_update(np.ones(10, np.float32), small, codec="quant:8", seed=0, server_round=1)
    with pytest.raises(ValueError, match="11"):
        decode_update(frame, large)
    with pytest.raises(fedcodec.FrameError):
        decode_update(frame[:-3], small)


def test_the_pure_parts_import_without_flwr() -> None:
    """Only the mod and the strategies need flwr, and they say so when it is missing."""
    code = (
        "import sys; sys.modules['flwr'] = None\n"
        "import fedcore.flower as f\n"
        "assert callable(f.encode_update)\n"
        "try:\n    f.CompressedStrategy\nexcept ImportError:\n    print('no flwr')\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "no flwr", done.stderr


# ---- with flwr: the mod and the strategy on hand-made messages, then Flower's own simulation -----------

needs_flwr = pytest.mark.skipif(
    importlib.util.find_spec("flwr") is None,
    reason="Flower interop needs flwr: pip install 'fedcore[flower]'",
)
if importlib.util.find_spec("flwr") is not None:
    with warnings.catch_warnings():  # flwr 1.42 imports typer, which calls a click API deprecated in 8.2
        warnings.simplefilter("ignore", DeprecationWarning)
        import flwr.app  # noqa: F401


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flower stamps the running task's identity on every message it makes; outside a run we lend one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


class _Nodes:
    """The part of Flower's Grid a strategy's configure_train uses."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids

    def get_node_ids(self) -> list[int]:
        return self.ids


def _round_trip(strategy, mod, clients: int, train) -> tuple[object, object, list]:  # type: ignore[no-untyped-def]
    """One round: the strategy configures, each node's mod wraps `train`, the strategy aggregates."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, RecordDict

    global_arrays = ArrayRecord({"w": Array(np.zeros(200, np.float32))})
    messages = list(
        strategy.configure_train(1, global_arrays, ConfigRecord(), _Nodes(list(range(1, clients + 1))))
    )
    contexts = [Context(0, m.metadata.dst_node_id, {}, RecordDict(), {}) for m in messages]
    replies = [mod(m, c, train) for m, c in zip(messages, contexts, strict=True)]
    return strategy.aggregate_train(1, replies), contexts, replies


def _train(msg, context):  # type: ignore[no-untyped-def]
    """A client whose update is its node id in every coordinate."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict

    weights = msg.content["arrays"]["w"].numpy() + context.node_id
    metrics = MetricRecord({"num-examples": 1})
    return Message(
        RecordDict({"arrays": ArrayRecord({"w": Array(weights)}), "metrics": metrics}), reply_to=msg
    )


@needs_flwr
@pytest.mark.usefixtures("flower_task")
def test_the_strategy_averages_what_the_mod_sent() -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedcore.flower import CompressedStrategy, fedcodec_mod

    strategy = CompressedStrategy(FedAvg(fraction_evaluate=0.0), codec="quant:8")
    (arrays, metrics), _, replies = _round_trip(strategy, fedcodec_mod(), 3, _train)
    assert all("arrays" not in r.content and "fedcodec" in r.content for r in replies)
    assert np.allclose(arrays["w"].numpy(), 2.0, atol=0.02)  # mean of 1, 2, 3
    assert metrics["fedcodec-frames"] == 3
    assert metrics["fedcodec-dropped"] == 0
    assert metrics["uplink-bytes"] < 3 * 200 * 4 / 2  # 8-bit codes (and a frame header) for float32


@needs_flwr
@pytest.mark.usefixtures("flower_task")
def test_a_bad_frame_drops_that_client_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedcore.flower import CompressedStrategy, fedcodec_mod

    mod = fedcodec_mod("quant:8")

    def corrupting(msg, context, call_next):  # type: ignore[no-untyped-def]
        reply = mod(msg, context, call_next)
        if context.node_id == 2:
            frame = reply.content["fedcodec"]["frame"]
            reply.content["fedcodec"]["frame"] = frame[:20] + bytes([frame[20] ^ 0xFF]) + frame[21:]
        return reply

    strategy = CompressedStrategy(FedAvg(fraction_evaluate=0.0))
    with caplog.at_level(logging.WARNING, logger="fedcore.flower"):
        (arrays, metrics), _, _ = _round_trip(strategy, corrupting, 3, _train)
    assert np.allclose(arrays["w"].numpy(), 2.0, atol=0.02)  # mean of 1 and 3
    assert metrics["fedcodec-dropped"] == 1
    assert metrics["fedcodec-frames"] == 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "fedcore.flower"]
    assert "dropped node 2" in line
    assert "\n" not in line


@needs_flwr
@pytest.mark.usefixtures("flower_task")
def test_error_feedback_keeps_its_residual_in_the_node_state() -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedcore.flower import CompressedStrategy, fedcodec_mod

    strategy = CompressedStrategy(FedAvg(fraction_evaluate=0.0), codec="topk:0.1")
    _, contexts, _ = _round_trip(strategy, fedcodec_mod(error_feedback=True), 2, _train)
    residual = contexts[0].state["fedcodec.residual"]["residual"].numpy()
    assert residual.shape == (200,)
    assert np.count_nonzero(residual) == 180


@needs_flwr
@pytest.mark.usefixtures("flower_task")
def test_partial_sharing_changes_only_the_masked_coordinates() -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedcore.flower import CompressedStrategy, fedcodec_mod

    strategy = CompressedStrategy(FedAvg(fraction_evaluate=0.0), partial="random:0.25")
    (arrays, _), _, _ = _round_trip(strategy, fedcodec_mod(), 2, _train)
    mask = Mask.seeded(
        200, 0.25, round_seed(0, 1)
    )  # random:0.25's mask of round 1, as fedcore's server picks it
    assert np.array_equal(arrays["w"].numpy() != 0, mask.to_bool())
    assert np.allclose(arrays["w"].numpy()[mask.to_bool()], 1.5)


@needs_flwr
@pytest.mark.usefixtures("flower_task")
def test_a_plain_server_gets_plain_replies_from_a_client_with_the_mod() -> None:
    from flwr.serverapp.strategy import FedAvg

    from fedcore.flower import UplinkMeter, fedcodec_mod

    (arrays, metrics), _, replies = _round_trip(
        UplinkMeter(FedAvg(fraction_evaluate=0.0)), fedcodec_mod(), 2, _train
    )
    assert all("fedcodec" not in r.content for r in replies)
    assert np.allclose(arrays["w"].numpy(), 1.5)
    assert metrics["uplink-bytes"] > 2 * 200 * 4


@needs_flwr
def test_the_example_runs_in_flowers_simulation_and_sends_frames(tmp_path: Path) -> None:
    """Five Ray-simulated nodes, four rounds: frames travelled, 30x under float32, sane accuracy."""
    out = tmp_path / "run.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, str(APP), "--clients", "5", "--rounds", "4", "--cpus", "2", "--out", str(out)]
    done = subprocess.run(command, timeout=600, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(out.read_text())
    assert run["frames"] == [5, 5, 5, 5]
    float_bytes = 5 * 17_610 * 4  # five replies of the 64-100-100-10 MLP in float32
    assert all(b < float_bytes / 30 for b in run["uplink_bytes"])
    assert run["accuracy"][-1] > 0.7  # 0.10 before training
