"""The built-in torch MLP in numpy: torch's initial weights, torch's training, and no torch import."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fedcore.backends import TrainConfig, make_adapter  # noqa: E402
from fedcore.backends.batched_torch import StackedFit, fit_stacked  # noqa: E402
from fedcore.backends.models import torch_mlp_without_torch  # noqa: E402
from fedcore.backends.stacked_mlp import NumpyMLP  # noqa: E402
from fedcore.backends.torch_backend import TorchAdapter  # noqa: E402
from fedcore.config import FLConfig  # noqa: E402
from fedcore.data import load_digits_dataset  # noqa: E402
from fedcore.sim.workers import build_model, load_data, needs_torch  # noqa: E402

RTOL = 1e-5


@pytest.mark.parametrize("seed", [0, 7, 2**31 + 3, 2**40 + 1])
@pytest.mark.parametrize("model", ["mlp", "logreg"])
def test_initial_weights_are_torchs_bit_for_bit(model: str, seed: int) -> None:
    torch_model = make_adapter("torch", model, 64, 10, seed=seed)
    twin = torch_mlp_without_torch(model, 64, 10, seed=seed)
    assert twin.layout == torch_model.layout  # same names ("1.weight", ...), shapes and offsets
    assert np.array_equal(twin.get_weights(), torch_model.get_weights())


def test_training_and_evaluation_match_torchs() -> None:
    digits = load_digits_dataset()
    x, y = digits.x[:45], digits.y[:45]
    reference = make_adapter("torch", "mlp", 64, 10, seed=3)
    twin = torch_mlp_without_torch("mlp", 64, 10, seed=3)
    start = twin.get_weights()
    control = np.random.default_rng(0).normal(0, 0.01, start.size).astype(np.float32)
    config = TrainConfig(epochs=3, lr=0.1, batch_size=8, momentum=0.5, weight_decay=1e-3, prox_mu=0.1, seed=4)
    alone = reference.fit(x, y, config, control=control)
    fit = twin.fit(x, y, config, control=control)
    update, update_torch = twin.get_weights() - start, reference.get_weights() - start
    assert np.linalg.norm(update - update_torch) <= RTOL * np.linalg.norm(update_torch)
    assert (fit.num_steps, fit.num_examples) == (alone.num_steps, alone.num_examples)
    assert fit.loss == pytest.approx(alone.loss, rel=RTOL)
    scored, scored_torch = twin.evaluate(digits.x, digits.y), reference.evaluate(digits.x, digits.y)
    assert scored.accuracy == scored_torch.accuracy
    assert scored.loss == pytest.approx(scored_torch.loss, rel=RTOL)


def test_a_default_simulation_runs_without_importing_torch() -> None:
    script = (
        "import sys\n"
        "from fedcore.config import FLConfig\n"
        "from fedcore.sim import simulate\n"
        "result = simulate(FLConfig(rounds=2))\n"
        "assert len(result.records) == 2\n"
        "print('torch' in sys.modules)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "False"


@pytest.mark.parametrize(
    "change",
    [
        {"vectorize": False},
        {"model": "cnn1d", "dataset": "mnist1d"},
        {"personalize": "finetune:1"},
        {"local_head": True, "personalize": "fedrep"},
        {"dp": "local:1.0,1.0"},
    ],
    ids=["one-by-one", "cnn", "personalized", "local-head", "dp-sgd"],
)
def test_jobs_that_need_torch_get_the_torch_model(change: dict[str, object]) -> None:
    config = replace(FLConfig(clients=10, per_round=2), **change)  # type: ignore[arg-type]
    assert needs_torch(config)


def test_the_default_job_gets_the_numpy_model() -> None:
    config = FLConfig(clients=10, per_round=2)
    assert not needs_torch(config)
    assert isinstance(build_model(config, load_data(config)), NumpyMLP)
    assert isinstance(build_model(replace(config, vectorize=False), load_data(config)), TorchAdapter)


def test_linear_layers_without_a_relu_between_them_train_as_written() -> None:
    """Not the ReLU MLP the numpy path assumes: it goes through torch.func and stays linear."""
    linear = TorchAdapter(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 20), torch.nn.Linear(20, 10))
    )
    digits = load_digits_dataset()
    start = linear.get_weights()
    fits = [
        StackedFit(start, digits.x[a : a + 30], digits.y[a : a + 30], TrainConfig(seed=a)) for a in (0, 30)
    ]
    for fit, (weights, _) in zip(fits, fit_stacked(linear, fits), strict=True):
        linear.set_weights(start)
        linear.fit(fit.x, fit.y, fit.config)
        alone = linear.get_weights()
        assert np.linalg.norm(weights - alone) <= RTOL * np.linalg.norm(alone - start)
