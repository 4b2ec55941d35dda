"""The gRPC server transport over real loopback gRPC: every kind of bad upload becomes that client's typed
failure, and the good replies fold exactly as if the bad ones had never been sent."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_fakes import (
    QUANT8,
    N,
    SumFold,
    expected_sum,
    good_reply,
    header,
    model_frame,
    raw_register,
    token,
    update_frame,
    upload,
)

import fedcodec as fc
from fedcore.protocol import Reply, RoundOutcome, Task
from fedcore.transport.grpc._generated import fleet_pb2 as pb
from fedcore.transport.grpc.auth import make_tokens
from fedcore.transport.grpc.client import ClientRefusedError, FleetClient, _Stub
from fedcore.transport.grpc.limits import Limits
from fedcore.transport.grpc.server import GrpcServerTransport
from fedcore.transport.grpc.wire import read_task

DEADLINE_S = 6.0  # a round of a dozen uploads one after another, on a loaded CI box


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    make_tokens(12, tmp_path)
    return tmp_path


@pytest.fixture
def server(tokens: Path) -> Iterator[GrpcServerTransport]:
    from fedcore.transport.grpc.auth import TokenBook

    book = TokenBook.load(tokens / "tokens.json")
    transport = GrpcServerTransport(
        "127.0.0.1:0", book, Limits.for_model(N, "quant:8"), "{}", poll_s=1.0, round_timeout_s=30.0
    )
    yield transport
    transport.close(grace_s=0.5)


def _round_in_background(
    server: GrpcServerTransport, round_index: int, clients: range
) -> Future[RoundOutcome]:
    tasks = [Task(round_index, c, round_index, model_frame()) for c in clients]
    pool = ThreadPoolExecutor(1)
    future = pool.submit(server.run_round, tasks, SumFold, DEADLINE_S)
    pool.shutdown(wait=False)
    return future


def _wait_for_round(server: GrpcServerTransport, stub: _Stub, welcome: pb.Welcome, client_id: int) -> None:
    """Long-poll until this client's task is out, as a real client would."""
    for _ in range(20):
        parts = stub.get_task(pb.TaskRequest(session_id=welcome.session_id, client_id=client_id), 5.0)
        _, task = read_task(parts, welcome.max_message_bytes)
        if task is not None:
            return
    raise AssertionError("no task arrived")


def test_each_bad_upload_is_that_clients_typed_failure_and_good_replies_fold_exactly(
    server: GrpcServerTransport, tokens: Path
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = _Stub(channel)
    welcome = {c: raw_register(stub, c, token(tokens, c)) for c in range(12)}
    outcome = _round_in_background(server, 0, range(12))
    _wait_for_round(server, stub, welcome[0], 0)

    def send(c: int, chunks: Iterator[pb.UploadChunk]) -> pb.Receipt:
        return stub.submit(chunks, 5.0)

    good = update_frame(0)
    assert send(0, upload(welcome[0], 0, 0, [update_frame(0)])).accepted
    assert send(1, upload(welcome[1], 0, 1, [update_frame(1)])).accepted
    receipts = {
        2: send(2, upload(welcome[2], 0, 2, [b"\x00garbage" * 50])),
        3: send(3, iter([header(welcome[3], 0, 3, [len(good)]), pb.UploadChunk(data=good[:-7])])),
        4: send(4, iter([header(welcome[4], 0, 4, [server_limits_upload(server) + 1])])),
        5: send(5, iter([header(welcome[5], 0, 5, [10]), pb.UploadChunk(data=good[:20])])),
        6: send(6, upload(welcome[6], 0, 6, [QUANT8.encode(np.ones(N + 5, np.float32))])),
        7: send(7, upload(welcome[7], 0, 7, [QUANT8.encode(np.ones(N - 5, np.float32))])),
        8: send(8, upload(welcome[8], 3, 8, [update_frame(8)])),
    }
    assert send(9, upload(welcome[9], 0, 9, [update_frame(9)])).accepted
    receipts[9] = send(9, upload(welcome[9], 0, 9, [update_frame(99)]))
    assert send(10, upload(welcome[10], 0, 10, [update_frame(10)])).accepted
    assert send(10, upload(welcome[10], 0, 10, [update_frame(10)])).accepted  # a resend changes nothing
    _disconnect_mid_upload(stub, welcome[11], 11)

    result = outcome.result(timeout=DEADLINE_S + 10)
    kinds = {f.client_id: f.kind for f in result.failures}
    # 11 hung up mid-upload: not in the sum, whatever the server saw first. "disconnected" once the
    # cancellation reaches the call; "dropped" when the deadline comes first; "bad_frame" when gRPC ends
    # the request stream a moment before the call turns inactive (a short upload, as the server sees it)
    assert kinds.pop(11) in ("disconnected", "dropped", "bad_frame")
    assert kinds == {
        2: "bad_frame",  # garbage
        3: "bad_frame",  # truncated
        4: "bad_frame",  # declared more bytes than the limit
        5: "bad_frame",  # sent more bytes than it declared
        6: "wrong_shape",  # more elements than the model (the transport's check)
        7: "wrong_shape",  # fewer elements (the aggregator's check)
        8: "wrong_round",
        9: "duplicate",
    }
    told = (2, 3, 4, 5, 6, 8, 9)  # 7 passed the transport's checks; 11 hung up before its receipt
    assert {c: receipts[c].failure_kind for c in told} == {c: kinds[c] for c in told}
    assert "oversized" in next(f.message for f in result.failures if f.client_id == 4)
    assert [r.client_id for r in result.replies] == [0, 1, 10]
    np.testing.assert_array_equal(result.aggregator.finish().delta_sum, expected_sum([0, 1, 10]))

    # the server kept running: the next round takes every client's good reply
    outcome = _round_in_background(server, 1, range(3))
    _wait_for_round(server, stub, welcome[0], 0)
    for c in range(3):
        assert send(c, upload(welcome[c], 1, c, [update_frame(c)])).accepted
    result = outcome.result(timeout=DEADLINE_S + 10)
    assert result.failures == ()
    np.testing.assert_array_equal(result.aggregator.finish().delta_sum, expected_sum([0, 1, 2]))
    channel.close()


def server_limits_upload(server: GrpcServerTransport) -> int:
    return Limits.for_model(N, "quant:8").max_upload_bytes


def _disconnect_mid_upload(stub: _Stub, welcome: pb.Welcome, client_id: int) -> None:
    """Send the header and half the frame, then cancel the call: the client went away mid-upload."""
    frame = update_frame(client_id)
    sent_half = threading.Event()
    never = threading.Event()

    def chunks() -> Iterator[pb.UploadChunk]:
        yield header(welcome, 0, client_id, [len(frame)])
        yield pb.UploadChunk(data=frame[: len(frame) // 2])
        sent_half.set()
        never.wait(10.0)

    call = stub._stub.SubmitReply.future(chunks(), timeout=10.0)
    assert sent_half.wait(5.0)
    call.cancel()  # the stream stays open until then: it never half-closes, as a truncated upload would


def test_missing_clients_are_dropped_at_the_deadline_and_the_rest_fold(
    server: GrpcServerTransport, tokens: Path
) -> None:
    clients = [
        FleetClient(f"127.0.0.1:{server.port}", c, token(tokens, c), lambda _: good_reply) for c in range(3)
    ]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    assert server.wait_ready(3, timeout_s=10.0) == 3
    tasks = [Task(0, c, 0, model_frame()) for c in range(5)]  # clients 3 and 4 never registered
    result = server.run_round(tasks, SumFold, deadline_s=1.0)
    assert [(f.client_id, f.kind) for f in result.failures] == [(3, "dropped"), (4, "dropped")]
    np.testing.assert_array_equal(result.aggregator.finish().delta_sum, expected_sum([0, 1, 2]))
    server.close(grace_s=5.0)
    for t in threads:
        t.join(timeout=5.0)
        assert not t.is_alive()


def test_unknown_foreign_and_reused_tokens_are_refused_and_logged(
    server: GrpcServerTransport, tokens: Path
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = _Stub(channel)
    codes = []
    for client_id, secret in ((0, "not-a-token"), (0, token(tokens, 1))):
        with pytest.raises(grpc.RpcError) as caught:
            raw_register(stub, client_id, secret)
        codes.append(caught.value.code())  # type: ignore[attr-defined]
    raw_register(stub, 2, token(tokens, 2))
    with pytest.raises(grpc.RpcError) as caught:
        raw_register(stub, 2, token(tokens, 2))  # a second live session for client 2
    codes.append(caught.value.code())  # type: ignore[attr-defined]
    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2 + [grpc.StatusCode.ALREADY_EXISTS]
    messages = [f.message for f in server.refusals()]
    assert [f.kind for f in server.refusals()] == ["refused"] * 3
    assert "unknown token" in messages[0]
    assert "belongs to another client" in messages[1]
    assert "live session" in messages[2]

    refused = FleetClient(f"127.0.0.1:{server.port}", 3, "wrong", lambda _: good_reply)
    with pytest.raises(ClientRefusedError):
        refused.run()
    channel.close()


def test_a_forged_session_cannot_touch_a_round(server: GrpcServerTransport, tokens: Path) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = _Stub(channel)
    welcome = raw_register(stub, 0, token(tokens, 0))
    outcome = _round_in_background(server, 0, range(1))
    _wait_for_round(server, stub, welcome, 0)
    forged = pb.Welcome(session_id="00" * 16)
    with pytest.raises(grpc.RpcError) as caught:
        stub.submit(upload(forged, 0, 0, [b"junk"]), 5.0)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert stub.submit(upload(welcome, 0, 0, [update_frame(0)]), 5.0).accepted
    result = outcome.result(timeout=DEADLINE_S + 10)
    assert result.failures == ()
    np.testing.assert_array_equal(result.aggregator.finish().delta_sum, expected_sum([0]))
    channel.close()


def test_limits_grow_with_the_model_and_bound_a_codec_above_float32() -> None:
    small, large = Limits.for_model(1000), Limits.for_model(1_000_000)
    assert large.max_message_bytes > 8_000_000 > small.max_message_bytes
    # top-k at 99 % sends values and an index: more than float32, and the limit says so
    topk = Limits.for_model(100_000, "topk:0.99")
    probe = np.random.default_rng(1).standard_normal(100_000, dtype=np.float32)
    frame = fc.from_spec("topk:0.99").encode(probe)
    assert len(frame) > 4 * 100_000
    assert topk.max_upload_bytes >= 2 * len(frame)
    assert topk.max_upload_bytes > Limits.for_model(100_000).max_upload_bytes


@pytest.mark.parametrize("chunk_bytes", [1000, 1 << 20])
def test_frames_split_into_chunks_arrive_whole_with_the_tasks_control_mask_and_settings(
    tokens: Path, chunk_bytes: int
) -> None:
    from fedcore.transport.grpc.auth import TokenBook

    limits = Limits.for_model(N, "quant:8", chunk_bytes=chunk_bytes)
    server = GrpcServerTransport(
        "127.0.0.1:0", TokenBook.load(tokens / "tokens.json"), limits, "{}", poll_s=1.0
    )
    seen: list[Task] = []

    def handle(task: Task) -> Reply:
        seen.append(task)
        control = QUANT8.encode(np.full(N, 0.5, np.float32))
        return Reply(task.round, task.client_id, (update_frame(task.client_id), control), 11, 3, 0.25)

    client = FleetClient(f"127.0.0.1:{server.port}", 0, token(tokens, 0), lambda _: handle)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    try:
        sent = Task(0, 0, 4, model_frame(), True, b"control", b"mask", {"train_seed": 7, "codec": None})
        result = server.run_round([sent], SumFold, deadline_s=10.0)
    finally:
        server.close(grace_s=5.0)
    thread.join(timeout=5.0)
    assert seen == [sent]
    assert result.failures == ()
    (info,) = result.replies
    control = QUANT8.encode(np.full(N, 0.5, np.float32))
    assert info.sha256 == tuple(hashlib.sha256(f).hexdigest() for f in (update_frame(0), control))


@pytest.mark.parametrize(
    ("reported", "recorded"),
    [("diverged", "diverged"), ("client_error", "client_error"), ("refused", "client_error")],
)
def test_a_clients_own_failure_report_is_recorded_as_a_kind_it_may_claim(
    server: GrpcServerTransport, tokens: Path, reported: str, recorded: str
) -> None:
    from fedcore.protocol import Failure

    def handle(task: Task) -> Failure:
        return Failure(task.round, task.client_id, reported, "local training went wrong")

    client = FleetClient(f"127.0.0.1:{server.port}", 0, token(tokens, 0), lambda _: handle)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    result = server.run_round([Task(0, 0, 0, model_frame())], SumFold, deadline_s=10.0)
    server.close(grace_s=5.0)
    thread.join(timeout=5.0)
    assert [(f.client_id, f.kind) for f in result.failures] == [(0, recorded)]
    assert "local training went wrong" in result.failures[0].message


def test_a_handler_that_raises_is_a_client_error_and_the_client_keeps_serving(
    server: GrpcServerTransport, tokens: Path
) -> None:
    def handle(task: Task) -> Reply:
        if task.round == 0:
            raise RuntimeError("out of memory")
        return good_reply(task)

    client = FleetClient(f"127.0.0.1:{server.port}", 0, token(tokens, 0), lambda _: handle)
    thread = threading.Thread(target=client.run, daemon=True)
    thread.start()
    first = server.run_round([Task(0, 0, 0, model_frame())], SumFold, deadline_s=10.0)
    second = server.run_round([Task(1, 0, 1, model_frame())], SumFold, deadline_s=10.0)
    server.close(grace_s=5.0)
    thread.join(timeout=5.0)
    assert [(f.kind, f.message) for f in first.failures] == [("client_error", "RuntimeError: out of memory")]
    assert second.failures == ()


def test_bytes_that_are_no_protobuf_at_all_leave_the_server_serving(
    server: GrpcServerTransport, tokens: Path
) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    noise = np.random.default_rng(5).bytes(3000)
    for method in ("Register", "GetTask"):
        call = channel.unary_unary(f"/fedcore.fleet.v1.Fleet/{method}")
        with pytest.raises(grpc.RpcError):
            call(noise, timeout=5.0)
    upload_noise = channel.stream_unary("/fedcore.fleet.v1.Fleet/SubmitReply")
    with pytest.raises(grpc.RpcError):
        upload_noise(iter([noise, noise]), timeout=5.0)
    stub = _Stub(channel)
    welcome = raw_register(stub, 0, token(tokens, 0))
    outcome = _round_in_background(server, 0, range(1))
    _wait_for_round(server, stub, welcome, 0)
    assert stub.submit(upload(welcome, 0, 0, [update_frame(0)]), 5.0).accepted
    assert outcome.result(timeout=DEADLINE_S + 10).failures == ()
    channel.close()
