"""The typed `--strategy` spec: a strategy's name and, for FedProx, its proximal weight."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.spec_text import format_number

SERVER_OPTIMIZER_NAMES = ("fedavgm", "fedadam", "fedyogi", "fedadagrad")
STRATEGY_NAMES = ("fedavg", "fedprox", "fednova", *SERVER_OPTIMIZER_NAMES, "scaffold")


@dataclass(frozen=True)
class StrategySpec:
    """`fedavg`, `fedprox:MU`, `fednova`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad` or `scaffold`."""

    name: str
    mu: float | None = None  # fedprox only

    def __post_init__(self) -> None:
        if self.name not in STRATEGY_NAMES:
            raise ValueError(f"unknown strategy {self.name!r}; choose from {', '.join(STRATEGY_NAMES)}")
        if self.name == "fedprox" and not (self.mu is not None and self.mu > 0.0):
            raise ValueError(f"fedprox mu must be > 0, got {self.mu}")
        if self.name != "fedprox" and self.mu is not None:
            raise ValueError(f"strategy {self.name!r} takes no argument, got {self.mu}")

    @classmethod
    def parse(cls, text: str) -> StrategySpec:
        """Read `fedyogi` or `fedprox:0.01`."""
        name, _, arg = text.strip().partition(":")
        if name not in STRATEGY_NAMES:
            raise ValueError(f"unknown strategy {text!r}; choose from {', '.join(STRATEGY_NAMES)}")
        if arg and name != "fedprox":
            raise ValueError(f"strategy {name!r} takes no argument, got {text!r}")
        if name != "fedprox":
            return cls(name)
        try:
            mu = float(arg)
        except ValueError:
            raise ValueError(f"fedprox needs a proximal weight, e.g. 'fedprox:0.01', got {text!r}") from None
        if not mu > 0.0:
            raise ValueError(f"fedprox mu must be > 0, got {text!r}")
        return cls("fedprox", mu)

    def __str__(self) -> str:
        return self.name if self.mu is None else f"{self.name}:{format_number(self.mu)}"
