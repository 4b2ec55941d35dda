"""The server side of the protocol: the round driver, aggregators, checkpoints and the audit log."""

from fedcore.server.aggregation import Collecting, FoldContext, LinearFold
from fedcore.server.driver import DriverState, RoundDriver, initial_state
from fedcore.server.registry import STREAMING, AggregatorSpec, aggregator_factory
from fedcore.server.run import run_federation

__all__ = [
    "STREAMING",
    "AggregatorSpec",
    "Collecting",
    "DriverState",
    "FoldContext",
    "LinearFold",
    "RoundDriver",
    "aggregator_factory",
    "initial_state",
    "run_federation",
]
