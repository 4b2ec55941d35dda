"""Messages and seams shared by the server, the client and every transport; nothing here moves bytes."""

from fedcore.protocol.aggregator import Aggregator
from fedcore.protocol.messages import FAILURE_KINDS, Failure, Reply, Task
from fedcore.protocol.transport import (
    AggregatorFactory,
    ReplyInfo,
    RoundOutcome,
    Transport,
    fold_in_order,
)

__all__ = [
    "FAILURE_KINDS",
    "Aggregator",
    "AggregatorFactory",
    "Failure",
    "Reply",
    "ReplyInfo",
    "RoundOutcome",
    "Task",
    "Transport",
    "fold_in_order",
]
