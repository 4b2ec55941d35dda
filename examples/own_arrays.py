"""Your own arrays as a federation: one (X, y) per client and a test set, straight into `simulate`.

    python examples/own_arrays.py [--rounds 20]

Here each of 8 clients gets rows of scikit-learn's wine data with its own label skew; any float features
and integer labels work the same. `config.clients` must match the number of clients you pass.
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_wine

from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.sim import simulate


def my_clients(num_clients: int, seed: int = 0) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], tuple]:
    """Standardized wine features, a held-out test set, the rest dealt to clients sorted by label."""
    x, y = load_wine(return_X_y=True)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    order = np.random.default_rng(seed).permutation(len(y))
    test, rest = order[:40], order[40:]
    rest = rest[np.argsort(y[rest], kind="stable")]  # label skew: neighbouring clients share labels
    shards = np.array_split(rest, num_clients)
    return {cid: (x[idx], y[idx]) for cid, idx in enumerate(shards)}, (x[test], y[test])


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    clients, test = my_clients(8)
    data = FederatedData.from_arrays(clients, test=test)
    config = FLConfig(clients=8, per_round=4, rounds=args.rounds, local_epochs=2, lr=0.05, workers=0)
    result = simulate(config, data=data)
    for record in result.records:
        print(f"round {record.round:>2}: accuracy {record.accuracy:.3f}")


if __name__ == "__main__":
    run()
