"""Byzantine attacks as pure, seeded functions: what a colluding set of f clients sends in a round.

Model attacks are called as `attack(honest, own, seed) -> (f, d) float32`: `honest` holds the round's
n honest updates (the omniscient attacks read them), `own` the f updates the Byzantine clients
computed honestly (sign-flip reverses them; its row count is f). Data attacks are transforms a
client applies to its training data before it trains (label flip, backdoor trigger), plus the
boosting of the malicious delta for model replacement.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcodec import robust as kernels
from fedcore.robust._arrays import F32, as_updates

Deviation = Literal["std", "unit", "sign"]


@runtime_checkable
class ModelAttack(Protocol):
    """Replaces the f Byzantine updates of a round; `str(attack)` is its spec."""

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32: ...


def _as_own(own: ArrayLike) -> F32:
    """The Byzantine clients' own updates, f x d; f may be 0 in a round that sampled none."""
    x = np.ascontiguousarray(own, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"own updates must be an f x d matrix, got shape {x.shape}")
    return x


def _f_rows(own: ArrayLike) -> int:
    return int(_as_own(own).shape[0])


def _same_rows(v: NDArray[np.floating], f: int) -> F32:
    """f copies of one malicious vector: colluders send the same thing."""
    return np.ascontiguousarray(np.broadcast_to(v.astype(np.float32), (f, v.shape[0])))


@dataclass(frozen=True)
class SignFlip:
    """Each Byzantine client sends minus `scale` times what it computed honestly."""

    scale: float = 1.0

    def __str__(self) -> str:
        return "signflip" if self.scale == 1.0 else f"signflip:{self.scale!r}"

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32:
        return (-self.scale * _as_own(own)).astype(np.float32)


@dataclass(frozen=True)
class Gaussian:
    """Each Byzantine client sends N(0, sigma^2 I) noise, independent per client, from `seed`."""

    sigma: float = 1.0

    def __post_init__(self) -> None:
        if not self.sigma > 0.0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def __str__(self) -> str:
        return f"gauss:{self.sigma!r}"

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32:
        f, d = _f_rows(own), as_updates(honest).shape[1]
        noise = np.random.default_rng(seed).standard_normal((f, d), dtype=np.float32)
        return (self.sigma * noise).astype(np.float32)


def alie_z(n: int, f: int) -> float:
    """ALIE's z (Baruch et al. 2019): s = floor(n/2 + 1) - f supporters needed, z = Phi^-1((n - s) / n)."""
    s = math.floor(n / 2 + 1) - f
    if not 0 < s < n:
        raise ValueError(f"ALIE needs 0 < floor(n/2 + 1) - f < n for n = {n} clients, f = {f}")
    return NormalDist().inv_cdf((n - s) / n)


@dataclass(frozen=True)
class ALIE:
    """A little is enough: mean - z * std of the honest updates per coordinate, z from n and f
    (or fixed), small enough to hide among honest spread yet shift every coordinate the same way."""

    z: float | None = None

    def __str__(self) -> str:
        return "alie" if self.z is None else f"alie:{self.z!r}"

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32:
        h = as_updates(honest)
        f = _f_rows(own)
        z = alie_z(h.shape[0] + f, f) if self.z is None else self.z
        return _same_rows(h.mean(axis=0, dtype=np.float64) - z * h.std(axis=0, dtype=np.float64), f)


@dataclass(frozen=True)
class IPM:
    """Inner-product manipulation (Xie et al. 2020): -epsilon times the honest mean; epsilon 0.1 hides
    near the honest cluster, epsilon 100 overwhelms averaging."""

    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if not self.epsilon > 0.0:
            raise ValueError(f"epsilon must be > 0, got {self.epsilon}")

    def __str__(self) -> str:
        return f"ipm:{self.epsilon!r}"

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32:
        h = as_updates(honest)
        return _same_rows(-self.epsilon * h.mean(axis=0, dtype=np.float64), _f_rows(own))


def _deviation(h: F32, mean: NDArray[np.float64], kind: Deviation) -> NDArray[np.float64]:
    if kind == "std":
        std: NDArray[np.float64] = h.std(axis=0, dtype=np.float64)
        return -std
    if kind == "sign":
        return -np.sign(mean)
    norm = float(np.linalg.norm(mean))
    return -mean / norm if norm > 0.0 else np.zeros_like(mean)


@dataclass(frozen=True)
class MinMax:
    """Shejwalkar & Houmansadr (NDSS 2021): mean + gamma * p with the largest gamma whose distance to
    every honest update stays within the largest honest pairwise distance (`sum=True`: min-sum, the
    sum of squared distances within the largest honest one). p: -std, -unit mean or -sign(mean)."""

    deviation: Deviation = "std"
    sum: bool = False

    def __post_init__(self) -> None:
        if self.deviation not in ("std", "unit", "sign"):
            raise ValueError(f"deviation must be std, unit or sign, got {self.deviation!r}")

    def __str__(self) -> str:
        name = "minsum" if self.sum else "minmax"
        return name if self.deviation == "std" else f"{name}:{self.deviation}"

    def gamma(self, honest: ArrayLike) -> float:
        """The largest scale of the perturbation that the distance test still accepts (bisection)."""
        h = as_updates(honest)
        mean = h.mean(axis=0, dtype=np.float64)
        p = _deviation(h, mean, self.deviation)
        pairwise = kernels.pairwise_sq_dists(h)
        # |mean + g p - x_i|^2 = a_i + 2 g b_i + g^2 c, all from one pass over the honest updates.
        centered = mean[None, :] - h
        a = np.einsum("ij,ij->i", centered, centered)
        b = centered @ p
        c = float(p @ p)
        if c == 0.0:
            return 0.0

        def accepted(g: float) -> bool:
            d2 = a + 2.0 * g * b + g * g * c
            if self.sum:
                return bool(d2.sum() <= pairwise.sum(axis=1).max())
            return bool(d2.max() <= pairwise.max())

        lo, hi = 0.0, 1.0
        while accepted(hi) and hi < 1e12:
            lo, hi = hi, 2.0 * hi
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if accepted(mid) else (lo, mid)
        return lo

    def __call__(self, honest: ArrayLike, own: ArrayLike, seed: int = 0) -> F32:
        h = as_updates(honest)
        mean = h.mean(axis=0, dtype=np.float64)
        return _same_rows(mean + self.gamma(h) * _deviation(h, mean, self.deviation), _f_rows(own))


def flip_labels(y: ArrayLike, num_classes: int) -> NDArray[np.int64]:
    """Label flipping: class y becomes C - 1 - y (a poisoned client trains on these labels)."""
    labels = np.asarray(y, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    return num_classes - 1 - labels


@dataclass(frozen=True)
class LabelFlip:
    """The label-flipping data attack: each Byzantine client trains on y -> C - 1 - y."""

    def __str__(self) -> str:
        return "labelflip"

    def poison(self, x: ArrayLike, y: ArrayLike, num_classes: int) -> tuple[F32, NDArray[np.int64]]:
        """The training data a label-flipping client uses instead of its own."""
        return np.asarray(x, dtype=np.float32), flip_labels(y, num_classes)


@dataclass(frozen=True)
class Backdoor:
    """Model-replacement backdoor (Bagdasaryan et al. 2020): train on a mix of clean samples and
    samples stamped with a trigger (the last `size` input features set to `value`) relabelled to
    `target`, then scale the delta by `boost` (n / server lr replaces the global model)."""

    target: int
    boost: float = 1.0
    size: int = 4
    value: float = 1.0
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.target < 0 or self.size < 1 or not self.boost > 0.0 or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"bad backdoor parameters: {self}")

    def __str__(self) -> str:
        params = [str(self.target), repr(self.boost), str(self.size), repr(self.value), repr(self.fraction)]
        defaults = ["", repr(1.0), "4", repr(1.0), repr(0.5)]
        while len(params) > 1 and params[-1] == defaults[len(params) - 1]:
            params.pop()
        return "backdoor:" + ",".join(params)

    def stamp(self, x: ArrayLike) -> NDArray[np.float32]:
        """The inputs with the trigger stamped on every sample (shape kept; samples along axis 0)."""
        arr = np.array(x, dtype=np.float32, copy=True)
        flat = arr.reshape(arr.shape[0], -1)
        if flat.shape[1] < self.size:
            raise ValueError(f"a trigger of {self.size} features does not fit inputs of {flat.shape[1]}")
        flat[:, -self.size :] = self.value
        return arr

    def poison(self, x: ArrayLike, y: ArrayLike, seed: int = 0) -> tuple[F32, NDArray[np.int64]]:
        """The client's data with a seeded `fraction` of samples triggered and relabelled to target."""
        xs = np.array(x, dtype=np.float32, copy=True)
        ys = np.array(y, dtype=np.int64, copy=True)
        n = xs.shape[0]
        chosen = np.random.default_rng(seed).choice(n, size=max(1, round(self.fraction * n)), replace=False)
        xs[chosen] = self.stamp(xs[chosen])
        ys[chosen] = self.target
        return xs, ys

    def boost_delta(self, delta: ArrayLike) -> NDArray[np.float32]:
        """The malicious delta scaled so it survives averaging with the honest ones."""
        return (self.boost * np.asarray(delta, dtype=np.float32)).astype(np.float32)

    def success_rate(self, predict: Callable[[F32], ArrayLike], x: ArrayLike, y: ArrayLike) -> float:
        """Share of triggered test samples whose true class is not the target that land on the target."""
        ys = np.asarray(y)
        keep = ys != self.target
        if not keep.any():
            raise ValueError("every test sample already has the target class")
        pred = np.asarray(predict(self.stamp(np.asarray(x)[keep])))
        return float(np.mean(pred == self.target))


DataAttack = LabelFlip | Backdoor
Attack = ModelAttack | DataAttack


def _num_args(args: list[str], n_max: int, name: str) -> list[float]:
    if len(args) > n_max:
        raise ValueError(f"{name} takes at most {n_max} parameter(s), got {args}")
    return [float(a) for a in args]


_DEVIATIONS: dict[str, Deviation] = {"std": "std", "unit": "unit", "sign": "sign"}


def parse(spec: str) -> Attack:
    """The attack a spec names: signflip[:SCALE], gauss[:SIGMA], alie[:Z], ipm[:EPS], minmax[:DEV],
    minsum[:DEV] (DEV std|unit|sign), labelflip, backdoor:TARGET[,BOOST[,SIZE[,VALUE[,FRACTION]]]];
    `parse(str(a)) == a`."""
    name, _, params = spec.strip().partition(":")
    args = [p.strip() for p in params.split(",")] if params else []
    try:
        if name == "signflip":
            return SignFlip(*_num_args(args, 1, name))
        if name == "gauss":
            return Gaussian(*_num_args(args, 1, name))
        if name == "alie":
            return ALIE(*_num_args(args, 1, name))
        if name == "ipm":
            return IPM(*_num_args(args, 1, name))
        if name in ("minmax", "minsum"):
            if len(args) > 1 or (args and args[0] not in _DEVIATIONS):
                raise ValueError(f"{name} takes one of {sorted(_DEVIATIONS)}, got {args}")
            return MinMax(_DEVIATIONS[args[0]] if args else "std", sum=name == "minsum")
        if name == "labelflip" and not args:
            return LabelFlip()
        if name == "backdoor" and 1 <= len(args) <= 5:
            rest = [*args[1:], *["1.0", "4", "1.0", "0.5"][len(args) - 1 :]]
            return Backdoor(int(args[0]), float(rest[0]), int(rest[1]), float(rest[2]), float(rest[3]))
    except ValueError as err:
        raise ValueError(f"bad attack spec {spec!r}: {err}") from err
    raise ValueError(
        f"unknown attack spec {spec!r}; choose from signflip, gauss, alie, ipm, minmax, minsum, labelflip, "
        "backdoor:TARGET"
    )
