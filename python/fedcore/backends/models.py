"""Small built-in models for the built-in datasets, one factory per backend, seeded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fedcore.backends.base import ModelAdapter

if TYPE_CHECKING:
    import torch
    from mlx.nn.layers.base import Module as MLXModule

    from fedcore.backends.sklearn_backend import SklearnAdapter
    from fedcore.backends.stacked_mlp import NumpyMLP

BACKENDS = ("torch", "mlx", "sklearn")
MODELS = ("mlp", "cnn1d", "logreg")
DEFAULT_HIDDEN = (100, 100)

# MNIST-1D paper's CNN: three stride-2 convolutions with 25 channels, then one linear layer.
_CNN_CHANNELS = 25
_CNN_CONVS = ((5, 1), (3, 1), (3, 1))  # (kernel, padding), stride 2 each


def _cnn_out_length(length: int) -> int:
    for kernel, padding in _CNN_CONVS:
        length = (length + 2 * padding - kernel) // 2 + 1
    if length < 1:
        raise ValueError("input too short for the 1-D CNN (needs length >= 4)")
    return length


def torch_mlp(in_features: int, hidden: Sequence[int], n_classes: int, seed: int) -> torch.nn.Module:
    """ReLU MLP that flattens its input first, so it takes [N, ...] arrays of any shape."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        layers: list[torch.nn.Module] = [torch.nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [torch.nn.Linear(width, size), torch.nn.ReLU()]
            width = size
        layers.append(torch.nn.Linear(width, n_classes))
        return torch.nn.Sequential(*layers)


def torch_cnn1d(length: int, n_classes: int, seed: int) -> torch.nn.Module:
    """Takes [N, length] signals (MNIST-1D) and adds the channel axis itself."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        layers: list[torch.nn.Module] = [torch.nn.Unflatten(1, (1, length))]
        channels = 1
        for kernel, padding in _CNN_CONVS:
            layers += [
                torch.nn.Conv1d(channels, _CNN_CHANNELS, kernel, stride=2, padding=padding),
                torch.nn.ReLU(),
            ]
            channels = _CNN_CHANNELS
        layers += [
            torch.nn.Flatten(),
            torch.nn.Linear(_CNN_CHANNELS * _cnn_out_length(length), n_classes),
        ]
        return torch.nn.Sequential(*layers)


def mlx_mlp(in_features: int, hidden: Sequence[int], n_classes: int, seed: int) -> MLXModule:
    """Same architecture as `torch_mlp` (weights are not interchangeable across backends)."""
    from mlx.nn.layers.activations import ReLU
    from mlx.nn.layers.base import Module
    from mlx.nn.layers.containers import Sequential
    from mlx.nn.layers.linear import Linear

    from fedcore.backends.mlx_layers import FlatInput

    layers: list[Module] = []
    width = in_features
    for size in hidden:
        layers += [Linear(width, size), ReLU()]  # type: ignore[no-untyped-call]
        width = size
    layers.append(Linear(width, n_classes))
    model = FlatInput(Sequential(*layers))  # type: ignore[no-untyped-call]
    _seed_mlx_init(model, seed)
    return model


def mlx_cnn1d(length: int, n_classes: int, seed: int) -> MLXModule:
    """Same architecture as `torch_cnn1d`; mlx convolutions are channels-last."""
    from mlx.nn.layers.activations import ReLU
    from mlx.nn.layers.base import Module
    from mlx.nn.layers.containers import Sequential
    from mlx.nn.layers.convolution import Conv1d
    from mlx.nn.layers.linear import Linear

    from fedcore.backends.mlx_layers import Conv1dNet

    layers: list[Module] = []
    channels = 1
    for kernel, padding in _CNN_CONVS:
        layers += [Conv1d(channels, _CNN_CHANNELS, kernel, stride=2, padding=padding), ReLU()]  # type: ignore[no-untyped-call]
        channels = _CNN_CHANNELS
    convs = Sequential(*layers)  # type: ignore[no-untyped-call]
    head = Linear(_CNN_CHANNELS * _cnn_out_length(length), n_classes)
    model = Conv1dNet(convs, head)
    _seed_mlx_init(model, seed)
    return model


def sklearn_mlp(in_features: int, hidden: Sequence[int], n_classes: int, seed: int) -> SklearnAdapter:
    """An SGD-trained MLPClassifier; sklearn models only make sense wrapped, so this returns the adapter."""
    from sklearn.neural_network import MLPClassifier  # type: ignore[import-untyped]

    from fedcore.backends.sklearn_backend import SklearnAdapter

    estimator = MLPClassifier(hidden_layer_sizes=tuple(hidden), solver="sgd", random_state=seed)
    return SklearnAdapter(estimator, in_features, np.arange(n_classes), seed=seed)


def sklearn_logreg(in_features: int, n_classes: int, seed: int) -> SklearnAdapter:
    """Multinomial-ish logistic regression by SGD (one-vs-rest log loss, as SGDClassifier does)."""
    from sklearn.linear_model import SGDClassifier  # type: ignore[import-untyped]

    from fedcore.backends.sklearn_backend import SklearnAdapter

    estimator = SGDClassifier(loss="log_loss", random_state=seed)
    return SklearnAdapter(estimator, in_features, np.arange(n_classes), seed=seed)


def make_adapter(
    backend: str,
    model: str,
    in_features: int,
    n_classes: int,
    seed: int,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    device: str = "cpu",
) -> ModelAdapter:
    """The one place the CLI and simulation turn names into a trainable model (torch ones on `device`)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if backend == "torch":
        from fedcore.backends.torch_backend import TorchAdapter
        from fedcore.backends.user import check_device

        check_device(device)
        if model == "cnn1d":
            return TorchAdapter(torch_cnn1d(in_features, n_classes, seed), device=device)
        layers = () if model == "logreg" else hidden
        return TorchAdapter(torch_mlp(in_features, layers, n_classes, seed), device=device)
    if backend == "mlx":
        from fedcore.backends.mlx_backend import MLXAdapter

        if model == "cnn1d":
            return MLXAdapter(mlx_cnn1d(in_features, n_classes, seed))
        layers = () if model == "logreg" else hidden
        return MLXAdapter(mlx_mlp(in_features, layers, n_classes, seed))
    if model == "cnn1d":
        raise ValueError("model 'cnn1d' is not available for backend 'sklearn'; choose mlp or logreg")
    if model == "logreg":
        return sklearn_logreg(in_features, n_classes, seed)
    return sklearn_mlp(in_features, hidden, n_classes, seed)


def torch_mlp_without_torch(
    model: str, in_features: int, n_classes: int, seed: int, hidden: Sequence[int] = DEFAULT_HIDDEN
) -> NumpyMLP:
    """`make_adapter("torch", model, ...)` for mlp/logreg in numpy: same layout and initial weights."""
    from fedcore.backends.stacked_mlp import NumpyMLP

    if model not in ("mlp", "logreg"):
        raise ValueError(f"only mlp and logreg train without torch, not {model!r}")
    return NumpyMLP(in_features, () if model == "logreg" else hidden, n_classes, seed)


def _seed_mlx_init(model: MLXModule, seed: int) -> None:
    """Fan-in uniform init (mlx's and torch's default) drawn from numpy, leaving mlx's RNG alone."""
    import mlx.core as mx
    from mlx.utils import tree_unflatten

    from fedcore.backends.mlx_backend import named_arrays

    rng = np.random.default_rng(seed)
    untyped: Any = model
    params = named_arrays(untyped.parameters())
    fan_in = {
        name.rsplit(".", 1)[0]: int(np.prod(v.shape[1:])) for name, v in params if name.endswith("weight")
    }
    fresh = []
    for name, value in params:
        bound = 1.0 / np.sqrt(fan_in[name.rsplit(".", 1)[0]])
        draw = rng.uniform(-bound, bound, value.shape).astype(np.float32)
        fresh.append((name, mx.array(draw)))
    untyped.update(tree_unflatten(fresh))
    mx.eval(untyped.parameters())
