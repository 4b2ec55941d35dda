"""Error feedback for clients that come back rarely: the residual fades with the rounds a client sat out.

With ~1 client in 10 per round, a residual is ~10 rounds old when it is sent; the model has moved on and
the stale residual pushes it back the way it came (the study's top-k + EF rows lost 3.7 to 9.9 points).
Multiplying the residual by DECAY per round since it was made keeps what is recent and forgets the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector


@dataclass(frozen=True)
class Residual:
    """What the chain failed to deliver, and the round it was left over from."""

    values: Vector
    round: int


@dataclass(frozen=True)
class DecayedErrorFeedbackStage:
    """Sends x + DECAY^(rounds since) x residual; DECAY 1 is plain error feedback, 0 none at all."""

    decay: float

    @property
    def key(self) -> str:
        return "residual"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        kept: Residual | None = states.get(self.key)
        owed = x
        if kept is not None:
            fade = self.decay ** max(ctx.round - kept.round, 0)
            owed = (x + fade * kept.values).astype(np.float32)
        encoded = rest(owed)
        states[self.key] = Residual((owed - encoded.reconstruct()).astype(np.float32), ctx.round)
        return encoded

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del ctx
        return rest(payload)
