"""Helpers for the gRPC transport tests: an exact fake aggregator, frames, and raw protocol calls."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

import fedcodec as fc
from fedcore.protocol import Failure, Reply, Task
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:  # typing.Self is 3.11+
    from typing import Self
from fedcore.transport.grpc._generated import fleet_pb2 as pb
from fedcore.transport.grpc.auth import client_token_file, read_token
from fedcore.transport.grpc.client import _Stub

N = 1000  # model elements in these tests
QUANT8 = fc.from_spec("quant:8")


def model_frame(n: int = N) -> bytes:
    return fc.from_spec("none").encode(np.zeros(n, dtype=np.float32))


def update_frame(client_id: int, n: int = N) -> bytes:
    """A distinct quant:8 update per client, so a sum shows exactly who got in."""
    x = np.random.default_rng(client_id).standard_normal(n).astype(np.float32)
    return QUANT8.encode(x, seed=client_id)


def good_reply(task: Task) -> Reply:
    return Reply(task.round, task.client_id, (update_frame(task.client_id),), 10 + task.client_id, 3, 0.25)


@dataclass
class SumFold:
    """Decode each reply's first frame, add it weighted by examples; refuse a wrong size like LinearFold."""

    n: int = N
    total: NDArray[np.float64] = field(default_factory=lambda: np.zeros(N))
    weight: float = 0.0
    count: int = 0

    def add(self, reply: Reply) -> Failure | None:
        x = fc.decode(reply.payloads[0])
        if x.size != self.n:
            return Failure(reply.round, reply.client_id, "wrong_shape", f"{x.size} elements, not {self.n}")
        self.total = self.total + reply.num_examples * x.astype(np.float64)
        self.weight += reply.num_examples
        self.count += 1
        return None

    def merge(self, other: Self) -> Self:
        self.total = self.total + other.total
        self.weight += other.weight
        self.count += other.count
        return self

    def finish(self) -> FoldSum:
        return FoldSum(self.total, None, self.weight, int(self.weight), 0.0, self.count)


def expected_sum(client_ids: Sequence[int]) -> NDArray[np.float64]:
    """The fold of these clients' good replies, in this order."""
    total = np.zeros(N)
    for c in client_ids:
        total = total + (10 + c) * fc.decode(update_frame(c)).astype(np.float64)
    return total


def token(directory: Path, client_id: int) -> str:
    return read_token(client_token_file(directory, client_id))


def raw_register(stub: _Stub, client_id: int, secret: str) -> pb.Welcome:
    return stub.register(pb.Hello(client_id=client_id, token=secret), 5.0)


def header(welcome: pb.Welcome, round_index: int, client_id: int, sizes: Sequence[int]) -> pb.UploadChunk:
    h = pb.ReplyHeader(session_id=welcome.session_id, round=round_index, client_id=client_id)
    h.payload_sizes.extend(sizes)
    h.num_examples, h.num_steps, h.loss = 10 + client_id, 3, 0.25
    return pb.UploadChunk(header=h)


def upload(
    welcome: pb.Welcome, round_index: int, client_id: int, frames: Sequence[bytes]
) -> Iterator[pb.UploadChunk]:
    yield header(welcome, round_index, client_id, [len(f) for f in frames])
    for f in frames:
        yield pb.UploadChunk(data=f)
