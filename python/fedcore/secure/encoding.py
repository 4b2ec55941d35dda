"""Updates into the ring Z_2^b without wrap: rotate, subsample, clip, round stochastically; and back.

Every step is linear (or unbiased) and shared by all clients of a round, so the server decodes
the unmasked integer sum into the float sum of the clients' updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from fedcodec import kernels, secagg

__all__ = [
    "RingConfig",
    "RingElements",
    "Unrounded",
    "decode_mean",
    "decode_sum",
    "encode_update",
    "encoded_length",
    "ring_codes",
    "ring_margin",
    "unrounded_update",
]


@dataclass(frozen=True)
class RingConfig:
    """The round's agreed encoding: clip range, bits per code, ring size and linear compression.

    `ring_bits = bits + ceil(log2(max_clients))`, so the sum of up to `max_clients` codes never
    wraps; a config whose ring would need more than 32 bits is refused at construction.
    `fraction < 1` keeps a seeded random subset of coordinates (the same for every client), and
    `rotate` applies a seeded randomized Hadamard rotation first (spreads outliers, so a tighter
    `clip` loses less). `seed` is public and fresh per round. `headroom_bits` widens the ring for
    signed noise added to the codes (distributed DP): see `ring_margin`.
    """

    clip: float
    bits: int = 16
    max_clients: int = 1000
    rotate: bool = False
    fraction: float = 1.0
    seed: int = 0
    headroom_bits: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be finite and positive, got {self.clip}")
        if not 1 <= self.bits <= 24:
            raise ValueError(f"bits must be in 1..=24, got {self.bits}")
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be at least 1, got {self.max_clients}")
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if self.headroom_bits < 0:
            raise ValueError(f"headroom_bits must be >= 0, got {self.headroom_bits}")
        if self.ring_bits > 32:
            raise ValueError(
                f"a sum of {self.max_clients} codes of {self.bits} bits needs {self.ring_bits} ring bits "
                + (f" (with {self.headroom_bits} headroom bits for noise)" if self.headroom_bits else "")
                + " and would wrap the 32-bit ring: lower bits or max_clients"
            )

    @property
    def ring_bits(self) -> int:
        """Bits of the ring: enough that `max_clients` codes add without wrap."""
        return self.bits + math.ceil(math.log2(self.max_clients)) + self.headroom_bits

    def with_headroom(self, headroom_bits: int) -> RingConfig:
        """The same encoding in a ring widened by `headroom_bits` (refused past 32 bits)."""
        return replace(self, headroom_bits=headroom_bits)

    @property
    def levels(self) -> int:
        """The largest code, 2^bits - 1."""
        return (1 << self.bits) - 1

    def bytes_per_param(self, n: int) -> float:
        """Uploaded bytes per model parameter (packed ring elements over the full vector)."""
        return math.ceil(encoded_length(n, self) * self.ring_bits / 8) / n


def ring_margin(config: RingConfig) -> int:
    """Room below 0 and above max_clients x levels: a sum that strays less than this decodes exactly.

    `decode_sum` reads a ring element r as the integer in [-margin, 2^ring_bits - margin), so codes plus
    signed noise of magnitude <= margin never wrap; without headroom bits there is no noise and no wrap.
    """
    return ((1 << config.ring_bits) - config.max_clients * config.levels) // 2


def _padded(n: int, config: RingConfig) -> int:
    return 1 << max(0, (n - 1).bit_length()) if config.rotate else n


def _signs(n: int, config: RingConfig) -> NDArray[np.float32]:
    rng = np.random.default_rng([config.seed, 0x5EC])
    return (rng.integers(0, 2, n, dtype=np.int8) * 2 - 1).astype(np.float32)


def encoded_length(n: int, config: RingConfig) -> int:
    """Ring elements a client uploads for a vector of n floats under this config."""
    padded = _padded(n, config)
    if config.fraction >= 1.0:
        return padded
    return kernels.mask_count(padded, config.fraction, config.seed)


def _transform(x: NDArray[np.float32], config: RingConfig) -> NDArray[np.float32]:
    y = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    if config.rotate:
        padded = np.zeros(_padded(y.size, config), dtype=np.float32)
        padded[: y.size] = y
        y = kernels.fwht(padded * _signs(padded.size, config))
    if config.fraction < 1.0:
        y = kernels.mask_extract(y, config.fraction, config.seed)
    return y


@dataclass(frozen=True)
class Unrounded:
    """A client's update one step short of the ring: its transformed floats and the rounding that makes codes.

    `ClientMask.mask` rounds, masks and packs it in one pass (`secagg.quantize_mask`), so a client's codes
    never exist as an array (1M of them are 4 MB of fresh memory a round); `codes()` makes them where they
    are needed whole (distributed DP adds its noise share to them).
    """

    values: NDArray[np.float32]
    clip: float
    bits: int
    seed: bytes  # the client's 32-byte rounding stream key

    @property
    def size(self) -> int:
        """Ring elements the update becomes."""
        return int(self.values.size)

    def codes(self) -> NDArray[np.uint32]:
        """The codes in 0..=2^bits-1, as `encode_update` gives them."""
        return secagg.quantize(self.values, self.clip, self.bits, self.seed)


# What a client masks: its codes, or an update still to be rounded (the same codes either way).
RingElements = NDArray[np.uint32] | Unrounded


def ring_codes(elements: RingElements) -> NDArray[np.uint32]:
    """The codes of `elements`, rounded now if they are still an update."""
    return elements.codes() if isinstance(elements, Unrounded) else elements


def unrounded_update(x: NDArray[np.float32], config: RingConfig, rounding_seed: bytes) -> Unrounded:
    """`encode_update` up to the rounding, which the masking then does in the same pass."""
    return Unrounded(_transform(x, config), config.clip, config.bits, rounding_seed)


def encode_update(x: NDArray[np.float32], config: RingConfig, rounding_seed: bytes) -> NDArray[np.uint32]:
    """A client's update as codes in 0..=2^bits-1 (rounding noise from its own 32-byte seed)."""
    return unrounded_update(x, config, rounding_seed).codes()


def decode_sum(total: NDArray[np.uint32], count: int, n: int, config: RingConfig) -> NDArray[np.float32]:
    """The float sum of `count` clients' updates (length n) from the unmasked integer sum of their codes.

    Exact up to each client's rounding noise (unbiased) and clipping; with `fraction < 1` it is the
    unbiased random-k estimate (kept coordinates scaled by 1 / fraction).
    """
    if not 1 <= count <= config.max_clients:
        raise ValueError(f"count must be in 1..={config.max_clients}, got {count}")
    if total.size != encoded_length(n, config):
        raise ValueError(f"sum has {total.size} elements, this config encodes {encoded_length(n, config)}")
    step = 2.0 * config.clip / config.levels
    margin = ring_margin(config)
    lifted = np.mod(total.astype(np.int64) + margin, 1 << config.ring_bits) - margin
    y = (lifted.astype(np.float64) * step - count * config.clip).astype(np.float32)
    padded = _padded(n, config)
    if config.fraction < 1.0:
        full = np.zeros(padded, dtype=np.float32)
        kernels.mask_scatter_add(y, full, config.fraction, config.seed, weight=1.0 / config.fraction)
        y = full
    if config.rotate:
        y = kernels.fwht(y) * _signs(padded, config)
    return np.ascontiguousarray(y[:n])


def decode_mean(total: NDArray[np.uint32], count: int, n: int, config: RingConfig) -> NDArray[np.float32]:
    """The mean of `count` clients' updates from the unmasked integer sum."""
    return decode_sum(total, count, n, config) / np.float32(count)
