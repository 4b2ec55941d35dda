"""A run's privacy plan: the mechanism, its noise multiplier (given or calibrated), and the accountant."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from fedcore.config import FLConfig
from fedcore.privacy.accountant import Accountant, Sampling, calibrate_noise, check_delta
from fedcore.privacy.spec import DPSpec

DEFAULT_INITIAL_CLIP = 0.1  # adaptive clipping's first clip norm (Andrew et al. 2021)


def default_delta(population: int) -> float:
    """Well below 1/N, so that no delta can be met by releasing one client's data outright."""
    return 0.1 / population


@dataclass(frozen=True)
class PrivacyPlan:
    """User-level DP-FedAvg over a population of `config.clients`, K of N sampled per round (fixed size).

    Fixed-size sampling is accounted as such (RDP, replace-one neighbours), never as Poisson with q = K/N.
    """

    spec: DPSpec
    noise_multiplier: float
    delta: float
    sampling: Sampling
    rounds: int
    max_epsilon: float | None = None

    @classmethod
    def from_config(cls, config: FLConfig) -> PrivacyPlan | None:
        """None without central DP; raises ValueError (one line) on a config that guarantees nothing."""
        if config.dp is None:
            return None
        spec = config.dp
        if not spec.user_level:
            return None
        delta = config.delta if config.delta is not None else default_delta(config.clients)
        check_delta(delta, config.clients)
        sampling = Sampling.fixed(config.clients, config.per_round)
        if config.noise_multiplier is not None:
            sigma = config.noise_multiplier
        elif config.target_epsilon is not None:
            sigma = calibrate_noise(config.target_epsilon, delta, sampling, config.rounds)
        else:
            raise ValueError("--dp central/adaptive needs --noise-multiplier Z or --target-epsilon E")
        return cls(spec, sigma, delta, sampling, config.rounds, config.max_epsilon)

    @cached_property
    def accountant(self) -> Accountant:
        return Accountant(self.sampling, self.noise_multiplier, self.delta)

    @cached_property
    def epsilons(self) -> list[float]:
        """epsilon after each round 1..rounds, computed once."""
        return self.accountant.epsilons(self.rounds)

    @cached_property
    def rounds_within_budget(self) -> int:
        """How many rounds fit `max_epsilon` (all of them without a budget)."""
        if self.max_epsilon is None:
            return self.rounds
        return sum(1 for e in self.epsilons if e <= self.max_epsilon)

    def stop_message(self) -> str | None:
        """The one line a run prints when the budget ends it early; None when every round fits."""
        if self.rounds_within_budget >= self.rounds or self.max_epsilon is None:
            return None
        kept = self.rounds_within_budget
        reached = self.epsilons[kept] if kept < len(self.epsilons) else math.inf
        return (
            f"stopped after round {kept}: round {kept + 1} would reach epsilon={reached:.4g} > "
            f"--max-epsilon {self.max_epsilon:g} (delta={self.delta:g}, sigma={self.noise_multiplier:.4g})"
        )

    @property
    def adaptive(self) -> bool:
        return self.spec.mode == "adaptive"

    def count_noise(self) -> float:
        """Adaptive clipping's noise on the count of unclipped clients: the paper's cohort / 20."""
        return self.sampling.expected_cohort / 20.0

    def summary(self, rounds_run: int) -> dict[str, object]:
        """The fields summary.json gains: what was spent, at which delta, by which accountant."""
        return {
            "epsilon": self.epsilons[rounds_run - 1] if rounds_run else 0.0,
            "delta": self.delta,
            "accountant": f"{self.accountant.accountant_kind} ({self.sampling})",
            "noise_multiplier": self.noise_multiplier,
            "dp": str(self.spec),
            "privacy_unit": f"one client's whole data, population N={self.sampling.population}",
        }
