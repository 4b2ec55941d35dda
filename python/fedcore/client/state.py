"""Everything one client keeps between the rounds it takes part in, as it would on its own device."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fedcore.uplink.base import Vector


@dataclass(frozen=True)
class ClientState:
    """A client's own memory: its downlink model, stage states, SCAFFOLD control, local head, Ditto model.

    `stages` maps an uplink stage's key to what that stage keeps (error feedback's residual, PowerSGD's
    warm start); none of it is ever sent as such.
    """

    model: Vector | None = None  # the model rebuilt from downlink messages (downlink sync only)
    stages: dict[str, Any] = field(default_factory=dict)
    control: Vector | None = None  # SCAFFOLD's c_i
    head: Vector | None = None  # a local head's values (FedRep in rounds)
    personal: Vector | None = None  # Ditto's personal model v


class ClientStateStore:
    """Client states by client id: one entry in a real client process, one per device in a simulation."""

    def __init__(self) -> None:
        self._states: dict[int, ClientState] = {}

    def get(self, client_id: int) -> ClientState:
        return self._states.get(client_id, ClientState())

    def put(self, client_id: int, state: ClientState) -> None:
        self._states[client_id] = state

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._states

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self._states))

    def __len__(self) -> int:
        return len(self._states)
