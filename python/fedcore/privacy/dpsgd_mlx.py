"""DP-SGD for MLX models: per-sample gradient clipping vectorised with mx.vmap(mx.grad(...)), and the loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.nn.layers.base import Module
from mlx.nn.layers.containers import Sequential
from mlx.nn.layers.linear import Linear
from mlx.utils import tree_unflatten
from numpy.typing import NDArray

from fedcore.backends.mlx_backend import named_arrays
from fedcore.backends.mlx_layers import FlatInput
from fedcore.privacy.dpsgd_schedule import DPSGDResult, DPSGDSchedule
from fedcore.privacy.spec import check_clip

LossFn = Callable[[mx.array, mx.array], mx.array]
Grads = dict[str, mx.array]


def _sample_loss(module: Any, loss_fn: LossFn) -> Callable[[Any, mx.array, mx.array], mx.array]:
    def loss(params: Any, xi: mx.array, yi: mx.array) -> mx.array:
        module.update(params)
        return loss_fn(module(xi[None]), yi[None])

    return loss


def per_sample_grads_mlx(module: Module, loss_fn: LossFn, x: mx.array, y: mx.array) -> Grads:
    """Each example's loss gradient on a leading batch axis, by name (as `tree_flatten` names parameters)."""
    m: Any = module
    params = m.trainable_parameters()
    grads = mx.vmap(mx.grad(_sample_loss(m, loss_fn)), in_axes=(None, 0, 0))(params, x, y)
    m.update(params)  # tracing left tracer values in the module: put the real weights back
    return dict(named_arrays(grads))


def clipped_grad_sum_mlx(
    module: Module, loss_fn: LossFn, x: mx.array, y: mx.array, clip: float
) -> tuple[Grads, int]:
    """Sum over the batch of per-example gradients clipped to L2 norm `clip`, and how many were clipped."""
    check_clip(clip)
    grads = per_sample_grads_mlx(module, loss_fn, x, y)
    squares = [mx.sum(mx.square(g.reshape(g.shape[0], -1)), axis=1) for g in grads.values()]
    norms = mx.sqrt(sum(squares[1:], squares[0]))
    factors = mx.minimum(clip / mx.maximum(norms, 1e-12), 1.0)
    sums = {name: (factors @ g.reshape(g.shape[0], -1)).reshape(g.shape[1:]) for name, g in grads.items()}
    clipped = mx.sum(norms > clip)
    mx.eval(sums, clipped)
    return sums, int(np.array(clipped))


def _ghost_chain(module: Module) -> tuple[bool, list[Any]] | None:
    """(flattens input, layers) of an MLX MLP whose trainable parameters are all in its Linear layers.

    Covers `Sequential` chains and `FlatInput(Sequential)` (the built-in `mlx_mlp`); None for anything else.
    """
    m: Any = module
    flat = isinstance(m, FlatInput)
    body = m.body if flat else m
    if not isinstance(body, Sequential):
        return None
    prefix = "body.layers" if flat else "layers"
    layers = list(body.layers)
    names: list[str] = []
    for i, layer in enumerate(layers):
        own = [name for name, _ in named_arrays(layer.trainable_parameters())]
        if isinstance(layer, Linear):
            names += [f"{prefix}.{i}.{name}" for name in own]
        elif own:
            return None
    if sorted(names) != sorted(name for name, _ in named_arrays(m.trainable_parameters())):
        return None
    return flat, layers


def ghost_clipping_supported_mlx(module: Module) -> bool:
    """Ghost clipping covers the model: a chain of layers whose trainable parameters are all in Linears."""
    return _ghost_chain(module) is not None


def ghost_clipped_grad_sum_mlx(
    module: Module, loss_fn: LossFn, x: mx.array, y: mx.array, clip: float
) -> tuple[Grads, int]:
    """`clipped_grad_sum_mlx` without per-example gradients (ghost norms, book-keeping), for MLX MLPs.

    As torch's `ghost_clipped_grad_sum`: a Linear's per-example weight gradient is b_i a_i^T, of norm
    ||b_i|| ||a_i||; b is the gradient of the summed loss at zero "taps" added to each Linear's output.
    `loss_fn` must be the batch mean of per-example losses.
    """
    check_clip(clip)
    chain = _ghost_chain(module)
    if chain is None:
        raise ValueError("ghost clipping needs a chain of layers with every trainable parameter in a Linear")
    flat, layers = chain
    batch = x.shape[0]
    h0 = x.reshape(batch, -1) if flat else x
    linears = [layer for layer in layers if isinstance(layer, Linear)]

    def summed_loss(taps: list[mx.array]) -> tuple[mx.array, list[mx.array]]:
        h, k, inputs = h0, 0, []
        for layer in layers:
            if isinstance(layer, Linear):
                inputs.append(h)
                h = layer(h) + taps[k]
                k += 1
            else:
                h = layer(h)
        return loss_fn(h, y) * batch, inputs

    taps = [mx.zeros((batch, layer.weight.shape[0])) for layer in linears]
    (_, inputs), backs = mx.value_and_grad(summed_loss)(taps)
    squares = mx.zeros((batch,))
    for layer, a, b in zip(linears, inputs, backs, strict=True):
        b2 = mx.sum(mx.square(b), axis=1)
        squares = squares + b2 * mx.sum(mx.square(a), axis=1) + (b2 if "bias" in layer else 0.0)
    norms = mx.sqrt(squares)
    factors = mx.minimum(clip / mx.maximum(norms, 1e-12), 1.0)
    sums: Grads = {}
    positions = [i for i, layer in enumerate(layers) if isinstance(layer, Linear)]
    for i, layer, a, b in zip(positions, linears, inputs, backs, strict=True):
        scaled = factors[:, None] * b
        prefix = f"{'body.layers' if flat else 'layers'}.{i}."
        sums[prefix + "weight"] = scaled.T @ a
        if "bias" in layer:
            sums[prefix + "bias"] = mx.sum(scaled, axis=0)
    clipped = mx.sum(norms > clip)
    mx.eval(sums, clipped)
    return sums, int(np.array(clipped))


def fastest_clipped_grad_sum_mlx(
    module: Module, loss_fn: LossFn, x: mx.array, y: mx.array, clip: float
) -> tuple[Grads, int]:
    """Ghost clipping where it covers the model, mx.vmap per-example gradients otherwise."""
    if ghost_clipping_supported_mlx(module):
        return ghost_clipped_grad_sum_mlx(module, loss_fn, x, y, clip)
    return clipped_grad_sum_mlx(module, loss_fn, x, y, clip)


def clipped_grad_sum_mlx_loop(
    module: Module, loss_fn: LossFn, x: mx.array, y: mx.array, clip: float
) -> tuple[Grads, int]:
    """The same sum with one gradient call per example: the reference the vmap path must match."""
    check_clip(clip)
    m: Any = module
    params = m.trainable_parameters()
    grad_fn = mx.grad(_sample_loss(m, loss_fn))
    sums: Grads | None = None
    clipped = 0
    for i in range(x.shape[0]):
        named = named_arrays(grad_fn(params, x[i], y[i]))
        norm = mx.sqrt(sum((mx.sum(mx.square(g)) for _, g in named), mx.array(0.0)))
        factor = mx.minimum(clip / mx.maximum(norm, 1e-12), 1.0)
        scaled = {name: factor * g for name, g in named}
        sums = scaled if sums is None else {k: sums[k] + v for k, v in scaled.items()}
        mx.eval(sums)
        clipped += int(np.array(norm > clip))
    m.update(params)
    if sums is None:
        return {name: mx.zeros_like(v) for name, v in named_arrays(params)}, 0
    return sums, clipped


@dataclass(frozen=True)
class DPSGDMLX(DPSGDSchedule):
    """DP-SGD on an MLX module: the torch loop's schedule and accounting, per-sample clipping by mx.vmap."""

    def fit(
        self,
        module: Module,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        seed: int,
        loss_fn: LossFn,
    ) -> DPSGDResult:
        """Run `steps` DP-SGD steps on `module` in place; batches and noise come from `seed` only."""
        sampling = self.sampling(len(x))
        batch_seed, noise_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(batch_seed)
        key = mx.random.key(int(noise_seed.generate_state(1)[0]))
        xm = mx.array(np.ascontiguousarray(x, dtype=np.float32))
        ym = mx.array(np.ascontiguousarray(y, dtype=np.int32))
        m: Any = module
        std = self.noise_multiplier * self.clip
        seen = clipped = 0
        for _ in range(self.steps):
            idx = np.flatnonzero(rng.random(len(x)) < sampling.rate)
            if idx.size:
                index = mx.array(idx.astype(np.int32))
                sums, n_clipped = fastest_clipped_grad_sum_mlx(
                    module, loss_fn, xm[index], ym[index], self.clip
                )
            else:  # an empty Poisson batch still takes a (pure-noise) step, as the accountant assumes
                sums, n_clipped = {n: mx.zeros_like(v) for n, v in named_arrays(m.trainable_parameters())}, 0
            seen, clipped = seen + idx.size, clipped + n_clipped
            step = {}
            for name, total in sums.items():
                key, sub = mx.random.split(key)
                noise = mx.random.normal(total.shape, key=sub) * std
                step[name] = (total + noise) * (self.lr / sampling.expected_cohort)
            current = dict(named_arrays(m.trainable_parameters()))
            m.update(tree_unflatten([(name, current[name] - delta) for name, delta in step.items()]))
            mx.eval(m.parameters())
        return DPSGDResult(self.steps, seen / self.steps, clipped / max(seen, 1))
