"""Privacy accounting over dp-accounting: events in its vocabulary, PLD by default, RDP as a cross-check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

SamplingKind = Literal["poisson", "fixed"]
AccountantKind = Literal["pld", "rdp"]

# dp-accounting's events are untyped attrs classes; this alias keeps signatures readable.
DpEvent = Any

# dp-accounting's default grid for privacy-loss values; its PLD estimates are pessimistic at any grid.
_PLD_DISCRETIZATION = 1e-4


def _dp() -> Any:
    """dp-accounting, imported on first use: it pulls in scipy (~0.8 s), which runs without DP never need."""
    import dp_accounting  # type: ignore[import-untyped]
    import dp_accounting.pld.pld_privacy_accountant  # type: ignore[import-untyped]
    import dp_accounting.pld.privacy_loss_distribution  # type: ignore[import-untyped]
    import dp_accounting.rdp.rdp_privacy_accountant  # type: ignore[import-untyped]

    return dp_accounting


@dataclass(frozen=True)
class Sampling:
    """How each round picks its participants from a population of `population` units (clients or examples).

    `poisson`: every unit joins independently with probability `rate` (cohort size varies).
    `fixed`: exactly `cohort` units drawn uniformly without replacement (the usual "K of N" simulation).
    """

    kind: SamplingKind
    population: int
    rate: float

    def __post_init__(self) -> None:
        if self.kind not in ("poisson", "fixed"):
            raise ValueError(f"sampling must be 'poisson' or 'fixed', got {self.kind!r}")
        if self.population < 1:
            raise ValueError(f"population must be >= 1, got {self.population}")
        if not 0.0 < self.rate <= 1.0:
            raise ValueError(f"sampling rate must lie in (0, 1], got {self.rate}")
        if self.kind == "fixed" and not math.isclose(self.cohort * 1.0, self.rate * self.population):
            raise ValueError(f"fixed-size sampling needs rate*population to be whole, got {self.rate}")

    @classmethod
    def poisson(cls, population: int, rate: float) -> Sampling:
        """Each unit joins a round independently with probability `rate`."""
        return cls("poisson", population, rate)

    @classmethod
    def fixed(cls, population: int, cohort: int) -> Sampling:
        """Exactly `cohort` of `population` units per round, uniformly without replacement."""
        if not 1 <= cohort <= population:
            raise ValueError(f"cohort must lie in [1, population={population}], got {cohort}")
        return cls("fixed", population, cohort / population)

    @property
    def cohort(self) -> int:
        """Participants per round: exact for fixed-size, the rounded mean for Poisson."""
        return round(self.rate * self.population)

    @property
    def expected_cohort(self) -> float:
        """The fixed denominator DP-FedAvg divides the noised sum by (rate * population)."""
        return self.rate * self.population

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"fixed:{self.cohort}/{self.population}"
        return f"poisson:{self.rate!r}/{self.population}"


def default_accountant(sampling: Sampling) -> AccountantKind:
    """PLD where dp-accounting's PLD has the sampling event (Poisson); RDP for fixed-size sampling."""
    return "pld" if sampling.kind == "poisson" else "rdp"


def round_event(sampling: Sampling, noise_multiplier: float) -> DpEvent:
    """One round of the sampled Gaussian sum query, as a dp-accounting event.

    Poisson: `PoissonSampledDpEvent(q, GaussianDpEvent(z))` under add-or-remove-one adjacency.
    Fixed-size: `SampledWithoutReplacementDpEvent(N, K, GaussianDpEvent(z / 2))` under replace-one adjacency:
    swapping one unit's clipped contribution u for -u moves the sum by up to 2C, so the noise z*C is z/2 times
    the sensitivity (Wang, Balle, Kasiviswanathan 2019, Thm. 27, as implemented in dp-accounting's RDP).
    """
    check_noise_multiplier(noise_multiplier)
    dp = _dp()
    if sampling.kind == "poisson":
        return dp.PoissonSampledDpEvent(sampling.rate, dp.GaussianDpEvent(noise_multiplier))
    return dp.SampledWithoutReplacementDpEvent(
        sampling.population, sampling.cohort, dp.GaussianDpEvent(noise_multiplier / 2.0)
    )


def check_noise_multiplier(noise_multiplier: float) -> None:
    """One-line refusal of a noise multiplier that gives no privacy."""
    if not (noise_multiplier > 0.0 and math.isfinite(noise_multiplier)):
        raise ValueError(f"noise multiplier sigma must be a finite number > 0, got {noise_multiplier}")


def check_delta(delta: float, population: int) -> None:
    """delta must be below 1/N: otherwise releasing one random unit's data outright would satisfy it."""
    if not 0.0 < delta < 1.0 / population:
        raise ValueError(
            f"delta must lie in (0, 1/N) = (0, {1.0 / population:.3g}) for population N={population}, "
            f"got {delta}"
        )


def _new_accountant(kind: AccountantKind, sampling: Sampling) -> Any:
    dp = _dp()
    relations = dp.NeighboringRelation
    relation = relations.ADD_OR_REMOVE_ONE if sampling.kind == "poisson" else relations.REPLACE_ONE
    if kind == "pld":
        return dp.pld.pld_privacy_accountant.PLDAccountant(relation, _PLD_DISCRETIZATION)
    return dp.rdp.rdp_privacy_accountant.RdpAccountant(neighboring_relation=relation)


@dataclass(frozen=True)
class Accountant:
    """(epsilon, delta) of `rounds` repetitions of one sampled Gaussian round, recomputed from the event.

    A DP-SGD client uses the same class: one step is one round, the population is its examples.
    """

    sampling: Sampling
    noise_multiplier: float
    delta: float
    kind: AccountantKind | None = None

    def __post_init__(self) -> None:
        check_noise_multiplier(self.noise_multiplier)
        check_delta(self.delta, self.sampling.population)
        if self.kind is None:
            object.__setattr__(self, "kind", default_accountant(self.sampling))
        elif self.kind not in ("pld", "rdp"):
            raise ValueError(f"accountant must be 'pld' or 'rdp', got {self.kind!r}")
        elif self.kind == "pld" and self.sampling.kind == "fixed":
            raise ValueError(
                "dp-accounting's PLD has no event for fixed-size sampling (without replacement); "
                "use accountant 'rdp' or Poisson sampling"
            )

    @property
    def accountant_kind(self) -> AccountantKind:
        """The accountant in use after the default was resolved."""
        assert self.kind is not None
        return self.kind

    def event(self, rounds: int) -> DpEvent:
        """All `rounds` rounds as one event, so records can be replayed by any accountant."""
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        return _dp().SelfComposedDpEvent(round_event(self.sampling, self.noise_multiplier), rounds)

    def epsilon(self, rounds: int) -> float:
        """Epsilon spent after `rounds` rounds at this accountant's delta (0 before the first round)."""
        if rounds == 0:
            return 0.0
        accountant = _new_accountant(self.accountant_kind, self.sampling)
        accountant.compose(self.event(rounds))
        return float(accountant.get_epsilon(self.delta))

    def epsilons(self, rounds: int) -> list[float]:
        """Epsilon after each of rounds 1..`rounds`, for per-round records, in one call.

        PLD builds the one-round loss distribution once (most of the cost) and self-composes it per round,
        exactly as dp-accounting's PLD accountant does for a self-composed event; RDP is cheap per call.
        """
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if self.accountant_kind == "rdp" or rounds == 0:
            return [self.epsilon(r) for r in range(1, rounds + 1)]
        one_round = _dp().pld.privacy_loss_distribution.from_gaussian_mechanism(
            standard_deviation=self.noise_multiplier,
            value_discretization_interval=_PLD_DISCRETIZATION,
            sampling_prob=self.sampling.rate,
            neighboring_relation=_dp().NeighboringRelation.ADD_OR_REMOVE_ONE,
        )
        return [
            float(one_round.self_compose(r).get_epsilon_for_delta(self.delta)) for r in range(1, rounds + 1)
        ]

    def last_round_within(self, max_epsilon: float, max_rounds: int) -> int:
        """The largest round r <= max_rounds with epsilon(r) <= max_epsilon (0 if even round 1 exceeds it)."""
        if not max_epsilon > 0.0:
            raise ValueError(f"max_epsilon must be > 0, got {max_epsilon}")
        if max_rounds < 0:
            raise ValueError(f"max_rounds must be >= 0, got {max_rounds}")
        lo, hi = 0, max_rounds  # invariant: epsilon(lo) <= max_epsilon; epsilon grows with rounds
        if self.epsilon(hi) <= max_epsilon:
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.epsilon(mid) <= max_epsilon:
                lo = mid
            else:
                hi = mid
        return lo

    def budget_message(self, round_num: int, max_epsilon: float) -> str | None:
        """None while round `round_num` fits the budget, else the one line the driver stops with."""
        spent = self.epsilon(round_num)
        if spent <= max_epsilon:
            return None
        return (
            f"privacy budget exhausted: round {round_num} would reach epsilon={spent:.4g} > "
            f"max_epsilon={max_epsilon:g} at delta={self.delta:g} "
            f"({self.accountant_kind}, sigma={self.noise_multiplier:g}, sampling {self.sampling})"
        )


def calibrate_noise(
    target_epsilon: float,
    delta: float,
    sampling: Sampling,
    rounds: int,
    accountant: AccountantKind | None = None,
    tolerance: float = 1e-3,
) -> float:
    """The noise multiplier whose epsilon after `rounds` lies in [target - tolerance, target].

    Bisection on log(sigma) against the accountant itself: epsilon falls as sigma grows.
    """
    if not (target_epsilon > 0.0 and math.isfinite(target_epsilon)):
        raise ValueError(f"target epsilon must be a finite number > 0, got {target_epsilon}")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not tolerance > 0.0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")

    def eps(sigma: float) -> float:
        return Accountant(sampling, sigma, delta, accountant).epsilon(rounds)

    lo, hi = 1.0, 1.0  # invariant after bracketing: eps(lo) > target >= eps(hi)
    while eps(hi) > target_epsilon:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"no noise multiplier up to 1e6 reaches epsilon {target_epsilon}")
    while eps(lo) <= target_epsilon:
        lo /= 2.0
        if lo < 1e-3:
            raise ValueError(
                f"epsilon {target_epsilon} is reached with sigma < 1e-3: the target binds nothing"
            )
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        e = eps(mid)
        if target_epsilon - tolerance <= e <= target_epsilon:
            return mid
        if e > target_epsilon:
            lo = mid
        else:
            hi = mid
    raise ValueError(f"calibration did not reach epsilon within {tolerance} of {target_epsilon}")
