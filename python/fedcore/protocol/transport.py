"""What the round driver needs from a transport: deliver tasks, bring back folded replies and failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fedcore.protocol.aggregator import Aggregator
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.strategies.base import FoldSum


@dataclass(frozen=True)
class ReplyInfo:
    """What the driver records of an accepted reply once its payloads are folded (the frames are gone)."""

    client_id: int
    num_examples: int
    num_steps: int
    loss: float
    nbytes: int
    train_s: float
    sha256: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, reply: Reply, *, digests: bool = True) -> ReplyInfo:
        """What to record of `reply`; `digests=False` leaves out its frames' SHA-256 (nobody records them)."""
        import hashlib

        sha256 = tuple(hashlib.sha256(p).hexdigest() for p in reply.payloads) if digests else ()
        return cls(
            reply.client_id,
            reply.num_examples,
            reply.num_steps,
            reply.loss,
            reply.nbytes,
            reply.train_s,
            sha256,
            dict(reply.metrics),
        )


@dataclass(frozen=True)
class RoundOutcome:
    """One round's result as the driver sees it: the folded aggregate, who got in, who did not and why."""

    aggregator: Aggregator
    replies: tuple[ReplyInfo, ...]  # accepted, in task order
    failures: tuple[Failure, ...]


AggregatorFactory = Callable[[], Aggregator]


class Transport(Protocol):
    """Moves tasks out and replies in; it knows no strategy, no codec and no client state."""

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        """Block until `clients` clients can take tasks or the timeout passes; how many can."""
        ...

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        """Send every task, fold the replies that arrive in time, in task order; one entry per task."""
        ...

    def close(self) -> None: ...


def fold_answer(aggregator: Aggregator, answer: Reply | Failure) -> ReplyInfo | Failure:
    """One client's answer into the aggregate: accepted (what to record of it), or why it is not in."""
    if isinstance(answer, Failure):
        return answer
    refusal = aggregator.add(answer)
    if refusal is not None:
        return refusal
    # a collector keeps the reply whole, and whoever reads it there records it: no digests to make here
    return ReplyInfo.of(answer, digests=not isinstance(aggregator, ReplyCollector))


def fold_in_order(
    make_aggregator: AggregatorFactory, tasks: Sequence[Task], arrived: Sequence[Reply | Failure]
) -> RoundOutcome:
    """Fold replies in task order (sums repeat exactly); a reply whose payloads do not decode fails."""
    aggregator = make_aggregator()
    folded: list[ReplyInfo | Failure] = []
    by_client = {r.client_id: r for r in arrived}
    for task in tasks:
        got = by_client.get(task.client_id)
        if got is None:
            folded.append(Failure(task.round, task.client_id, "dropped", "no reply before the deadline"))
        else:
            folded.append(fold_answer(aggregator, got))
    return outcome_of(aggregator, folded)


def outcome_of(aggregator: Aggregator, folded: Sequence[ReplyInfo | Failure]) -> RoundOutcome:
    """The round's outcome from its folded answers, accepted and refused each kept in order."""
    accepted = tuple(f for f in folded if isinstance(f, ReplyInfo))
    failures = tuple(f for f in folded if isinstance(f, Failure))
    return RoundOutcome(aggregator, accepted, failures)


class ReplyCollector:
    """Keeps the round's replies as they are, so the attack can read the honest ones before anything folds."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []

    def add(self, reply: Reply) -> Failure | None:
        self.replies.append(reply)
        return None

    def merge(self, other: ReplyCollector) -> ReplyCollector:
        merged = ReplyCollector()
        merged.replies = self.replies + other.replies
        return merged

    def finish(self) -> FoldSum:
        raise TypeError("a reply collector is never finished")


def collect_replies(
    transport: Transport, tasks: Sequence[Task], deadline_s: float | None
) -> tuple[list[Reply], tuple[Failure, ...]]:
    """Run a round on `transport` and keep the replies whole, for a step that must see them before folding."""
    collected = transport.run_round(tasks, ReplyCollector, deadline_s)
    assert isinstance(collected.aggregator, ReplyCollector)
    return collected.aggregator.replies, collected.failures
