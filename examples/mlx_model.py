"""Your own MLX model with your own local training: `model_fn` plus a `train_fn` hook.

    python examples/mlx_model.py [--rounds 20]

`SmallNet` is any mlx.nn.Module (mlx has no Flatten layer, so it flattens in `__call__`). fedcore builds
one per process under the run's seed and moves weights in and out of it. `train_adam` replaces the built-in
SGD loop: it gets the model, the client's arrays and the round's TrainConfig (epochs, batch size, seed) and
returns the mean loss; without it the model trains with fedcore's SGD. An `eval_fn(model, x, y) ->
(loss, accuracy)` would replace the scoring the same way. Runs on the built-in digits (8x8, 10 classes).
Needs mlx: pip install "fedcore[mlx]".
"""

from __future__ import annotations

import argparse

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from numpy.typing import NDArray

import fedcore
from fedcore.backends import TrainConfig


class SmallNet(nn.Module):
    """64 pixels -> 64 hidden units (GELU) -> 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def __call__(self, x: mx.array) -> mx.array:
        return self.out(nn.gelu(self.hidden(x.reshape(x.shape[0], -1))))


def make_net() -> SmallNet:
    return SmallNet()


def train_adam(model: SmallNet, x: NDArray[np.float32], y: NDArray[np.int64], config: TrainConfig) -> float:
    """A client's local training: Adam (fresh each round) over the round's epochs, seeded batches."""
    optimizer = optim.Adam(learning_rate=0.005)

    def loss_of(net: SmallNet, xb: mx.array, yb: mx.array) -> mx.array:
        return nn.losses.cross_entropy(net(xb), yb, reduction="mean")

    step = nn.value_and_grad(model, loss_of)
    rng = np.random.default_rng(config.seed)
    losses = []
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss, grads = step(model, mx.array(x[idx]), mx.array(y[idx].astype(np.int32)))
            optimizer.update(model, grads)
            mx.eval(model.parameters(), optimizer.state)
            losses.append(loss.item())
    return float(np.mean(losses))


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    config = fedcore.FLConfig(clients=20, per_round=5, rounds=args.rounds, local_epochs=2, workers=0)
    result = fedcore.simulate(config, model_fn=make_net, train_fn=train_adam)
    for record in result.records:
        print(f"round {record.round:>2}: accuracy {record.accuracy:.3f}")


if __name__ == "__main__":
    run()
