"""Central reference for a federated run: the same model trained on the union of the clients' data.

Run: `.venv/bin/python benches/central_baseline.py --dataset digits --epochs 20` (any `fedcore sim` flags
that pick the data and model: --dataset, --clients, --partition, --backend, --model, --seed).
"""

from __future__ import annotations

import argparse

import numpy as np

from fedcore.backends.base import TrainConfig
from fedcore.config import FLConfig
from fedcore.sim.workers import build_model, limit_threads, load_data


def central_accuracy(config: FLConfig, epochs: int, lr: float, batch_size: int, momentum: float) -> float:
    """Trains on every client's training split at once and scores the run's central test set."""
    limit_threads(config)
    data = load_data(config)
    parts = [data.client(cid).train for cid in range(data.num_clients)]
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    model = build_model(config, data)
    train = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, seed=config.seed)
    model.fit(x, y, train)
    return model.evaluate(data.central_test.x, data.central_test.y).accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--partition", default="iid")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--momentum", type=float, default=0.9)
    args = parser.parse_args()
    config = FLConfig(
        dataset=args.dataset,
        clients=args.clients,
        partition=args.partition,
        backend=args.backend,
        model=args.model,
        seed=args.seed,
    )
    acc = central_accuracy(config, args.epochs, args.lr, args.batch_size, args.momentum)
    print(f"central {args.dataset} {args.backend}/{args.model}: test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
