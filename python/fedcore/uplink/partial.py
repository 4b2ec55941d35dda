"""Partial sharing as a stage: only this round's masked coordinates travel; the server puts them back."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedcore.config import FLConfig
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector
from fedcore.uplink.codec import decode_frame

if TYPE_CHECKING:
    from fedcore.partial import Mask

_SEEDED = struct.Struct("<cQdQ")  # b"S", size, rate, seed
_BITMAP = struct.Struct("<cQ")  # b"B", size; then the bitmap


def mask_to_bytes(mask: Mask) -> bytes:
    """The mask as a task carries it: its seed and rate, or its bitmap."""
    if mask.seed is not None and mask.rate is not None:
        return _SEEDED.pack(b"S", mask.size, mask.rate, mask.seed)
    return _BITMAP.pack(b"B", mask.size) + mask.to_bitmap()


def mask_from_bytes(data: bytes) -> Mask:
    """The inverse of mask_to_bytes; malformed bytes raise ValueError."""
    from fedcore.partial import Mask

    if data[:1] == b"S" and len(data) == _SEEDED.size:
        _, size, rate, seed = _SEEDED.unpack(data)
        return Mask.seeded(size, rate, seed)
    if data[:1] == b"B" and len(data) >= _BITMAP.size:
        _, size = _BITMAP.unpack_from(data)
        return Mask.from_bitmap(data[_BITMAP.size :], size)
    raise ValueError("malformed mask descriptor")


def _spread(mask: Mask, values: Vector) -> Vector:
    """A full-size vector holding `values` on the mask's coordinates and zeros elsewhere."""
    full = np.zeros(mask.size, dtype=np.float32)
    mask.scatter_add(values, full)
    return full


@dataclass(frozen=True)
class PartialStage:
    """Extracts the masked coordinates; `zero_fill` keeps the full shape for a stage that needs the layout."""

    zero_fill: bool = False

    @property
    def key(self) -> str:
        return "partial"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del states
        mask = ctx.mask
        if mask is None:
            return rest(x)
        share = mask.extract(x)
        if self.zero_fill:
            inner = rest(_spread(mask, share))
            return Encoded(inner.payload, lambda: _spread(mask, mask.extract(inner.reconstruct())))
        encoded = rest(share)
        return Encoded(encoded.payload, lambda: _spread(mask, encoded.reconstruct()))

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        mask = ctx.mask
        if mask is None:
            return rest(payload)
        inner = rest(payload)
        values = decode_frame(inner) if isinstance(inner, bytes) else inner
        if self.zero_fill:
            values = mask.extract(np.ascontiguousarray(values, dtype=np.float32))
        return _spread(mask, values)


def partial_from_config(config: FLConfig) -> PartialStage | None:
    """Active when a round has a mask: partial sharing, or a local head whose body is the shared part."""
    if config.partial is None and not config.local_head:
        return None
    return PartialStage(zero_fill=config.powersgd is not None)
