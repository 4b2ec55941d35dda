"""Which torch models can train stacked, and their stacked training (done in numpy, see stacked_mlp)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from fedcore.backends.base import FitResult
from fedcore.backends.stacked_mlp import StackedFit, fit_stacked_mlp
from fedcore.backends.torch_backend import TorchAdapter

__all__ = ["StackedFit", "fit_stacked", "stacking_refusal"]


def stacking_refusal(adapter: object) -> str | None:
    """Why this model cannot train stacked (None if it can): Flatten/Linear/ReLU MLPs with cross-entropy."""
    if not isinstance(adapter, TorchAdapter):
        return f"{type(adapter).__name__} is not a torch model"
    if adapter.loss_fn is not torch.nn.functional.cross_entropy:
        return "a custom loss function"
    module = adapter.module
    if not isinstance(module, torch.nn.Sequential):
        return f"{type(module).__name__} is not an nn.Sequential"
    layers = list(module)
    if layers and isinstance(layers[0], torch.nn.Flatten) and layers[0].start_dim == 1:
        layers = layers[1:]
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Flatten):
            return "a Flatten that is not the first layer"
        if not isinstance(layer, (torch.nn.Linear, torch.nn.ReLU)):
            return f"a {type(layer).__name__} layer"
        if isinstance(layer, torch.nn.Linear) != (i % 2 == 0):  # the stacked model is Linear (ReLU Linear)*
            return "Linear and ReLU layers that do not alternate"
        if isinstance(layer, torch.nn.Linear) and layer.bias is None:
            return "a Linear layer without bias"
    if not layers or not isinstance(layers[-1], torch.nn.Linear):
        return "the model does not end in a Linear layer"
    if not all(p.requires_grad and p.dtype == torch.float32 for p in module.parameters()):
        return "frozen or non-float32 parameters"
    return None


def fit_stacked(
    adapter: TorchAdapter, fits: Sequence[StackedFit]
) -> list[tuple[NDArray[np.float32], FitResult]]:
    """Train every client from its own start weights at once; each gets its new weights and its FitResult.

    Raises ValueError for a model `stacking_refusal` refuses; the adapter's own weights are not touched.
    """
    refusal = stacking_refusal(adapter)
    if refusal is not None:
        raise ValueError(f"cannot train clients stacked: {refusal}")
    return fit_stacked_mlp(adapter.layout, fits)
