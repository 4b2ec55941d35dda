"""DP-SGD's schedule and accounting, free of any ML framework: the torch and MLX loops share it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedcore.privacy.accountant import Accountant, AccountantKind, Sampling, check_noise_multiplier
from fedcore.privacy.spec import DPSpec, check_clip

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self


@dataclass(frozen=True)
class DPSGDResult:
    """What one client's DP-SGD run reports: steps taken, mean Poisson batch, fraction of examples clipped."""

    num_steps: int
    mean_batch: float
    clipped_fraction: float


@dataclass(frozen=True)
class DPSGDSchedule:
    """DP-SGD's numbers, whatever the framework: Poisson batches at rate batch_size / n, clip C, noise z C.

    `fit` lives in the torch (`dpsgd.DPSGD`) and MLX (`dpsgd_mlx.DPSGDMLX`) subclasses; both divide the noisy
    sum by the expected batch size (a fixed denominator, as the accountant assumes).
    """

    clip: float
    noise_multiplier: float
    batch_size: int
    lr: float
    steps: int

    def __post_init__(self) -> None:
        check_clip(self.clip)
        check_noise_multiplier(self.noise_multiplier)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0.0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    @classmethod
    def from_spec(cls, spec: DPSpec, batch_size: int, lr: float, steps: int) -> Self:
        """The DP-SGD of a `local:CLIP,Z` spec."""
        if spec.mode != "local" or spec.clip is None or spec.noise_multiplier is None:
            raise ValueError(f"DP-SGD needs a 'local:CLIP,Z' spec, got {spec}")
        return cls(spec.clip, spec.noise_multiplier, batch_size, lr, steps)

    def sampling(self, n_examples: int) -> Sampling:
        """Poisson sampling of this client's examples at rate batch_size / n."""
        if self.batch_size > n_examples:
            raise ValueError(f"batch_size {self.batch_size} exceeds the client's {n_examples} examples")
        return Sampling.poisson(n_examples, self.batch_size / n_examples)

    def accountant(self, n_examples: int, delta: float, kind: AccountantKind | None = None) -> Accountant:
        """The client's own accountant: call epsilon(total steps taken so far, over all rounds)."""
        return Accountant(self.sampling(n_examples), self.noise_multiplier, delta, kind)
