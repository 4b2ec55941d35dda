"""The one place fedcore loads fedcodec, with a clear error where the extension is missing."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
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


@dataclass(frozen=True)
class CodecSpec:
    """A fedcodec pipeline such as `randk:0.25+eden:1`, checked by fedcodec once; `none` is raw float32."""

    text: str

    def __post_init__(self) -> None:
        text = self.text.strip()
        text = "none" if text.lower() == "none" else text
        object.__setattr__(self, "text", text)
        if text != "none":
            fedcodec().from_spec(text)  # raises ValueError naming what is wrong

    @classmethod
    def parse(cls, text: str) -> CodecSpec:
        """Read a spec in fedcodec's grammar (`quant:8`, `topk:0.01+quant:8`, `none`)."""
        return cls(text)

    def __str__(self) -> str:
        return self.text

    @property
    def raw(self) -> bool:
        """Raw float32: no codec and no frame around the vector."""
        return self.text == "none"

    @property
    def stages(self) -> tuple[tuple[str, str], ...]:
        """The pipeline's stages as (name, parameters), in order: `topk:0.1+quant:8` is two."""
        return tuple((name, arg) for name, _, arg in (part.partition(":") for part in self.text.split("+")))


def normalise_spec(spec: CodecSpec | str | None) -> str | None:
    """The frame spec to encode with; None for raw float32 (no spec, or `none`)."""
    if spec is None:
        return None
    text = str(spec).strip()
    return None if text.lower() == "none" else text


def validate_spec(spec: str) -> None:
    """Fail at configuration time, not in round 1 inside a worker."""
    CodecSpec.parse(spec)
