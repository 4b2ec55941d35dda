"""Aggregator specs: `mean` is the streaming fold; any fedcore.robust spec collects updates for its rule.

A new robust rule is one class in fedcore/robust/aggregators.py plus one line in its `_AGGREGATORS`;
a rule of your own is a function registered in CENTER_RULES (see examples/custom_aggregator.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from fedcore.protocol.aggregator import Aggregator
from fedcore.server.aggregation import CenterRule, Collecting, FoldContext, LinearFold
from fedcore.server.private_fold import PrivateFold, RoundNoise

STREAMING = "mean"

# Your own center rules by name: `(updates K x d, weights K) -> center`, defined at module level.
CENTER_RULES: dict[str, CenterRule] = {}


def check_aggregator(spec: str) -> None:
    """Fail at configuration time: `mean`, a registered rule, or a robust one such as `bucket:2+krum:2`."""
    if spec == STREAMING or spec in CENTER_RULES:
        return
    from fedcore.errors import did_you_mean
    from fedcore.robust import parse
    from fedcore.robust.registry import RULE_NAMES

    try:
        parse(spec)
    except ValueError as exc:
        names = sorted({STREAMING, *CENTER_RULES, *RULE_NAMES})
        word = spec.split("+")[-1].partition(":")[0]
        hint = "" if word in RULE_NAMES else did_you_mean(word, names)
        raise ValueError(f"{exc}{hint}") from None


class RobustRule:
    """A robust spec as a center rule `(updates K x d, weights) -> center`, seeded per round; picklable."""

    def __init__(self, spec: str, seed: int) -> None:
        self.spec = spec
        self.seed = seed

    def __call__(self, updates: NDArray[np.float32], weights: NDArray[np.float64]) -> NDArray[np.float32]:
        from fedcore.robust import parse

        return np.asarray(parse(self.spec)(updates, weights, seed=self.seed), dtype=np.float32)


def aggregator_factory(
    spec: str, ctx: FoldContext, noise: RoundNoise | None = None, seed: int = 0
) -> Callable[[], Aggregator]:
    """A picklable factory: workers build partial aggregators from it; `noise` makes the fold private."""
    check_aggregator(spec)
    if spec == STREAMING:
        return AggregatorFactory(ctx, None, noise)
    return AggregatorFactory(ctx, CENTER_RULES.get(spec) or RobustRule(spec, seed), noise)


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
