"""A custom aggregation rule: the coordinate-wise trimmed mean, registered by name and used like `median`.

    python examples/custom_aggregator.py [--rounds 20] [--workers 2]

A center rule is a function (updates K x d, weights K) -> center d. Put it in
fedcore.server.registry.CENTER_RULES under a name before the config is made; `aggregator="NAME"`
(or `--aggregator NAME`) then collects every update of the round and hands the rule all of them.
Define the rule at module level: worker processes re-import this file to find it.
"""

from __future__ import annotations

import argparse

import numpy as np
from numpy.typing import NDArray

from fedcore.config import FLConfig
from fedcore.server.registry import CENTER_RULES
from fedcore.sim import simulate


def trimmed_mean(updates: NDArray[np.float32], weights: NDArray[np.float64]) -> NDArray[np.float32]:
    """Drop the largest and smallest value of every coordinate, average the rest (unweighted)."""
    del weights
    if len(updates) <= 2:
        return updates.mean(axis=0).astype(np.float32)
    ordered = np.sort(updates, axis=0)
    return ordered[1:-1].mean(axis=0).astype(np.float32)


CENTER_RULES["trimmed_mean"] = trimmed_mean


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    base = FLConfig(clients=20, per_round=6, rounds=args.rounds, local_epochs=2, workers=args.workers)
    for rule in ("mean", "trimmed_mean"):
        config = FLConfig(**{**base.to_dict(), "aggregator": rule})
        result = simulate(config)
        print(f"{rule:>12}: accuracy {result.summary['final_accuracy']:.4f} after {args.rounds} rounds")


if __name__ == "__main__":
    run()
