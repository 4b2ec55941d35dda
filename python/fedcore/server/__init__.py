"""The server side of the protocol: the round driver, aggregators, checkpoints and the audit log."""

from fedcore.server.aggregation import Collecting, FoldContext, LinearFold
from fedcore.server.driver import DriverState, RoundDriver, initial_state
from fedcore.server.registry import STREAMING, aggregator_factory, check_aggregator
from fedcore.server.run import run_federation

__all__ = [
    "STREAMING",
    "Collecting",
    "DriverState",
    "FoldContext",
    "LinearFold",
    "RoundDriver",
    "aggregator_factory",
    "check_aggregator",
    "initial_state",
    "run_federation",
]
