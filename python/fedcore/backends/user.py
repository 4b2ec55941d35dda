"""Your own model in a run: `model_fn()` returns a torch, mlx or scikit-learn model; fedcore adapts it.

The model is a client-side adapter like the built-in ones: every process (the server's evaluator and each
worker or client) calls `model_fn()` once, with torch's and mlx's generators seeded from the run's seed
exactly as the built-in models are built, so all of them start from the same weights.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.base import EvalResult, FitResult, ModelAdapter, TrainConfig
from fedcore.backends.batches import check_xy, count_steps
from fedcore.layout import ParamLayout

ModelFn: TypeAlias = Callable[[], Any]
# train_fn(model, x, y, config) trains in place and returns the mean loss (or a full FitResult).
TrainFn: TypeAlias = Callable[[Any, NDArray[np.float32], NDArray[np.int64], TrainConfig], "FitResult | float"]
# eval_fn(model, x, y) returns (loss, accuracy) (or a full EvalResult).
EvalFn: TypeAlias = Callable[
    [Any, NDArray[np.float32], NDArray[np.int64]], "EvalResult | tuple[float, float]"
]

DEVICES = ("cpu", "cuda", "mps")
_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def is_import_path(text: str) -> bool:
    """`package.module:function` (what `--model` takes besides the built-in names)."""
    return bool(_IMPORT_PATH.match(text))


def import_model_fn(path: str) -> ModelFn:
    """The function an import path names; the current directory is searched too, as `python -m` does."""
    if not is_import_path(path):
        raise ValueError(f"{path!r} is not an import path MODULE:FUNCTION (e.g. my_pkg.models:make_net)")
    module_name, _, attribute = path.partition(":")
    try:
        module = _import(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ValueError(f"module {module_name!r} has no {attribute!r} (from {path!r})")
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"{path!r} names a {type(found).__name__}, not a function that returns a model")
    fn: ModelFn = found
    return fn


def _import(module_name: str) -> Any:
    here = os.getcwd()
    if importlib.util.find_spec(module_name.split(".")[0]) is None and here not in sys.path:
        sys.path.append(here)  # `fedcore` as a console script does not search the working directory
    return importlib.import_module(module_name)


def check_device(device: str) -> None:
    """Refuse a device torch cannot use on this machine, before any model is built."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "cpu":
        return
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA device here; use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps: torch sees no Apple MPS device here; use --device cpu")


@dataclass(frozen=True)
class UserModel:
    """Your model and optional hooks, as it travels to worker processes (so it must pickle).

    `make` is a function defined at module level or an import path `pkg.mod:fn`; a lambda or closure
    works only in-process (workers=0).
    """

    make: ModelFn | str
    train_fn: TrainFn | None = None
    eval_fn: EvalFn | None = None

    @property
    def name(self) -> str:
        if isinstance(self.make, str):
            return self.make
        return f"{getattr(self.make, '__module__', '?')}:{getattr(self.make, '__qualname__', '?')}"

    def build(self, in_features: int, n_classes: int, seed: int, device: str = "cpu") -> ModelAdapter:
        """Call `model_fn()` under the run's seed and wrap what it returns (torch models go to `device`)."""
        make = import_model_fn(self.make) if isinstance(self.make, str) else self.make
        model = _seeded_call(make, seed)
        return CustomAdapter(_adapter_for(model, in_features, n_classes, seed, device), model, self)

    def pickle_error(self) -> str | None:
        """Why this cannot go to a worker process (None when it can)."""
        try:
            pickle.dumps(self)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            return str(exc)
        return None

    def check_picklable(self) -> None:
        """Worker processes get the model by pickle: say how to fix it when it cannot go."""
        exc = self.pickle_error()
        if exc is not None:
            raise ValueError(
                f"model_fn/train_fn/eval_fn must reach the worker processes: define them at module level "
                f"(or pass an import path 'pkg.mod:fn'), or run with workers=0 ({exc})"
            ) from None


def _seeded_call(make: ModelFn, seed: int) -> Any:
    """Build under the seed the built-in models use: torch's generator forked and seeded, mlx's seeded."""
    torch = sys.modules.get("torch")
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        mx.random.seed(seed)
    if torch is None:
        return make()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return make()


def _adapter_for(model: Any, in_features: int, n_classes: int, seed: int, device: str) -> ModelAdapter:
    """The framework's own adapter for what `model_fn` returned."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        from fedcore.backends.torch_backend import TorchAdapter

        check_device(device)
        return TorchAdapter(model, device=device)
    mlx_base = sys.modules.get("mlx.nn.layers.base")
    if mlx_base is not None and isinstance(model, mlx_base.Module):
        from fedcore.backends.mlx_backend import MLXAdapter

        return MLXAdapter(model)
    if hasattr(model, "partial_fit"):
        from fedcore.backends.sklearn_backend import SklearnAdapter

        return SklearnAdapter(model, in_features, np.arange(n_classes), seed=seed)
    if isinstance(model, ModelAdapter):
        return model
    raise ValueError(
        f"model_fn returned a {type(model).__name__}; expected a torch.nn.Module, an mlx.nn.Module, "
        "a scikit-learn estimator with partial_fit, or a fedcore ModelAdapter"
    )


class CustomAdapter:
    """A model from `model_fn`: its framework's adapter, with your `train_fn` / `eval_fn` in front.

    `model` is the object `model_fn` returned; the hooks get it as their first argument. Training one
    client at a time is the only mode (batched training stacks only the built-in MLP).
    """

    def __init__(self, inner: ModelAdapter, model: Any, spec: UserModel) -> None:
        self.inner = inner
        self.model = model
        self.spec = spec

    @property
    def layout(self) -> ParamLayout:
        return self.inner.layout

    @property
    def module(self) -> Any:
        """The torch module, for what needs one (DP-SGD, which trains it without your train_fn); else None."""
        torch = sys.modules.get("torch")
        module = getattr(self.inner, "module", None)
        return module if torch is not None and isinstance(module, torch.nn.Module) else None

    def get_weights(self) -> NDArray[np.float32]:
        return self.inner.get_weights()

    def set_weights(self, flat: NDArray[np.float32]) -> None:
        self.inner.set_weights(flat)

    def fit(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        config: TrainConfig,
        control: NDArray[np.float32] | None = None,
    ) -> FitResult:
        """Your train_fn if there is one (it sees config.prox_mu for FedProx), else the built-in SGD loop."""
        train_fn = self.spec.train_fn
        if train_fn is None:
            return self.inner.fit(x, y, config, control=control)
        if control is not None:
            raise ValueError("a train_fn cannot apply SCAFFOLD's control correction; use another strategy")
        check_xy(x, y)
        result = train_fn(self.model, x, y, config)
        if isinstance(result, FitResult):
            return result
        return FitResult(num_examples=len(y), num_steps=count_steps(len(y), config), loss=float(result))

    def evaluate(self, x: NDArray[np.float32], y: NDArray[np.int64]) -> EvalResult:
        eval_fn = self.spec.eval_fn
        if eval_fn is None:
            return self.inner.evaluate(x, y)
        check_xy(x, y)
        result = eval_fn(self.model, x, y)
        if isinstance(result, EvalResult):
            return result
        loss, accuracy = result
        return EvalResult(num_examples=len(y), loss=float(loss), accuracy=float(accuracy))
