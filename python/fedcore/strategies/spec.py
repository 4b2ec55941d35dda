"""The typed `--strategy` spec, and the registry of users' own strategies by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedcore.spec_text import format_number
from fedcore.strategies.base import Strategy

SERVER_OPTIMIZER_NAMES = ("fedavgm", "fedadam", "fedyogi", "fedadagrad")
STRATEGY_NAMES = ("fedavg", "fedprox", "fednova", *SERVER_OPTIMIZER_NAMES, "scaffold")


@dataclass(frozen=True)
class StrategySettings:
    """What a custom strategy's factory gets: the text after `NAME:` and the run's server settings."""

    arg: str  # "" for a bare NAME
    num_clients: int
    server_lr: float | None  # None: --server-lr not given; pick your own default
    beta1: float
    beta2: float
    tau: float


StrategyFactory = Callable[[StrategySettings], Strategy]

# Your own strategies by name (see examples/custom_strategy.py): register a module-level factory before the
# config is made; `strategy="NAME[:ARG]"` (or --strategy) then builds it in every process of the run.
CUSTOM_STRATEGIES: dict[str, StrategyFactory] = {}


def _unknown(text: str) -> ValueError:
    names = ", ".join([*STRATEGY_NAMES, *CUSTOM_STRATEGIES])
    return ValueError(f"unknown strategy {text!r}; choose from {names}")


@dataclass(frozen=True)
class StrategySpec:
    """A built-in strategy (`fedavg`, `fedprox:MU`, `fedyogi` ...) or one registered in CUSTOM_STRATEGIES."""

    name: str
    mu: float | None = None  # fedprox only
    arg: str = ""  # a custom strategy's text after `NAME:`, handed to its factory as it is

    def __post_init__(self) -> None:
        if self.name in CUSTOM_STRATEGIES:
            if self.mu is not None:
                raise ValueError(f"custom strategy {self.name!r} takes its parameter as text (arg)")
            return
        if self.name not in STRATEGY_NAMES:
            raise _unknown(self.name)
        if self.arg:
            raise ValueError(f"strategy {self.name!r} is built in; arg is for custom strategies")
        if self.name == "fedprox" and not (self.mu is not None and self.mu > 0.0):
            raise ValueError(f"fedprox mu must be > 0, got {self.mu}")
        if self.name != "fedprox" and self.mu is not None:
            raise ValueError(f"strategy {self.name!r} takes no argument, got {self.mu}")

    @classmethod
    def parse(cls, text: str) -> StrategySpec:
        """Read `fedyogi`, `fedprox:0.01` or `NAME[:ARG]` of a registered strategy."""
        name, _, arg = text.strip().partition(":")
        if name in CUSTOM_STRATEGIES:
            return cls(name, arg=arg)
        if name not in STRATEGY_NAMES:
            raise _unknown(text)
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
        if self.mu is not None:
            return f"{self.name}:{format_number(self.mu)}"
        return f"{self.name}:{self.arg}" if self.arg else self.name
