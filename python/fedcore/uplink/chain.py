"""The uplink chain: stages run in order on the client and unwind in reverse on the server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fedcore.config import FLConfig
from fedcore.uplink.base import (
    ClientStates,
    Encoded,
    ServerMemory,
    ServerRound,
    Stage,
    Update,
    UplinkContext,
    Vector,
)
from fedcore.uplink.clip import clip_from_config
from fedcore.uplink.codec import codec_from_config
from fedcore.uplink.error_feedback import error_feedback_from_config
from fedcore.uplink.memory import memory_from_config
from fedcore.uplink.partial import partial_from_config
from fedcore.uplink.powersgd import powersgd_from_config
from fedcore.uplink.shift import shift_from_config
from fedcore.uplink.shrink import shrink_from_config

if TYPE_CHECKING:
    from fedcore.strategies.base import FoldSum

# The registry, in chain order: each entry builds its stage from the config, or None when unused.
STAGE_BUILDERS: tuple[Callable[[FLConfig], Stage | None], ...] = (
    memory_from_config,
    shrink_from_config,
    clip_from_config,
    shift_from_config,
    error_feedback_from_config,
    partial_from_config,
    powersgd_from_config,
    codec_from_config,
)


@dataclass(frozen=True)
class UplinkChain:
    """The stages one run uses; the last one turns the update into a frame."""

    stages: tuple[Stage, ...]

    @classmethod
    def from_config(cls, config: FLConfig) -> UplinkChain:
        return cls(tuple(s for s in (build(config) for build in STAGE_BUILDERS) if s is not None))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.key for s in self.stages)

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates) -> Encoded:
        """Client side: the payload for x; each stage updates its own entry of `states` in place."""

        def run(i: int, value: Vector) -> Encoded:
            return self.stages[i].encode(value, ctx, states, lambda v: run(i + 1, v))

        return run(0, x)

    def decode(self, payload: bytes, ctx: UplinkContext) -> Update:
        """Server side: the update a payload stands for, as a foldable frame or a dense vector."""

        def run(i: int, data: bytes) -> Update:
            return self.stages[i].decode(data, ctx, lambda d: run(i + 1, d))

        return run(0, payload)

    @property
    def keeps_updates(self) -> bool:
        """True when a server half needs each client's decoded update (the aggregator then keeps them)."""
        return any(isinstance(s, ServerMemory) for s in self.stages)

    def server_round(
        self,
        fold: FoldSum,
        states: Mapping[str, Any],
        clients: int,
        updates: Mapping[int, tuple[float, Vector]] | None = None,
    ) -> tuple[FoldSum, dict[str, Any]]:
        """After the fold: each stateful server half, last stage first, with its state from `states`.

        `updates` are the round's decoded updates by client (coefficient, vector), where the aggregator
        kept them (see keeps_updates); a stage that needs them and gets none sees an empty round.
        """
        kept = dict(states)
        for stage in reversed(self.stages):
            if isinstance(stage, ServerMemory):
                fold, kept[stage.key] = stage.remember(fold, updates or {}, kept.get(stage.key))
            elif isinstance(stage, ServerRound):
                fold, kept[stage.key] = stage.server_round(fold, kept.get(stage.key), clients)
        return fold, kept
