"""Any mlx.Module as a flat float32 vector that trains with plain mini-batch SGD."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import mlx.core as mx
import numpy as np
from mlx.nn.layers.base import Module
from mlx.nn.losses import cross_entropy
from mlx.nn.utils import value_and_grad
from mlx.optimizers import SGD
from mlx.utils import tree_flatten, tree_map, tree_unflatten
from numpy.typing import NDArray

from fedcore.backends.base import EvalResult, FitResult, TrainConfig
from fedcore.backends.batches import check_flat, check_xy, plan_batches
from fedcore.layout import ParamLayout

LossFn = Callable[[mx.array, mx.array], mx.array]

_EVAL_BATCH = 4096


def _cross_entropy(logits: mx.array, labels: mx.array) -> mx.array:
    return cross_entropy(logits, labels, reduction="mean")


def named_arrays(tree: Any) -> list[tuple[str, mx.array]]:
    """`tree_flatten` as a typed list of (dotted name, array)."""
    return cast(list[tuple[str, mx.array]], tree_flatten(tree))


class MLXAdapter:
    """Flat weights are `tree_flatten(module.parameters())` in order.

    `loss_fn(logits, labels)` must return the batch-mean loss (default: cross-entropy).
    `fit` seeds mlx's global RNG with `config.seed`, so stochastic layers (dropout) repeat.
    """

    def __init__(self, module: Module, loss_fn: LossFn | None = None) -> None:
        self.module: Any = module  # mlx's Module methods carry no annotations
        self.loss_fn: LossFn = loss_fn if loss_fn is not None else _cross_entropy
        named = named_arrays(cast(Any, module).parameters())
        if not named:
            raise ValueError("module has no parameters to train")
        self._layout = ParamLayout.from_shapes([(name, tuple(v.shape)) for name, v in named])

    @property
    def layout(self) -> ParamLayout:
        return self._layout

    def get_weights(self) -> NDArray[np.float32]:
        values = [v for _, v in named_arrays(self.module.parameters())]
        flat = mx.concatenate([v.reshape(-1).astype(mx.float32) for v in values])
        return np.array(flat, dtype=np.float32)

    def set_weights(self, flat: NDArray[np.float32]) -> None:
        check_flat(flat, self._layout.size, "weights")
        self.module.update(self._tree(flat, self._layout.names))
        mx.eval(self.module.parameters())

    def fit(
        self,
        x: NDArray[np.float32],
        y: NDArray[np.int64],
        config: TrainConfig,
        control: NDArray[np.float32] | None = None,
    ) -> FitResult:
        """SGD with optional FedProx pull (`prox_mu`) and SCAFFOLD correction (`control`)."""
        check_xy(x, y)
        plan = plan_batches(len(y), config)
        x_m = mx.array(np.ascontiguousarray(x, dtype=np.float32))
        y_m = mx.array(np.ascontiguousarray(y, dtype=np.int32))
        order = mx.array(plan.order.astype(np.int32))
        trainable_names = tuple(name for name, _ in named_arrays(self.module.trainable_parameters()))
        correction: dict[str, Any] | None = None
        if control is not None:
            check_flat(control, self._layout.size, "control variate")
            correction = self._tree(control, trainable_names)
        anchor = self.module.trainable_parameters() if config.prox_mu > 0 else None
        mu = config.prox_mu

        def batch_loss(xb: mx.array, yb: mx.array) -> mx.array:
            return self.loss_fn(self.module(xb), yb)

        loss_and_grad = value_and_grad(self.module, batch_loss)
        optimizer = SGD(learning_rate=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        mx.random.seed(config.seed)
        self.module.train()
        total = mx.array(0.0)
        for start, stop in plan.bounds:
            idx = order[start:stop]
            loss, grads = loss_and_grad(x_m[idx], y_m[idx])
            if correction is not None:
                grads = tree_map(lambda g, c: g + c, grads, correction)
            if anchor is not None:
                current = self.module.trainable_parameters()
                grads = tree_map(lambda g, w, w0: g + mu * (w - w0), grads, current, anchor)
            optimizer.update(self.module, grads)
            total = total + loss
            mx.eval(self.module.parameters(), optimizer.state, total)
        return FitResult(num_examples=len(y), num_steps=plan.num_steps, loss=float(total) / plan.num_steps)

    def evaluate(self, x: NDArray[np.float32], y: NDArray[np.int64]) -> EvalResult:
        check_xy(x, y)
        self.module.eval()
        loss_sum = 0.0
        correct = 0
        for start in range(0, len(y), _EVAL_BATCH):
            xb = mx.array(np.ascontiguousarray(x[start : start + _EVAL_BATCH], dtype=np.float32))
            yb = mx.array(np.ascontiguousarray(y[start : start + _EVAL_BATCH], dtype=np.int32))
            logits = self.module(xb)
            loss_sum += float(self.loss_fn(logits, yb)) * yb.size
            correct += int(mx.sum(mx.argmax(logits, axis=1) == yb))
        return EvalResult(num_examples=len(y), loss=loss_sum / len(y), accuracy=correct / len(y))

    def _tree(self, flat: NDArray[np.float32], names: tuple[str, ...]) -> dict[str, Any]:
        """The parameter tree (nested dicts/lists) holding `flat`'s slices for `names`."""
        items = [(name, mx.array(self._layout.view(flat, name))) for name in names]
        tree: dict[str, Any] = tree_unflatten(items)
        return tree
