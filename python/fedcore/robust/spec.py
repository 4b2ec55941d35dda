"""Which aggregator a run uses: the typed `--aggregator` spec, and the registry of users' own rules."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.errors import did_you_mean
from fedcore.robust.registry import RULE_NAMES, Robust, parse

CenterRule = Callable[[NDArray[np.float32], NDArray[np.float64]], NDArray[np.float32]]

STREAMING = "mean"

# Your own center rules by name: `(updates K x d, weights K) -> center`, defined at module level.
CENTER_RULES: dict[str, CenterRule] = {}


@dataclass(frozen=True)
class AggregatorSpec:
    """`mean` (the streaming fold), a rule registered in CENTER_RULES, or a fedcore.robust spec."""

    text: str  # the canonical text: `mean`, the registered name, or str(robust)
    robust: Robust | None = None

    @classmethod
    def parse(cls, text: str) -> AggregatorSpec:
        """Fail at configuration time: `mean`, a registered rule, or a robust spec (`bucket:2+krum:2`)."""
        text = text.strip()
        if text == STREAMING or text in CENTER_RULES:
            return cls(text)
        try:
            robust = parse(text)
        except ValueError as exc:
            names = sorted({STREAMING, *CENTER_RULES, *RULE_NAMES})
            word = text.split("+")[-1].partition(":")[0]
            hint = "" if word in RULE_NAMES else did_you_mean(word, names)
            raise ValueError(f"{exc}{hint}") from None
        return cls(str(robust), robust)

    def __str__(self) -> str:
        return self.text

    @property
    def streaming(self) -> bool:
        """The plain mean folds each update as it arrives instead of collecting the round's updates."""
        return self.text == STREAMING
