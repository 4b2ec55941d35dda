"""The two glue modules the built-in mlx models need (mlx has no Flatten/Unflatten layers)."""

from __future__ import annotations

import mlx.core as mx
from mlx.nn.layers.base import Module


class FlatInput(Module):
    """Flattens [N, ...] inputs before the wrapped layers, like torch_mlp's Flatten."""

    def __init__(self, body: Module) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.body = body

    def __call__(self, x: mx.array) -> mx.array:
        out: mx.array = self.body(x.reshape(x.shape[0], -1))
        return out


class Conv1dNet(Module):
    """[N, L] signal -> [N, L, 1] channels-last -> convolutions -> linear head."""

    def __init__(self, convs: Module, head: Module) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.convs = convs
        self.head = head

    def __call__(self, x: mx.array) -> mx.array:
        h = self.convs(x.reshape(x.shape[0], -1, 1))
        out: mx.array = self.head(h.reshape(h.shape[0], -1))
        return out
