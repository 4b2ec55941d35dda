"""Training a job's clients together: the part of a client's round that a simulation worker can batch."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from fedcore.backends.base import FitResult, ModelAdapter, TrainConfig
from fedcore.config import FLConfig
from fedcore.uplink.base import Vector

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientTraining:
    """Where one client's local training starts: weights, data, settings, SCAFFOLD's correction."""

    start_weights: Vector
    x: np.ndarray
    y: np.ndarray
    config: TrainConfig
    correction: Vector | None = None


@dataclass(frozen=True)
class Trained:
    """One client's local training as the rest of its round needs it."""

    weights: Vector
    num_examples: int
    num_steps: int
    loss: float
    train_s: float
    metrics: dict[str, float] = field(default_factory=dict)  # what training reports (DP-SGD's epsilon)
    stages: dict[str, Any] = field(default_factory=dict)  # state training keeps (DP-SGD's step count)


class BatchedTrainer:
    """Trains many clients of one model at once (fedcore.backends.batched_torch and batched_mlx).

    A client's `train_s` is its share of the batched wall time: the job's time divided by its clients.
    """

    def train(self, adapter: ModelAdapter, clients: Sequence[ClientTraining]) -> list[Trained]:
        from fedcore.backends.stacked_mlp import NumpyMLP, StackedFit, fit_stacked_mlp

        fit_stacked: Callable[[Sequence[StackedFit]], list[tuple[Vector, FitResult]]]
        if isinstance(adapter, NumpyMLP):
            fit_stacked = partial(fit_stacked_mlp, adapter.layout)
        elif _is_mlx(adapter):
            from fedcore.backends.batched_mlx import fit_stacked as fit_mlx
            from fedcore.backends.mlx_backend import MLXAdapter

            assert isinstance(adapter, MLXAdapter)
            fit_stacked = partial(fit_mlx, adapter)
        else:
            from fedcore.backends.batched_torch import fit_stacked as fit_torch
            from fedcore.backends.torch_backend import TorchAdapter

            if not isinstance(adapter, TorchAdapter):
                raise TypeError(f"batched training needs a torch MLP, got {type(adapter).__name__}")
            fit_stacked = partial(fit_torch, adapter)
        start = time.perf_counter()
        training = [i for i, c in enumerate(clients) if c.y.size]
        fits = [
            StackedFit(c.start_weights, c.x, c.y, c.config, c.correction)
            for c in (clients[i] for i in training)
        ]
        results = dict(zip(training, fit_stacked(fits), strict=True))
        share = (time.perf_counter() - start) / len(clients)
        trained = []
        for i, client in enumerate(clients):
            if i in results:
                weights, fit = results[i]
                trained.append(Trained(weights, fit.num_examples, fit.num_steps, fit.loss, share))
            else:  # no data: nothing trains, as in ClientApp.handle
                trained.append(Trained(client.start_weights.copy(), 0, 0, 0.0, share))
        return trained


def _is_mlx(adapter: ModelAdapter) -> bool:
    """An mlx model can only exist once mlx_backend is imported; a torch job never imports mlx to ask."""
    backend = sys.modules.get("fedcore.backends.mlx_backend")
    return backend is not None and isinstance(adapter, backend.MLXAdapter)


def batched_trainer_for(config: FLConfig, adapter: ModelAdapter) -> BatchedTrainer | None:
    """The trainer for this run's clients, or None (with a one-line note) when they must train one by one.

    `config.vectorize`: None trains batched where the model allows, False never, True insists.
    """
    if config.vectorize is False:
        return None
    reason = _refusal(config, adapter)
    if reason is None:
        return BatchedTrainer()
    if config.vectorize:
        raise ValueError(f"vectorize=True, but clients cannot train batched: {reason}")
    _log.info("fedcore: training clients one at a time (%s)", reason)
    return None


def job_refusal(config: FLConfig) -> str | None:
    """Why this job's clients must train one by one whatever the model (None: the model decides)."""
    if config.local_head:
        return "a local head trains head and body in turn"
    if config.ditto_rounds:
        return "Ditto trains a personal model in rounds"
    if config.dp is not None and not config.dp.user_level:
        return "DP-SGD clips and noises each example's gradient"
    if config.backend not in ("torch", "mlx"):
        return f"the {config.backend} backend"
    return None


def _refusal(config: FLConfig, adapter: ModelAdapter) -> str | None:
    from fedcore.backends.user import CustomAdapter

    if isinstance(adapter, CustomAdapter):
        return f"your own model {adapter.spec.name} (batched training stacks only the built-in MLP)"
    reason = job_refusal(config)
    if reason is not None:
        return reason
    from fedcore.backends.stacked_mlp import NumpyMLP

    if isinstance(adapter, NumpyMLP):
        return None
    if config.backend == "mlx":
        from fedcore.backends.batched_mlx import stacking_refusal as mlx_refusal

        return mlx_refusal(adapter)
    from fedcore.backends.batched_torch import stacking_refusal

    return stacking_refusal(adapter)
