"""Clipping as the uplink's first stage: user-level DP bounds each client's whole update to norm C."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.config import FLConfig
from fedcore.privacy.central import clip_update
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector


@dataclass(frozen=True)
class ClipStage:
    """Scales the update to norm <= ctx.clip (the round's clip: fixed, or adaptive's current one).

    Reports `dp_unclipped` (1 if the update already fit), which adaptive clipping counts under noise.
    """

    @property
    def key(self) -> str:
        return "clip"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del states
        if ctx.clip is None:
            raise ValueError("the clipping stage needs the round's clip norm")
        clipped, was_clipped = clip_update(x, ctx.clip)
        encoded = rest(clipped)
        encoded.metrics["dp_unclipped"] = 0.0 if was_clipped else 1.0
        return encoded

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del ctx
        return rest(payload)


def clip_from_config(config: FLConfig) -> ClipStage | None:
    """User-level DP (central or adaptive) clips every update before anything else touches it."""
    if config.dp is None or not config.dp.user_level:
        return None
    return ClipStage()
