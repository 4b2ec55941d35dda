"""Who trains each round: selectors, simulated device availability, dropouts and the min-clients rule."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

IdArray = NDArray[np.int64]

# Separate random streams per purpose, so turning on dropout does not change who gets selected.
_SELECT_STREAM = 1
_DROPOUT_STREAM = 2
_CONDITIONS_STREAM = 3
_BASE_BANDWIDTH_STREAM = 4

SELECTION_NAMES = ("random", "power-of-choice", "performance", "availability")


class InsufficientClientsError(RuntimeError):
    """Fewer clients answered a round than the configured minimum."""

    def __init__(self, round_num: int, answered: int, min_clients: int) -> None:
        super().__init__(
            f"round {round_num + 1}: only {answered} client(s) answered, min_clients is {min_clients}; "
            "lower --min-clients or --dropout, or raise --per-round"
        )
        self.round_num = round_num
        self.answered = answered
        self.min_clients = min_clients


class Selector(Protocol):
    """Picks up to k clients out of the eligible ones."""

    def select(
        self, rng: np.random.Generator, eligible: IdArray, k: int, losses: Mapping[int, float]
    ) -> IdArray: ...


@dataclass(frozen=True)
class RandomSelector:
    """Uniform without replacement."""

    def select(
        self, rng: np.random.Generator, eligible: IdArray, k: int, losses: Mapping[int, float]
    ) -> IdArray:
        del losses
        chosen = rng.choice(eligible, size=min(k, eligible.size), replace=False)
        return np.sort(chosen).astype(np.int64)


@dataclass(frozen=True)
class PowerOfChoiceSelector:
    """Cho et al. 2022: sample d candidates, keep the k with the highest last-known local loss."""

    candidates: int | None = None  # d; None means 2k

    def __post_init__(self) -> None:
        if self.candidates is not None and self.candidates < 1:
            raise ValueError(f"power-of-choice candidates must be >= 1, got {self.candidates}")

    def select(
        self, rng: np.random.Generator, eligible: IdArray, k: int, losses: Mapping[int, float]
    ) -> IdArray:
        d = self.candidates if self.candidates is not None else 2 * k
        d = min(max(d, k), eligible.size)
        pool = rng.choice(eligible, size=d, replace=False)
        # Never-seen clients rank first (infinite loss) so every client gets explored.
        pool_losses = np.array([losses.get(int(c), np.inf) for c in pool], dtype=np.float64)
        order = np.argsort(-pool_losses, kind="stable")
        return np.sort(pool[order[:k]]).astype(np.int64)


@dataclass(frozen=True)
class PerformanceSelector:
    """Samples with probability growing with the last-known loss, so struggling clients get more turns."""

    exponent: float = 1.0

    def __post_init__(self) -> None:
        if self.exponent < 0.0:
            raise ValueError(f"performance exponent must be >= 0, got {self.exponent}")

    def select(
        self, rng: np.random.Generator, eligible: IdArray, k: int, losses: Mapping[int, float]
    ) -> IdArray:
        known = [losses[int(c)] for c in eligible if int(c) in losses]
        default = max(known) if known else 1.0
        scores = np.array([losses.get(int(c), default) for c in eligible], dtype=np.float64)
        scores = np.maximum(scores, 1e-6) ** self.exponent
        p = scores / scores.sum()
        chosen = rng.choice(eligible, size=min(k, eligible.size), replace=False, p=p)
        return np.sort(chosen).astype(np.int64)


@dataclass(frozen=True)
class DeviceConditions:
    """One round's simulated battery level (percent) and uplink bandwidth (Mbit/s) per client."""

    battery: NDArray[np.float64]
    bandwidth_mbps: NDArray[np.float64]


@dataclass(frozen=True)
class AvailabilityModel:
    """Cross-device clients skip a round when their battery or network is too weak (seeded, per round)."""

    seed: int
    min_battery: float = 20.0
    min_bandwidth_mbps: float = 1.0
    median_bandwidth_mbps: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_battery <= 100.0:
            raise ValueError(f"min_battery is a percentage, got {self.min_battery}")
        if self.min_bandwidth_mbps < 0.0 or self.median_bandwidth_mbps <= 0.0:
            raise ValueError("bandwidth thresholds must be >= 0 and the median > 0")

    def conditions(self, round_num: int, num_clients: int) -> DeviceConditions:
        """Each device has a fixed typical bandwidth; battery and network fluctuate round to round."""
        base_rng = np.random.default_rng([self.seed, _BASE_BANDWIDTH_STREAM])
        base = base_rng.lognormal(np.log(self.median_bandwidth_mbps), 1.0, size=num_clients)
        rng = np.random.default_rng([self.seed, round_num, _CONDITIONS_STREAM])
        battery = rng.uniform(0.0, 100.0, size=num_clients)
        bandwidth = base * rng.lognormal(0.0, 0.5, size=num_clients)
        return DeviceConditions(battery, bandwidth)

    def available(self, round_num: int, num_clients: int) -> NDArray[np.bool_]:
        cond = self.conditions(round_num, num_clients)
        return (cond.battery >= self.min_battery) & (cond.bandwidth_mbps >= self.min_bandwidth_mbps)


@dataclass(frozen=True)
class RoundSelection:
    """Who was sent the model, who answered, who dropped out, and how many were unavailable."""

    selected: IdArray
    answered: IdArray
    dropped: IdArray
    unavailable: int


def make_selector(name: str, candidates: int | None = None) -> Selector:
    """`random`, `power-of-choice`, `performance`, or `availability` (random among available devices)."""
    if name in ("random", "availability"):
        return RandomSelector()
    if name == "power-of-choice":
        return PowerOfChoiceSelector(candidates)
    if name == "performance":
        return PerformanceSelector()
    raise ValueError(f"unknown selection {name!r}; choose from {', '.join(SELECTION_NAMES)}")


def select_round(
    selector: Selector,
    *,
    seed: int,
    round_num: int,
    num_clients: int,
    per_round: int,
    losses: Mapping[int, float],
    availability: AvailabilityModel | None = None,
    dropout_rate: float = 0.0,
    min_clients: int = 1,
    excluded: frozenset[int] = frozenset(),
) -> RoundSelection:
    """Select, drop out (each selected client fails with probability dropout_rate) and enforce min_clients.

    `excluded` clients (flagged suspects) are never eligible.
    """
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must lie in [0, 1), got {dropout_rate}")
    eligible = np.arange(num_clients, dtype=np.int64)
    unavailable = 0
    if availability is not None:
        mask = availability.available(round_num, num_clients)
        eligible = eligible[mask]
        unavailable = num_clients - eligible.size
    if excluded:
        eligible = eligible[~np.isin(eligible, np.fromiter(excluded, dtype=np.int64))]
    selected = (
        selector.select(np.random.default_rng([seed, round_num, _SELECT_STREAM]), eligible, per_round, losses)
        if eligible.size
        else eligible
    )
    fails = np.random.default_rng([seed, round_num, _DROPOUT_STREAM]).random(selected.size) < dropout_rate
    answered, dropped = selected[~fails], selected[fails]
    if answered.size < max(min_clients, 1):
        raise InsufficientClientsError(round_num, int(answered.size), max(min_clients, 1))
    return RoundSelection(selected, answered, dropped, unavailable)
