"""One seeded mini-batch schedule shared by every backend, so they agree step for step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import TrainConfig


@dataclass(frozen=True)
class BatchPlan:
    """Concatenated epoch permutations plus each step's [start, stop) slice into them."""

    order: NDArray[np.int64]
    bounds: tuple[tuple[int, int], ...]

    @property
    def num_steps(self) -> int:
        return len(self.bounds)


def count_steps(num_examples: int, config: TrainConfig) -> int:
    """Steps `plan_batches` will take, without drawing the schedule: the simulator's clock counts them."""
    if num_examples <= 0:
        raise ValueError("cannot train on zero examples")
    total_steps = config.epochs * -(-num_examples // config.batch_size)
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    return total_steps


def plan_batches(num_examples: int, config: TrainConfig) -> BatchPlan:
    """Reshuffle every epoch from `config.seed`; keep the last short batch; stop at `max_steps`."""
    total_steps = count_steps(num_examples, config)
    steps_per_epoch = -(-num_examples // config.batch_size)
    epochs_needed = -(-total_steps // steps_per_epoch)
    rng = np.random.default_rng(config.seed)
    order = np.concatenate([rng.permutation(num_examples) for _ in range(epochs_needed)])
    bounds: list[tuple[int, int]] = []
    for step in range(total_steps):
        epoch, within = divmod(step, steps_per_epoch)
        start = epoch * num_examples + within * config.batch_size
        stop = min(start + config.batch_size, (epoch + 1) * num_examples)
        bounds.append((start, stop))
    return BatchPlan(order.astype(np.int64, copy=False), tuple(bounds))


def check_xy(x: NDArray[np.float32], y: NDArray[np.int64]) -> None:
    """Fail early with a message naming the mismatch instead of deep inside a backend."""
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    if y.shape[0] == 0:
        raise ValueError("no examples given")


def check_flat(flat: NDArray[np.float32], size: int, what: str) -> None:
    """Flat vectors cross layer boundaries; a wrong length must never be silently reshaped."""
    if flat.ndim != 1 or flat.shape[0] != size:
        raise ValueError(f"{what} has shape {flat.shape}, model needs ({size},)")
