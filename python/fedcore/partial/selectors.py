"""Mask selectors for partial model sharing (PSFed): which coordinates travel in which round."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from fedcodec import kernels
from fedcore.errors import did_you_mean
from fedcore.layout import ParamLayout
from fedcore.partial.mask import Mask
from fedcore.spec_text import format_number

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


DEFAULT_EXPLORE = 0.5  # share of a score-driven mask given to a rotating seeded slice of all coordinates


def _check_explore(explore: float) -> None:
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"exploration share must be in [0, 1], got {explore}")


def _exploration(size: int, budget: int, seed: int, round: int) -> NDArray[np.int64]:
    """This round's slice of a fixed seeded permutation: the slices tile it, so none waits long.

    With `budget` coordinates a round, every coordinate is explored once every ceil(size / budget) rounds.
    """
    if budget <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.random.default_rng([seed, size, 0x5E1EC7]).permutation(size)
    slices = -(-size // budget)
    start = (round % slices) * budget
    return order[start : start + budget]


@dataclass(frozen=True)
class _LargestScoresSelector(_SeededFractionSelector):
    """The largest |score| coordinates plus a rotating exploration share, so every coordinate gets its turn.

    A pure top-k by score keeps picking the same coordinates: weight magnitudes barely move between rounds,
    and the last global change is zero outside the last mask. `explore` of the round's budget goes instead
    to a seeded slice that rotates through every coordinate; `explore=0` is plain top-k.
    """

    explore: float = DEFAULT_EXPLORE

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_explore(self.explore)

    @property
    def spec(self) -> str:
        if self.explore == DEFAULT_EXPLORE:
            return f"{self.prefix}:{self.fraction!r}"
        return f"{self.prefix}:{self.fraction!r},{self.explore!r}"

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
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        scores = self._scores(weights, gradient)
        if self.explore == 0.0:
            return _largest_magnitudes(scores, self.fraction)
        n = layout.size
        k = max(1, math.floor(self.fraction * n + 0.5))
        explored = _exploration(n, math.floor(self.explore * k + 0.5), self.seed, round)
        magnitude = np.abs(np.asarray(scores, dtype=np.float64))
        magnitude[explored] = -1.0  # below every |score|: the top-k part never picks them twice
        rest = k - explored.size
        flags = np.zeros(n, dtype=bool)
        flags[explored] = True
        if rest > 0:
            flags[np.argpartition(-magnitude, rest - 1)[:rest]] = True
        return Mask.from_bool(flags)


@dataclass(frozen=True)
class TopKMagnitudeSelector(_LargestScoresSelector):
    """The largest |weights| plus the exploration share (alone, the mask would follow the big weights)."""

    prefix: ClassVar[str] = "topk"

    def _scores(
        self, weights: NDArray[np.float32], gradient: NDArray[np.float32] | None
    ) -> NDArray[np.float32]:
        return weights


@dataclass(frozen=True)
class GradientMaskSelector(_LargestScoresSelector):
    """The largest |gradient| (or |update|) plus the exploration share: share what is changing most.

    In a run the score is the last global change, which is zero outside the last mask; the exploration
    share is what lets every other coordinate show that it changes.
    """

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
    """A contiguous window of the flat model, round(fraction * size) long, sliding by its length each round.

    The window is whole tensors in layout order plus at most a partial slice at each end, so every round
    sends the requested fraction (to one coordinate) whatever the tensor sizes, and every coordinate is
    shared once every ceil(1 / fraction) rounds. The seed picks where the first window starts.
    """

    prefix: ClassVar[str] = "structured"

    def window(self, round: int, size: int) -> tuple[int, int]:
        """(start, length) of this round's window on the circle of `size` coordinates."""
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        length = min(size, max(1, math.ceil(self.fraction * size - 1e-9)))  # ceil: tiles in ceil(1/f)
        first = int(np.random.default_rng([self.seed, size]).integers(size)) if size else 0
        return (first + round * length) % max(size, 1), length

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        _check_inputs(weights, layout)
        if len(layout) == 0:
            raise ValueError("the layout has no tensors to select from")
        start, length = self.window(round, layout.size)
        flags = np.zeros(layout.size, dtype=bool)
        stop = start + length
        flags[start : min(stop, layout.size)] = True
        flags[: max(0, stop - layout.size)] = True  # the window wraps around the end
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


PARTIAL_NAMES = ("random", "topk", "gradient", "structured", "fixed")


def load_fixed_mask(path: str) -> Mask:
    """A mask from a .npy file of one bool (or 0/1) entry per model weight."""
    try:
        flags = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"partial spec 'fixed:{path}': cannot read {path} ({exc})") from None
    values = np.asarray(flags).reshape(-1)
    if values.dtype != np.bool_ and not np.isin(values, (0, 1)).all():
        raise ValueError(f"partial spec 'fixed:{path}': {path} must hold only booleans or 0/1")
    return Mask.from_bool(values.astype(bool))


PartialName = Literal["random", "topk", "gradient", "structured", "fixed"]


@dataclass(frozen=True)
class PartialSpec:
    """A `--partial` spec: the selector's name, its fraction (and exploration share), or a fixed mask file."""

    name: PartialName
    fraction: float = 1.0  # every selector but fixed
    explore: float = DEFAULT_EXPLORE  # topk and gradient only
    path: str = ""  # fixed only: a .npy of one bool per weight, read when the selector is built

    def __post_init__(self) -> None:
        if self.name not in PARTIAL_NAMES:
            raise ValueError(f"partial spec names one of {PARTIAL_NAMES}, got {self.name!r}")
        if (self.name == "fixed") != bool(self.path):
            raise ValueError(f"only a fixed partial spec names a mask file, got {self!r}")
        _check_fraction(self.fraction)
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"exploration share must be in [0, 1], got {self.explore}")
        if self.explore != DEFAULT_EXPLORE and self.name not in ("topk", "gradient"):
            raise ValueError(f"only topk and gradient take an exploration share, got {self!r}")

    @classmethod
    def parse(cls, text: str) -> PartialSpec:
        """`random:F`, `topk:F[,EXPLORE]`, `gradient:F[,EXPLORE]`, `structured:F` or `fixed:MASK.npy`."""
        name, sep, value = text.strip().partition(":")
        name = name.lower()
        if not sep or name not in PARTIAL_NAMES:
            hint = did_you_mean(name, PARTIAL_NAMES)
            raise ValueError(
                f"partial spec must be NAME:FRACTION with NAME in {PARTIAL_NAMES}, got {text!r}{hint}"
            )
        if name == "fixed":
            return cls("fixed", path=value)
        fraction_text, _, explore_text = value.partition(",")
        if explore_text and name not in ("topk", "gradient"):
            raise ValueError(f"partial spec {text!r}: only topk and gradient take an exploration share")
        try:
            fraction = float(fraction_text)
            explore = float(explore_text) if explore_text else DEFAULT_EXPLORE
        except ValueError:
            raise ValueError(f"partial spec {text!r}: fraction {value!r} is not a number") from None
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"partial spec {text!r}: fraction must be in (0, 1], got {fraction_text}")
        if not 0.0 <= explore <= 1.0:
            raise ValueError(
                f"partial spec {text!r}: exploration share must be in [0, 1], got {explore_text}"
            )
        return cls(name, fraction, explore)  # type: ignore[arg-type]  # name is one of PARTIAL_NAMES

    def __str__(self) -> str:
        if self.name == "fixed":
            return f"fixed:{self.path}"
        text = f"{self.name}:{format_number(self.fraction)}"
        return text if self.explore == DEFAULT_EXPLORE else f"{text},{format_number(self.explore)}"

    def selector(self, seed: int) -> MaskSelector:
        """The selector this spec names, seeded for the run (a fixed mask is read from its file here)."""
        if self.name == "fixed":
            return FixedMaskSelector(load_fixed_mask(self.path))
        if self.name == "random":
            return RandomMaskSelector(self.fraction, seed)
        if self.name == "topk":
            return TopKMagnitudeSelector(self.fraction, seed, self.explore)
        if self.name == "gradient":
            return GradientMaskSelector(self.fraction, seed, self.explore)
        return StructuredMaskSelector(self.fraction, seed)


def parse_partial(spec: str, seed: int = 0) -> MaskSelector:
    """The selector a `--partial` spec's text names, seeded (see `PartialSpec`)."""
    return PartialSpec.parse(spec).selector(seed)
