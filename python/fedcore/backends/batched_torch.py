"""Which torch models can train stacked, and how: ReLU MLPs by hand in numpy (see stacked_mlp), other
stateless models (the 1-D CNN) with torch.func: `vmap` of `grad` over the clients' stacked weights.

Both paths keep each client's own batch schedule, lr, epochs, FedProx, SCAFFOLD, momentum and weight decay,
and mask padding and finished clients, so each client ends where it would end training alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fedcore.backends.base import FitResult
from fedcore.backends.stacked_mlp import StackedFit, StackedJob, fit_stacked_mlp
from fedcore.backends.torch_backend import TorchAdapter

__all__ = ["StackedFit", "fit_stacked", "stacking_refusal"]

# layers with no state and no randomness: a model built from these alone trains the same under vmap
_STATELESS = (
    torch.nn.Sequential,
    torch.nn.Linear,
    torch.nn.Conv1d,
    torch.nn.Conv2d,
    torch.nn.ReLU,
    torch.nn.Tanh,
    torch.nn.Sigmoid,
    torch.nn.GELU,
    torch.nn.Flatten,
    torch.nn.Unflatten,
    torch.nn.MaxPool1d,
    torch.nn.MaxPool2d,
    torch.nn.AvgPool1d,
    torch.nn.AvgPool2d,
    torch.nn.Identity,
)


def stacking_refusal(adapter: object) -> str | None:
    """Why this model cannot train stacked (None if it can): cross-entropy, float32, and either a ReLU MLP
    or a Sequential of stateless layers ending in a Linear."""
    if not isinstance(adapter, TorchAdapter):
        return f"{type(adapter).__name__} is not a torch model"
    if adapter.loss_fn is not torch.nn.functional.cross_entropy:
        return "a custom loss function"
    module = adapter.module
    if not isinstance(module, torch.nn.Sequential):
        return f"{type(module).__name__} is not an nn.Sequential"
    if not all(p.requires_grad and p.dtype == torch.float32 for p in module.parameters()):
        return "frozen or non-float32 parameters"
    if not list(module) or not isinstance(list(module)[-1], torch.nn.Linear):
        return "the model does not end in a Linear layer"
    if _mlp_refusal(module) is None:
        return None
    for layer in module.modules():
        if not isinstance(layer, _STATELESS):
            return f"a {type(layer).__name__} layer"
    if any(True for _ in module.buffers()):
        return "buffers (running statistics)"
    return None


def _mlp_refusal(module: torch.nn.Sequential) -> str | None:
    """Why this is not the ReLU MLP the numpy path trains: [Flatten] Linear (ReLU Linear)*, with biases."""
    layers = list(module)
    if layers and isinstance(layers[0], torch.nn.Flatten) and layers[0].start_dim == 1:
        layers = layers[1:]
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Flatten):
            return "a Flatten that is not the first layer"
        if not isinstance(layer, (torch.nn.Linear, torch.nn.ReLU)):
            return f"a {type(layer).__name__} layer"
        if isinstance(layer, torch.nn.Linear) != (i % 2 == 0):
            return "Linear and ReLU layers that do not alternate"
        if isinstance(layer, torch.nn.Linear) and layer.bias is None:
            return "a Linear layer without bias"
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
    assert isinstance(adapter.module, torch.nn.Sequential)  # stacking_refusal checked it
    if _mlp_refusal(adapter.module) is None:
        return fit_stacked_mlp(adapter.layout, fits)
    if not fits:
        return []
    last = list(adapter.module)[-1]
    assert isinstance(last, torch.nn.Linear)
    job = StackedJob.build(adapter.layout, fits, last.out_features)
    params = torch.from_numpy(job.params)
    losses = _run_vmapped(adapter, job, params)
    return job.results(params.numpy(), losses)


def _run_vmapped(adapter: TorchAdapter, job: StackedJob, params: torch.Tensor) -> NDArray[np.float64]:
    """The SGD loop with torch.func: each step, every client's gradient on its own batch in one vmap call.

    Updates `params` (the stacked buffer) in place; returns each client's summed batch losses.
    """
    from torch.func import functional_call, grad_and_value, vmap

    clients = job.stack.clients
    names = adapter.layout.names
    module = adapter.module
    module.train()

    def views(buffer: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            name: buffer[clients * e.offset : clients * e.stop].view(clients, *e.shape)
            for name, e in zip(names, adapter.layout, strict=True)
        }

    def client_loss(weights: dict[str, torch.Tensor], x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = functional_call(module, weights, (x,))
        return -(target * torch.log_softmax(logits, dim=-1)).sum()  # target carries 1/batch, 0 on padding

    gradient = vmap(grad_and_value(client_loss))
    grads = torch.zeros_like(params)
    grad_views = views(grads)
    param_views = views(params)
    terms = {
        name: torch.from_numpy(value) if value is not None else None
        for name, value in vars(job.terms).items()
    }
    anchor = params.clone() if terms["prox"] is not None else None
    velocity = torch.zeros_like(params) if terms["momentum"] is not None else None
    example_shape = job.fits[0].x.shape[1:]
    schedule = job.schedule
    targets = torch.from_numpy(schedule.target)
    losses = torch.zeros(clients, dtype=torch.float64)
    scale = params
    with torch.no_grad():
        for step in range(schedule.num_steps):
            if step == 0 or not np.array_equal(schedule.active[step], schedule.active[step - 1]):
                scale = torch.from_numpy(job.stack.expand(schedule.active[step] * job.lr))
            batch = torch.from_numpy(schedule.inputs(step)).view(clients, -1, *example_shape)
            with torch.enable_grad():
                step_grads, step_loss = gradient(param_views, batch, targets[step])
            for name in names:
                grad_views[name].copy_(step_grads[name])
            losses += step_loss.double()
            _sgd_step(params, grads, terms, anchor, velocity, scale)
    result: NDArray[np.float64] = losses.numpy()
    return result


def _sgd_step(
    params: torch.Tensor,
    grads: torch.Tensor,
    terms: dict[str, Any],
    anchor: torch.Tensor | None,
    velocity: torch.Tensor | None,
    scale: torch.Tensor,
) -> None:
    """TorchAdapter's SGD arithmetic on the stacked buffer, each client's terms and lr element by element."""
    if terms["decay"] is not None:
        grads.addcmul_(terms["decay"], params)
    if terms["correction"] is not None:
        grads.add_(terms["correction"])
    if anchor is not None:
        grads.addcmul_(terms["prox"], params - anchor)
    update = grads
    if velocity is not None:
        update = velocity.mul_(terms["momentum"]).add_(grads)
    params.addcmul_(scale, update, value=-1.0)
