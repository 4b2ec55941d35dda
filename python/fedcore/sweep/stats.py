"""Intervals over seeds: a claim about a setting is only as good as its 95 % confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
# "Within 1 point" of the baseline: the paired difference's interval lies above this many points.
TOLERANCE_POINTS = 1.0


@dataclass(frozen=True)
class Interval:
    """A mean and its two-sided t-interval; with one value the interval is unknown (nan ends)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0

    def scaled(self, factor: float) -> Interval:
        """The same interval in other units (fractions to points: 100)."""
        return Interval(self.mean * factor, self.low * factor, self.high * factor, self.n)

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """`mean ± half width`, or the mean alone where one value gives no interval."""
        sign = "+" if signed else ""
        if math.isnan(self.half_width):
            return f"{self.mean:{sign}.{digits}f}"
        return f"{self.mean:{sign}.{digits}f} ± {self.half_width:.{digits}f}"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student's t-interval for the mean: mean ± t(n-1) · s / √n, s the sample standard deviation."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("an interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, x.size - 1)) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half, int(x.size))


def paired_difference(
    values: Sequence[float], baseline: Sequence[float], confidence: float = CONFIDENCE
) -> Interval:
    """The t-interval of (value - baseline), seed by seed: the seed's own noise cancels in the pairs."""
    if len(values) != len(baseline):
        raise ValueError(f"{len(values)} values against {len(baseline)} baseline values")
    return t_interval(np.subtract(values, baseline).tolist(), confidence)


def within(difference_points: Interval, tolerance: float = TOLERANCE_POINTS) -> bool:
    """The claim "within `tolerance` points": the interval's lower end is above -tolerance."""
    return not math.isnan(difference_points.low) and difference_points.low > -tolerance
