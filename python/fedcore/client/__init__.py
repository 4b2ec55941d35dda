"""The client side of the protocol: one client's state and round, alike in a simulation and a process."""

from fedcore.client.app import (
    ClientApp,
    DivergedUpdateError,
    TaskSettings,
    base_train_config,
    local_train_config,
)
from fedcore.client.state import ClientState, ClientStateStore

__all__ = [
    "ClientApp",
    "ClientState",
    "ClientStateStore",
    "DivergedUpdateError",
    "TaskSettings",
    "base_train_config",
    "local_train_config",
]
