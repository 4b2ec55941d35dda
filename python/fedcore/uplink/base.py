"""One uplink stage: a client half that encodes and a server half that decodes, composed as a chain."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from fedcore.layout import ParamLayout

if TYPE_CHECKING:
    from fedcore.partial import Mask
    from fedcore.strategies.base import FoldSum

Vector = NDArray[np.float32]
# What a server half hands the aggregator: a frame it may fold straight in Rust, or a dense vector.
Update = bytes | Vector


@dataclass(frozen=True)
class UplinkContext:
    """What both halves of every stage know about one client's upload in one round."""

    layout: ParamLayout
    client_id: int = 0
    seed: int = 0  # the codec seed of this client and round
    codec: str | None = None  # this client's codec this round, where adaptive compression picked one
    mask: Mask | None = None  # this round's shared coordinates (partial sharing, a local head's body)
    clip: float | None = None  # this round's clip norm under user-level DP
    round: int = 0  # the round this upload belongs to (a decaying residual counts the rounds in between)


@dataclass
class Encoded:
    """A payload and, on demand, what the server will rebuild from it in the stage's input space."""

    payload: bytes
    reconstruct: Callable[[], Vector]
    metrics: dict[str, float] = field(default_factory=dict)


ClientStates = dict[str, Any]  # each stage's own per-client state, under the stage's key
EncodeRest = Callable[[Vector], Encoded]
DecodeRest = Callable[[bytes], Update]


class Stage(Protocol):
    """Client half (update, state) -> payload; server half payload -> update; `rest` is the chain after it."""

    @property
    def key(self) -> str:
        """The name of this stage in specs, records and the client's state."""
        ...

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        """Client half: transform x, hand it to `rest`, keep any state under `states[self.key]`."""
        ...

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        """Server half: undo this stage's transform on what `rest` decoded."""
        ...


@runtime_checkable
class ServerRound(Protocol):
    """A stage whose server half keeps state across rounds (shifted compression's mean shift).

    It sees the round's whole fold once every client is in, and returns the fold the strategy steps with;
    its state lives in the driver's state (so checkpoints carry it), under the stage's key.
    """

    @property
    def key(self) -> str: ...

    def server_round(self, fold: FoldSum, state: Any, clients: int) -> tuple[FoldSum, Any]:
        """The fold after this stage's server step, and the stage's new server state."""
        ...


@runtime_checkable
class ServerMemory(Protocol):
    """A stage whose server half needs each client's decoded update of the round, not only their sum.

    The aggregator keeps them (client id -> (coefficient, update)) only when the chain has such a stage.
    """

    @property
    def key(self) -> str: ...

    def remember(
        self, fold: FoldSum, kept: Mapping[int, tuple[float, Vector]], state: Any
    ) -> tuple[FoldSum, Any]:
        """The fold after this stage's server step, and the stage's new server state."""
        ...


class ServerOnly:
    """The client half of a stage that acts only on the server: the update passes through unchanged."""

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del ctx, states
        return rest(x)

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del ctx
        return rest(payload)
