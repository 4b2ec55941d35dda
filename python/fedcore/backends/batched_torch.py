"""Many clients' local SGD as one stacked MLP: K weight copies, one batched matmul per layer and step.

Each client keeps its own seeded batch schedule (`plan_batches`, as `TorchAdapter.fit` draws it), learning
rate, epochs, proximal term, SCAFFOLD correction, momentum and weight decay. A step gathers every client's
batch into one [K, B, features] block; short batches and finished clients are masked, so padding never
reaches a gradient and a finished client's weights stop moving. The result equals sequential training up
to float rounding (batched matmuls sum in another order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from fedcore.backends.base import FitResult, TrainConfig
from fedcore.backends.batches import BatchPlan, check_flat, check_xy, plan_batches
from fedcore.backends.torch_backend import TorchAdapter


@dataclass(frozen=True)
class StackedFit:
    """One client's share of a stacked run: its data, its start weights, how it trains."""

    weights: NDArray[np.float32]
    x: NDArray[np.float32]
    y: NDArray[np.int64]
    config: TrainConfig
    control: NDArray[np.float32] | None = None  # SCAFFOLD's c - c_i


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
    if not layers or not isinstance(layers[-1], torch.nn.Linear):
        return "the model does not end in a Linear layer"
    for i, layer in enumerate(layers):
        if isinstance(layer, torch.nn.Flatten):
            if i != 0 or layer.start_dim != 1:
                return "a Flatten that is not the first layer"
        elif isinstance(layer, torch.nn.Linear):
            if layer.bias is None:
                return "a Linear layer without bias"
        elif not isinstance(layer, torch.nn.ReLU):
            return f"a {type(layer).__name__} layer"
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
    if not fits:
        return []
    size = adapter.layout.size
    for fit in fits:
        check_xy(fit.x, fit.y)
        check_flat(fit.weights, size, "weights")
        if fit.control is not None:
            check_flat(fit.control, size, "control variate")
    device = adapter.device
    schedule = _Schedule.build(fits, _out_features(adapter), device)
    stack = _Stack(adapter, len(fits), device)
    params = stack.flat([fit.weights for fit in fits])
    configs = [fit.config for fit in fits]
    controls = [fit.control for fit in fits]
    terms = _Terms(
        decay=stack.per_client([c.weight_decay for c in configs]),
        correction=stack.flat([c if c is not None else np.zeros(size, np.float32) for c in controls])
        if any(c is not None for c in controls)
        else None,
        prox=stack.per_client([c.prox_mu for c in configs]),
        momentum=stack.per_client([c.momentum for c in configs]),
    )
    losses = _run(stack, params, schedule, terms, np.array([c.lr for c in configs], dtype=np.float32))
    flat = stack.unflat(params)
    return [
        (flat[k], FitResult(len(fit.y), steps, float(losses[k]) / steps))
        for k, (fit, steps) in enumerate(zip(fits, schedule.steps, strict=True))
    ]


class _Stack:
    """K flat models in one buffer, parameter by parameter: each parameter's [K, *shape] block is contiguous.

    So one elementwise call steps every parameter of every client, and each layer's block feeds a bmm.
    """

    def __init__(self, adapter: TorchAdapter, clients: int, device: torch.device) -> None:
        self.clients = clients
        self.device = device
        self._entries = list(adapter.layout)
        self.size = adapter.layout.size

    def flat(self, vectors: Sequence[NDArray[np.float32]]) -> torch.Tensor:
        """[K * d] in stacked order from K flat vectors in the model's order."""
        block = np.stack([np.asarray(v, dtype=np.float32) for v in vectors])
        pieces = [block[:, e.offset : e.stop].reshape(-1) for e in self._entries]
        return torch.from_numpy(np.concatenate(pieces)).to(self.device)

    def unflat(self, buffer: torch.Tensor) -> NDArray[np.float32]:
        """[K, d] in the model's order: each client's flat weights."""
        host = buffer.cpu().numpy()
        out = np.empty((self.clients, self.size), dtype=np.float32)
        for e in self._entries:
            begin = self.clients * e.offset
            block = host[begin : begin + self.clients * (e.stop - e.offset)]
            out[:, e.offset : e.stop] = block.reshape(self.clients, -1)
        return out

    def views(self, buffer: torch.Tensor) -> list[torch.Tensor]:
        """The [K, *shape] view of each parameter inside a stacked buffer."""
        return [
            buffer[self.clients * e.offset : self.clients * e.stop].view(self.clients, *e.shape)
            for e in self._entries
        ]

    def per_client(self, values: Sequence[float]) -> torch.Tensor | None:
        """Per-element coefficients from one value per client; None when every value is zero."""
        if not any(values):
            return None
        return self.expand(np.asarray(values, dtype=np.float32))

    def expand(self, per_client: NDArray[np.float32]) -> torch.Tensor:
        """One value per client spread over the stacked buffer, client k's over its own parameters."""
        values = torch.from_numpy(np.ascontiguousarray(per_client, dtype=np.float32)).to(self.device)
        column = values[:, None]
        return torch.cat([column.expand(-1, e.stop - e.offset).reshape(-1) for e in self._entries])


@dataclass(frozen=True)
class _Terms:
    """What SGD adds to each gradient, per element of the stacked buffer (None: absent for every client)."""

    decay: torch.Tensor | None
    correction: torch.Tensor | None
    prox: torch.Tensor | None
    momentum: torch.Tensor | None


@dataclass(frozen=True)
class _Schedule:
    """Every step's batches for all clients, gathered ahead: inputs [S, K, B, F], loss weights, active."""

    inputs: torch.Tensor  # [S, K, B, features]
    weight: torch.Tensor  # [S, K, B, 1]: 1/batch length on real rows, 0 on padding
    target: torch.Tensor  # [S, K, B, classes]: one-hot labels times weight
    active: NDArray[np.float32]  # [S, K]: 1.0 while the client still trains
    steps: tuple[int, ...]

    @classmethod
    def build(cls, fits: Sequence[StackedFit], classes: int, device: torch.device) -> _Schedule:
        plans: list[BatchPlan] = [plan_batches(len(f.y), f.config) for f in fits]
        width = max(f.config.batch_size for f in fits)
        steps = max(p.num_steps for p in plans)
        clients = len(fits)
        offsets = np.cumsum([0] + [len(f.y) for f in fits])
        pad = int(offsets[-1])  # a zero row after all the clients' data
        rows = np.full((steps, clients, width), pad, dtype=np.int64)
        counts = np.zeros((steps, clients), dtype=np.int64)
        for k, plan in enumerate(plans):
            bounds = np.asarray(plan.bounds, dtype=np.int64)
            lengths = bounds[:, 1] - bounds[:, 0]
            counts[: plan.num_steps, k] = lengths
            within = np.arange(width)
            take = bounds[:, :1] + within  # [steps_k, width] positions into the order
            valid = within < lengths[:, None]
            picked = plan.order[np.minimum(take, len(plan.order) - 1)] + offsets[k]
            rows[: plan.num_steps, k] = np.where(valid, picked, pad)
        features = fits[0].x[0].size
        x_all = np.concatenate(
            [f.x.reshape(len(f.y), -1) for f in fits] + [np.zeros((1, features), np.float32)]
        )
        y_all = np.concatenate([f.y for f in fits] + [np.zeros(1, dtype=np.int64)])
        x_t = torch.from_numpy(np.ascontiguousarray(x_all, dtype=np.float32)).to(device)
        flat_rows = torch.from_numpy(rows.reshape(-1)).to(device)
        inputs = x_t.index_select(0, flat_rows).view(steps, clients, width, -1)
        counts_t = torch.from_numpy(counts).to(device)
        real = torch.arange(width, device=device) < counts_t[..., None]  # [S, K, B]
        inv = torch.where(counts_t > 0, 1.0 / counts_t.clamp(min=1).to(torch.float32), 0.0)
        weight = (real.to(torch.float32) * inv[..., None])[..., None]
        labels = torch.from_numpy(y_all).to(device).index_select(0, flat_rows).view(steps, clients, width)
        target = torch.nn.functional.one_hot(labels, classes).to(torch.float32) * weight
        active = (counts > 0).astype(np.float32)
        return cls(inputs, weight, target, active, tuple(p.num_steps for p in plans))


def _out_features(adapter: TorchAdapter) -> int:
    """Classes the model scores: the last layer's width (a round's clients may not hold every label)."""
    last = list(adapter.module.children())[-1]
    if not isinstance(last, torch.nn.Linear):
        raise ValueError("cannot train clients stacked: the model does not end in a Linear layer")
    return last.out_features


def _run(
    stack: _Stack, params: torch.Tensor, schedule: _Schedule, terms: _Terms, lr: NDArray[np.float32]
) -> NDArray[np.float64]:
    """The SGD loop: hand-written forward and backward of the stacked MLP, then TorchAdapter's SGD step.

    Returns each client's summed batch losses.
    """
    grads = torch.zeros_like(params)
    param_views, grad_views = stack.views(params), stack.views(grads)
    weights, biases = param_views[0::2], param_views[1::2]
    weight_grads, bias_grads = grad_views[0::2], grad_views[1::2]
    layers = len(weights)
    anchor = params.clone() if terms.prox is not None else None
    velocity = torch.zeros_like(params) if terms.momentum is not None else None
    losses = torch.zeros_like(schedule.target[0])
    threshold_backward: Any = torch.ops.aten.threshold_backward
    scale = params
    with torch.no_grad():
        for step in range(schedule.inputs.shape[0]):
            if step == 0 or not np.array_equal(schedule.active[step], schedule.active[step - 1]):
                scale = stack.expand(schedule.active[step] * lr)  # a finished client's weights stop moving
            activations = [schedule.inputs[step]]
            for i in range(layers):
                z = torch.baddbmm(biases[i][:, None, :], activations[-1], weights[i].transpose(1, 2))
                activations.append(z.relu_() if i < layers - 1 else z)
            log_p = torch.log_softmax(activations[-1], dim=-1)
            target = schedule.target[step]
            losses.addcmul_(target, log_p)
            upstream = log_p.exp_().mul_(schedule.weight[step]).sub_(target)  # d loss / d logits
            for i in reversed(range(layers)):
                torch.bmm(upstream.transpose(1, 2), activations[i], out=weight_grads[i])
                torch.sum(upstream, dim=1, out=bias_grads[i])
                if i:
                    upstream = threshold_backward(torch.bmm(upstream, weights[i]), activations[i], 0)
            if terms.decay is not None:
                grads.addcmul_(terms.decay, params)
            if terms.correction is not None:
                grads.add_(terms.correction)
            if anchor is not None and terms.prox is not None:
                grads.addcmul_(terms.prox, params - anchor)
            update = grads
            if velocity is not None and terms.momentum is not None:
                update = velocity.mul_(terms.momentum).add_(grads)
            params.addcmul_(scale, update, value=-1.0)
    result: NDArray[np.float64] = (-losses.sum(dim=(1, 2))).double().cpu().numpy()
    return result
