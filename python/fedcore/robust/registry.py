"""Spec strings for robust aggregation: `parse("bucket:2+nnm:3+krum:3")` and `str()` back.

Grammar: zero or more pre-aggregators (`bucket:S`, `nnm:F`) then one aggregator, joined by `+`.
Aggregators: `mean`, `median`, `trimmed:BETA`, `krum:F`, `multikrum:F,M`, `bulyan:F`,
`geomed[:MAX_ITER[,NU[,TOL]]]`, `cclip:TAU[,ITERS]`, `normbound:C`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from numpy.typing import ArrayLike

from fedcore.robust._arrays import F32, as_updates, as_weights
from fedcore.robust.aggregators import (
    Aggregator,
    Bulyan,
    CenteredClip,
    GeoMed,
    Krum,
    Mean,
    Median,
    MultiKrum,
    NormBound,
    TrimmedMean,
)
from fedcore.robust.preagg import Bucketing, NearestNeighborMixing, PreAggregator


@dataclass(frozen=True)
class Robust:
    """Pre-aggregators applied in order, then an aggregator; each pre-aggregator gets its own seed."""

    pre: tuple[PreAggregator, ...]
    agg: Aggregator

    def __str__(self) -> str:
        return "+".join([*(str(p) for p in self.pre), str(self.agg)])

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        w = as_weights(weights, x.shape[0])
        for i, pre in enumerate(self.pre):
            x, w = pre(x, w, seed=seed + i)
        return self.agg(x, w, seed=seed)


def _ints(args: list[str], n: int, name: str) -> list[int]:
    if len(args) != n:
        raise ValueError(f"{name} takes {n} integer parameter(s), got {args}")
    return [int(a) for a in args]


def _floats(args: list[str], lo: int, hi: int, name: str) -> list[float]:
    if not lo <= len(args) <= hi:
        raise ValueError(f"{name} takes {lo}..{hi} parameter(s), got {args}")
    return [float(a) for a in args]


def _cclip(args: list[str]) -> CenteredClip:
    if len(args) == 2:
        return CenteredClip(float(args[0]), int(args[1]))
    (tau,) = _floats(args, 1, 1, "cclip")
    return CenteredClip(tau)


def _geomed(args: list[str]) -> GeoMed:
    if len(args) > 3:
        raise ValueError(f"geomed takes at most MAX_ITER,NU,TOL, got {args}")
    d = GeoMed()
    return GeoMed(
        int(args[0]) if args else d.max_iter,
        float(args[1]) if len(args) > 1 else d.nu,
        float(args[2]) if len(args) > 2 else d.tol,
    )


_AGGREGATORS: dict[str, Callable[[list[str]], Aggregator]] = {
    "mean": lambda a: Mean(*_ints(a, 0, "mean")),
    "median": lambda a: Median(*_ints(a, 0, "median")),
    "trimmed": lambda a: TrimmedMean(*_floats(a, 1, 1, "trimmed")),
    "krum": lambda a: Krum(*_ints(a, 1, "krum")),
    "multikrum": lambda a: MultiKrum(*_ints(a, 2, "multikrum")),
    "bulyan": lambda a: Bulyan(*_ints(a, 1, "bulyan")),
    "geomed": _geomed,
    "cclip": _cclip,
    "normbound": lambda a: NormBound(*_floats(a, 1, 1, "normbound")),
}

_PRE: dict[str, Callable[[list[str]], PreAggregator]] = {
    "bucket": lambda a: Bucketing(*_ints(a, 1, "bucket")),
    "nnm": lambda a: NearestNeighborMixing(*_ints(a, 1, "nnm")),
}


def _split(part: str) -> tuple[str, list[str]]:
    name, _, params = part.strip().partition(":")
    return name, ([p.strip() for p in params.split(",")] if params else [])


def parse(spec: str) -> Robust:
    """The robust rule a spec string names; `parse(str(rule)) == rule`."""
    parts = spec.split("+")
    *pre_parts, agg_part = parts
    try:
        pre = []
        for part in pre_parts:
            name, args = _split(part)
            if name not in _PRE:
                raise ValueError(f"{name!r} is not a pre-aggregator; choose from {sorted(_PRE)}")
            pre.append(_PRE[name](args))
        name, args = _split(agg_part)
        if name not in _AGGREGATORS:
            raise ValueError(f"{name!r} is not an aggregator; choose from {sorted(_AGGREGATORS)}")
        return Robust(tuple(pre), _AGGREGATORS[name](args))
    except ValueError as err:
        raise ValueError(f"bad robust aggregation spec {spec!r}: {err}") from err


RULE_NAMES = frozenset(_AGGREGATORS) | frozenset(_PRE)  # every name a spec may use
