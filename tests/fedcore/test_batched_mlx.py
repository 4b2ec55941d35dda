"""mlx MLP clients trained together end where each would end training alone with MLXAdapter.fit."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("mlx.core")

from fedcore.backends import TrainConfig, make_adapter
from fedcore.backends.batched_mlx import fit_stacked, stacking_refusal
from fedcore.backends.mlx_backend import MLXAdapter
from fedcore.backends.stacked_mlp import StackedFit
from fedcore.client.batched import batched_trainer_for
from fedcore.config import FLConfig
from fedcore.data import load_digits_dataset
from fedcore.sim import simulate

RTOL = 1e-5
SIZES = [37, 8, 3, 61, 20]


def fits_for(adapter: MLXAdapter, configs: list[TrainConfig], scaffold: bool) -> list[StackedFit]:
    digits = load_digits_dataset()
    starts = np.cumsum([0, *SIZES])
    rng = np.random.default_rng(1)
    start = adapter.get_weights()
    out = []
    for k, ((a, b), config) in enumerate(zip(itertools.pairwise(starts), configs, strict=True)):
        weights = (start + rng.normal(0, 0.05, start.size)).astype(np.float32)
        control = rng.normal(0, 0.01, start.size).astype(np.float32) if scaffold and k % 2 else None
        out.append(StackedFit(weights, digits.x[a:b], digits.y[a:b], config, control))
    return out


@pytest.mark.parametrize(
    ("change", "scaffold"),
    [({}, False), ({"prox_mu": 0.5}, False), ({}, True), ({"momentum": 0.9, "weight_decay": 1e-3}, False)],
    ids=["fedavg", "fedprox", "scaffold", "momentum-decay"],
)
def test_each_client_ends_as_if_it_trained_alone(change: dict[str, float], scaffold: bool) -> None:
    adapter = make_adapter("mlx", "mlp", 64, 10, seed=0)
    assert isinstance(adapter, MLXAdapter)
    assert stacking_refusal(adapter) is None
    configs = [  # stragglers: each client its own epochs, lr and batch size
        replace(TrainConfig(epochs=1 + s % 3, lr=0.05 * (1 + s), batch_size=4 + 2 * s, seed=s), **change)
        for s in range(len(SIZES))
    ]
    fits = fits_for(adapter, configs, scaffold)
    for fit, (weights, result) in zip(fits, fit_stacked(adapter, fits), strict=True):
        adapter.set_weights(fit.weights)
        alone = adapter.fit(fit.x, fit.y, fit.config, control=fit.control)
        update, update_alone = weights - fit.weights, adapter.get_weights() - fit.weights
        assert np.linalg.norm(update - update_alone) <= RTOL * np.linalg.norm(update_alone)
        assert (result.num_steps, result.loss) == (alone.num_steps, pytest.approx(alone.loss, rel=RTOL))


def test_the_mlx_cnn_trains_one_client_at_a_time() -> None:
    cnn = make_adapter("mlx", "cnn1d", 40, 10, seed=0)
    assert stacking_refusal(cnn) == "Conv1dNet is not the built-in mlx MLP"
    assert batched_trainer_for(FLConfig(backend="mlx", model="cnn1d"), cnn) is None


def test_a_batched_mlx_simulation_ends_at_the_sequential_weights() -> None:
    job = FLConfig(backend="mlx", clients=12, per_round=4, rounds=3, local_epochs=2, workers=0, seed=5)
    one_by_one = simulate(replace(job, vectorize=False))
    batched = simulate(replace(job, vectorize=True))
    assert np.allclose(batched.weights, one_by_one.weights, rtol=0, atol=1e-5)
