"""Update rules as uplink stages: shifted compression (DIANA, EF21) and error feedback that fades."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fedcore.client import ClientState, ClientStateStore
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.server.checkpoint import load_checkpoint
from fedcore.server.run import run_federation
from fedcore.sim.transport import SimTransport
from fedcore.sim.workers import load_data, make_pool
from fedcore.strategies.base import FoldSum
from fedcore.uplink import ClientStates, UplinkChain, UplinkContext, decode_frame
from fedcore.uplink.codec import CodecStage
from fedcore.uplink.decayed_feedback import DecayedErrorFeedbackStage, Residual
from fedcore.uplink.error_feedback import ErrorFeedbackStage
from fedcore.uplink.shift import ShiftSpec, ShiftStage

pytest.importorskip("fedcodec")

SIZE = 64
LAYOUT = ParamLayout.from_shapes([("w", (SIZE,))])


def _round(
    chain: UplinkChain,
    states: dict[int, ClientStates],
    updates: dict[int, np.ndarray],
    server: dict[str, object],
    clients: int,
) -> tuple[np.ndarray, dict[str, object]]:
    """One round by hand: each client encodes, the server folds with weight 1 each, then the server halves."""
    total = np.zeros(SIZE, dtype=np.float64)
    for cid, x in updates.items():
        ctx = UplinkContext(LAYOUT, client_id=cid, seed=cid)
        update = chain.decode(chain.encode(x, ctx, states.setdefault(cid, {})).payload, ctx)
        total += decode_frame(update) if isinstance(update, bytes) else update
    fold = FoldSum(total, weight_sum=float(len(updates)), count=len(updates))
    fold, kept = chain.server_round(fold, server, clients)
    return fold.delta_sum / fold.weight_sum, kept


def _updates(rng: np.random.Generator, ids: list[int]) -> dict[int, np.ndarray]:
    # each client has its own large direction plus a small shared one, as on MNIST-1D
    return {
        i: (rng.standard_normal(SIZE) + 3.0 * np.sin(i + np.arange(SIZE))).astype(np.float32) for i in ids
    }


@pytest.mark.parametrize("spec", ["diana:0.3", "ef21"])
def test_with_a_lossless_codec_the_shift_changes_nothing(spec: str) -> None:
    chain = UplinkChain((ShiftStage(ShiftSpec.parse(spec)), CodecStage(None)))
    rng = np.random.default_rng(0)
    states: dict[int, ClientStates] = {}
    server: dict[str, object] = {}
    for _ in range(4):  # every client every round: the step is the plain mean of the updates
        updates = _updates(rng, [0, 1, 2, 3])
        step, server = _round(chain, states, updates, server, clients=4)
        np.testing.assert_allclose(step, np.mean(list(updates.values()), axis=0), rtol=1e-5, atol=1e-5)
    if spec == "ef21":  # EF21's shift is the last update it sent
        np.testing.assert_allclose(states[2]["shift"], updates[2], atol=1e-6)


@pytest.mark.parametrize("spec", ["diana:0.3", "ef21"])
def test_the_server_keeps_the_mean_of_every_clients_shift_under_partial_participation(spec: str) -> None:
    chain = UplinkChain((ShiftStage(ShiftSpec.parse(spec)), CodecStage("quant:4")))
    rng = np.random.default_rng(1)
    states: dict[int, ClientStates] = {}
    server: dict[str, object] = {}
    for r in range(6):
        taking_part = sorted(rng.choice(10, size=3, replace=False).tolist())
        _, server = _round(chain, states, _updates(rng, taking_part), server, clients=10)
        shifts = [states[i]["shift"] if i in states else np.zeros(SIZE) for i in range(10)]
        np.testing.assert_allclose(server["shift"], np.mean(shifts, axis=0), atol=1e-5, err_msg=f"round {r}")


def test_a_learned_shift_leaves_the_codec_less_to_lose() -> None:
    # a client whose update barely changes: after a few rounds DIANA sends only the change
    rng = np.random.default_rng(2)
    usual = rng.standard_normal(SIZE).astype(np.float32)
    plain = UplinkChain((CodecStage("quant:2"),))
    shifted = UplinkChain((ShiftStage(ShiftSpec("diana", 0.5)), CodecStage("quant:2")))
    states: ClientStates = {}
    errors = []
    for r in range(8):
        x = (usual + 0.01 * rng.standard_normal(SIZE)).astype(np.float32)
        ctx = UplinkContext(LAYOUT, seed=r)
        mine = shifted.encode(x, ctx, states).reconstruct()
        theirs = plain.encode(x, ctx, {}).reconstruct()
        errors.append((np.linalg.norm(mine - x), np.linalg.norm(theirs - x)))
    assert errors[-1][0] < errors[-1][1] / 10


def test_an_empty_round_leaves_the_server_shift_alone() -> None:
    stage = ShiftStage(ShiftSpec("diana", 0.5))
    h = np.ones(SIZE)
    fold, kept = stage.server_round(FoldSum.empty(SIZE), h, clients=10)
    assert kept is h
    assert fold.count == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [("diana", "needs its step"), ("diana:0", "0 < ALPHA <= 1"), ("ef21:0.5", "no argument"), ("x", "diana")],
)
def test_bad_shift_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ShiftSpec.parse(spec)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shift": "ef21"}, "lossy upload"),
        ({"shift": "ef21", "codec": "quant:4", "strategy": "scaffold"}, "scaffold"),
        ({"shift": "ef21", "codec": "quant:4", "dp": "central:1", "noise_multiplier": 1.0}, "--dp"),
        ({"ef_decay": 0.5, "codec": "topk:0.1"}, "needs --error-feedback"),
        ({"ef_decay": 1.5, "codec": "topk:0.1", "error_feedback": True}, r"\[0, 1\]"),
    ],
)
def test_configs_that_cannot_work_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FLConfig(**fields)  # type: ignore[arg-type]


def test_the_chain_runs_the_shift_after_clipping_and_before_error_feedback() -> None:
    config = FLConfig(codec="topk:0.1", error_feedback=True, ef_decay=0.9, shift="diana:0.5")
    assert UplinkChain.from_config(config).names == ("shift", "residual", "codec")


def test_a_residual_fades_by_decay_per_round_the_client_sat_out() -> None:
    stage = DecayedErrorFeedbackStage(0.5)
    chain = UplinkChain((stage, CodecStage("topk:0.25")))
    x = np.arange(1, 9, dtype=np.float32)  # top-25 % keeps 7 and 8
    states: ClientStates = {}
    chain.encode(x, UplinkContext(ParamLayout.from_shapes([("w", (8,))]), round=3), states)
    left: Residual = states["residual"]
    assert left.round == 3
    np.testing.assert_array_equal(left.values, [1, 2, 3, 4, 5, 6, 0, 0])
    zero = np.zeros(8, dtype=np.float32)
    sent = chain.encode(zero, UplinkContext(ParamLayout.from_shapes([("w", (8,))]), round=5), states)
    # two rounds later a quarter of the residual is owed: top-25 % of [0.25 .. 1.5, 0, 0] is 1.25, 1.5
    np.testing.assert_allclose(sent.reconstruct(), [0, 0, 0, 0, 1.25, 1.5, 0, 0])


def test_decay_one_is_plain_error_feedback_and_a_lossless_codec_owes_nothing() -> None:
    rng = np.random.default_rng(3)
    decayed = UplinkChain((DecayedErrorFeedbackStage(1.0), CodecStage("topk:0.1")))
    plain = UplinkChain((ErrorFeedbackStage(), CodecStage("topk:0.1")))
    lossless = UplinkChain((DecayedErrorFeedbackStage(0.5), CodecStage(None)))
    a: ClientStates = {}
    b: ClientStates = {}
    c: ClientStates = {}
    for r in range(0, 12, 3):
        x = rng.standard_normal(SIZE).astype(np.float32)
        ctx = UplinkContext(LAYOUT, round=r)
        assert decayed.encode(x, ctx, a).payload == plain.encode(x, ctx, b).payload
        np.testing.assert_array_equal(lossless.encode(x, ctx, c).reconstruct(), x)
        assert not np.any(c["residual"].values)


def test_client_and_server_state_survive_pickling_and_a_checkpoint(tmp_path: Path) -> None:
    config = FLConfig(
        clients=6,
        per_round=3,
        rounds=2,
        local_epochs=1,
        workers=0,
        seed=1,
        codec="quant:4",
        shift="diana:0.5",
    )
    devices = ClientStateStore()
    transport = SimTransport(make_pool(config, load_data(config)), devices)
    try:
        run_federation(config, transport, tmp_path / "run")
    finally:
        transport.close()
    server = load_checkpoint(tmp_path / "run", config.run_settings())
    mean_shift = server.uplink["shift"]
    assert mean_shift.shape == server.server.weights.shape
    assert np.any(mean_shift)
    shifts = [devices.get(cid).stages.get("shift") for cid in range(config.clients)]
    assert sum(s is not None for s in shifts) >= 3
    state = ClientState(stages={"shift": shifts[next(i for i, s in enumerate(shifts) if s is not None)]})
    back = pickle.loads(pickle.dumps(state))
    np.testing.assert_array_equal(back.stages["shift"], state.stages["shift"])
    residual = ClientState(stages={"residual": Residual(np.ones(3, np.float32), 4)})
    assert pickle.loads(pickle.dumps(residual)).stages["residual"].round == 4


def test_a_run_with_shift_and_fading_residual_trains() -> None:
    from fedcore.sim import simulate

    base = FLConfig(clients=8, per_round=4, rounds=6, local_epochs=2, workers=0, seed=0, codec="topk:0.25")
    for rules in ({"shift": "ef21"}, {"shift": "diana:0.5", "error_feedback": True, "ef_decay": 0.8}):
        result = simulate(replace(base, **rules))  # type: ignore[arg-type]
        assert result.records[-1].accuracy > 0.4, rules  # ten digit classes: chance is 0.1


def test_a_checkpoint_from_before_server_halves_kept_state_still_loads() -> None:
    from fedcore.server.driver import initial_state

    state = initial_state(FLConfig(), np.zeros(4, dtype=np.float32))
    del state.__dict__["uplink"]  # as pickled by a driver that had no such field
    assert pickle.loads(pickle.dumps(state)).uplink == {}
