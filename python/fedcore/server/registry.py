"""Aggregators from specs: `mean` folds as updates arrive; a fedcore.robust spec collects them for its rule.

A new robust rule is one class in fedcore/robust/aggregators.py plus one line in its `_AGGREGATORS`;
a rule of your own is a function registered in CENTER_RULES (see examples/custom_aggregator.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from fedcore.protocol.aggregator import Aggregator
from fedcore.robust.registry import Robust
from fedcore.robust.spec import CENTER_RULES, STREAMING, AggregatorSpec, CenterRule
from fedcore.server.aggregation import Collecting, FoldContext, LinearFold
from fedcore.server.private_fold import PrivateFold, RoundNoise

__all__ = [
    "CENTER_RULES",
    "STREAMING",
    "AggregatorFactory",
    "AggregatorSpec",
    "RobustRule",
    "aggregator_factory",
]


class RobustRule:
    """A robust rule as a center rule `(updates K x d, weights) -> center`, seeded per round; picklable."""

    def __init__(self, rule: Robust, seed: int) -> None:
        self.rule = rule
        self.seed = seed

    def __call__(self, updates: NDArray[np.float32], weights: NDArray[np.float64]) -> NDArray[np.float32]:
        return np.asarray(self.rule(updates, weights, seed=self.seed), dtype=np.float32)


def aggregator_factory(
    spec: AggregatorSpec | str, ctx: FoldContext, noise: RoundNoise | None = None, seed: int = 0
) -> Callable[[], Aggregator]:
    """A picklable factory: workers build partial aggregators from it; `noise` makes the fold private."""
    parsed = AggregatorSpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.streaming:
        return AggregatorFactory(ctx, None, noise)
    if parsed.robust is not None:
        return AggregatorFactory(ctx, RobustRule(parsed.robust, seed), noise)
    return AggregatorFactory(ctx, CENTER_RULES[parsed.text], noise)


class AggregatorFactory:
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
