"""Which coordinates of the flat model travel this round, stored as a seed or as a bitmap."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcodec import kernels

Vector = NDArray[np.float32]

SEEDED_DESCRIPTOR_BYTES = 24  # n u64 + fraction f64 + seed u64: all a receiver needs to rebuild the mask
_MAX_SEED = 2**64 - 1
_MAX_SIZE = 2**32  # indices() are uint32


@dataclass(frozen=True)
class Mask:
    """Coordinates of a flat vector: `Mask.seeded` travels as a seed, `Mask.from_bitmap` as its bits."""

    size: int
    seed: int | None = None
    rate: float | None = None  # a seeded mask's keep probability; `fraction` is what it selected
    bitmap: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.size <= _MAX_SIZE:
            raise ValueError(f"mask size must be in [0, 2**32], got {self.size}")
        if self.bitmap is None:
            if self.seed is None or self.rate is None:
                raise ValueError("a mask needs either a bitmap or both seed and rate")
            if not 0 <= self.seed <= _MAX_SEED:
                raise ValueError(f"seed must fit in an unsigned 64-bit integer, got {self.seed}")
            if not 0.0 < self.rate <= 1.0:
                raise ValueError(f"rate must be in (0, 1], got {self.rate}")
            return
        if self.seed is not None or self.rate is not None:
            raise ValueError("a mask is either seeded or explicit, not both")
        needed = -(-self.size // 8)
        if len(self.bitmap) != needed:
            raise ValueError(f"bitmap has {len(self.bitmap)} bytes, a mask of {self.size} needs {needed}")
        if self.size % 8 and self.bitmap[-1] >> (self.size % 8):
            raise ValueError("bitmap has bits set past the end of the mask")

    @classmethod
    def seeded(cls, size: int, fraction: float, seed: int) -> Mask:
        """Each coordinate kept with probability `fraction`; (size, fraction, seed) rebuilds it anywhere."""
        return cls(size=size, seed=seed, rate=fraction)

    @classmethod
    def from_bitmap(cls, bitmap: bytes, size: int) -> Mask:
        """An explicit mask from an LSB-first bitmap of ceil(size / 8) bytes."""
        return cls(size=size, bitmap=bytes(bitmap))

    @classmethod
    def from_bool(cls, selected: ArrayLike) -> Mask:
        flags = np.asarray(selected, dtype=bool).reshape(-1)
        return cls.from_bitmap(np.packbits(flags, bitorder="little").tobytes(), flags.size)

    @classmethod
    def from_indices(cls, indices: ArrayLike, size: int) -> Mask:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ValueError(f"indices must lie in [0, {size})")
        flags = np.zeros(size, dtype=bool)
        flags[idx] = True
        return cls.from_bool(flags)

    @classmethod
    def full(cls, size: int) -> Mask:
        return cls.seeded(size, 1.0, 0)

    @property
    def is_seeded(self) -> bool:
        return self.bitmap is None

    def _seeded_params(self) -> tuple[float, int] | None:
        """(rate, seed) of a seeded mask, None for an explicit one."""
        return None if self.rate is None or self.seed is None else (self.rate, self.seed)

    @cached_property
    def count(self) -> int:
        params = self._seeded_params()
        if params is not None:
            return int(kernels.mask_count(self.size, *params))
        return int(np.count_nonzero(self.to_bool()))

    @property
    def fraction(self) -> float:
        """Share of coordinates actually selected (a seeded mask's count varies around its rate)."""
        return self.count / self.size if self.size else 0.0

    def to_bitmap(self) -> bytes:
        params = self._seeded_params()
        if params is not None:
            return bytes(kernels.mask_bitmap(self.size, *params))
        return self.bitmap or b""

    def to_bool(self) -> NDArray[np.bool_]:
        packed = np.frombuffer(self.to_bitmap(), dtype=np.uint8)
        return np.unpackbits(packed, count=self.size, bitorder="little").astype(bool)

    def indices(self) -> NDArray[np.uint32]:
        return np.flatnonzero(self.to_bool()).astype(np.uint32)

    def wire_bytes(self, value_bytes_per_element: float = 4) -> int:
        """Bytes that must travel: the selected values plus the descriptor (seeded) or the bitmap."""
        overhead = SEEDED_DESCRIPTOR_BYTES if self.is_seeded else -(-self.size // 8)
        return int(np.ceil(self.count * value_bytes_per_element)) + overhead

    def extract(self, flat: ArrayLike) -> Vector:
        """The selected values, in coordinate order."""
        x = self._flat(flat, "flat")
        params = self._seeded_params()
        if params is not None:
            return kernels.mask_extract(x, *params)
        return kernels.bitmap_extract(x, self.to_bitmap())

    def scatter_add(self, values: ArrayLike, into: Vector, weight: float = 1.0) -> None:
        """into[selected] += weight * values, in place (the server's fold of partial updates)."""
        v = self._values(values)
        target = self._target(into)
        params = self._seeded_params()
        if params is not None:
            kernels.mask_scatter_add(v, target, *params, weight)
        else:
            kernels.bitmap_scatter_add(v, self.to_bitmap(), target, weight)

    def scatter(self, values: ArrayLike, into: Vector) -> None:
        """into[selected] = values, bit-exact, in place.

        Zeroes the selected coordinates (x - x is exactly 0) and then adds the values (0 + v is
        exactly v): one extract and two scatter passes. Adding the difference (v - x) would save a
        pass but rounds when |x| and |v| differ in scale, so a client's shared coordinates would
        not hold exactly the server's values. Non-finite old values (x - x is NaN) fall back to
        boolean indexing.
        """
        v = self._values(values)
        target = self._target(into)
        old = self.extract(target)
        if not np.isfinite(old).all():
            target[self.to_bool()] = v
            return
        self.scatter_add(old, target, weight=-1.0)
        self.scatter_add(v, target, weight=1.0)

    def __or__(self, other: Mask) -> Mask:
        """Coordinates selected by either mask (e.g. what R rounds synchronised)."""
        if other.size != self.size:
            raise ValueError(f"masks of sizes {self.size} and {other.size} cannot be combined")
        return Mask.from_bool(self.to_bool() | other.to_bool())

    def _flat(self, array: ArrayLike, what: str) -> Vector:
        x = np.asarray(array)
        if x.dtype != np.float32:
            raise ValueError(f"{what} must be float32, got {x.dtype}")
        if x.shape != (self.size,):
            raise ValueError(f"{what} has shape {x.shape}, the mask needs ({self.size},)")
        return np.ascontiguousarray(x)

    def _values(self, values: ArrayLike) -> Vector:
        v = np.asarray(values)
        if v.dtype != np.float32 or v.shape != (self.count,):
            raise ValueError(f"values must be float32 of shape ({self.count},), got {v.dtype} {v.shape}")
        return np.ascontiguousarray(v)

    def _target(self, into: Vector) -> Vector:
        if not isinstance(into, np.ndarray) or not into.flags.c_contiguous or not into.flags.writeable:
            raise ValueError("into must be a writeable, C-contiguous float32 numpy array")
        return self._flat(into, "into")
