"""Aggregation strategies, built from the CLI's spec strings; your own by name in CUSTOM_STRATEGIES."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedcore.strategies.base import FoldSum, ServerState, Strategy
from fedcore.strategies.fedavg import FedAvg
from fedcore.strategies.fednova import FedNova
from fedcore.strategies.fedopt import DEFAULT_SERVER_LR, FedOpt, ServerOptimizer
from fedcore.strategies.scaffold import Scaffold

_SERVER_OPTIMIZERS: dict[str, ServerOptimizer] = {
    "fedavgm": "fedavgm",
    "fedadam": "fedadam",
    "fedyogi": "fedyogi",
    "fedadagrad": "fedadagrad",
}
STRATEGY_NAMES = ("fedavg", "fedprox", "fednova", *_SERVER_OPTIMIZERS, "scaffold")


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


def make_strategy(
    spec: str,
    num_clients: int,
    server_lr: float | None = None,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
) -> Strategy:
    """`fedavg`, `fedprox:MU`, `fednova`, `fedavgm`, `fedadam`, `fedyogi`, `fedadagrad` or `scaffold`."""
    name, _, arg = spec.partition(":")
    if name in CUSTOM_STRATEGIES:
        return CUSTOM_STRATEGIES[name](StrategySettings(arg, num_clients, server_lr, beta1, beta2, tau))
    if name not in STRATEGY_NAMES:
        names = ", ".join([*STRATEGY_NAMES, *CUSTOM_STRATEGIES])
        raise ValueError(f"unknown strategy {spec!r}; choose from {names}")
    if arg and name != "fedprox":
        raise ValueError(f"strategy {name!r} takes no argument, got {spec!r}")
    if name == "fedprox":
        try:
            mu = float(arg)
        except ValueError:
            raise ValueError(f"fedprox needs a proximal weight, e.g. 'fedprox:0.01', got {spec!r}") from None
        if mu <= 0.0:
            raise ValueError(f"fedprox mu must be > 0, got {spec!r}")
        return FedAvg(server_lr=server_lr or 1.0, prox_mu=mu)
    if name == "fedavg":
        return FedAvg(server_lr=server_lr or 1.0)
    if name == "fednova":
        return FedNova(server_lr=server_lr or 1.0)
    if name == "scaffold":
        return Scaffold(num_clients=num_clients, server_lr=server_lr or 1.0)
    optimizer = _SERVER_OPTIMIZERS[name]
    lr = server_lr if server_lr is not None else DEFAULT_SERVER_LR[optimizer]
    return FedOpt(optimizer, lr, beta1, beta2, tau)


__all__ = [
    "CUSTOM_STRATEGIES",
    "STRATEGY_NAMES",
    "FedAvg",
    "FedNova",
    "FedOpt",
    "FoldSum",
    "Scaffold",
    "ServerState",
    "Strategy",
    "StrategyFactory",
    "StrategySettings",
    "make_strategy",
]
