"""Clients trained together as one stacked model end where each would end training alone."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedcore.backends import TrainConfig, make_adapter  # noqa: E402
from fedcore.backends.batched_torch import StackedFit, fit_stacked, stacking_refusal  # noqa: E402
from fedcore.backends.torch_backend import TorchAdapter  # noqa: E402
from fedcore.client.batched import batched_trainer_for  # noqa: E402
from fedcore.config import FLConfig  # noqa: E402
from fedcore.data import load_digits_dataset  # noqa: E402
from fedcore.sim import simulate  # noqa: E402

RTOL = 1e-5  # batched matmuls sum in another order than one client's; nothing else may differ


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def shards(sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Uneven client shards of the digits, so last batches are short and clients stop at different steps."""
    digits = load_digits_dataset()
    starts = np.cumsum([0, *sizes])
    return [(digits.x[a:b], digits.y[a:b]) for a, b in itertools.pairwise(starts)]


def sequential(adapter: TorchAdapter, fit: StackedFit) -> tuple[np.ndarray, float, int]:
    adapter.set_weights(fit.weights)
    result = adapter.fit(fit.x, fit.y, fit.config, control=fit.control)
    return adapter.get_weights(), result.loss, result.num_steps


def assert_each_client_as_alone(adapter: TorchAdapter, fits: list[StackedFit]) -> None:
    stacked = fit_stacked(adapter, fits)
    for fit, (weights, result) in zip(fits, stacked, strict=True):
        alone, loss, steps = sequential(adapter, fit)
        update, update_alone = weights - fit.weights, alone - fit.weights
        assert result.num_steps == steps
        assert result.num_examples == len(fit.y)
        assert np.linalg.norm(update - update_alone) <= RTOL * np.linalg.norm(update_alone)
        assert result.loss == pytest.approx(loss, rel=RTOL)


SIZES = [37, 8, 3, 61, 20]


def fits_with(
    configs: list[TrainConfig], controls: list[np.ndarray | None] | None = None
) -> list[StackedFit]:
    adapter = make_adapter("torch", "mlp", 64, 10, seed=0)
    start = adapter.get_weights()
    rng = np.random.default_rng(1)
    out = []
    for k, ((x, y), config) in enumerate(zip(shards(SIZES), configs, strict=True)):
        weights = (start + rng.normal(0, 0.05, start.size)).astype(np.float32)  # each client its own start
        control = controls[k] if controls is not None else None
        out.append(StackedFit(weights, x, y, config, control))
    return out


@pytest.fixture
def adapter() -> TorchAdapter:
    made = make_adapter("torch", "mlp", 64, 10, seed=0)
    assert isinstance(made, TorchAdapter)
    return made


def test_fedavg_clients_each_with_their_own_shuffling_and_short_last_batch(adapter: TorchAdapter) -> None:
    configs = [TrainConfig(epochs=3, lr=0.1, batch_size=8, seed=s) for s in range(len(SIZES))]
    assert_each_client_as_alone(adapter, fits_with(configs))


def test_fedprox_pulls_each_client_towards_its_own_start(adapter: TorchAdapter) -> None:
    configs = [TrainConfig(epochs=2, lr=0.1, batch_size=8, prox_mu=0.5, seed=s) for s in range(len(SIZES))]
    assert_each_client_as_alone(adapter, fits_with(configs))


def test_scaffold_corrects_each_client_with_its_own_control(adapter: TorchAdapter) -> None:
    rng = np.random.default_rng(2)
    controls: list[np.ndarray | None] = [
        rng.normal(0, 0.01, adapter.layout.size).astype(np.float32) if k % 2 else None
        for k in range(len(SIZES))
    ]
    configs = [TrainConfig(epochs=2, lr=0.1, batch_size=8, seed=s) for s in range(len(SIZES))]
    assert_each_client_as_alone(adapter, fits_with(configs, controls))


def test_stragglers_with_their_own_epochs_lrs_and_batch_sizes(adapter: TorchAdapter) -> None:
    configs = [
        TrainConfig(epochs=1 + s % 4, lr=0.05 * (1 + s), batch_size=4 + 2 * s, seed=s)
        for s in range(len(SIZES))
    ]
    assert_each_client_as_alone(adapter, fits_with(configs))


def test_momentum_weight_decay_and_a_step_cap(adapter: TorchAdapter) -> None:
    configs = [
        TrainConfig(epochs=3, lr=0.05, batch_size=8, momentum=0.9 * (s % 2), weight_decay=1e-3 * s, seed=s)
        for s in range(len(SIZES))
    ]
    configs[0] = replace(configs[0], max_steps=5)
    assert_each_client_as_alone(adapter, fits_with(configs))


def test_logistic_regression_stacks_too() -> None:
    logreg = make_adapter("torch", "logreg", 64, 10, seed=0)
    assert isinstance(logreg, TorchAdapter)
    fits = [
        StackedFit(logreg.get_weights(), x, y, TrainConfig(epochs=2, seed=i))
        for i, (x, y) in enumerate(shards([9, 30]))
    ]
    assert_each_client_as_alone(logreg, fits)


def test_a_diverging_client_does_not_touch_the_others(adapter: TorchAdapter) -> None:
    configs = [TrainConfig(epochs=2, lr=0.1, batch_size=8, seed=s) for s in range(len(SIZES))]
    fits = fits_with(configs)
    fits[1] = replace(fits[1], config=replace(configs[1], lr=1e30))
    stacked = fit_stacked(adapter, fits)
    assert not np.isfinite(stacked[1][0]).all()
    for k in (0, 2, 3, 4):
        alone, _, _ = sequential(adapter, fits[k])
        assert np.allclose(stacked[k][0], alone, rtol=0, atol=1e-5)


def test_a_cnn_stacks_through_torch_func(adapter: TorchAdapter) -> None:
    cnn = make_adapter("torch", "cnn1d", 64, 10, seed=0)  # the digits' 64 pixels as a signal
    assert isinstance(cnn, TorchAdapter)
    assert stacking_refusal(cnn) is None
    start = cnn.get_weights()
    configs = [
        TrainConfig(
            epochs=1 + s % 3, lr=0.05, batch_size=4 + 2 * s, momentum=0.5 * (s % 2), prox_mu=0.1, seed=s
        )
        for s in range(len(SIZES))
    ]
    fits = [StackedFit(start, x, y, c) for (x, y), c in zip(shards(SIZES), configs, strict=True)]
    assert_each_client_as_alone(cnn, fits)


def dropout_mlp() -> TorchAdapter:
    layers = [torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.Dropout(0.2), torch.nn.Linear(32, 10)]
    return TorchAdapter(torch.nn.Sequential(*layers))


def test_a_model_with_randomness_is_refused_with_a_reason() -> None:
    assert stacking_refusal(dropout_mlp()) == "a Dropout layer"
    with pytest.raises(ValueError, match="cannot train clients stacked"):
        fit_stacked(dropout_mlp(), [])


def test_the_config_switch_decides_and_insisting_on_an_impossible_job_fails() -> None:
    mlp = make_adapter("torch", "mlp", 64, 10, seed=0)
    assert batched_trainer_for(FLConfig(), mlp) is not None
    assert batched_trainer_for(FLConfig(vectorize=False), mlp) is None
    assert batched_trainer_for(FLConfig(), dropout_mlp()) is None  # falls back with a note
    with pytest.raises(ValueError, match="cannot train batched"):
        batched_trainer_for(FLConfig(vectorize=True), dropout_mlp())


TINY = FLConfig(clients=12, per_round=4, rounds=3, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)


@pytest.mark.parametrize(
    "change",
    [{}, {"strategy": "fedprox:0.1"}, {"strategy": "scaffold"}, {"stragglers": 0.5}, {"workers": 2}],
    ids=["fedavg", "fedprox", "scaffold", "stragglers", "two-workers"],
)
def test_a_batched_simulation_ends_at_the_sequential_weights(change: dict[str, object]) -> None:
    job = replace(TINY, **change)  # type: ignore[arg-type]
    one_by_one = simulate(replace(job, vectorize=False))
    batched = simulate(replace(job, vectorize=True))
    assert [r.clients for r in batched.records] == [r.clients for r in one_by_one.records]
    assert np.allclose(batched.weights, one_by_one.weights, rtol=0, atol=1e-5)
    assert [r.accuracy for r in batched.records] == pytest.approx(
        [r.accuracy for r in one_by_one.records], abs=0.01
    )


def test_the_default_job_trains_in_process_and_only_a_very_big_round_gets_workers() -> None:
    assert FLConfig().num_workers == 0
    assert FLConfig(vectorize=False).num_workers == (min(_cores(), 10) if _cores() > 1 else 0)
    assert FLConfig(clients=1000, per_round=100).num_workers == 0  # measured: 98 ms a round, 144 on two
    assert FLConfig(clients=1000, per_round=500).num_workers == (min(_cores(), 3) if _cores() > 1 else 0)


def _cores() -> int:
    import os

    return os.cpu_count() or 1
