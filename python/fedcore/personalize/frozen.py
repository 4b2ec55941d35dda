"""Train part of a model, or pull it toward a fixed point, through the plain ModelAdapter protocol."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import FitResult, ModelAdapter, TrainConfig
from fedcore.compression import Vector
from fedcore.data.dataset import Dataset


def fit_masked(
    adapter: ModelAdapter, data: Dataset, config: TrainConfig, trainable: NDArray[np.bool_]
) -> FitResult:
    """SGD on the `trainable` coordinates only, the rest restored bit for bit after every step."""
    return fit_steps(adapter, data.x, data.y, config, trainable=trainable)


def fit_steps(
    adapter: ModelAdapter,
    x: NDArray[np.float32],
    y: NDArray[np.int64],
    config: TrainConfig,
    trainable: NDArray[np.bool_] | None = None,
    anchor: Vector | None = None,
    lam: float = 0.0,
) -> FitResult:
    """One single-step `fit` per mini-batch, so each step can freeze coordinates or pull toward `anchor`.

    The protocol has no freeze switch and its prox term centres on the weights at fit start, so both
    are done between steps: coordinates outside `trainable` are restored after every step, and
    lam * (w - anchor), taken at the step's start, goes in as the step's gradient correction (an exact
    SGD step on F(w) + lam/2 ||w - anchor||^2). Momentum would restart every step and the backends'
    own prox pull would centre on the last step, so both are dropped; batches follow `config.seed`,
    reshuffled per epoch. The result counts every step and averages their losses.
    """
    if len(y) == 0:
        return FitResult(num_examples=0, num_steps=0, loss=0.0)
    rng = np.random.default_rng(config.seed)
    step_seeds = iter(rng.integers(0, 2**31 - 1, size=config.epochs * len(y), dtype=np.int64))
    losses: list[float] = []
    current = adapter.get_weights()
    for _ in range(config.epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            step = replace(
                config,
                epochs=1,
                batch_size=len(batch),
                momentum=0.0,
                prox_mu=0.0,
                max_steps=1,
                seed=int(next(step_seeds)),
            )
            pull = None if anchor is None else (lam * (current - anchor)).astype(np.float32)
            losses.append(adapter.fit(x[batch], y[batch], step, control=pull).loss)
            stepped = adapter.get_weights()
            if trainable is not None:
                stepped = np.where(trainable, stepped, current).astype(np.float32)
                adapter.set_weights(stepped)
            current = stepped
    return FitResult(num_examples=len(y), num_steps=len(losses), loss=sum(losses) / len(losses))
