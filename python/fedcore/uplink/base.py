"""One uplink stage: a client half that encodes and a server half that decodes, composed as a chain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from fedcore.layout import ParamLayout

if TYPE_CHECKING:
    from fedcore.partial import Mask

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
