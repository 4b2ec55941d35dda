"""The server side of the gRPC transport: clients register, long-poll for tasks and stream their replies back.

`GrpcServerTransport` is a fedcore `Transport`: `run_round` hands each task to its client's poll, collects
replies until every task is answered or the deadline passes, then folds them in task order. Everything
that arrives from the network is checked before it can reach the aggregate: session and token, round,
declared sizes against the limits, each frame's header and checksum, and a frame never holds more
elements than the model. Each refusal becomes a typed `Failure` for that client alone.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import AggregatorFactory, RoundOutcome, fold_in_order
from fedcore.transport.grpc import wire
from fedcore.transport.grpc._generated import fleet_pb2 as pb
from fedcore.transport.grpc.auth import TokenBook
from fedcore.transport.grpc.limits import HTTP2_TUNING, Limits
from fedcore.transport.grpc.wire import StageAnswer, StageTask

if TYPE_CHECKING:
    from fedcore.secure.round import StageAnswers
    from fedcore.secure.wire import ServerMessage

log = logging.getLogger("fedcore.transport.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["Fleet"].full_name  # "fedcore.fleet.v1.Fleet"
_WAIT = pb.TaskPart(head=pb.TaskReply(kind=pb.TaskReply.WAIT)).SerializeToString()
_DONE = pb.TaskPart(head=pb.TaskReply(kind=pb.TaskReply.DONE)).SerializeToString()

# Failures a later, complete upload from the same client may still replace within the round.
_PROVISIONAL = frozenset({"disconnected", "wrong_round"})


@dataclass(frozen=True)
class ServerTLS:
    """PEM certificate chain and private key the server presents."""

    cert_pem: bytes
    key_pem: bytes


@dataclass
class _Session:
    session_id: str
    client_id: int
    last_seen: float
    polling: int = 0
    told_done: bool = False


@dataclass
class _Round:
    """A round's training (stage "") or one of its secure-aggregation stages, in progress."""

    index: int
    tasks: Mapping[int, Task | StageTask]
    model_elements: dict[int, int | None]
    parts: dict[int, tuple[bytes, ...]]  # id(frame) -> its serialized data parts
    stage: str = ""
    arrived: dict[int, Reply | StageAnswer | Failure] = field(default_factory=dict)
    fetched: set[int] = field(default_factory=set)  # clients that have taken their task

    def settled(self) -> bool:
        """Every task has an answer no later upload may replace."""
        return all(
            isinstance(a := self.arrived.get(c), Reply | StageAnswer)
            or (a is not None and a.kind not in _PROVISIONAL)
            for c in self.tasks
        )


@dataclass
class _AsyncRun:
    """FedBuff over gRPC: at most `concurrency` open tasks, one per client; answers queue for the server."""

    concurrency: int
    make_task: Callable[[int], Task]
    open: dict[int, tuple[Task, float]] = field(default_factory=dict)  # client -> (task, handed out at)
    answers: list[Reply | Failure] = field(default_factory=list)
    parts: dict[int, tuple[bytes, ...]] = field(default_factory=dict)  # id(model frame) -> its data parts
    _elements: dict[int, int | None] = field(default_factory=dict)
    finished: bool = False  # the server has all its updates: no new tasks; open ones may still report

    def task_for(self, client_id: int, chunk_bytes: int) -> Task | None:
        """The client's open task (again, after a reconnect), a new one while a slot is free, else None."""
        if self.finished:
            return None
        held = self.open.get(client_id)
        if held is not None:
            return held[0]
        if len(self.open) >= self.concurrency:
            return None
        task = self.make_task(client_id)
        self.open[client_id] = (task, time.monotonic())
        if id(task.model) not in self.parts:  # a new model version: its frame, chunked once
            keep = {id(t.model) for t, _ in self.open.values()}
            self.parts = {k: v for k, v in self.parts.items() if k in keep}
            self._elements = {k: v for k, v in self._elements.items() if k in keep}
            self.parts[id(task.model)] = wire.data_parts(task.model, chunk_bytes)
            self._elements[id(task.model)] = _model_elements([task])[client_id]
        return task

    def elements(self, task: Task) -> int | None:
        return self._elements.get(id(task.model))


class GrpcServerTransport:
    """A fedcore Transport over gRPC; start it with an address (port 0 picks a free one), then run rounds."""

    def __init__(
        self,
        address: str,
        tokens: TokenBook,
        limits: Limits,
        config_json: str,
        *,
        tls: ServerTLS | None = None,
        round_timeout_s: float = 600.0,
        poll_s: float = 5.0,
        session_ttl_s: float | None = None,
        max_clients: int = 64,
        secure: bool = False,
        stage_timeout_s: float | None = None,
    ) -> None:
        """`secure`: clients keep their updates (replies carry no frames) and answer SecAgg+ stages, each
        within `stage_timeout_s` (default: the round's timeout)."""
        if round_timeout_s <= 0 or poll_s <= 0 or (stage_timeout_s is not None and stage_timeout_s <= 0):
            raise ValueError("round_timeout_s, stage_timeout_s and poll_s must be > 0")
        self._stage_timeout_s = round_timeout_s if stage_timeout_s is None else stage_timeout_s
        self._tokens = tokens
        self._limits = limits
        self._config_json = config_json
        self._round_timeout_s = round_timeout_s
        self._secure = secure
        self._poll_s = poll_s
        self._ttl_s = session_ttl_s if session_ttl_s is not None else 2 * poll_s + 5.0
        self._cond = threading.Condition()
        self._sessions: dict[int, _Session] = {}
        self._round: _Round | None = None
        self._next_round = 0
        self._closed = False  # the run is over: polling clients are told "done"
        self._aborted = False  # serving stops without telling anyone: polling clients must not hear "done"
        self._refusals: list[Failure] = []
        self._async: _AsyncRun | None = None  # FedBuff: tasks handed out one at a time, no rounds
        workers = 2 * max_clients + 8  # one long poll and one upload per client at a time
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fedcore-grpc"),
            options=[
                ("grpc.max_receive_message_length", limits.grpc_receive_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *HTTP2_TUNING,
            ],
            maximum_concurrent_rpcs=workers,
        )
        self._server.add_generic_rpc_handlers((self._handlers(),))
        if tls is None:
            self.port = self._server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials([(tls.key_pem, tls.cert_pem)])
            self.port = self._server.add_secure_port(address, creds)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        self._server.start()
        log.info("listening on port %d", self.port)

    # ---- the Transport protocol -------------------------------------------------------------------

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        """Block until `clients` sessions are live or `timeout_s` passes; how many are."""
        end = time.monotonic() + timeout_s
        with self._cond:
            while True:
                live = self._live_count(time.monotonic())
                remaining = end - time.monotonic()
                if live >= clients or remaining <= 0:
                    return live
                self._cond.wait(min(remaining, 1.0))

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        """Offer each task to its client, wait until all answer or the deadline, fold in task order."""
        if not tasks:
            return fold_in_order(make_aggregator, tasks, ())
        index = tasks[0].round
        by_client = {t.client_id: t for t in tasks}
        if len(by_client) != len(tasks) or any(t.round != index for t in tasks):
            raise ValueError("one task per client, all for the same round")
        rnd = _Round(index, by_client, _model_elements(tasks), _frame_parts(tasks, self._limits.chunk_bytes))
        budget = self._round_timeout_s if deadline_s is None else min(deadline_s, self._round_timeout_s)
        arrived = self._serve(rnd, budget, next_round=index + 1)
        return fold_in_order(make_aggregator, tasks, [a for a in arrived if not isinstance(a, StageAnswer)])

    def exchange(
        self, round_num: int, stage: str, outbox: Mapping[int, ServerMessage], deadline_s: float | None
    ) -> StageAnswers:
        """One SecAgg+ stage: each message goes out as bytes; each answer is decoded or a typed failure."""
        from fedcore.secure.round import StageAnswers
        from fedcore.secure.wire import STAGE_MESSAGES, StagePayloadError, decode, encode

        expected = STAGE_MESSAGES[stage][1]
        tasks = {c: StageTask(round_num, c, stage, encode(m)) for c, m in outbox.items()}
        budget = self._stage_timeout_s if deadline_s is None else min(deadline_s, self._stage_timeout_s)
        arrived = self._serve(_Round(round_num, tasks, {}, {}, stage), budget, next_round=round_num + 1)
        by_client = {a.client_id: a for a in arrived}
        answers = {}
        failures = []
        seconds = 0.0
        for client in sorted(tasks):
            got = by_client.get(client)
            if got is None:
                failures.append(Failure(round_num, client, "dropped", f"no answer to secagg {stage} in time"))
            elif isinstance(got, StageAnswer):
                try:
                    answers[client] = decode(got.payload, expected)
                except StagePayloadError as exc:
                    message = f"secagg {stage}: {exc}"
                    failures.append(Failure(round_num, client, "bad_frame", message, len(got.payload)))
                    continue
                seconds += got.seconds
            elif isinstance(got, Failure):
                failures.append(got)
        return StageAnswers(answers, tuple(failures), seconds)

    def _serve(self, rnd: _Round, budget_s: float, next_round: int) -> list[Reply | StageAnswer | Failure]:
        """Offer the round's tasks to polling clients until every one is answered or `budget_s` passes."""
        with self._cond:
            if self._closed or self._aborted:
                raise RuntimeError("the transport is closed")
            if self._round is not None:
                raise RuntimeError(f"round {self._round.index} is still in progress")
            self._round = rnd
            self._next_round = rnd.index
            self._cond.notify_all()
            end = time.monotonic() + budget_s
            while not rnd.settled():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                if rnd.stage:  # a stage is short: a client gone quiet before taking it is not coming
                    self._drop_vanished(rnd, time.monotonic())
                    remaining = min(remaining, 1.0)
                self._cond.wait(remaining)
            self._round = None
            self._next_round = next_round
            return list(rnd.arrived.values())

    def close(self, grace_s: float = 5.0) -> None:
        """Tell every polling client the run is done (waiting up to `grace_s`), then stop serving."""
        end = time.monotonic() + grace_s
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            while any(not s.told_done for s in self._live(time.monotonic())):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.5))
        self._server.stop(grace=1.0).wait(5.0)

    def abort(self) -> None:
        """Stop serving at once without telling clients the run is over: they retry (a restart, --resume)."""
        with self._cond:
            self._aborted = True
            self._cond.notify_all()
        self._server.stop(grace=None).wait(5.0)

    # ---- async (FedBuff): tasks one at a time, answers as they come -------------------------------------

    def run_async(
        self,
        concurrency: int,
        make_task: Callable[[int], Task],
        take: Callable[[Reply | Failure], bool],
    ) -> None:
        """Hand a task to each polling client while fewer than `concurrency` train; give `take` every answer.

        `make_task` and `take` run under the transport's lock, one at a time (so the server they belong
        to needs no lock of its own); serving stops when `take` returns True. A task unanswered after the
        round timeout is dropped (`take` gets a "dropped" failure), which frees its slot.
        """
        with self._cond:
            busy = self._round is not None or (self._async is not None and not self._async.finished)
            if self._closed or self._aborted or busy:
                raise RuntimeError("the transport is closed or busy")
            run = _AsyncRun(concurrency, make_task)
            self._async = run
            self._cond.notify_all()
            try:
                while True:
                    now = time.monotonic()
                    for client, (task, since) in list(run.open.items()):
                        if now - since > self._round_timeout_s:
                            del run.open[client]
                            run.answers.append(Failure(task.round, client, "dropped", "no reply in time"))
                    if not run.answers:
                        self._cond.wait(1.0)
                        continue
                    answer = run.answers.pop(0)
                    self._cond.notify_all()  # a slot is free
                    if take(answer):
                        return
            finally:
                run.finished = True  # clients still training get told, then "done"; close() waits for them
                self._cond.notify_all()

    def _submit_async(
        self,
        run: _AsyncRun,
        header: pb.ReplyHeader,
        chunks: Iterator[pb.UploadChunk],
        context: grpc.ServicerContext,
    ) -> pb.Receipt:
        """One upload for the client's open FedBuff task (called with the lock held; reads frames without)."""
        client_id = header.client_id
        held = run.open.get(client_id)
        if held is None or held[0].round != header.round:
            message = f"no open task {header.round} for client {client_id}"
            return _receipt(Failure(header.round, client_id, "wrong_round", message))
        task = held[0]
        if run.finished:
            del run.open[client_id]
            self._cond.notify_all()
            return _receipt(Failure(task.round, client_id, "dropped", "the run ended before this reply"))
        if header.failure_kind:
            return self._finish_async(run, task, wire.client_failure(task.round, header))
        problem = wire.header_problem(header, self._limits.max_upload_bytes, held=False)
        if problem is not None:
            return self._finish_async(run, task, Failure(task.round, client_id, "bad_frame", problem))
        self._cond.release()  # reading the upload can take long: let the others poll meanwhile
        try:
            received = _read_frames(chunks, list(header.payload_sizes), context)
        finally:
            self._cond.acquire()
        if isinstance(received, str):
            kind = "disconnected" if not context.is_active() else "bad_frame"
            return self._finish_async(run, task, Failure(task.round, client_id, kind, received, _sum(header)))
        refusal = _check_frames(task.round, client_id, received, run.elements(task))
        got = refusal if refusal is not None else wire.reply_from(header, received)
        return self._finish_async(run, task, got)

    def _finish_async(self, run: _AsyncRun, task: Task, got: Reply | Failure) -> pb.Receipt:
        """The answer to an open task goes to the server's queue once; a late second one is refused."""
        if run.finished:
            run.open.pop(task.client_id, None)
            self._cond.notify_all()
            return _receipt(Failure(task.round, task.client_id, "dropped", "the run ended before this reply"))
        if run.open.get(task.client_id, (None, 0.0))[0] is not task:
            got = Failure(task.round, task.client_id, "duplicate", "the task was already answered or dropped")
            return _receipt(got)
        del run.open[task.client_id]
        run.answers.append(got)
        self._cond.notify_all()
        if isinstance(got, Failure):
            log.warning(
                "task %d client %d refused (%s): %s", task.round, task.client_id, got.kind, got.message
            )
        return _receipt(got)

    # ---- what the driver may record ----------------------------------------------------------------

    def refusals(self) -> tuple[Failure, ...]:
        """Registrations and uploads refused before they reached any round (bad token, reused session ...)."""
        with self._cond:
            return tuple(self._refusals)

    # ---- the RPC handlers (called on gRPC's threads) ------------------------------------------------

    def register(self, request: pb.Hello, context: grpc.ServicerContext) -> pb.Welcome:
        client_id = request.client_id
        problem = self._tokens.refusal(client_id, request.token)
        with self._cond:
            now = time.monotonic()
            old = self._sessions.get(client_id)
            if problem is None and old is not None and self._is_live(old, now):
                problem = f"client {client_id} already has a live session (token reused)"
                code = grpc.StatusCode.ALREADY_EXISTS
            else:
                code = grpc.StatusCode.UNAUTHENTICATED
            if problem is not None:
                self._refuse(client_id, problem, context)
                context.abort(code, problem)
            session = _Session(secrets.token_hex(16), client_id, now)
            self._sessions[client_id] = session
            self._cond.notify_all()
        log.info("client %d registered from %s", client_id, context.peer())
        return pb.Welcome(
            session_id=session.session_id,
            config_json=self._config_json,
            max_message_bytes=self._limits.max_message_bytes,
            max_upload_bytes=self._limits.max_upload_bytes,
            chunk_bytes=self._limits.chunk_bytes,
            poll_s=self._poll_s,
        )

    def get_task(self, request: pb.TaskRequest, context: grpc.ServicerContext) -> Iterator[bytes]:
        """Serialized TaskParts: "wait" or "done", or the task's head and its frames' shared data parts."""
        end = time.monotonic() + self._poll_s
        context.add_callback(self._wake)
        task: Task | StageTask | None = None
        with self._cond:  # never yield in here: a suspended generator would hold the lock
            session = self._session_or_abort(request.session_id, request.client_id, context)
            session.polling += 1
            try:
                while True:
                    session.last_seen = time.monotonic()
                    if self._aborted:
                        context.abort(grpc.StatusCode.UNAVAILABLE, "server stopping: retry")  # raises
                    if self._closed:
                        session.told_done = True
                        self._cond.notify_all()
                        break
                    task = self._open_task(request.client_id)
                    if task is None and self._async is not None:
                        task = self._async.task_for(request.client_id, self._limits.chunk_bytes)
                    remaining = end - time.monotonic()
                    if task is not None or remaining <= 0 or not context.is_active():
                        break
                    self._cond.wait(remaining)
                frames = self._round.parts if task is not None and self._round is not None else {}
                if task is not None and self._round is not None:
                    self._round.fetched.add(request.client_id)
                elif task is not None and self._async is not None:
                    frames = self._async.parts
            finally:
                session.polling -= 1
                session.last_seen = time.monotonic()
        if task is None:
            yield _DONE if self._closed else _WAIT
            return
        if isinstance(task, StageTask):
            yield wire.stage_head(task).SerializeToString()
            yield from wire.data_parts(task.payload, self._limits.chunk_bytes)
            return
        yield wire.task_head(task).SerializeToString()
        yield from frames[id(task.model)]
        if task.control is not None:
            yield from frames[id(task.control)]

    def submit_reply(self, chunks: Iterator[pb.UploadChunk], context: grpc.ServicerContext) -> pb.Receipt:
        first = next(chunks, None)
        if first is None or first.WhichOneof("part") != "header":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an upload starts with its header")
        header = first.header
        client_id = header.client_id
        with self._cond:
            session = self._session_or_abort(header.session_id, client_id, context)
            session.last_seen = time.monotonic()
            run = self._async
            if run is not None and not header.stage:
                return self._submit_async(run, header, chunks, context)
            rnd = self._round
            if rnd is None or client_id not in rnd.tasks:
                where = "no round is in progress" if rnd is None else f"no task in round {rnd.index}"
                log.warning("client %d sent a reply for round %d: %s", client_id, header.round, where)
                return _receipt(Failure(header.round, client_id, "wrong_round", where))
            index, max_elements = rnd.index, rnd.model_elements.get(client_id)
        if header.round != index or header.stage != rnd.stage:
            message = (
                f"a reply for round {header.round} {_stage_name(header.stage)} while round {index} "
                f"{_stage_name(rnd.stage)} is in progress"
            )
            return self._record(rnd, Failure(index, client_id, "wrong_round", message))
        if header.failure_kind:
            return self._record(rnd, wire.client_failure(index, header))
        problem = wire.header_problem(header, self._limits.max_upload_bytes, held=self._secure)
        if problem is not None:
            return self._record(rnd, Failure(index, client_id, "bad_frame", problem))
        received = _read_frames(chunks, list(header.payload_sizes), context)
        if isinstance(received, str):
            kind = "disconnected" if not context.is_active() else "bad_frame"
            return self._record(rnd, Failure(index, client_id, kind, received, _sum(header)))
        if header.stage:  # fedcore.secure.wire bytes, decoded (or refused) when the stage ends
            return self._record(rnd, wire.stage_answer_from(header, received[0]))
        refusal = _check_frames(index, client_id, received, max_elements)
        if refusal is not None:
            return self._record(rnd, refusal)
        return self._record(rnd, wire.reply_from(header, received))

    def _handlers(self) -> grpc.GenericRpcHandler:
        """fleet.proto's service; task parts go out pre-serialized (a model once a round, not per client)."""
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Register": grpc.unary_unary_rpc_method_handler(
                    self.register,
                    request_deserializer=pb.Hello.FromString,
                    response_serializer=pb.Welcome.SerializeToString,
                ),
                "GetTask": grpc.unary_stream_rpc_method_handler(
                    self.get_task, request_deserializer=pb.TaskRequest.FromString
                ),
                "SubmitReply": grpc.stream_unary_rpc_method_handler(
                    self.submit_reply,
                    request_deserializer=pb.UploadChunk.FromString,
                    response_serializer=pb.Receipt.SerializeToString,
                ),
            },
        )

    # ---- helpers (call with the lock held unless said) ----------------------------------------------

    def _record(self, rnd: _Round, got: Reply | StageAnswer | Failure) -> pb.Receipt:
        """Keep this round's answer from a client (lock taken here); a second, different answer voids both."""
        client_id = got.client_id
        with self._cond:
            if self._round is not rnd:
                late = Failure(rnd.index, client_id, "dropped", "arrived after the round's deadline")
                log.warning("client %d: %s", client_id, late.message)
                return _receipt(late)
            old = rnd.arrived.get(client_id)
            if old is None or (isinstance(old, Failure) and old.kind in _PROVISIONAL):
                rnd.arrived[client_id] = got
            elif _same_answer(old, got):
                return pb.Receipt(accepted=True, message="already received")
            else:
                got = Failure(rnd.index, client_id, "duplicate", "a second, different answer in one round")
                if not isinstance(old, Failure):
                    rnd.arrived[client_id] = got
            self._cond.notify_all()
        if isinstance(got, Failure):
            log.warning("round %d client %d refused (%s): %s", rnd.index, client_id, got.kind, got.message)
        return _receipt(got)

    def _drop_vanished(self, rnd: _Round, now: float) -> None:
        """Clients that neither took their stage task nor polled within the session TTL: dropped now."""
        for client in rnd.tasks:
            if client in rnd.arrived or client in rnd.fetched:
                continue
            session = self._sessions.get(client)
            if session is None or (session.polling == 0 and now - session.last_seen > self._ttl_s):
                message = f"gone before secagg {rnd.stage} reached it (no poll for {self._ttl_s:g} s)"
                rnd.arrived[client] = Failure(rnd.index, client, "dropped", message)
                log.warning("round %d client %d: %s", rnd.index, client, message)

    def _refuse(self, client_id: int, message: str, context: grpc.ServicerContext) -> None:
        failure = Failure(self._next_round, client_id, "refused", message)
        self._refusals.append(failure)
        log.warning("refused client %d from %s: %s", client_id, context.peer(), message)

    def _session_or_abort(self, session_id: str, client_id: int, context: grpc.ServicerContext) -> _Session:
        session = self._sessions.get(client_id)
        if session is None or not secrets.compare_digest(session.session_id, session_id):
            self._refuse(client_id, "unknown or replaced session", context)
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown session: register again")  # raises
        return session

    def _open_task(self, client_id: int) -> Task | StageTask | None:
        rnd = self._round
        if rnd is None or client_id not in rnd.tasks:
            return None
        got = rnd.arrived.get(client_id)
        if got is not None and not (isinstance(got, Failure) and got.kind in _PROVISIONAL):
            return None
        return rnd.tasks[client_id]

    def _is_live(self, session: _Session, now: float) -> bool:
        """Polling now, seen recently, or holding an unanswered task of the round in progress."""
        quiet_s = now - session.last_seen
        holds = self._open_task(session.client_id) is not None or (
            self._async is not None and session.client_id in self._async.open
        )
        busy = holds and quiet_s < self._round_timeout_s
        return session.polling > 0 or quiet_s < self._ttl_s or busy

    def _live(self, now: float) -> list[_Session]:
        return [s for s in self._sessions.values() if self._is_live(s, now)]

    def _live_count(self, now: float) -> int:
        return len(self._live(now))

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def _read_frames(
    chunks: Iterator[pb.UploadChunk], sizes: list[int], context: grpc.ServicerContext
) -> list[bytes] | str:
    """The declared frames from the data chunks; a string says what went wrong (never more bytes read)."""
    try:
        frames = wire.assemble((c.data if c.WhichOneof("part") == "data" else None for c in chunks), sizes)
    except grpc.RpcError as exc:  # the stream broke under us
        return f"the upload broke off: {exc}"
    if not context.is_active():
        return "the client went away mid-upload"
    return frames


def _check_frames(
    index: int, client_id: int, frames: list[bytes], max_elements: int | None
) -> Failure | None:
    """Each frame parses (header and checksum) and holds no more elements than the model."""
    import fedcodec

    for position, frame in enumerate(frames):
        try:
            info = fedcodec.inspect(frame)
        except ValueError as exc:
            return Failure(index, client_id, "bad_frame", f"frame {position}: {exc}", len(frame))
        if max_elements is not None and info.n > max_elements:
            message = f"frame {position} holds {info.n} elements, the model {max_elements}"
            return Failure(index, client_id, "wrong_shape", message, len(frame))
    return None


def _frame_parts(tasks: Sequence[Task], chunk_bytes: int) -> dict[int, tuple[bytes, ...]]:
    """Each distinct model and control frame of the round as serialized data parts, made once."""
    parts: dict[int, tuple[bytes, ...]] = {}
    for task in tasks:
        for frame in (task.model, task.control):
            if frame is not None and id(frame) not in parts:
                parts[id(frame)] = wire.data_parts(frame, chunk_bytes)
    return parts


def _model_elements(tasks: Sequence[Task]) -> dict[int, int | None]:
    """Elements of each task's model frame (inspected once per distinct frame); None if it is no frame."""
    import fedcodec

    seen: dict[int, int | None] = {}
    out: dict[int, int | None] = {}
    for task in tasks:
        key = id(task.model)
        if key not in seen:
            try:
                seen[key] = fedcodec.inspect(task.model).n
            except ValueError:
                seen[key] = None
        out[task.client_id] = seen[key]
    return out


def _same_answer(a: Reply | StageAnswer | Failure, b: Reply | StageAnswer | Failure) -> bool:
    """A byte-identical resend (a reply's frames and counts, or a stage answer's payload)."""
    if isinstance(a, StageAnswer) and isinstance(b, StageAnswer):
        return a.payload == b.payload
    if isinstance(a, Reply) and isinstance(b, Reply):
        return a.payloads == b.payloads and (a.num_examples, a.num_steps, a.loss) == (
            b.num_examples,
            b.num_steps,
            b.loss,
        )
    return False


def _stage_name(stage: str) -> str:
    return f"(secagg {stage})" if stage else "(training)"


def _sum(header: pb.ReplyHeader) -> int:
    return sum(header.payload_sizes)


def _receipt(got: Reply | StageAnswer | Failure) -> pb.Receipt:
    if not isinstance(got, Failure):
        return pb.Receipt(accepted=True)
    return pb.Receipt(accepted=False, failure_kind=got.kind, message=got.message)
