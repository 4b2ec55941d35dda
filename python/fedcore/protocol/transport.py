"""What the round driver needs from a transport: deliver tasks, bring back folded replies and failures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fedcore.protocol.aggregator import Aggregator
from fedcore.protocol.messages import Failure, Reply, Task


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
    def of(cls, reply: Reply) -> ReplyInfo:
        import hashlib

        digests = tuple(hashlib.sha256(p).hexdigest() for p in reply.payloads)
        return cls(
            reply.client_id,
            reply.num_examples,
            reply.num_steps,
            reply.loss,
            reply.nbytes,
            reply.train_s,
            digests,
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


def fold_in_order(
    make_aggregator: AggregatorFactory, tasks: Sequence[Task], arrived: Sequence[Reply | Failure]
) -> RoundOutcome:
    """Fold replies in task order (sums repeat exactly); a reply whose payloads do not decode fails."""
    aggregator = make_aggregator()
    accepted: list[ReplyInfo] = []
    failures: list[Failure] = []
    by_client = {r.client_id: r for r in arrived}
    for task in tasks:
        got = by_client.get(task.client_id)
        if got is None:
            failures.append(Failure(task.round, task.client_id, "dropped", "no reply before the deadline"))
        elif isinstance(got, Failure):
            failures.append(got)
        else:
            refusal = aggregator.add(got)
            if refusal is None:
                accepted.append(ReplyInfo.of(got))
            else:
                failures.append(refusal)
    return RoundOutcome(aggregator, tuple(accepted), tuple(failures))
