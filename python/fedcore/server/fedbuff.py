"""FedBuff (Nguyen et al. 2022): the server steps whenever K updates are buffered, stale ones counting less.

Transport-free, like the round driver: a transport (the simulation's virtual clock, or gRPC) asks for a task
whenever a client may start training and hands every answer back; the server folds each reply into the
buffer as it arrives, weighted by the staleness function of s = (model version now) - (the version the
client trained on), and applies the buffer's weighted mean through the run's strategy, so FedAvg's server
learning rate (FedBuff's eta_g) and the FedAdam / FedYogi server optimizers all work unchanged.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from fedcore.compression import FLOAT32_BYTES
from fedcore.layout import ParamLayout
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import AggregatorFactory, ReplyInfo
from fedcore.records import RoundRecord
from fedcore.seeds import CODEC_SEED, TRAIN_SEED, derive_seed
from fedcore.server.aggregation import FoldContext
from fedcore.server.driver import DriverState
from fedcore.server.registry import aggregator_factory
from fedcore.spec_text import format_number, parse_number
from fedcore.strategies.base import FoldSum, Strategy
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame

STALENESS_KINDS = ("constant", "poly", "hinge")

# What a server update scores the new model with: (accuracy, loss).
Evaluate = Callable[[np.ndarray], tuple[float, float]]


@dataclass(frozen=True)
class StalenessSpec:
    """How much an update that trained on an older model counts: `constant`, `poly:A` or `hinge:A,B`.

    `poly:A` weighs 1/(1+s)^A; `hinge:A,B` weighs 1 up to s = B, then 1/(A(s-B)+1) (FedBuff, Sec. 5).
    """

    kind: str = "poly"
    a: float = 0.5
    b: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in STALENESS_KINDS:
            raise ValueError(f"unknown staleness {self.kind!r}; one of constant, poly:A, hinge:A,B")
        if self.kind != "constant" and not (np.isfinite(self.a) and self.a >= 0.0):
            raise ValueError(f"staleness {self.kind}: A must be a finite number >= 0, got {self.a}")
        if self.kind == "hinge" and not (np.isfinite(self.b) and self.b >= 0.0):
            raise ValueError(f"staleness hinge: B must be a finite number >= 0, got {self.b}")

    @classmethod
    def parse(cls, text: str) -> StalenessSpec:
        """Read `constant`, `poly:0.5` or `hinge:10,4`."""
        kind, _, args = text.strip().partition(":")
        parts = [p for p in args.split(",")] if args else []
        if kind == "constant" and not parts:
            return cls("constant", 0.0, 0.0)
        if kind == "poly" and len(parts) == 1:
            return cls("poly", parse_number(parts[0], "staleness poly:A"))
        if kind == "hinge" and len(parts) == 2:
            return cls("hinge", parse_number(parts[0], "staleness hinge:A,B"), parse_number(parts[1], "B"))
        raise ValueError(f"staleness must be constant, poly:A or hinge:A,B, got {text!r}")

    def __str__(self) -> str:
        if self.kind == "constant":
            return "constant"
        if self.kind == "poly":
            return f"poly:{format_number(self.a)}"
        return f"hinge:{format_number(self.a)},{format_number(self.b)}"

    def weight(self, staleness: int) -> float:
        """The factor an update `staleness` versions old is multiplied by (1 for a fresh one)."""
        if staleness < 0:
            raise ValueError(f"staleness cannot be negative, got {staleness}")
        if self.kind == "constant":
            return 1.0
        if self.kind == "poly":
            return float((1.0 + staleness) ** -self.a)
        if staleness <= self.b:
            return 1.0
        return 1.0 / (self.a * (staleness - self.b) + 1.0)


@dataclass(frozen=True)
class Arrival:
    """One client's answer as the buffer saw it: who, on which version, how stale, how much it counted."""

    client_id: int
    trained_on: int
    staleness: int
    weight: float


@dataclass
class _Buffer:
    """What has arrived since the last server update: the running staleness-weighted fold and its replies."""

    fold: FoldSum | None = None
    arrivals: list[Arrival] = field(default_factory=list)
    replies: list[ReplyInfo] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    tasks_sent: int = 0
    downlink_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)


class FedBuffServer:
    """The global model, its version and the buffer; `task` hands out work, `receive` takes answers back.

    Every task carries the version it was cut from (`Task.model_version`); the server also keeps it by
    task id, so a client cannot claim a fresher version than it got.
    """

    def __init__(
        self,
        state: DriverState,
        layout: ParamLayout,
        strategy: Strategy,
        chain: UplinkChain,
        *,
        buffer: int,
        staleness: StalenessSpec,
        clients: int,
        seed: int,
        evaluate: Evaluate,
        aggregator: AggregatorFactory | None = None,
    ) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be >= 1, got {buffer}")
        self.state = state
        self.layout = layout
        self.strategy = strategy
        self.chain = chain
        self.buffer_size = buffer
        self.staleness = staleness
        self.clients = clients
        self.seed = seed
        self.evaluate = evaluate
        ctx = FoldContext(layout.size, chain, UplinkContext(layout), strategy)
        self.make_aggregator = aggregator if aggregator is not None else aggregator_factory("mean", ctx)
        self._buffer = _Buffer()
        self._handed_out: dict[int, tuple[int, int]] = {}  # task id -> (client, version it carries)
        self._next_task = 0
        self._frame: tuple[int, bytes] | None = None  # (version, the global model as a lossless frame)

    @property
    def version(self) -> int:
        """How many server updates the global model has had."""
        return self.state.next_round

    @property
    def buffered(self) -> int:
        return len(self._buffer.arrivals)

    def task(self, client_id: int) -> Task:
        """A task on the current model; its `round` is this task's id, unique over the run."""
        if self._frame is None or self._frame[0] != self.version:
            self._frame = (self.version, encode_frame(None, self.state.server.weights, 0))
        task_id = self._next_task
        self._next_task += 1
        self._handed_out[task_id] = (client_id, self.version)
        self._buffer.tasks_sent += 1
        self._buffer.downlink_bytes += FLOAT32_BYTES * self.layout.size
        return Task(
            round=task_id,
            client_id=client_id,
            model_version=self.version,
            model=self._frame[1],
            settings={
                "train_seed": derive_seed(self.seed, task_id, client_id, TRAIN_SEED),
                "codec_seed": derive_seed(self.seed, task_id, client_id, CODEC_SEED),
                "epochs": None,
                "codec": None,
                "personal_seed": 0,
                "dp_clip": None,
            },
        )

    def receive(self, answer: Reply | Failure, virtual_s: float | None = None) -> RoundRecord | None:
        """Fold one answer into the buffer; the server update's record when this answer filled it.

        An answer to a task this server never handed out (or already took back) is refused; a diverged
        client's failure frees its slot without counting towards the buffer.
        """
        handed = self._handed_out.get(answer.round)
        if handed is None or handed[0] != answer.client_id:
            if isinstance(answer, Reply):
                self._buffer.failures.append(
                    Failure(answer.round, answer.client_id, "wrong_round", "no such task", answer.nbytes)
                )
            return None
        del self._handed_out[answer.round]
        if isinstance(answer, Failure):
            self._buffer.failures.append(answer)
            return None
        trained_on = handed[1]
        staleness = self.version - trained_on
        weight = self.staleness.weight(staleness)
        aggregator = self.make_aggregator()
        refusal = aggregator.add(answer)
        if refusal is not None:
            self._buffer.failures.append(refusal)
            return None
        one = aggregator.finish()
        scaled = replace(one, delta_sum=one.delta_sum * weight)  # weight_sum stays: stale updates step less
        buf = self._buffer
        buf.fold = scaled if buf.fold is None else buf.fold + scaled
        buf.arrivals.append(Arrival(answer.client_id, trained_on, staleness, weight))
        buf.replies.append(ReplyInfo.of(answer))
        if len(buf.arrivals) < self.buffer_size:
            return None
        return self._apply(virtual_s)

    def _apply(self, virtual_s: float | None) -> RoundRecord:
        """The buffer's mean update through the strategy: a new model version and its record."""
        buf, self._buffer = self._buffer, _Buffer()
        state = self.state
        assert buf.fold is not None
        fold, uplink = self.chain.server_round(buf.fold, state.uplink, self.clients)
        before = state.server.weights
        server = self.strategy.aggregate(state.server, fold)
        t_eval = time.perf_counter()
        accuracy, loss = self.evaluate(server.weights)
        eval_s = time.perf_counter() - t_eval
        replies = buf.replies
        examples = sum(r.num_examples for r in replies)
        record = RoundRecord(
            round=state.next_round + 1,
            clients=[a.client_id for a in buf.arrivals],
            selected=buf.tasks_sent,
            dropouts=[],
            unavailable=0,
            accuracy=accuracy,
            loss=loss,
            train_loss=sum(r.loss * r.num_examples for r in replies) / examples if examples else 0.0,
            uplink_bytes=sum(r.nbytes for r in replies),
            downlink_bytes=buf.downlink_bytes,
            wall_s=time.perf_counter() - buf.started,
            train_s=sum(r.train_s for r in replies),
            eval_s=eval_s,
            diverged=sorted(f.client_id for f in buf.failures if f.kind == "diverged"),
            refused=sorted(f.client_id for f in buf.failures if f.kind != "diverged"),
            virtual_s=virtual_s,
            staleness=[a.staleness for a in buf.arrivals],
        )
        self.state = DriverState(
            state.next_round + 1,
            server,
            state.initial,
            (server.weights - before).astype(np.float32),
            state.losses,
            None,
            (*state.records, record),
            None,
            None,
            uplink,
        )
        return record


def staleness_histogram(records: list[RoundRecord]) -> dict[int, int]:
    """How many buffered updates were how stale, over a run's records (summary.json's `staleness`)."""
    counts: Counter[int] = Counter()
    for record in records:
        counts.update(record.staleness or ())
    return dict(sorted(counts.items()))
