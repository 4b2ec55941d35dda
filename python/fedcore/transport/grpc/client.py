"""One client process: register with a token, long-poll for tasks, train, stream the reply back; reconnect.

The training itself is a handler built from the run configuration the server announces
(`fedcore.client.ClientApp(config, data_for).handle` in `fedcore client`); this module only moves
messages. Every call has a timeout; losing the server (restart, network) means re-registering with
exponential backoff, bounded by `RetryPolicy.give_up_s` of consecutive failure.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import grpc

from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.transport.grpc import wire
from fedcore.transport.grpc._generated import fleet_pb2 as pb
from fedcore.transport.grpc._generated import fleet_pb2_grpc as pb_grpc
from fedcore.transport.grpc.limits import HTTP2_TUNING

log = logging.getLogger("fedcore.transport.grpc")

Handler = Callable[[Task], Reply | Failure]
StageHandler = Callable[[int, str, bytes], bytes]  # (round, stage, the server's message) -> this client's


@dataclass(frozen=True)
class Handlers:
    """A client's task handler and, under secure aggregation, its stage handler (the same client's party)."""

    task: Handler
    stage: StageHandler | None = None


HandlerFactory = Callable[[Mapping[str, Any]], Handler | Handlers]  # from the announced run configuration

# Answers after which trying again cannot help: the server does not accept this client's token.
_FATAL = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})
_SMALL_MESSAGE = 4 << 20  # gRPC's default receive limit, plenty for a Welcome
_HEADROOM = 1 << 20  # a part's framing beside its chunk of frame bytes


class ClientRefusedError(RuntimeError):
    """The server refused this client's token; retrying would not help."""


class ServerUnreachableError(RuntimeError):
    """The server stayed unreachable (or kept refusing a reused session) for the whole retry budget."""


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff between attempts (doubling from first_s up to max_s, with jitter) and when to give up."""

    first_s: float = 0.2
    max_s: float = 5.0
    give_up_s: float = 120.0
    rpc_timeout_s: float = 30.0  # registration and each upload; a poll waits the server's poll_s + this

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s or self.give_up_s <= 0 or self.rpc_timeout_s <= 0:
            raise ValueError("retry times must be positive, first_s <= max_s")


@dataclass(frozen=True)
class ClientRun:
    """What one client process did: rounds it answered and uploads the server refused."""

    answered: int
    refused: int
    reconnects: int


class _Stub:
    """The generated stub with types: each call returns the message it returns."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._stub = pb_grpc.FleetStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped

    def register(self, hello: pb.Hello, timeout_s: float) -> pb.Welcome:
        return cast(pb.Welcome, self._stub.Register(hello, timeout=timeout_s))

    def get_task(self, request: pb.TaskRequest, timeout_s: float) -> Iterator[pb.TaskPart]:
        return cast(Iterator[pb.TaskPart], self._stub.GetTask(request, timeout=timeout_s))

    def submit(self, chunks: Iterator[pb.UploadChunk], timeout_s: float) -> pb.Receipt:
        return cast(pb.Receipt, self._stub.SubmitReply(chunks, timeout=timeout_s))


class FleetClient:
    """Connects to `target` as `client_id` and answers tasks with the handler made from the run's config."""

    def __init__(
        self,
        target: str,
        client_id: int,
        token: str,
        make_handler: HandlerFactory,
        *,
        tls_ca_pem: bytes | None = None,
        tls_server_name: str | None = None,
        retry: RetryPolicy = RetryPolicy(),  # frozen, so sharing the default is safe
    ) -> None:
        self._target = target
        self._client_id = client_id
        self._token = token
        self._make_handler = make_handler
        self._creds = grpc.ssl_channel_credentials(root_certificates=tls_ca_pem) if tls_ca_pem else None
        self._server_name = tls_server_name
        self._retry = retry
        self._rng = random.Random(client_id)  # jitter only; seeded so runs repeat
        self._channel: grpc.Channel | None = None

    def run(self) -> ClientRun:
        """Answer tasks until the server says the run is done; raises when refused or out of retries."""
        handler: Handlers | None = None
        config_json: str | None = None
        welcome: pb.Welcome | None = None
        answered = refused = reconnects = attempt = 0
        failing_since: float | None = None
        try:
            while True:
                try:
                    if welcome is None:
                        welcome = self._register()
                        if welcome.config_json != config_json:
                            config_json = welcome.config_json
                            made = self._make_handler(json.loads(config_json))
                            handler = made if isinstance(made, Handlers) else Handlers(made)
                    assert handler is not None
                    parts = self._stub(welcome).get_task(
                        pb.TaskRequest(session_id=welcome.session_id, client_id=self._client_id),
                        welcome.poll_s + self._retry.rpc_timeout_s,
                    )
                    kind, task = wire.read_task(parts, welcome.max_message_bytes)
                    failing_since, attempt = None, 0
                    if kind == pb.TaskReply.DONE:
                        return ClientRun(answered, refused, reconnects)
                    if task is None:
                        continue
                    if isinstance(task, wire.StageTask):
                        receipt = self._answer_stage(handler.stage, task, welcome)
                    else:
                        receipt = self._answer(handler.task, task, welcome)
                    if receipt.accepted:
                        answered += 1
                    else:
                        refused += 1
                        log.warning(
                            "client %d: reply refused (%s): %s",
                            self._client_id,
                            receipt.failure_kind,
                            receipt.message,
                        )
                except (grpc.RpcError, wire.ProtocolError) as exc:
                    code = _code(exc) if isinstance(exc, grpc.RpcError) else grpc.StatusCode.INTERNAL
                    if code in _FATAL:
                        raise ClientRefusedError(f"client {self._client_id}: {_details(exc)}") from exc
                    now = time.monotonic()
                    failing_since = now if failing_since is None else failing_since
                    if now - failing_since > self._retry.give_up_s:
                        raise ServerUnreachableError(
                            f"client {self._client_id}: no server at {self._target} for "
                            f"{self._retry.give_up_s:g} s (last: {code}: {_details(exc)})"
                        ) from exc
                    welcome = None  # register again: the server may have restarted or dropped the session
                    reconnects += 1
                    self._close_channel()
                    delay = min(self._retry.max_s, self._retry.first_s * 2**attempt)
                    attempt += 1
                    log.info("client %d: %s; retrying in %.1f s", self._client_id, code, delay)
                    time.sleep(delay * (0.5 + self._rng.random() / 2))
        finally:
            self._close_channel()

    def _register(self) -> pb.Welcome:
        self._close_channel()
        hello = pb.Hello(client_id=self._client_id, token=self._token)
        welcome = _Stub(self._open(_SMALL_MESSAGE, _SMALL_MESSAGE)).register(hello, self._retry.rpc_timeout_s)
        self._close_channel()
        self._open(welcome.chunk_bytes + _HEADROOM, welcome.chunk_bytes + _HEADROOM)
        log.info("client %d registered with %s", self._client_id, self._target)
        return welcome

    def _answer(self, handler: Handler, task: Task, welcome: pb.Welcome) -> pb.Receipt:
        if task.client_id != self._client_id:
            message = "a task for another client id"
            result: Reply | Failure = Failure(task.round, self._client_id, "client_error", message)
        else:
            try:
                result = handler(task)
            except Exception as exc:  # training failed: tell the server instead of vanishing
                log.exception("client %d: training failed in round %d", self._client_id, task.round)
                result = Failure(task.round, self._client_id, "client_error", f"{type(exc).__name__}: {exc}")
        chunks = wire.upload_chunks(welcome.session_id, result, welcome.chunk_bytes)
        return self._stub(welcome).submit(chunks, self._retry.rpc_timeout_s)

    def _answer_stage(
        self, handler: StageHandler | None, task: wire.StageTask, welcome: pb.Welcome
    ) -> pb.Receipt:
        """This client's answer to a SecAgg+ stage, or its refusal (a typed failure, never silence)."""
        result: wire.StageAnswer | Failure
        if task.client_id != self._client_id:
            result = Failure(task.round, self._client_id, "client_error", "a stage for another client id")
        elif handler is None:
            message = "this client does not run secure aggregation"
            result = Failure(task.round, self._client_id, "client_error", message)
        else:
            start = time.perf_counter()
            try:
                payload = handler(task.round, task.stage, task.payload)
                result = wire.StageAnswer(
                    task.round, self._client_id, task.stage, payload, time.perf_counter() - start
                )
            except Exception as exc:  # a refusal (SecAggAbort) or bytes that are no message: say so
                log.warning("client %d: secagg %s refused: %s", self._client_id, task.stage, exc)
                message = f"secagg {task.stage}: {type(exc).__name__}: {exc}"
                result = Failure(task.round, self._client_id, "client_error", message)
        chunks = wire.upload_chunks(welcome.session_id, result, welcome.chunk_bytes, stage=task.stage)
        return self._stub(welcome).submit(chunks, self._retry.rpc_timeout_s)

    def _stub(self, welcome: pb.Welcome) -> _Stub:
        if self._channel is None:
            self._open(welcome.chunk_bytes + _HEADROOM, welcome.chunk_bytes + _HEADROOM)
        assert self._channel is not None
        return _Stub(self._channel)

    def _open(self, receive_bytes: int, send_bytes: int) -> grpc.Channel:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", receive_bytes),
            ("grpc.max_send_message_length", send_bytes),
            *HTTP2_TUNING,
        ]
        if self._server_name is not None:
            options.append(("grpc.ssl_target_name_override", self._server_name))
        if self._creds is None:
            self._channel = grpc.insecure_channel(self._target, options=options)
        else:
            self._channel = grpc.secure_channel(self._target, self._creds, options=options)
        return self._channel

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _code(exc: grpc.RpcError) -> grpc.StatusCode:
    call = cast(grpc.Call, exc)
    return call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN


def _details(exc: Exception) -> str:
    call = cast(grpc.Call, exc)
    return str(call.details()) if hasattr(call, "details") else str(exc)
