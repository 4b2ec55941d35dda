"""Aggregation strategies, built from the CLI's spec strings."""

from __future__ import annotations

from typing import cast

from fedcore.strategies.base import FoldSum, ServerState, Strategy
from fedcore.strategies.fedavg import FedAvg
from fedcore.strategies.fednova import FedNova
from fedcore.strategies.fedopt import DEFAULT_SERVER_LR, FedOpt, ServerOptimizer
from fedcore.strategies.scaffold import Scaffold
from fedcore.strategies.spec import STRATEGY_NAMES, StrategySpec


def make_strategy(
    spec: StrategySpec | str,
    num_clients: int,
    server_lr: float | None = None,
    beta1: float = 0.9,
    beta2: float = 0.99,
    tau: float = 1e-3,
) -> Strategy:
    """The strategy a spec (or its text: `fedavg`, `fedprox:MU`, `fedyogi` ...) names, with server numbers."""
    parsed = StrategySpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.name in ("fedavg", "fedprox"):
        return FedAvg(server_lr=server_lr or 1.0, prox_mu=parsed.mu or 0.0)
    if parsed.name == "fednova":
        return FedNova(server_lr=server_lr or 1.0)
    if parsed.name == "scaffold":
        return Scaffold(num_clients=num_clients, server_lr=server_lr or 1.0)
    optimizer = cast(ServerOptimizer, parsed.name)
    lr = server_lr if server_lr is not None else DEFAULT_SERVER_LR[optimizer]
    return FedOpt(optimizer, lr, beta1, beta2, tau)


__all__ = [
    "STRATEGY_NAMES",
    "FedAvg",
    "FedNova",
    "FedOpt",
    "FoldSum",
    "Scaffold",
    "ServerState",
    "Strategy",
    "StrategySpec",
    "make_strategy",
]
