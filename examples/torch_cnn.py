"""Your own PyTorch CNN on your own arrays: a `model_fn` and `FederatedData.from_arrays` into `simulate`.

    python examples/torch_cnn.py [--rounds 20] [--device cpu|cuda|mps] [--workers N]

Ten clients each hold 8x8 digit images (scikit-learn's digits) with their own label skew. `make_cnn`
returns any torch.nn.Module; fedcore builds it once per process under the run's seed (so every process
starts from the same weights) and trains it with the built-in local SGD. Keep `make_cnn` at module level:
worker processes import it from here. From the command line the same model is
`fedcore sim --model torch_cnn:make_cnn` (an import path).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits

import fedcore


def make_cnn() -> torch.nn.Module:
    """Two 3x3 convolutions with pooling, then a linear classifier; input [N, 1, 8, 8]."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 8x8 -> 4x4
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),  # 4x4 -> 2x2
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 2 * 2, 10),
    )


def my_images(num_clients: int, seed: int = 0) -> fedcore.FederatedData:
    """Images [N, 1, 8, 8] in [0, 1]; a held-out test set; the rest dealt out in label-sorted shards."""
    images, labels = load_digits(return_X_y=True)
    x = (images / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(labels))
    test, rest = order[:300], order[300:]
    rest = rest[np.argsort(labels[rest], kind="stable")]
    shards = np.array_split(rest, 4 * num_clients)  # label skew: four label-sorted shards per client
    picks = np.random.default_rng(seed).permutation(len(shards)).reshape(num_clients, 4)
    rows = [np.concatenate([shards[s] for s in own]) for own in picks]
    clients = {cid: (x[idx], labels[idx]) for cid, idx in enumerate(rows)}
    return fedcore.FederatedData.from_arrays(clients, test=(x[test], labels[test]))


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    config = fedcore.FLConfig(
        clients=10,
        per_round=5,
        rounds=args.rounds,
        local_epochs=2,
        lr=0.1,
        device=args.device,
        workers=args.workers,
    )
    result = fedcore.simulate(config, data=my_images(10), model_fn=make_cnn)
    for record in result.records:
        print(f"round {record.round:>2}: accuracy {record.accuracy:.3f}")


if __name__ == "__main__":
    run()
