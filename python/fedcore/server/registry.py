"""Aggregator specs: `mean` (the streaming fold) or a collecting rule; one line per aggregator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from fedcore.protocol.aggregator import Aggregator
from fedcore.server.aggregation import CenterRule, Collecting, FoldContext, LinearFold


def _coordinate_median(updates: NDArray[np.float32], weights: NDArray[np.float64]) -> NDArray[np.float32]:
    del weights
    return np.median(updates, axis=0).astype(np.float32)


# name -> the center rule of a collecting aggregator; "mean" is the linear fold itself.
CENTER_RULES: dict[str, CenterRule] = {
    "median": _coordinate_median,
}
AGGREGATOR_NAMES = ("mean", *CENTER_RULES)


def check_aggregator(spec: str) -> None:
    """Fail at configuration time with the choices spelled out."""
    if spec != "mean" and spec not in CENTER_RULES:
        raise ValueError(f"unknown aggregator {spec!r}; choose from {', '.join(AGGREGATOR_NAMES)}")


def aggregator_factory(spec: str, ctx: FoldContext) -> Callable[[], Aggregator]:
    """A picklable factory: workers build their partial aggregators from it."""
    check_aggregator(spec)
    if spec == "mean":
        return _Factory(ctx, None)
    return _Factory(ctx, CENTER_RULES[spec])


class _Factory:
    """Builds one empty aggregator of a kind; plain data, so it crosses process boundaries."""

    def __init__(self, ctx: FoldContext, rule: CenterRule | None) -> None:
        self.ctx = ctx
        self.rule = rule

    def __call__(self) -> Aggregator:
        if self.rule is None:
            return LinearFold(self.ctx)
        return Collecting(self.ctx, self.rule)
