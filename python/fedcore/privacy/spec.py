"""The typed DP spec behind the strings `central:CLIP`, `adaptive:QUANTILE`, `local:CLIP,Z`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

DPMode = Literal["central", "adaptive", "local", "distributed"]

_FORMS = "'central:CLIP', 'adaptive:QUANTILE', 'local:CLIP,Z' or 'distributed:CLIP'"


def check_clip(clip: float) -> None:
    """One-line refusal of a clip norm that bounds nothing."""
    if not (clip > 0.0 and math.isfinite(clip)):
        raise ValueError(f"clip norm must be a finite number > 0, got {clip}")


def check_quantile(quantile: float) -> None:
    """Adaptive clipping needs a target inside (0, 1): 0 or 1 would drive the clip to 0 or infinity."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"target quantile must lie in (0, 1), got {quantile}")


@dataclass(frozen=True)
class DPSpec:
    """Which DP mode a run uses and its one or two numbers; noise for central modes comes from calibration.

    central:  user-level DP-FedAvg, each client update clipped to `clip`, Gaussian noise on the sum.
    adaptive: as central, with the clip following the `quantile` of update norms (Andrew et al. 2021).
    local:    example-level DP-SGD on each client, per-sample clip `clip`, noise multiplier Z.
    distributed: as central, but each client adds its share of Skellam noise inside secure aggregation.
    """

    mode: DPMode
    clip: float | None = None
    quantile: float | None = None
    noise_multiplier: float | None = None

    def __post_init__(self) -> None:
        if self.mode in ("central", "distributed"):
            self._need(clip=True, quantile=False, noise=False)
        elif self.mode == "adaptive":
            self._need(clip=False, quantile=True, noise=False)
        elif self.mode == "local":
            self._need(clip=True, quantile=False, noise=True)
        else:
            raise ValueError(f"unknown DP mode {self.mode!r}; use {_FORMS}")
        if self.clip is not None:
            check_clip(self.clip)
        if self.quantile is not None:
            check_quantile(self.quantile)
        if self.noise_multiplier is not None and not (
            self.noise_multiplier > 0.0 and math.isfinite(self.noise_multiplier)
        ):
            raise ValueError(f"noise multiplier Z must be a finite number > 0, got {self.noise_multiplier}")

    def _need(self, *, clip: bool, quantile: bool, noise: bool) -> None:
        given = (self.clip is not None, self.quantile is not None, self.noise_multiplier is not None)
        if given != (clip, quantile, noise):
            raise ValueError(f"DP mode {self.mode!r} takes {_form(self.mode)}")

    @classmethod
    def parse(cls, text: str) -> DPSpec:
        """Read `central:1.0`, `adaptive:0.5` or `local:1.0,1.1`."""
        mode, sep, rest = text.strip().partition(":")
        if not sep or not rest:
            raise ValueError(f"bad DP spec {text!r}; use {_FORMS}")
        try:
            numbers = [float(part) for part in rest.split(",")]
        except ValueError:
            raise ValueError(f"bad number in DP spec {text!r}; use {_FORMS}") from None
        if mode in ("central", "distributed") and len(numbers) == 1:
            return cls(mode, clip=numbers[0])  # type: ignore[arg-type]
        if mode == "adaptive" and len(numbers) == 1:
            return cls("adaptive", quantile=numbers[0])
        if mode == "local" and len(numbers) == 2:
            return cls("local", clip=numbers[0], noise_multiplier=numbers[1])
        raise ValueError(f"bad DP spec {text!r}; use {_FORMS}")

    def __str__(self) -> str:
        if self.mode in ("central", "distributed"):
            return f"{self.mode}:{self.clip!r}"
        if self.mode == "adaptive":
            return f"adaptive:{self.quantile!r}"
        return f"local:{self.clip!r},{self.noise_multiplier!r}"

    @property
    def user_level(self) -> bool:
        """Central and adaptive protect a whole client; local protects one example of a client."""
        return self.mode != "local"


def _form(mode: str) -> str:
    return {
        "central": "'central:CLIP'",
        "adaptive": "'adaptive:QUANTILE'",
        "local": "'local:CLIP,Z'",
        "distributed": "'distributed:CLIP'",
    }[mode]
