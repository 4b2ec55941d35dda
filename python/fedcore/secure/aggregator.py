"""The server's modular sum of bit-packed ring payloads: start / add / merge / finish, O(model) memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcodec import secagg

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self

__all__ = ["ModularSum"]


@dataclass
class ModularSum:
    """Sum of payloads in Z_2^ring_bits, refusing more than `capacity` of them (the sum would wrap).

    Weights cannot be applied to masked payloads (the masks would no longer cancel): a weighted
    secure sum has each client scale its own update before encoding, so `add` takes weight 1 only.
    """

    length: int
    ring_bits: int
    capacity: int
    count: int = 0
    _acc: NDArray[np.uint32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.ring_bits <= 32:
            raise ValueError(f"ring_bits must be in 1..=32, got {self.ring_bits}")
        self._acc = np.zeros(self.length, dtype=np.uint32)

    @classmethod
    def start(cls, length: int, ring_bits: int, capacity: int) -> Self:
        """An empty sum of `length` ring elements for up to `capacity` payloads."""
        return cls(length, ring_bits, capacity)

    def add(self, payload: bytes, weight: int = 1) -> None:
        """Adds one packed payload; a bad length or weight, or one too many, is refused, sum untouched."""
        if weight != 1:
            raise ValueError(
                "a modular sum adds masked payloads with weight 1 only (clients pre-scale their updates)"
            )
        if self.count >= self.capacity:
            raise ValueError(f"the ring holds the sum of {self.capacity} payloads; one more could wrap")
        secagg.add_packed(self._acc, payload, self.ring_bits)
        self.count += 1

    def merge(self, other: Self) -> Self:
        """This sum plus `other`'s (partial sums from workers)."""
        if (other.length, other.ring_bits) != (self.length, self.ring_bits):
            raise ValueError("cannot merge sums of different lengths or rings")
        if self.count + other.count > self.capacity:
            raise ValueError(
                f"merged sum of {self.count + other.count} payloads exceeds capacity {self.capacity}"
            )
        merged = type(self)(self.length, self.ring_bits, self.capacity, self.count + other.count)
        keep = np.uint32((1 << self.ring_bits) - 1)
        np.add(self._acc, other._acc, out=merged._acc)
        merged._acc &= keep
        return merged

    def finish(self) -> NDArray[np.uint32]:
        """The sum so far (a copy), each element in 0..2^ring_bits."""
        return self._acc.copy()
