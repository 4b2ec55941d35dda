"""Codec objects: typed, comparable, chainable with `+`, and one-to-one with spec strings."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcodec import _fedcodec
from fedcodec._fedcodec import CodecError

__all__ = [
    "QSGD",
    "Codec",
    "Eden",
    "Identity",
    "Pipeline",
    "Quantize",
    "RandK",
    "Sign",
    "TopK",
    "as_float32",
    "from_spec",
]

_DTYPE_SPECS = {"float32": "none", "float16": "f16", "bfloat16": "bf16"}


def as_float32(x: ArrayLike) -> NDArray[np.float32]:
    """Accepts numpy, torch CPU and mlx arrays; refuses silent dtype changes."""
    array = np.asarray(x)
    if array.dtype != np.float32:
        raise CodecError(
            f"expected a float32 array, got {array.dtype}; convert explicitly, e.g. x.astype(np.float32)"
        )
    # Non-contiguous views are copied once (documented policy), never rejected; 0-d stays 0-d.
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


class Codec(ABC):
    """Base of every codec: `encode` an array with a seed, chain with `+`, print as a spec."""

    terminal: ClassVar[bool] = True

    @property
    @abstractmethod
    def spec(self) -> str:
        """The text the Rust parser compiles; `str(codec)` is its canonical form."""

    @cached_property
    def _native(self) -> _fedcodec.Codec:
        return _fedcodec.Codec(self.spec)

    def encode(self, x: ArrayLike, seed: int = 0) -> bytes:
        """Compresses `x` into one self-describing frame; the same seed gives the same bytes."""
        return self._native.encode(as_float32(x), seed)

    def stages(self) -> tuple[Codec, ...]:
        return (self,)

    def __add__(self, other: Codec) -> Codec:
        if not isinstance(other, Codec):
            return NotImplemented
        parts = self.stages() + other.stages()
        if len(parts) > 1 and parts[-1] == Identity() and not parts[-2].terminal:
            parts = parts[:-1]  # float32 after a sparsifier is implied
        return parts[0] if len(parts) == 1 else Pipeline(parts)

    def __str__(self) -> str:
        return self._native.spec

    def __repr__(self) -> str:
        return f"from_spec({str(self)!r})"


@dataclass(frozen=True, eq=True, repr=False)
class Identity(Codec):
    """Raw floats: the float32 baseline, or float16/bfloat16 halving the bytes."""

    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPE_SPECS:
            raise CodecError(f"dtype must be one of {sorted(_DTYPE_SPECS)}, got {self.dtype!r}")

    @property
    def spec(self) -> str:
        return _DTYPE_SPECS[self.dtype]


@dataclass(frozen=True, eq=True, repr=False)
class Quantize(Codec):
    """Uniform per-chunk quantization to 1-16 bits; stochastic rounding makes it unbiased."""

    bits: int
    stochastic: bool = False
    chunk: int = 4096

    @property
    def spec(self) -> str:
        text = f"quant:{self.bits}" + (":stochastic" if self.stochastic else "")
        return text + (f":chunk={self.chunk}" if self.chunk != 4096 else "")

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class QSGD(Codec):
    """QSGD: norm-scaled stochastic levels per bucket (Alistarh et al. 2017)."""

    levels: int
    bucket: int = 1024

    @property
    def spec(self) -> str:
        return f"qsgd:{self.levels}" + (f":bucket={self.bucket}" if self.bucket != 1024 else "")

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class Eden(Codec):
    """EDEN/DRIVE: seeded Hadamard rotation + Lloyd-Max centroids + unbiased scale."""

    bits: int

    @property
    def spec(self) -> str:
        return f"eden:{self.bits}"

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class Sign(Codec):
    """Scaled sign, 1 bit per element (pair with ErrorFeedback, as in EF-signSGD)."""

    chunk: int = 4096

    @property
    def spec(self) -> str:
        return "sign" + (f":chunk={self.chunk}" if self.chunk != 4096 else "")

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class TopK(Codec):
    """Keeps the largest magnitudes; the kept values go through the next codec in the chain."""

    terminal: ClassVar[bool] = False
    fraction: float
    sampled: bool = False

    @property
    def spec(self) -> str:
        return f"topk:{self.fraction!r}" + (":sampled" if self.sampled else "")

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class RandK(Codec):
    """Seeded random coordinates scaled to stay unbiased; the seed travels, not the indices."""

    terminal: ClassVar[bool] = False
    fraction: float

    @property
    def spec(self) -> str:
        return f"randk:{self.fraction!r}"

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, eq=True, repr=False)
class Pipeline(Codec):
    """Sparsifiers followed by one value codec, e.g. TopK(0.01) + Quantize(8)."""

    parts: tuple[Codec, ...]

    @property
    def spec(self) -> str:
        return "+".join(part.spec for part in self.parts)

    def stages(self) -> tuple[Codec, ...]:
        return self.parts

    def __post_init__(self) -> None:
        _validate(self)


def _validate(codec: Codec) -> None:
    """Lets the Rust parser, the single source of truth, judge the parameters."""
    _fedcodec.Codec(codec.spec)


def _stage_from_params(params: dict[str, Any]) -> Codec:
    name = params["name"]
    if name == "identity":
        return Identity(params["dtype"])
    if name == "quant":
        return Quantize(params["bits"], params["stochastic"], params["chunk"])
    if name == "qsgd":
        return QSGD(params["levels"], params["bucket"])
    if name == "eden":
        return Eden(params["bits"])
    if name == "sign":
        return Sign(params["chunk"])
    if name == "topk":
        return TopK(params["fraction"], params["sampled"])
    if name == "randk":
        return RandK(params["fraction"])
    raise CodecError(f"unknown stage {name!r}")


def from_spec(spec: str) -> Codec:
    """Builds the codec a spec string names; `from_spec(str(c)) == c` for every codec."""
    native = _fedcodec.Codec(spec)
    stages = [_stage_from_params(p) for p in native.stages()]
    if len(stages) == 2 and stages[-1] == Identity() and not stages[0].terminal:
        stages = stages[:1]
    return stages[0] if len(stages) == 1 else Pipeline(tuple(stages))
