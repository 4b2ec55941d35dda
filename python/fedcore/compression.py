"""The one place fedcore loads fedcodec, with a clear error where the extension is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float32]

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
