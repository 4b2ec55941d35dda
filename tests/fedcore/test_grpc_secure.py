"""Secure aggregation over real loopback gRPC: client processes hold their updates and run the SecAgg+ client
half; the server sees keys, sealed shares, masked inputs and unmasking shares, and the sum is exact even
when a client is killed between stages or forges a stage's bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from grpc_fakes import SumFold, model_frame
from grpc_secure_peer import N, examples, handlers, update

import fedcodec as fc
from fedcore.protocol import Reply, Task
from fedcore.protocol.transport import RoundOutcome
from fedcore.records import RoundRecord
from fedcore.secure.encoding import ring_codes
from fedcore.secure.party import SecureParty
from fedcore.secure.round import SecureSettings, SecureSumResult, SecureTransport
from fedcore.secure.update import ring_input, ring_sum
from fedcore.server.audit import audit_entry
from fedcore.transport.grpc import wire
from fedcore.transport.grpc._generated import fleet_pb2 as pb
from fedcore.transport.grpc.auth import TokenBook, client_token_file, make_tokens, read_token
from fedcore.transport.grpc.client import FleetClient, RetryPolicy, _Stub
from fedcore.transport.grpc.limits import Limits
from fedcore.transport.grpc.server import GrpcServerTransport

HERE = Path(__file__).parent
STAGE_TIMEOUT_S = 10.0  # a killed client costs one stage this long
SETTINGS = SecureSettings(
    seed=7,
    clip=1.0,
    bits=16,
    per_round=5,
    fraction=1.0,
    weight_cap=20,
    model_size=N,
    neighbors=4,
    threshold=2,
)


def _env() -> dict[str, str]:
    paths = [str(HERE.parents[1] / "python"), str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _secure_server(tmp_path: Path, clients: int, **timing: float) -> GrpcServerTransport:
    """A secure-aggregation server on a free loopback port, with fresh tokens for `clients` in tmp_path."""
    make_tokens(clients, tmp_path)
    tokens = TokenBook.load(tmp_path / "tokens.json")
    return GrpcServerTransport(
        "127.0.0.1:0", tokens, Limits.for_model(N), "{}", max_clients=clients, secure=True, **timing
    )


def _run_round(tmp_path: Path, modes: dict[int, str], clients: int = 5) -> RoundOutcome:
    """One secure round with `clients` peer processes (client c in modes[c]: die:STAGE or forge:STAGE)."""
    server = _secure_server(
        tmp_path, clients, round_timeout_s=120.0, poll_s=1.0, stage_timeout_s=STAGE_TIMEOUT_S
    )
    procs = []
    for c in range(clients):
        peer = [
            sys.executable,
            str(HERE / "grpc_secure_peer.py"),
            f"127.0.0.1:{server.port}",
            str(c),
            str(client_token_file(tmp_path, c)),
            modes.get(c, ""),
        ]
        with (tmp_path / f"client-{c}.log").open("wb") as log:
            procs.append(subprocess.Popen(peer, env=_env(), stdout=log, stderr=subprocess.STDOUT))
    try:
        assert server.wait_ready(clients, 120.0) == clients
        tasks = [Task(0, c, 0, model_frame()) for c in range(clients)]
        return SecureTransport(server, SETTINGS).run_round(tasks, SumFold, 60.0)
    finally:
        server.close(grace_s=5.0)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def _expected(included: list[int], answered: list[int]) -> tuple[np.ndarray, float]:
    """The plain sum of the included clients' ring inputs, decoded: what the unmasked sum must equal."""
    announced = SETTINGS.announce(0, tuple(sorted(answered)))
    inputs = [ring_codes(ring_input(update(c), examples(c), announced, c)) for c in included]
    codes = sum(x.astype(np.uint64) for x in inputs)
    assert isinstance(codes, np.ndarray)
    total = (codes % (1 << announced.setup.ring_bits)).astype(np.uint32)
    delta, weight = ring_sum(total, len(included), N, announced)
    return delta * SETTINGS.weight_cap, weight * SETTINGS.weight_cap


def _fold(outcome: RoundOutcome) -> Iterator[object]:
    assert isinstance(outcome.aggregator, SecureSumResult)
    fold = outcome.aggregator.finish()
    yield fold.delta_sum
    yield fold.weight_sum


@pytest.mark.slow
@pytest.mark.parametrize(
    ("modes", "dropped"),
    [
        # client 1 dies when the masked-input stage reaches it (after sharing its keys: its pair masks must
        # be rebuilt from its neighbours' shares); client 3 at unmasking (its input is in, its shares not)
        ({1: "die:mask", 3: "die:unmask"}, [1]),
        # client 0 dies before advertising keys, client 4 before sharing them: nobody masks with either
        ({0: "die:advertise", 4: "die:share"}, [0, 4]),
    ],
)
def test_a_client_killed_between_stages_leaves_an_exact_sum_of_the_rest(
    tmp_path: Path, modes: dict[int, str], dropped: list[int]
) -> None:
    outcome = _run_round(tmp_path, modes)
    included = [c for c in range(5) if c not in dropped]
    assert sorted(r.client_id for r in outcome.replies) == included
    assert [(f.client_id, f.kind) for f in outcome.failures] == [(c, "dropped") for c in sorted(modes)]
    delta, weight = _fold(outcome)
    want_delta, want_weight = _expected(included, answered=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(delta, want_delta)
    assert weight == want_weight
    metrics = outcome.aggregator.metrics  # type: ignore[attr-defined]
    assert metrics["secagg_dropped"] == dropped
    assert set(metrics["secagg_stage_wall_seconds"]) == {"advertise", "share", "mask", "unmask"}


@pytest.mark.slow
def test_a_forged_stage_payload_is_that_clients_typed_failure(tmp_path: Path) -> None:
    outcome = _run_round(tmp_path, {2: "forge:share"})
    included = [0, 1, 3, 4]
    assert sorted(r.client_id for r in outcome.replies) == included
    [failure] = outcome.failures
    assert (failure.client_id, failure.kind) == (2, "bad_frame")
    assert failure.message.startswith("secagg share: truncated")
    record = RoundRecord(1, included, 5, [], 0, 0.0, 0.0, 0.0, 0, 0, 0.0, 0.0, 0.0)
    [refused] = audit_entry(record, outcome)["refused"]
    assert (refused["client_id"], refused["kind"]) == (2, "bad_frame")
    delta, weight = _fold(outcome)
    want_delta, want_weight = _expected(included, answered=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(delta, want_delta)
    assert weight == want_weight


def _answer_training_and_keys_then_vanish(target: str, client_id: int, token: str) -> None:
    """A client that answers the round's training and the advertise stage, then stops polling for good."""
    import grpc

    with grpc.insecure_channel(target) as channel:
        stub = _Stub(channel)
        welcome = stub.register(pb.Hello(client_id=client_id, token=token), 10.0)
        request = pb.TaskRequest(session_id=welcome.session_id, client_id=client_id)
        party = SecureParty(client_id)

        def next_task() -> Task | wire.StageTask:
            while True:
                _, task = wire.read_task(stub.get_task(request, 30.0), welcome.max_message_bytes)
                if task is not None:
                    return task

        training = next_task()
        assert isinstance(training, Task)
        frame = fc.from_spec("none").encode(update(client_id))
        held = party.hold(Reply(training.round, client_id, (frame,), examples(client_id), 3, 0.25))
        stub.submit(wire.upload_chunks(welcome.session_id, held, welcome.chunk_bytes), 10.0)
        keys = next_task()
        assert isinstance(keys, wire.StageTask)
        assert keys.stage == "advertise"
        answer = party.answer_bytes(keys.round, keys.stage, keys.payload)
        done = wire.StageAnswer(keys.round, client_id, keys.stage, answer)
        stub.submit(wire.upload_chunks(welcome.session_id, done, welcome.chunk_bytes), 10.0)


def test_a_client_gone_before_its_stage_is_dropped_without_waiting_out_the_stage(tmp_path: Path) -> None:
    server = _secure_server(
        tmp_path, 5, round_timeout_s=60.0, poll_s=0.5, session_ttl_s=2.0, stage_timeout_s=120.0
    )
    target = f"127.0.0.1:{server.port}"
    retry = RetryPolicy(first_s=0.1, max_s=0.5, give_up_s=20.0)
    threads = [
        threading.Thread(
            target=FleetClient(
                target, c, read_token(client_token_file(tmp_path, c)), lambda _, c=c: handlers(c), retry=retry
            ).run,
            daemon=True,
        )
        for c in range(4)
    ]
    vanishing = threading.Thread(
        target=_answer_training_and_keys_then_vanish,
        args=(target, 4, read_token(client_token_file(tmp_path, 4))),
        daemon=True,
    )
    for t in [*threads, vanishing]:
        t.start()
    try:
        assert server.wait_ready(5, 30.0) == 5
        start = time.monotonic()
        tasks = [Task(0, c, 0, model_frame()) for c in range(5)]
        outcome = SecureTransport(server, SETTINGS).run_round(tasks, SumFold, None)
        elapsed = time.monotonic() - start
    finally:
        server.close(grace_s=5.0)
        for t in [*threads, vanishing]:
            t.join(timeout=30.0)
    assert elapsed < 60.0  # the share stage would otherwise wait its 120 s
    assert sorted(r.client_id for r in outcome.replies) == [0, 1, 2, 3]
    [failure] = outcome.failures
    assert (failure.client_id, failure.kind) == (4, "dropped")
    assert "gone before secagg share" in failure.message
    delta, weight = _fold(outcome)
    want_delta, want_weight = _expected([0, 1, 2, 3], answered=[0, 1, 2, 3, 4])
    np.testing.assert_array_equal(delta, want_delta)
    assert weight == want_weight


SECURE_RUN = """\
dataset = "digits"
clients = 4
per_round = 3
rounds = 2
local_epochs = 1
secagg = true
workers = 0
vectorize = false  # a client process trains one client, so the simulation does too
seed = 3
"""


@pytest.mark.slow
def test_deploy_local_with_secagg_reproduces_the_simulation(tmp_path: Path) -> None:
    from fedcore.config import load_config
    from fedcore.sim import simulate_to_dir

    (tmp_path / "run.toml").write_text(SECURE_RUN)
    out = tmp_path / "grpc"
    command = [sys.executable, "-m", "fedcore.transport.grpc", "deploy-local", "--config", "run.toml"]
    command += ["--out", str(out), "--poll-s", "1"]
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]

    config = load_config(tmp_path / "run.toml", {"out": str(tmp_path / "sim")})
    simulate_to_dir(config, lambda record: None)
    keys = ("round", "clients", "accuracy", "loss", "uplink_bytes", "downlink_bytes")

    def rounds(path: Path) -> list[dict[str, object]]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    over_grpc = rounds(out / "rounds.jsonl")
    simulated = rounds(tmp_path / "sim" / "rounds.jsonl")
    assert [{k: r[k] for k in keys} for r in over_grpc] == [{k: r[k] for k in keys} for r in simulated]
    for record in over_grpc:
        secagg = record["secagg"]
        assert isinstance(secagg, dict)
        assert secagg["secagg_dropped"] == []
        assert set(secagg["secagg_client_seconds"]) == {"advertise", "share", "mask", "unmask"}
    # the server logged each masked input it summed, never a client's update
    audit = rounds(out / "audit.jsonl")
    assert [a["answered"] for a in audit] == [r["clients"] for r in over_grpc]
    assert all(len(f["sha256"]) == 1 for a in audit for f in a["frames"])  # type: ignore[attr-defined]


@pytest.mark.slow
def test_deploy_local_with_distributed_dp_spends_the_simulations_epsilon(tmp_path: Path) -> None:
    from fedcore.config import load_config
    from fedcore.sim import simulate_to_dir

    run = SECURE_RUN + 'dp = "distributed:1.0"\nnoise_multiplier = 1.0\n'
    (tmp_path / "run.toml").write_text(run)
    out = tmp_path / "grpc"
    command = [sys.executable, "-m", "fedcore.transport.grpc", "deploy-local", "--config", "run.toml"]
    command += ["--out", str(out), "--poll-s", "1"]
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    simulate_to_dir(load_config(tmp_path / "run.toml", {"out": str(tmp_path / "sim")}), lambda record: None)

    def rounds(path: Path) -> list[dict[str, object]]:
        return [json.loads(line) for line in path.read_text().splitlines()]

    over_grpc, simulated = rounds(out / "rounds.jsonl"), rounds(tmp_path / "sim" / "rounds.jsonl")
    assert [r["epsilon"] for r in over_grpc] == [r["epsilon"] for r in simulated]  # the same accountant
    for record in over_grpc:  # each client added its share from its own secret: the sum carries z * C
        secagg = record["secagg"]
        assert isinstance(secagg, dict)
        assert secagg["secagg_dp_effective_noise_multiplier"] >= 1.0 - 1e-6
        assert secagg["secagg_dp_noise_std"] == pytest.approx(1.0, rel=0.01)
