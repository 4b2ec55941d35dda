"""Your own strategy: subclass FedAvg, change how much each client counts and how the server steps.

    python examples/custom_strategy.py [--rounds 20] [--workers 2]   (workers: processes; 0 = in this one)

A strategy decides three things (fedcore.strategies.Strategy): a client's `coefficient` in the round's
weighted sum, the clients' local `client_config`, and `aggregate`, which turns the round's fold (the
weighted sum of updates, the weight sum, the counts) into the new global weights. Subclass FedAvg and
override what you need, register a factory under a name in CUSTOM_STRATEGIES, and pick it with
`strategy="NAME[:ARG]"` (or `--strategy NAME:ARG`). Register at module level: worker processes re-import
this file to find it. To replace only the averaging rule (median-like rules that need every update),
see custom_aggregator.py instead.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from fedcore.config import FLConfig
from fedcore.sim import simulate
from fedcore.strategies import CUSTOM_STRATEGIES, FedAvg, FoldSum, ServerState, StrategySettings
from fedcore.strategies.fedavg import apply_delta, weighted_mean_delta


@dataclass(frozen=True)
class ClippedFedAvg(FedAvg):
    """Every client counts once, and the server's step is clipped to `max_norm` (a trust region)."""

    max_norm: float = 1.0

    @property
    def name(self) -> str:
        return f"clipped:{self.max_norm:g}"

    def coefficient(self, num_examples: int, num_steps: int) -> float:
        del num_examples, num_steps
        return 1.0

    def aggregate(self, state: ServerState, fold: FoldSum) -> ServerState:
        step = weighted_mean_delta(fold)
        norm = float(np.linalg.norm(step))
        if norm > self.max_norm:
            step = step * (self.max_norm / norm)
        return ServerState(state.round + 1, apply_delta(state.weights, step, self.server_lr), state.opt_state)


def clipped(settings: StrategySettings) -> ClippedFedAvg:
    """`clipped:MAX_NORM` (default 1.0); --server-lr applies as for FedAvg."""
    max_norm = float(settings.arg) if settings.arg else 1.0
    return ClippedFedAvg(server_lr=settings.server_lr or 1.0, max_norm=max_norm)


CUSTOM_STRATEGIES["clipped"] = clipped


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    base = FLConfig(clients=20, per_round=6, rounds=args.rounds, local_epochs=2, workers=args.workers)
    for strategy in ("fedavg", "clipped:0.5"):
        config = FLConfig(**{**base.to_dict(), "strategy": strategy})
        result = simulate(config)
        print(f"{strategy:>12}: accuracy {result.summary['final_accuracy']:.4f} after {args.rounds} rounds")


if __name__ == "__main__":
    run()
