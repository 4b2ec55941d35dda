"""Typed conversions between fedcore's messages and the generated protobuf classes; frames pass as bytes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.transport.grpc._generated import fleet_pb2 as pb

CLIENT_FAILURE_KINDS = ("diverged", "client_error")  # what a client may report about itself


class ProtocolError(ValueError):
    """A peer broke the message order or sizes the protocol fixes."""


@dataclass(frozen=True)
class StageTask:
    """One secure-aggregation stage for one client: the server's message as fedcore.secure.wire bytes."""

    round: int
    client_id: int
    stage: str
    payload: bytes


@dataclass(frozen=True)
class StageAnswer:
    """A client's answer to a stage: its message as fedcore.secure.wire bytes and the seconds it took."""

    round: int
    client_id: int
    stage: str
    payload: bytes
    seconds: float = 0.0


def stage_head(task: StageTask) -> pb.TaskPart:
    """A stage task's first part; the payload follows as data parts."""
    head = pb.TaskPart()
    head.head.kind = pb.TaskReply.STAGE
    msg = head.head.stage
    msg.round = task.round
    msg.client_id = task.client_id
    msg.stage = task.stage
    msg.payload_size = len(task.payload)
    return head


def task_head(task: Task) -> pb.TaskPart:
    """A task's first part: everything but the frames, whose sizes it declares."""
    head = pb.TaskPart()
    head.head.kind = pb.TaskReply.TASK
    msg = head.head.task
    msg.round = task.round
    msg.client_id = task.client_id
    msg.model_version = task.model_version
    msg.model_size = len(task.model)
    msg.model_is_diff = task.model_is_diff
    msg.settings_json = json.dumps(task.settings, sort_keys=True)
    if task.control is not None:
        msg.control_size = len(task.control)
    if task.mask is not None:
        msg.mask = task.mask
    return head


def data_parts(frame: bytes, chunk_bytes: int) -> tuple[bytes, ...]:
    """A frame as serialized data parts, made once and sent as they are to every client that gets it."""
    view = memoryview(frame)
    return tuple(
        pb.TaskPart(data=bytes(view[i : i + chunk_bytes])).SerializeToString()
        for i in range(0, len(frame), chunk_bytes)
    )


def read_task(parts: Iterator[pb.TaskPart], max_bytes: int) -> tuple[int, Task | StageTask | None]:
    """The head's kind and, for a task or stage, the task with its frames (or payload) put back together."""
    first = next(parts, None)
    if first is None or first.WhichOneof("part") != "head":
        raise ProtocolError("a task reply starts with its head")
    if first.head.kind == pb.TaskReply.STAGE:
        return pb.TaskReply.STAGE, _read_stage(first.head.stage, parts, max_bytes)
    if first.head.kind != pb.TaskReply.TASK:
        return first.head.kind, None
    msg = first.head.task
    sizes = [msg.model_size, *([msg.control_size] if msg.HasField("control_size") else [])]
    if min(sizes) < 1 or sum(sizes) > max_bytes:
        raise ProtocolError(f"task frames of {sizes} bytes; at most {max_bytes} in all were announced")
    frames = assemble((p.data if p.WhichOneof("part") == "data" else None for p in parts), sizes)
    if isinstance(frames, str):
        raise ProtocolError(frames)
    settings: Any = json.loads(msg.settings_json) if msg.settings_json else {}
    if not isinstance(settings, dict):
        raise ProtocolError("task settings must be a JSON object")
    task = Task(
        round=msg.round,
        client_id=msg.client_id,
        model_version=msg.model_version,
        model=frames[0],
        model_is_diff=msg.model_is_diff,
        control=frames[1] if len(frames) > 1 else None,
        mask=msg.mask if msg.HasField("mask") else None,
        settings=settings,
    )
    return pb.TaskReply.TASK, task


def _read_stage(msg: pb.StageTask, parts: Iterator[pb.TaskPart], max_bytes: int) -> StageTask:
    if not 1 <= msg.payload_size <= max_bytes:
        raise ProtocolError(
            f"a stage payload of {msg.payload_size} bytes; at most {max_bytes} were announced"
        )
    got = assemble((p.data if p.WhichOneof("part") == "data" else None for p in parts), [msg.payload_size])
    if isinstance(got, str):
        raise ProtocolError(got)
    return StageTask(msg.round, msg.client_id, msg.stage, got[0])


def assemble(chunks: Iterable[bytes | None], sizes: Sequence[int]) -> list[bytes] | str:
    """Frames of the declared sizes from data chunks (None: a part that is not data); or what went wrong.

    A chunk never spans two frames; a frame that came in one chunk is that chunk, uncopied.
    """
    frames: list[bytes] = []
    parts: list[bytes] = []
    have = 0
    for data in chunks:
        if data is None:
            return "a second head inside one message"
        if len(frames) == len(sizes) or have + len(data) > sizes[len(frames)]:
            return "oversized: more bytes than declared"
        parts.append(data)
        have += len(data)
        if have == sizes[len(frames)]:
            frames.append(parts[0] if len(parts) == 1 else b"".join(parts))
            parts, have = [], 0
    if len(frames) < len(sizes):
        return f"truncated: {len(frames)} of {len(sizes)} frames complete"
    return frames


def upload_chunks(
    session_id: str, result: Reply | Failure | StageAnswer, chunk_bytes: int, stage: str = ""
) -> Iterator[pb.UploadChunk]:
    """The header, then each frame in chunks of at most `chunk_bytes`; a frame that fits goes uncopied.

    A stage answer (or a failure at `stage`) names its stage in the header and carries one payload.
    """
    header = pb.ReplyHeader(
        session_id=session_id, round=result.round, client_id=result.client_id, stage=stage
    )
    if isinstance(result, Failure):
        header.failure_kind = result.kind
        header.failure_message = result.message
        yield pb.UploadChunk(header=header)
        return
    if isinstance(result, StageAnswer):
        header.stage = result.stage
        header.payload_sizes.append(len(result.payload))
        header.train_s = result.seconds
        yield pb.UploadChunk(header=header)
        yield from _chunks(result.payload, chunk_bytes)
        return
    header.payload_sizes.extend(len(p) for p in result.payloads)
    header.num_examples = result.num_examples
    header.num_steps = result.num_steps
    header.loss = result.loss
    header.train_s = result.train_s
    header.metrics.update(result.metrics)
    yield pb.UploadChunk(header=header)
    for payload in result.payloads:
        yield from _chunks(payload, chunk_bytes)


def _chunks(payload: bytes, chunk_bytes: int) -> Iterator[pb.UploadChunk]:
    if len(payload) <= chunk_bytes:
        yield pb.UploadChunk(data=payload)
        return
    view = memoryview(payload)
    for start in range(0, len(payload), chunk_bytes):
        yield pb.UploadChunk(data=bytes(view[start : start + chunk_bytes]))


def header_problem(header: pb.ReplyHeader, max_upload_bytes: int, held: bool = False) -> str | None:
    """Why a reply header cannot be right whatever follows it; None when it can.

    `held`: under secure aggregation a training reply carries no frames (the client keeps its update)
    and a stage answer exactly one payload.
    """
    from fedcore.transport.grpc.limits import MAX_PAYLOADS

    sizes = list(header.payload_sizes)
    if header.failure_kind:
        return None if not sizes else "a failure report carries no frames"
    if header.stage:
        if len(sizes) != 1:
            return f"a stage answer carries one payload, this one declares {len(sizes)}"
    elif held:
        if sizes:
            return "under secure aggregation an update never leaves its client in the clear"
    elif not 1 <= len(sizes) <= MAX_PAYLOADS:
        return f"a reply carries 1 to {MAX_PAYLOADS} frames, this one declares {len(sizes)}"
    if any(size < 1 for size in sizes):
        return "a declared frame size is not positive"
    if sum(sizes) > max_upload_bytes:
        return f"oversized: {sum(sizes)} declared frame bytes, the limit is {max_upload_bytes}"
    if header.num_examples < 0 or header.num_steps < 0:
        return "negative example or step count"
    if not all(math.isfinite(v) for v in (header.loss, header.train_s, *header.metrics.values())):
        return "non-finite loss, time or metric (a diverged client reports failure_kind 'diverged')"
    return None


def reply_from(header: pb.ReplyHeader, payloads: Sequence[bytes]) -> Reply:
    return Reply(
        round=header.round,
        client_id=header.client_id,
        payloads=tuple(payloads),
        num_examples=header.num_examples,
        num_steps=header.num_steps,
        loss=header.loss,
        train_s=header.train_s,
        metrics=dict(header.metrics),
    )


def client_failure(round_index: int, header: pb.ReplyHeader) -> Failure:
    """A client's report about itself; any kind it may not claim becomes client_error."""
    kind = header.failure_kind if header.failure_kind in CLIENT_FAILURE_KINDS else "client_error"
    message = header.failure_message[:500]
    if kind != header.failure_kind:
        message = f"reported {header.failure_kind[:40]!r}: {message}"
    return Failure(round_index, header.client_id, kind, message)


def stage_answer_from(header: pb.ReplyHeader, payload: bytes) -> StageAnswer:
    return StageAnswer(header.round, header.client_id, header.stage, payload, header.train_s)
