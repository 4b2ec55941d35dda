"""Aggregator specs: `mean` (the streaming fold) or a collecting rule; one line per aggregator."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from fedcore.protocol.aggregator import Aggregator
from fedcore.server.aggregation import CenterRule, Collecting, FoldContext, LinearFold
from fedcore.server.private_fold import PrivateFold, RoundNoise


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


def aggregator_factory(
    spec: str, ctx: FoldContext, noise: RoundNoise | None = None
) -> Callable[[], Aggregator]:
    """A picklable factory: workers build their partial aggregators from it; `noise` makes the fold private."""
    check_aggregator(spec)
    return _Factory(ctx, None if spec == "mean" else CENTER_RULES[spec], noise)


class _Factory:
    """Builds one empty aggregator of a kind; plain data, so it crosses process boundaries."""

    def __init__(self, ctx: FoldContext, rule: CenterRule | None, noise: RoundNoise | None) -> None:
        self.ctx = ctx
        self.rule = rule
        self.noise = noise

    def __call__(self) -> Aggregator:
        if self.noise is not None:
            return PrivateFold(self.ctx, self.noise)
        if self.rule is None:
            return LinearFold(self.ctx)
        return Collecting(self.ctx, self.rule)
