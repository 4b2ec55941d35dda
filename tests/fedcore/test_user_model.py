"""Your own model in a run: `simulate(config, model_fn=...)`, the hooks, and `--model pkg:fn`."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

import fedcore
from fedcore.backends import TrainConfig
from fedcore.backends.user import CustomAdapter, UserModel, import_model_fn
from fedcore.cli import main
from fedcore.config import FLConfig
from fedcore.sim import simulate

# digits: 64 features, 10 classes; the built-in MLP is Flatten, 64-100-100-10 with ReLUs
SMALL = FLConfig(clients=8, per_round=3, rounds=3, local_epochs=1, workers=0, vectorize=False, seed=3)


def my_mlp() -> torch.nn.Module:
    """The same shape as the built-in `mlp`, written the way a user would."""
    return torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 100),
        torch.nn.ReLU(),
        torch.nn.Linear(100, 10),
    )


def my_logreg() -> torch.nn.Module:
    return torch.nn.Linear(64, 10)


def train_with_adam(
    model: torch.nn.Module, x: NDArray[np.float32], y: NDArray[np.int64], config: TrainConfig
) -> float:
    """A user's own local training: Adam, one pass, mean loss back."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    generator = torch.Generator().manual_seed(config.seed)
    for _ in range(config.epochs):
        for idx in torch.randperm(len(y), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(torch.from_numpy(x[idx])), torch.from_numpy(y[idx])
            )
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


def always_half(model: torch.nn.Module, x: NDArray[np.float32], y: NDArray[np.int64]) -> tuple[float, float]:
    del model, x, y
    return 1.0, 0.5


def test_a_user_torch_mlp_gives_the_built_in_mlps_numbers() -> None:
    built_in = simulate(SMALL)
    own = simulate(SMALL, model_fn=my_mlp)
    assert [r.accuracy for r in own.records] == [r.accuracy for r in built_in.records]
    assert [r.loss for r in own.records] == [r.loss for r in built_in.records]
    np.testing.assert_array_equal(own.weights, built_in.weights)
    assert own.summary["model"].endswith(":my_mlp")


def test_the_same_model_by_import_path_in_worker_processes_gives_the_same_numbers() -> None:
    in_process = simulate(SMALL, model_fn=my_mlp)
    config = FLConfig(**{**SMALL.to_dict(), "model": "test_user_model:my_mlp", "workers": 2})
    pooled = simulate(config)
    assert [r.accuracy for r in pooled.records] == [r.accuracy for r in in_process.records]


def test_a_module_level_model_fn_reaches_worker_processes() -> None:
    config = FLConfig(**{**SMALL.to_dict(), "workers": 2})
    pooled = simulate(config, model_fn=my_logreg)
    alone = simulate(SMALL, model_fn=my_logreg)
    assert [r.accuracy for r in pooled.records] == [r.accuracy for r in alone.records]
    assert pooled.records[-1].accuracy > 0.3


def test_a_lambda_cannot_go_to_workers_and_says_what_to_do() -> None:
    config = FLConfig(**{**SMALL.to_dict(), "workers": 2})
    with pytest.raises(ValueError, match="define them at module level"):
        simulate(config, model_fn=lambda: torch.nn.Linear(64, 10))


def test_left_to_the_default_a_model_that_cannot_pickle_trains_in_process() -> None:
    config = FLConfig(**{**SMALL.to_dict(), "workers": None, "rounds": 1})
    result = simulate(config, model_fn=lambda: torch.nn.Linear(64, 10))
    assert result.summary["timing"]["workers"] == 1  # the in-process pool


def test_train_and_eval_hooks_replace_the_sgd_loop_and_the_scoring() -> None:
    adam = simulate(SMALL, model_fn=my_logreg, train_fn=train_with_adam)
    sgd = simulate(SMALL, model_fn=my_logreg)
    assert [r.accuracy for r in adam.records] != [r.accuracy for r in sgd.records]
    assert adam.records[-1].accuracy > 0.3
    scored = simulate(SMALL, model_fn=my_logreg, eval_fn=always_half)
    assert {r.accuracy for r in scored.records} == {0.5}


def test_user_models_train_one_client_at_a_time_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    config = FLConfig(**{**SMALL.to_dict(), "vectorize": None})
    with caplog.at_level(logging.INFO, logger="fedcore.client.batched"):
        simulate(config, model_fn=my_mlp)
    notes = [r.getMessage() for r in caplog.records if "one at a time" in r.getMessage()]
    assert len(notes) == 1
    assert "your own model" in notes[0]
    with pytest.raises(ValueError, match="cannot train batched: your own model"):
        simulate(FLConfig(**{**SMALL.to_dict(), "vectorize": True}), model_fn=my_mlp)


def test_example_level_dp_trains_your_torch_model_with_dp_sgd() -> None:
    config = FLConfig(**{**SMALL.to_dict(), "rounds": 1, "dp": "local:1.0,0.8"})
    result = simulate(config, model_fn=my_logreg)
    assert result.records[0].local_epsilon is not None


def test_a_scikit_learn_estimator_with_partial_fit_is_a_model() -> None:
    from sklearn.linear_model import Perceptron, SGDClassifier

    for estimator in (SGDClassifier, Perceptron):
        result = simulate(SMALL, model_fn=estimator)
        assert result.records[-1].accuracy > 0.3, estimator.__name__


def test_an_mlx_module_is_a_model() -> None:
    mlx_nn = pytest.importorskip("mlx.nn")

    def make() -> object:
        return mlx_nn.Linear(64, 10)

    result = simulate(SMALL, model_fn=make)
    assert result.records[-1].accuracy > 0.3
    again = simulate(SMALL, model_fn=make)
    assert [r.accuracy for r in again.records] == [r.accuracy for r in result.records]


def test_what_model_fn_returns_must_be_a_model() -> None:
    with pytest.raises(ValueError, match="model_fn returned a str"):
        simulate(SMALL, model_fn=lambda: "a model")
    with pytest.raises(ValueError, match="need your own model"):
        simulate(SMALL, train_fn=train_with_adam)


def test_import_paths_say_what_is_wrong() -> None:
    assert import_model_fn("test_user_model:my_mlp") is my_mlp
    with pytest.raises(ValueError, match="not an import path"):
        import_model_fn("my_mlp")
    with pytest.raises(ValueError, match=r"cannot import .no_such_pkg\.models.: No module named"):
        import_model_fn("no_such_pkg.models:net")
    with pytest.raises(ValueError, match="has no 'nothing'"):
        import_model_fn("test_user_model:nothing")
    with pytest.raises(ValueError, match="names a FLConfig"):
        import_model_fn("test_user_model:SMALL")


def test_every_process_builds_the_same_initial_weights() -> None:
    first = UserModel(my_mlp).build(64, 10, seed=7)
    second = UserModel("test_user_model:my_mlp").build(64, 10, seed=7)
    other_seed = UserModel(my_mlp).build(64, 10, seed=8)
    assert isinstance(first, CustomAdapter)
    np.testing.assert_array_equal(first.get_weights(), second.get_weights())
    assert not np.array_equal(first.get_weights(), other_seed.get_weights())


def test_cuda_asked_for_and_absent_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    code = main(["sim", "--device", "cuda", "--rounds", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "fedcore: error: --device cuda: torch sees no CUDA device here; use --device cpu\n"


def test_the_cli_takes_an_import_path_and_a_config_file_can_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_models.py").write_text(
        textwrap.dedent(
            """
            import torch

            def tiny():
                return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
            """
        )
    )
    monkeypatch.chdir(tmp_path)  # found in the working directory, as `python -m` would find it
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "my_models", None)  # nothing cached from another test
    del sys.modules["my_models"]
    (tmp_path / "run.toml").write_text('model = "my_models:tiny"\nclients = 6\nper_round = 2\nrounds = 2\n')
    assert main(["sim", "--config", "run.toml", "--workers", "0", "--out", "run"]) == 0
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"model": "my_models:tiny"' in summary
    capsys.readouterr()
    assert main(["sim", "--model", "my_models:nope", "--rounds", "1", "--out", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedcore: error: --model my_models:nope: module 'my_models' has no 'nope'")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_fedcore_simulate_is_the_same_function() -> None:
    assert fedcore.simulate is simulate
