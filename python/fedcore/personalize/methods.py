"""The three personalizations: each starts from the global weights and returns one client's own weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.compression import Vector
from fedcore.data.dataset import Dataset
from fedcore.personalize.frozen import fit_masked
from fedcore.personalize.spec import PersonalizeSpec
from fedcore.personalize.split import head_mask

# (adapter, the client's train split, global weights, seed) -> the client's personalized weights
Personalizer = Callable[[ModelAdapter, Dataset, Vector, int], Vector]


def finetune(adapter: ModelAdapter, data: Dataset, global_weights: Vector, config: TrainConfig) -> Vector:
    """Plain local training from the global model: the baseline every other method must beat."""
    adapter.set_weights(global_weights)
    if len(data):
        adapter.fit(data.x, data.y, config)
    return adapter.get_weights()


def fedrep(
    adapter: ModelAdapter,
    data: Dataset,
    global_weights: Vector,
    config: TrainConfig,
    head: NDArray[np.bool_],
    body_epochs: int = 0,
) -> Vector:
    """FedRep's local update (Collins et al. 2021): head epochs on a frozen body, then body epochs.

    With `body_epochs=0` this is FedRep/FedPer evaluation: a local head on the shared global body.
    """
    adapter.set_weights(global_weights)
    fit_masked(adapter, data, config, head)
    if body_epochs:
        fit_masked(adapter, data, replace(config, epochs=body_epochs, seed=config.seed + 1), ~head)
    return adapter.get_weights()


def ditto(
    adapter: ModelAdapter, data: Dataset, global_weights: Vector, config: TrainConfig, lam: float
) -> Vector:
    """Ditto's personal model (Li et al. 2021): min F_k(v) + lam/2 ||v - w_global||^2 from v = w_global.

    The backends' FedProx term pulls toward the weights at fit start, which are w_global here, so the
    prox centre is exactly Ditto's. This is Ditto's personal step run once on the final global model,
    not the variant that interleaves it with every round the client takes part in.
    """
    return finetune(adapter, data, global_weights, replace(config, prox_mu=lam))


def make_personalizer(
    spec: PersonalizeSpec, train: TrainConfig, head_names: Sequence[str] | None = None
) -> Personalizer:
    """Bind a spec to the run's local training settings; `train.epochs` applies where the spec names none."""
    epochs = spec.epochs if spec.epochs is not None else train.epochs
    base = replace(train, epochs=epochs, prox_mu=0.0, max_steps=None)

    def run(adapter: ModelAdapter, data: Dataset, global_weights: Vector, seed: int) -> Vector:
        config = replace(base, seed=seed)
        if spec.method == "finetune":
            return finetune(adapter, data, global_weights, config)
        if spec.method == "ditto":
            return ditto(adapter, data, global_weights, config, spec.lam)
        head = head_mask(adapter.layout, head_names)
        return fedrep(adapter, data, global_weights, config, head, spec.body_epochs)

    return run
