"""PowerSGD as the terminal stage: each weight matrix travels as thin factors inside one float32 frame."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.config import FLConfig
from fedcore.powersgd import PowerSGD, decompress, payload_from_vector
from fedcore.seeds import POWERSGD_SEED, derive_seed
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector
from fedcore.uplink.codec import decode_frame, encode_frame


@dataclass(frozen=True)
class PowerSGDStage:
    """Warm-started rank-r factors per client; its own error feedback unless an EF stage runs before it."""

    rank: int
    run_seed: int
    own_error_feedback: bool = True

    @property
    def key(self) -> str:
        return "powersgd"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del rest
        compressor: PowerSGD | None = states.get(self.key)
        if compressor is None:
            seed = derive_seed(self.run_seed, 0, ctx.client_id, POWERSGD_SEED)
            compressor = PowerSGD(self.rank, ctx.layout, seed, error_feedback=self.own_error_feedback)
        payload = compressor.compress(x)
        states[self.key] = compressor
        return Encoded(encode_frame(None, payload.to_vector(), 0), lambda: decompress(payload))

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del rest
        return decompress(payload_from_vector(decode_frame(payload), self.rank, ctx.layout))


def powersgd_from_config(config: FLConfig) -> PowerSGDStage | None:
    if config.powersgd is None:
        return None
    return PowerSGDStage(config.powersgd, config.seed, own_error_feedback=not config.error_feedback)
