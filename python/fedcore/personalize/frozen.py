"""Train only part of a model through the plain ModelAdapter protocol, which has no freeze switch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.data.dataset import Dataset


def fit_masked(
    adapter: ModelAdapter, data: Dataset, config: TrainConfig, trainable: NDArray[np.bool_]
) -> None:
    """SGD on the `trainable` coordinates only, the rest restored bit for bit after every step.

    Each mini-batch is one single-step `fit` call followed by the restore, so the frozen part never
    moves under the part being trained. Momentum would restart every step and a prox pull would
    centre on the last step, so both are dropped; batches follow `config.seed`, reshuffled per epoch.
    """
    if len(data) == 0:
        return
    rng = np.random.default_rng(config.seed)
    step_seeds = iter(rng.integers(0, 2**31 - 1, size=config.epochs * len(data), dtype=np.int64))
    for _ in range(config.epochs):
        order = rng.permutation(len(data))
        for start in range(0, len(data), config.batch_size):
            batch = order[start : start + config.batch_size]
            before = adapter.get_weights()
            step = replace(
                config,
                epochs=1,
                batch_size=len(batch),
                momentum=0.0,
                prox_mu=0.0,
                max_steps=1,
                seed=int(next(step_seeds)),
            )
            adapter.fit(data.x[batch], data.y[batch], step)
            after = adapter.get_weights()
            adapter.set_weights(np.where(trainable, after, before).astype(np.float32))
