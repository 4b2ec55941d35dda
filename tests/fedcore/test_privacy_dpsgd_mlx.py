"""MLX per-sample clipping: mx.vmap(mx.grad) equals one gradient call per example, weights left untouched."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from mlx.nn.losses import cross_entropy  # noqa: E402

from fedcore.backends.mlx_backend import named_arrays  # noqa: E402
from fedcore.backends.models import mlx_mlp  # noqa: E402
from fedcore.privacy.dpsgd_mlx import clipped_grad_sum_mlx, clipped_grad_sum_mlx_loop  # noqa: E402


def ce(logits: object, labels: object) -> object:
    return cross_entropy(logits, labels, reduction="mean")


def batch(n: int, seed: int) -> tuple[object, object]:
    rng = np.random.default_rng(seed)
    return mx.array(rng.standard_normal((n, 64)).astype(np.float32)), mx.array(rng.integers(0, 10, n))


@pytest.mark.parametrize("clip", [0.01, 0.5, 100.0])
def test_vmap_clipped_sum_equals_the_loop(clip: float) -> None:
    model = mlx_mlp(64, [32], 10, seed=0)
    x, y = batch(16, seed=1)
    fast, fast_clipped = clipped_grad_sum_mlx(model, ce, x, y, clip)
    slow, slow_clipped = clipped_grad_sum_mlx_loop(model, ce, x, y, clip)
    assert fast_clipped == slow_clipped
    assert fast.keys() == slow.keys()
    for name in slow:
        np.testing.assert_allclose(np.array(fast[name]), np.array(slow[name]), rtol=1e-4, atol=1e-6)
    if clip == 100.0:
        assert fast_clipped == 0
    if clip == 0.01:
        assert fast_clipped == 16


def test_weights_are_unchanged_and_each_example_is_bounded() -> None:
    model = mlx_mlp(64, [32], 10, seed=0)
    before = {k: np.array(v) for k, v in named_arrays(model.parameters())}
    x, y = batch(4, seed=2)
    for i in range(4):
        one, _ = clipped_grad_sum_mlx(model, ce, x[i : i + 1], y[i : i + 1], 0.05)
        norm = np.sqrt(sum(float((np.array(g).astype(np.float64) ** 2).sum()) for g in one.values()))
        assert norm <= 0.05 * (1 + 1e-5)
    for k, v in named_arrays(model.parameters()):
        np.testing.assert_array_equal(np.array(v), before[k])
