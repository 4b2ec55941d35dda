"""Example-level DP-SGD on one client (Abadi et al. 2016): per-sample clipping vectorised with torch.func."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch.func import functional_call, grad, vmap

from fedcore.privacy.dpsgd_schedule import DPSGDResult, DPSGDSchedule
from fedcore.privacy.spec import check_clip

__all__ = [
    "DPSGD",
    "DPSGDResult",
    "clipped_grad_sum",
    "clipped_grad_sum_loop",
    "fastest_clipped_grad_sum",
    "ghost_clipped_grad_sum",
    "ghost_clipping_supported",
    "per_sample_grads",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Grads = dict[str, torch.Tensor]


def _trainable(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in module.named_parameters() if p.requires_grad}


def per_sample_grads(module: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> Grads:
    """Each example's loss gradient on a leading batch axis: vmap(grad(loss)) over functional_call."""
    params = _trainable(module)
    buffers = {name: b.detach() for name, b in module.named_buffers()}

    def sample_loss(p: Grads, xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(module, (p, buffers), (xi.unsqueeze(0),))
        return loss_fn(out, yi.unsqueeze(0))

    grads: Grads = vmap(grad(sample_loss), in_dims=(None, 0, 0), randomness="different")(params, x, y)
    return grads


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C / ||g_i||) for each example, so every clipped gradient has norm <= C."""
    return torch.clamp(clip / torch.clamp(norms, min=1e-12), max=1.0)


def clipped_grad_sum(
    module: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, clip: float
) -> tuple[Grads, int]:
    """Sum over the batch of per-example gradients clipped to L2 norm `clip`, and how many were clipped."""
    check_clip(clip)
    if x.shape[0] == 0:
        return {name: torch.zeros_like(p) for name, p in _trainable(module).items()}, 0
    grads = per_sample_grads(module, loss_fn, x, y)
    # Norms per parameter then combined: concatenating the [batch, params] gradients first copies them all.
    squares = [torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) ** 2 for g in grads.values()]
    norms = torch.sqrt(torch.stack(squares).sum(dim=0))
    factors = clip_factors(norms, clip)
    sums = {name: (factors @ g.reshape(g.shape[0], -1)).reshape(g.shape[1:]) for name, g in grads.items()}
    return sums, int((norms > clip).sum())


def ghost_clipping_supported(module: torch.nn.Module) -> bool:
    """Every trainable parameter is the weight or bias of an nn.Linear: ghost clipping covers the model."""
    covered = {
        id(p) for layer in module.modules() if isinstance(layer, torch.nn.Linear) for p in layer.parameters()
    }
    return all(id(p) in covered for p in module.parameters() if p.requires_grad)


def ghost_clipped_grad_sum(
    module: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, clip: float
) -> tuple[Grads, int]:
    """`clipped_grad_sum` without materialising per-example gradients, for models of nn.Linear layers.

    A Linear layer's per-example weight gradient is the outer product b_i a_i^T of the gradient at its output
    and its input, so its norm is ||b_i|| ||a_i|| (Goodfellow 2015, "ghost norms"); the clipped sum is then
    (f * b)^T a with f_i = min(1, C / ||g_i||) (book-keeping, Bu et al. 2023): one forward, one backward to
    the layer outputs, memory O(batch x width). `loss_fn` must be the batch mean of per-example losses.
    """
    check_clip(clip)
    if not ghost_clipping_supported(module):
        raise ValueError("ghost clipping needs every trainable parameter in an nn.Linear")
    layers = [(name, m) for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    layers = [(name, m) for name, m in layers if any(p.requires_grad for p in m.parameters())]
    if x.shape[0] == 0:
        return {name: torch.zeros_like(p) for name, p in _trainable(module).items()}, 0
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def capture(name: str) -> Callable[[torch.nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_: torch.nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if args[0].dim() != 2:
                shape = tuple(args[0].shape)
                raise ValueError(f"ghost clipping needs (batch, features) inputs; layer {name} got {shape}")
            inputs[name], outputs[name] = args[0].detach(), out

        return hook

    handles = [layer.register_forward_hook(capture(name)) for name, layer in layers]
    try:
        out = module(x)
    finally:
        for handle in handles:
            handle.remove()
    batch = x.shape[0]
    names = [name for name, _ in layers]
    backs = torch.autograd.grad(loss_fn(out, y) * batch, [outputs[n] for n in names])
    squares = torch.zeros(batch, dtype=out.dtype)
    for (name, layer), b in zip(layers, backs, strict=True):
        b2 = b.square().sum(dim=1)
        if layer.weight.requires_grad:
            squares += b2 * inputs[name].square().sum(dim=1)
        if layer.bias is not None and layer.bias.requires_grad:
            squares += b2
    norms = torch.sqrt(squares)
    factors = clip_factors(norms, clip)
    sums: Grads = {}
    for (name, layer), b in zip(layers, backs, strict=True):
        scaled = factors[:, None] * b
        prefix = f"{name}." if name else ""
        if layer.weight.requires_grad:
            sums[prefix + "weight"] = scaled.T @ inputs[name]
        if layer.bias is not None and layer.bias.requires_grad:
            sums[prefix + "bias"] = scaled.sum(dim=0)
    return sums, int((norms > clip).sum())


def fastest_clipped_grad_sum(
    module: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, clip: float
) -> tuple[Grads, int]:
    """Ghost clipping where it covers the model, vmap per-example gradients otherwise."""
    if ghost_clipping_supported(module):
        return ghost_clipped_grad_sum(module, loss_fn, x, y, clip)
    return clipped_grad_sum(module, loss_fn, x, y, clip)


def clipped_grad_sum_loop(
    module: torch.nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, clip: float
) -> tuple[Grads, int]:
    """The same sum with one backward pass per example: the reference the vectorised path must match."""
    check_clip(clip)
    named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    sums = {name: torch.zeros_like(p) for name, p in named}
    clipped = 0
    for i in range(x.shape[0]):
        loss = loss_fn(module(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, [p for _, p in named])
        norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
        factor = clip_factors(norm, clip)
        clipped += int(norm > clip)
        for (name, _), g in zip(named, grads, strict=True):
            sums[name] += factor * g
    return sums, clipped


@dataclass(frozen=True)
class DPSGD(DPSGDSchedule):
    """DP-SGD with Poisson sampling at rate batch_size / n per step, clip C and noise N(0, (z C)^2) per step.

    The noisy sum is divided by the expected batch size (a fixed denominator, as the accountant assumes).
    """

    def fit(
        self,
        module: torch.nn.Module,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        seed: int,
        loss_fn: LossFn = torch.nn.functional.cross_entropy,
    ) -> DPSGDResult:
        """Run `steps` DP-SGD steps on `module` in place; batches and noise come from `seed` only."""
        sampling = self.sampling(len(x))
        batch_rng, noise_seed = np.random.SeedSequence(seed).spawn(2)
        rng = np.random.default_rng(batch_rng)
        noise_gen = torch.Generator().manual_seed(int(noise_seed.generate_state(1)[0]))
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        params = dict(module.named_parameters())
        std = self.noise_multiplier * self.clip
        seen = clipped = 0
        for _ in range(self.steps):
            idx = torch.as_tensor(np.flatnonzero(rng.random(len(x)) < sampling.rate))
            sums, n_clipped = fastest_clipped_grad_sum(module, loss_fn, xt[idx], yt[idx], self.clip)
            seen, clipped = seen + len(idx), clipped + n_clipped
            with torch.no_grad():
                for name, total in sums.items():
                    noise = torch.randn(total.shape, generator=noise_gen, dtype=total.dtype) * std
                    params[name].sub_(self.lr * (total + noise) / sampling.expected_cohort)
        return DPSGDResult(self.steps, seen / self.steps, clipped / max(seen, 1))
