"""Flower's named arrays <-> one flat float32 update <-> a fedcodec frame, through fedcore's uplink stages.

Pure numpy and fedcodec: the Flower mod and strategy wrap these, and they import without flwr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcore.layout import ParamLayout
from fedcore.seeds import CODEC_SEED, derive_seed
from fedcore.uplink import ClientStates, UplinkChain, UplinkContext, decode_frame
from fedcore.uplink.codec import CodecStage
from fedcore.uplink.error_feedback import ErrorFeedbackStage
from fedcore.uplink.partial import PartialStage

if TYPE_CHECKING:
    from fedcore.partial import Mask

Vector = NDArray[np.float32]

# Keys of the train ConfigRecord the server fills and the reply's ConfigRecord the client fills.
ENABLED_KEY = "fedcodec.enabled"  # the server decodes frames: without it the mod leaves replies alone
CODEC_KEY = "fedcodec.codec"  # the server's codec spec; overrides the mod's own
MASK_KEY = "fedcodec.mask"  # this round's partial-sharing mask (fedcore.uplink.mask_to_bytes)
ROUND_KEY = "server-round"  # Flower's strategies put the round here
REPLY_RECORD = "fedcodec"  # the reply's ConfigRecord holding the frame
FRAME_KEY = "frame"
RESIDUAL_RECORD = "fedcodec.residual"  # the client's error-feedback residual, in context.state


@dataclass(frozen=True)
class ArraysLayout:
    """Which named arrays are floating point (they travel as one frame) and which pass through as they are."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[str, ...]
    floats: ParamLayout

    @classmethod
    def of(cls, arrays: Mapping[str, NDArray[np.generic]]) -> ArraysLayout:
        names = tuple(arrays)
        shapes = tuple(tuple(int(d) for d in arrays[n].shape) for n in names)
        dtypes = tuple(str(arrays[n].dtype) for n in names)
        floats = ParamLayout.from_shapes(
            [(n, s) for n, s, d in zip(names, shapes, dtypes, strict=True) if _is_float(d)]
        )
        return cls(names, shapes, dtypes, floats)

    @property
    def passthrough(self) -> tuple[str, ...]:
        """The non-float arrays (counters, integer buffers): the reply carries them unchanged."""
        return tuple(n for n, d in zip(self.names, self.dtypes, strict=True) if not _is_float(d))

    def flatten(self, arrays: Mapping[str, NDArray[np.generic]]) -> Vector:
        """The float arrays as one float32 vector; arrays that differ from this layout raise ValueError."""
        if set(arrays) != set(self.names):
            raise ValueError(f"arrays are named {sorted(arrays)}, the model sent had {sorted(self.names)}")
        for name, shape in zip(self.names, self.shapes, strict=True):
            if tuple(arrays[name].shape) != shape:
                raise ValueError(f"array {name!r} has shape {arrays[name].shape}, the model sent had {shape}")
        return self.floats.flatten(
            {e.name: np.asarray(arrays[e.name], dtype=np.float32) for e in self.floats}
        )

    def rebuild(
        self, flat: Vector, passthrough: Mapping[str, NDArray[np.generic]]
    ) -> dict[str, NDArray[np.generic]]:
        """Named arrays in this layout's order and dtypes: floats from `flat`, the rest from `passthrough`."""
        floats = self.floats.unflatten(np.asarray(flat, dtype=np.float32))
        out: dict[str, NDArray[np.generic]] = {}
        for name, shape, dtype in zip(self.names, self.shapes, self.dtypes, strict=True):
            value = floats[name] if _is_float(dtype) else passthrough[name]
            if tuple(value.shape) != shape:
                raise ValueError(f"array {name!r} has shape {value.shape}, the model sent had {shape}")
            out[name] = np.asarray(value, dtype=dtype)
        return out


def _is_float(dtype: str) -> bool:
    return bool(np.issubdtype(np.dtype(dtype), np.floating))


def uplink_chain(error_feedback: bool) -> UplinkChain:
    """fedcore's own stages in fedcore's order: error feedback, partial mask, codec (ctx.codec names it)."""
    front = (ErrorFeedbackStage(),) if error_feedback else ()
    return UplinkChain((*front, PartialStage(), CodecStage()))


def codec_seed(seed: int, server_round: int, node_id: int) -> int:
    """The seed a randomized codec (random-k, stochastic rounding) uses for one node in one round."""
    return derive_seed(seed, server_round, node_id, CODEC_SEED)


def encode_update(
    delta: Vector,
    layout: ParamLayout,
    *,
    codec: str | None,
    seed: int,
    server_round: int,
    mask: Mask | None = None,
    states: ClientStates | None = None,
    error_feedback: bool = False,
) -> bytes:
    """One client's update as a frame; with error feedback `states["residual"]` carries what it still owes."""
    ctx = UplinkContext(layout, seed=seed, codec=codec or "none", mask=mask, round=server_round)
    return uplink_chain(error_feedback).encode(delta, ctx, {} if states is None else states).payload


def decode_update(frame: bytes, layout: ParamLayout, mask: Mask | None = None) -> Vector:
    """The float32 update a frame stands for; undecodable or ill-sized frames raise ValueError."""
    update = uplink_chain(False).decode(frame, UplinkContext(layout, mask=mask))
    values = decode_frame(update) if isinstance(update, bytes) else np.asarray(update, dtype=np.float32)
    if values.shape != (layout.size,):
        raise ValueError(f"frame holds {values.size} values, the model has {layout.size}")
    if not np.isfinite(values).all():
        raise ValueError("frame holds non-finite values")
    return values
