"""Many clients of the built-in mlx MLP trained together: the same stacked numpy SGD as the torch MLP.

The mlx MLP (`mlx_mlp`: FlatInput over Linear/ReLU layers) is the torch MLP's architecture with mlx's
[out, in] weight layout, so `fit_stacked_mlp` trains it as it is; mlx's SGD (weight decay added to the
gradient, momentum v = m v + g) is torch's. For these tiny matmuls numpy also beats a per-step mlx call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mlx.nn.layers.activations import ReLU
from mlx.nn.layers.containers import Sequential
from mlx.nn.layers.linear import Linear
from numpy.typing import NDArray

from fedcore.backends.base import FitResult
from fedcore.backends.mlx_backend import MLXAdapter, _cross_entropy
from fedcore.backends.mlx_layers import FlatInput
from fedcore.backends.stacked_mlp import StackedFit, fit_stacked_mlp


def stacking_refusal(adapter: object) -> str | None:
    """Why this mlx model cannot train stacked (None if it can): FlatInput over Linear (ReLU Linear)*."""
    if not isinstance(adapter, MLXAdapter):
        return f"{type(adapter).__name__} is not an mlx model"
    if adapter.loss_fn is not _cross_entropy:
        return "a custom loss function"
    module: Any = adapter.module
    if not isinstance(module, FlatInput) or not isinstance(module.body, Sequential):
        return f"{type(module).__name__} is not the built-in mlx MLP"
    layers = list(module.body.layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Linear if i % 2 == 0 else ReLU):
            return f"a {type(layer).__name__} layer where the MLP has {'Linear' if i % 2 == 0 else 'ReLU'}"
        if isinstance(layer, Linear) and "bias" not in layer:
            return "a Linear layer without bias"
    if not layers or len(layers) % 2 == 0:
        return "the model does not end in a Linear layer"
    kinds = [entry.name.rsplit(".", 1)[-1] for entry in adapter.layout]
    if kinds != ["weight", "bias"] * (len(layers) // 2 + 1):
        return "parameters not in weight, bias order"
    return None


def fit_stacked(
    adapter: MLXAdapter, fits: Sequence[StackedFit]
) -> list[tuple[NDArray[np.float32], FitResult]]:
    """Train every client from its own start weights at once; each gets its new weights and its FitResult."""
    refusal = stacking_refusal(adapter)
    if refusal is not None:
        raise ValueError(f"cannot train clients stacked: {refusal}")
    return fit_stacked_mlp(adapter.layout, fits)
