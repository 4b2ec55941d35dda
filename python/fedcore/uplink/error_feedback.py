"""Error feedback: what the rest of the chain failed to deliver is added to the client's next update."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.config import FLConfig
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector
from fedcore.uplink.decayed_feedback import DecayedErrorFeedbackStage


@dataclass(frozen=True)
class ErrorFeedbackStage:
    """Sends x + residual; keeps (x + residual) - what the server will rebuild (Seide 2014, Karimireddy 2019).

    In front of a partial mask the residual also holds every coordinate the mask left out, in full.
    """

    @property
    def key(self) -> str:
        return "residual"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del ctx
        residual: Vector | None = states.get(self.key)
        owed = x if residual is None else (x + residual).astype(np.float32)
        encoded = rest(owed)
        states[self.key] = (owed - encoded.reconstruct()).astype(np.float32)
        return encoded

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del ctx
        return rest(payload)


def error_feedback_from_config(config: FLConfig) -> ErrorFeedbackStage | DecayedErrorFeedbackStage | None:
    if not config.error_feedback:
        return None
    return DecayedErrorFeedbackStage(config.ef_decay) if config.ef_decay is not None else ErrorFeedbackStage()
