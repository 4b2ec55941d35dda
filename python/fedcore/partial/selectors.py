"""Mask selectors for partial model sharing (PSFed): which coordinates travel in which round."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from fedcodec import kernels
from fedcore.layout import ParamLayout
from fedcore.partial.mask import Mask

_MAX_SEED = 2**64 - 1


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")


def _check_seed(seed: int) -> None:
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"seed must fit in an unsigned 64-bit integer, got {seed}")


def round_seed(seed: int, round_num: int) -> int:
    """A per-round seed that server and clients derive alike, uncorrelated across rounds."""
    if round_num < 0:
        raise ValueError(f"round must be >= 0, got {round_num}")
    return int(np.random.SeedSequence([seed, round_num]).generate_state(1, dtype=np.uint64)[0])


def _check_inputs(weights: NDArray[np.floating], layout: ParamLayout) -> None:
    if weights.shape != (layout.size,):
        raise ValueError(f"weights have shape {weights.shape}, the layout needs ({layout.size},)")


def _largest_magnitudes(x: NDArray[np.floating], fraction: float) -> Mask:
    values = np.ascontiguousarray(x, dtype=np.float32)
    k = max(1, math.floor(fraction * values.size + 0.5))
    return Mask.from_indices(kernels.topk_indices(values, k), values.size)


class MaskSelector(ABC):
    """Subclass this for a custom selection rule; the engine calls `select` once per round."""

    @abstractmethod
    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        """The mask for this round; `gradient` is the latest gradient or update where one exists."""


@dataclass(frozen=True)
class _FractionSelector(MaskSelector):
    """A selector named by `PREFIX:FRACTION`, the form `parse_partial` reads back."""

    prefix: ClassVar[str]
    fraction: float

    def __post_init__(self) -> None:
        _check_fraction(self.fraction)

    @property
    def spec(self) -> str:
        return f"{self.prefix}:{self.fraction!r}"


@dataclass(frozen=True)
class _SeededFractionSelector(_FractionSelector):
    """A fraction selector whose choices are seeded, so server and clients derive the same masks."""

    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_seed(self.seed)


@dataclass(frozen=True)
class RandomMaskSelector(_SeededFractionSelector):
    """A fresh seeded mask each round: 24 bytes describe it, and every coordinate is synced eventually."""

    prefix: ClassVar[str] = "random"

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        _check_inputs(weights, layout)
        return Mask.seeded(layout.size, self.fraction, round_seed(self.seed, round))


@dataclass(frozen=True)
class _LargestScoresSelector(_FractionSelector):
    """Keeps the coordinates with the largest |score|; subclasses say what the score is."""

    @abstractmethod
    def _scores(
        self, weights: NDArray[np.float32], gradient: NDArray[np.float32] | None
    ) -> NDArray[np.float32]: ...

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        _check_inputs(weights, layout)
        return _largest_magnitudes(self._scores(weights, gradient), self.fraction)


@dataclass(frozen=True)
class TopKMagnitudeSelector(_LargestScoresSelector):
    """The largest |weights|; the mask follows the weights, so coverage of small ones is not guaranteed."""

    prefix: ClassVar[str] = "topk"

    def _scores(
        self, weights: NDArray[np.float32], gradient: NDArray[np.float32] | None
    ) -> NDArray[np.float32]:
        return weights


@dataclass(frozen=True)
class GradientMaskSelector(_LargestScoresSelector):
    """The largest |gradient| (or |update|): share what is changing most."""

    prefix: ClassVar[str] = "gradient"

    def _scores(
        self, weights: NDArray[np.float32], gradient: NDArray[np.float32] | None
    ) -> NDArray[np.float32]:
        if gradient is None:
            raise ValueError("GradientMaskSelector needs the gradient (or last update) to select from")
        if gradient.shape != weights.shape:
            raise ValueError(f"gradient has shape {gradient.shape}, weights have {weights.shape}")
        return gradient


@dataclass(frozen=True)
class StructuredMaskSelector(_SeededFractionSelector):
    """Whole tensors in ceil(1/fraction) size-balanced groups, one per round: each is shared regularly."""

    prefix: ClassVar[str] = "structured"

    def groups(self, layout: ParamLayout) -> list[list[int]]:
        """Tensor indices per group: largest tensors first into the lightest group (seeded tie-breaks)."""
        if len(layout) == 0:
            raise ValueError("the layout has no tensors to select from")
        num_groups = min(math.ceil(1.0 / self.fraction - 1e-9), len(layout))
        tie_break = np.random.default_rng([self.seed, len(layout)]).permutation(len(layout))
        order = sorted(range(len(layout)), key=lambda i: (-layout.entries[i].size, tie_break[i]))
        groups: list[list[int]] = [[] for _ in range(num_groups)]
        loads = [0] * num_groups
        for i in order:
            lightest = min(range(num_groups), key=lambda g: (loads[g], g))
            groups[lightest].append(i)
            loads[lightest] += layout.entries[i].size
        return groups

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        _check_inputs(weights, layout)
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        groups = self.groups(layout)
        start = self.seed % len(groups)
        flags = np.zeros(layout.size, dtype=bool)
        for i in groups[(start + round) % len(groups)]:
            entry = layout.entries[i]
            flags[entry.offset : entry.stop] = True
        return Mask.from_bool(flags)


@dataclass(frozen=True)
class FixedMaskSelector(MaskSelector):
    """The same user-given mask every round (e.g. share only the body, keep the head local)."""

    mask: Mask

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        _check_inputs(weights, layout)
        if self.mask.size != layout.size:
            raise ValueError(f"the fixed mask has {self.mask.size} coordinates, the layout {layout.size}")
        return self.mask


PARTIAL_NAMES = ("random", "topk", "gradient", "structured")


def parse_partial(spec: str, seed: int = 0) -> MaskSelector:
    """The selector a `--partial` spec names: random:F, topk:F, gradient:F or structured:F."""
    name, sep, value = spec.strip().lower().partition(":")
    if not sep or name not in PARTIAL_NAMES:
        raise ValueError(f"partial spec must be NAME:FRACTION with NAME in {PARTIAL_NAMES}, got {spec!r}")
    try:
        fraction = float(value)
    except ValueError:
        raise ValueError(f"partial spec {spec!r}: fraction {value!r} is not a number") from None
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"partial spec {spec!r}: fraction must be in (0, 1], got {value}")
    if name == "random":
        return RandomMaskSelector(fraction, seed)
    if name == "topk":
        return TopKMagnitudeSelector(fraction)
    if name == "gradient":
        return GradientMaskSelector(fraction)
    return StructuredMaskSelector(fraction, seed)
