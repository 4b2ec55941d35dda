"""The codec stage: the update becomes one fedcodec frame (a lossless `none` frame without a codec)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.compression import CodecSpec, fedcodec, normalise_spec
from fedcore.config import FLConfig
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector

RAW_SPEC = "none"


def encode_frame(spec: CodecSpec | str | None, x: Vector, seed: int) -> bytes:
    """x as a frame of `spec`; None and 'none' mean float32 as it is, still framed and checksummed."""
    codec = fedcodec().from_spec(normalise_spec(spec) or RAW_SPEC)
    return bytes(codec.encode(np.ascontiguousarray(x, dtype=np.float32), seed=seed))


def decode_frame(frame: bytes) -> Vector:
    """Any frame as a flat float32 vector; undecodable bytes raise fedcodec's FrameError."""
    return np.asarray(fedcodec().decode(frame), dtype=np.float32).reshape(-1)


def is_raw(frame: bytes) -> bool:
    """A lossless float32 frame: the aggregator folds it in float64 like the raw vectors it carries."""
    return str(fedcodec().inspect(frame).spec) == RAW_SPEC


@dataclass(frozen=True)
class CodecStage:
    """Terminal stage: the run's codec spec, or the one adaptive compression picked for this client."""

    spec: str | None = None

    @property
    def key(self) -> str:
        return "codec"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del states, rest
        frame = encode_frame(ctx.codec if ctx.codec is not None else self.spec, x, ctx.seed)
        return Encoded(frame, lambda: decode_frame(frame))

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        del ctx, rest
        return decode_frame(payload) if is_raw(payload) else payload


def codec_from_config(config: FLConfig) -> CodecStage | None:
    """The terminal stage unless PowerSGD replaces it; under --secagg the ring applies random-k itself."""
    if config.powersgd is not None:
        return None
    return CodecStage(None if config.secagg else normalise_spec(config.codec))
