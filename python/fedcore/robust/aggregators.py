"""Robust aggregators over the K decoded updates of a round: each a frozen spec that is also the rule.

Every aggregator is called as `agg(updates, weights=None, seed=0) -> (d,) float32` on a K x d float32
matrix (one row per client). Rules whose papers define a weighted form use the weights (mean,
Multi-Krum's average, geometric median, centered clipping, norm bounding); the order statistics
(median, trimmed mean, Krum, Bulyan) count each client once, because a weight is a number the client
itself reports and a Byzantine client would inflate it. The math runs in Rust (fedcodec.robust) with
the GIL released.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from fedcodec import robust as kernels
from fedcore.robust._arrays import F32, as_updates, as_weights


@runtime_checkable
class Aggregator(Protocol):
    """A rule that turns a round's K updates into one; `str(agg)` is its spec."""

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32: ...


def _num(x: float) -> str:
    """A float as the shortest string that parses back to the same float."""
    return repr(float(x))


def _check_f(f: int) -> None:
    if f < 0:
        raise ValueError(f"the number of Byzantine clients f must be >= 0, got {f}")


@dataclass(frozen=True)
class Mean:
    """The weighted mean (FedAvg's rule): the non-robust baseline every table starts from."""

    def __str__(self) -> str:
        return "mean"

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        w = as_weights(weights, x.shape[0])
        return kernels.row_combination(x, w / w.sum())


@dataclass(frozen=True)
class Median:
    """Coordinate-wise median (Yin et al. 2018): each coordinate survives up to half the clients lying."""

    def __str__(self) -> str:
        return "median"

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        as_weights(weights, x.shape[0])
        return kernels.coordinate_median(x)


@dataclass(frozen=True)
class TrimmedMean:
    """Coordinate-wise mean after dropping the floor(beta K) smallest and largest values (Yin et al. 2018)."""

    beta: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta < 0.5:
            raise ValueError(f"trim fraction beta must lie in [0, 0.5), got {self.beta}")

    def __str__(self) -> str:
        return f"trimmed:{_num(self.beta)}"

    def trim(self, k: int) -> int:
        """Values dropped from each side of a coordinate when K updates arrive."""
        return math.floor(self.beta * k)

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        as_weights(weights, x.shape[0])
        return kernels.trimmed_mean(x, self.trim(x.shape[0]))


@dataclass(frozen=True)
class Krum:
    """Krum (Blanchard et al. 2017): the one update closest to its K - f - 2 nearest neighbours."""

    f: int

    def __post_init__(self) -> None:
        _check_f(self.f)

    def __str__(self) -> str:
        return f"krum:{self.f}"

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        as_weights(weights, x.shape[0])
        best = kernels.krum_select(kernels.pairwise_sq_dists(x), self.f, 1)[0]
        chosen: F32 = x[best].copy()
        return chosen


@dataclass(frozen=True)
class MultiKrum:
    """Multi-Krum: the weighted mean of the m updates with the lowest Krum scores."""

    f: int
    m: int

    def __post_init__(self) -> None:
        _check_f(self.f)
        if self.m < 1:
            raise ValueError(f"Multi-Krum keeps m >= 1 updates, got {self.m}")

    def __str__(self) -> str:
        return f"multikrum:{self.f},{self.m}"

    def select(self, updates: F32) -> list[int]:
        """Indices of the kept updates, best score first."""
        return kernels.krum_select(kernels.pairwise_sq_dists(updates), self.f, self.m)

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        w = as_weights(weights, x.shape[0])
        coeffs = np.zeros_like(w)
        kept = self.select(x)
        coeffs[kept] = w[kept]
        if coeffs.sum() <= 0.0:
            raise ValueError("every update Multi-Krum kept has weight 0")
        return kernels.row_combination(x, coeffs / coeffs.sum())


@dataclass(frozen=True)
class Bulyan:
    """Bulyan (El Mhamdi et al. 2018): K - 2f updates picked by repeated Krum, then per coordinate the
    mean of the K - 4f values nearest the median. Needs K >= 4f + 3."""

    f: int

    def __post_init__(self) -> None:
        _check_f(self.f)

    def __str__(self) -> str:
        return f"bulyan:{self.f}"

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        as_weights(weights, x.shape[0])
        selected = kernels.bulyan_select(kernels.pairwise_sq_dists(x), self.f)
        return kernels.bulyan_coordinates(x, selected, len(selected) - 2 * self.f)


@dataclass(frozen=True)
class GeoMed:
    """Weighted geometric median by smoothed Weiszfeld (RFA, Pillutla et al. 2022): breakdown point 1/2
    in any norm-bounded direction, not just per coordinate."""

    max_iter: int = 100
    nu: float = 1e-6
    tol: float = 1e-6

    def __post_init__(self) -> None:
        if self.max_iter < 1 or not self.nu > 0.0 or not self.tol >= 0.0:
            raise ValueError(f"geomed needs max_iter >= 1, nu > 0, tol >= 0, got {self}")

    def __str__(self) -> str:
        params = [str(self.max_iter), _num(self.nu), _num(self.tol)]
        defaults = ["100", _num(1e-6), _num(1e-6)]
        while params and params[-1] == defaults[len(params) - 1]:
            params.pop()
        return "geomed" + (":" + ",".join(params) if params else "")

    def solve(self, updates: ArrayLike, weights: ArrayLike | None = None) -> tuple[F32, int, bool]:
        """The median, the Weiszfeld steps taken, and whether the objective settled within tol."""
        x = as_updates(updates)
        return kernels.geometric_median(x, as_weights(weights, x.shape[0]), self.nu, self.max_iter, self.tol)

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        return self.solve(updates, weights)[0]


@dataclass(frozen=True)
class CenteredClip:
    """Centered clipping (Karimireddy et al. 2021): `iters` steps from a center, each client's pull
    clipped to radius tau. Stateless calls start at the coordinate-wise median; `clip_around` takes
    another center (e.g. last round's aggregate, as the paper's momentum variant does)."""

    tau: float
    iters: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.tau) and self.tau > 0.0) or self.iters < 1:
            raise ValueError(f"cclip needs tau > 0 and iters >= 1, got {self.tau}, {self.iters}")

    def __str__(self) -> str:
        return f"cclip:{_num(self.tau)}" + ("" if self.iters == 3 else f",{self.iters}")

    def clip_around(self, updates: ArrayLike, center: ArrayLike, weights: ArrayLike | None = None) -> F32:
        """Centered clipping from an explicit center."""
        x = as_updates(updates)
        c = np.ascontiguousarray(center, dtype=np.float32)
        return kernels.centered_clip(x, as_weights(weights, x.shape[0]), c, self.tau, self.iters)

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        return self.clip_around(x, kernels.coordinate_median(x), weights)


@dataclass(frozen=True)
class NormBound:
    """Norm bounding (Sun et al. 2019): scale every update down to L2 norm at most c, then the weighted
    mean; limits what one boosted (model-replacement) update can do."""

    c: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.c) and self.c > 0.0):
            raise ValueError(f"norm bound c must be > 0, got {self.c}")

    def __str__(self) -> str:
        return f"normbound:{_num(self.c)}"

    def __call__(self, updates: ArrayLike, weights: ArrayLike | None = None, seed: int = 0) -> F32:
        x = as_updates(updates)
        w = as_weights(weights, x.shape[0])
        norms = np.sqrt(kernels.sq_dists_to(x, np.zeros(x.shape[1], dtype=np.float32)))
        scale = self.c / np.maximum(norms, self.c)  # min(1, c / norm), without dividing by a zero norm
        return kernels.row_combination(x, w * scale / w.sum())
