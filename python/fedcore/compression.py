"""The one place fedcore touches fedcodec: encode a delta on a client, fold or decode frames on a server."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedcore.powersgd import PowerSGDPayload, decompress

Vector = NDArray[np.float32]
Payload = bytes | Vector | PowerSGDPayload  # a codec frame, raw float32, or PowerSGD's factors

FLOAT32_BYTES = 4


class CodecUnavailableError(RuntimeError):
    """A codec was asked for but the fedcodec extension is not installed."""


def fedcodec() -> ModuleType:
    """The fedcodec module, or a clear error telling the user how to get it."""
    try:
        return importlib.import_module("fedcodec")
    except ImportError as exc:
        raise CodecUnavailableError(
            "compression needs the fedcodec extension (build it with `maturin develop`); "
            "run without --codec to send raw float32 deltas"
        ) from exc


def normalise_spec(spec: str | None) -> str | None:
    """None and 'none' both mean raw float32 with no frame around it."""
    if spec is None or spec.strip().lower() == "none":
        return None
    return spec.strip()


def validate_spec(spec: str | None) -> None:
    """Fail at configuration time, not in round 1 inside a worker."""
    spec = normalise_spec(spec)
    if spec is not None:
        fedcodec().from_spec(spec)


def payload_nbytes(payload: Payload) -> int:
    """Bytes on the wire: the real frame length, PowerSGD's wire length, or 4 per float32 when sent raw."""
    if isinstance(payload, bytes):
        return len(payload)
    if isinstance(payload, PowerSGDPayload):
        return payload.wire_nbytes
    return FLOAT32_BYTES * int(payload.size)


def decode(payload: Payload) -> Vector:
    """Whatever arrived, as a flat float32 vector; frames need no codec object to decode."""
    if isinstance(payload, bytes):
        return np.asarray(fedcodec().decode(payload), dtype=np.float32).reshape(-1)
    if isinstance(payload, PowerSGDPayload):
        return decompress(payload)
    return payload


@dataclass
class Encoder:
    """A client-side encoder for one codec spec; error-feedback residuals pass in and out, never kept."""

    spec: str | None
    error_feedback: bool = False

    def __post_init__(self) -> None:
        self.spec = normalise_spec(self.spec)
        self._codec: Any = fedcodec().from_spec(self.spec) if self.spec is not None else None

    def encode(self, x: Vector, seed: int, residual: Vector | None = None) -> tuple[Payload, Vector | None]:
        """(payload, new residual); with error feedback, residual = (x + old residual) - decode(frame)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self._codec is None:
            if self.error_feedback and residual is not None:
                return (x + residual).astype(np.float32), None  # raw floats deliver the whole residual
            return x, None
        if not self.error_feedback:
            return bytes(self._codec.encode(x, seed=seed)), None
        feedback = fedcodec().ErrorFeedback(self._codec)
        if residual is not None:
            feedback.residual = np.array(residual, dtype=np.float32)  # a copy: encode updates it in place
        frame = bytes(feedback.encode(x, seed=seed))
        return frame, np.asarray(feedback.residual, dtype=np.float32)


class DeltaSum:
    """Weighted running sum of payloads in O(model) memory; frames go straight into fedcodec's Accumulator."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._dense = np.zeros(size, dtype=np.float64)
        self._frames: Any = None

    def add(self, payload: Payload, weight: float) -> None:
        if isinstance(payload, bytes):
            if self._frames is None:
                self._frames = fedcodec().Accumulator(self._size)
            self._frames.add(payload, weight=float(weight))
        else:
            dense = decode(payload)
            if dense.size != self._size:
                raise ValueError(f"delta has {dense.size} elements, expected {self._size}")
            self._dense += weight * dense.astype(np.float64)

    def result(self) -> NDArray[np.float64]:
        if self._frames is None:
            return self._dense.copy()
        return self._dense + np.asarray(self._frames.result(), dtype=np.float64).reshape(-1)
