"""Shifted compression: clients compress their update minus a learned shift, the server adds the shifts back.

On MNIST-1D most of a client's update is its own (the round's mean carries ~11 % of its energy), so a codec's
error is large against the shared signal. Each client i keeps a shift h_i that learns its usual update and
sends only C(x_i - h_i); the server keeps H, the mean of every client's shift, and never a per-client copy.

- `diana:ALPHA` (Mishchenko et al. 2019, with partial participation as in its sum form): the server steps
  along H + mean over the round of C(x_i - h_i), then H moves by ALPHA x (clients that took part / all
  clients) x that mean, matching each client's h_i += ALPHA C(x_i - h_i).
- `ef21` (Richtárik et al. 2021; partial participation as in EF21-PP, Fatkhullin et al. 2021): h_i += C(x_i
  - h_i), and the server steps along the new H = H + (taking part / all) x the round's mean.

H stays the mean of the clients' shifts exactly when every client counts equally in the fold; with
example-weighted averaging it is the mean under the round's weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcore.config import FLConfig
from fedcore.spec_text import format_number
from fedcore.uplink.base import ClientStates, DecodeRest, Encoded, EncodeRest, Update, UplinkContext, Vector

if TYPE_CHECKING:
    from fedcore.strategies.base import FoldSum

RULES = ("diana", "ef21")


@dataclass(frozen=True)
class ShiftSpec:
    """Which update rule and how fast the shifts learn (EF21 always takes the whole step)."""

    rule: str
    alpha: float = 1.0

    @classmethod
    def parse(cls, spec: str) -> ShiftSpec:
        """`diana:ALPHA` with 0 < ALPHA <= 1, or `ef21`; anything else raises ValueError."""
        rule, _, arg = spec.strip().lower().partition(":")
        if rule == "ef21":
            if arg:
                raise ValueError(f"shift ef21 takes no argument, got {spec!r}")
            return cls("ef21")
        if rule == "diana":
            try:
                alpha = float(arg)
            except ValueError:
                raise ValueError(
                    f"shift diana needs its step, diana:ALPHA (0 < ALPHA <= 1), got {spec!r}"
                ) from None
            if not 0.0 < alpha <= 1.0:
                raise ValueError(f"shift diana:ALPHA needs 0 < ALPHA <= 1, got {alpha}")
            return cls("diana", alpha)
        raise ValueError(f"shift must be diana:ALPHA or ef21, got {spec!r}")

    def __str__(self) -> str:
        return "ef21" if self.rule == "ef21" else f"diana:{format_number(self.alpha)}"


@dataclass(frozen=True)
class ShiftStage:
    """Client half: sends C(x - h) and keeps h; server half: adds the mean shift H to the round's fold."""

    spec: ShiftSpec

    @property
    def key(self) -> str:
        return "shift"

    def encode(self, x: Vector, ctx: UplinkContext, states: ClientStates, rest: EncodeRest) -> Encoded:
        del ctx
        shift: Vector | None = states.get(self.key)
        h = np.zeros_like(x) if shift is None else shift
        encoded = rest((x - h).astype(np.float32))
        sent = encoded.reconstruct()
        states[self.key] = (h + self.spec.alpha * sent).astype(np.float32)
        return Encoded(encoded.payload, lambda: (h + sent).astype(np.float32), encoded.metrics)

    def decode(self, payload: bytes, ctx: UplinkContext, rest: DecodeRest) -> Update:
        """The compressed difference folds as it is (in Rust for a codec frame); H comes in server_round."""
        del ctx
        return rest(payload)

    def server_round(
        self, fold: FoldSum, mean_shift: NDArray[np.float64] | None, clients: int
    ) -> tuple[FoldSum, NDArray[np.float64] | None]:
        """The fold the strategy steps with, and the new mean shift H (None until a round has folded)."""
        if fold.count == 0 or fold.weight_sum <= 0.0:
            return fold, mean_shift
        mean = fold.delta_sum / fold.weight_sum
        h = np.zeros_like(mean) if mean_shift is None else mean_shift
        share = fold.count / clients
        if self.spec.rule == "ef21":
            h = h + share * mean
            direction = h
        else:
            direction = h + mean
            h = h + self.spec.alpha * share * mean
        return replace(fold, delta_sum=direction * fold.weight_sum), h


def shift_from_config(config: FLConfig) -> ShiftStage | None:
    return ShiftStage(config.shift) if config.shift is not None else None
