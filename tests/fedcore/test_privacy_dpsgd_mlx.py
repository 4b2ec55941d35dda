"""MLX DP-SGD: mx.vmap(mx.grad) clipping equals the per-example loop; the training loop learns and clips."""

from __future__ import annotations

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core")

from mlx.nn.losses import cross_entropy  # noqa: E402

from fedcore.backends.mlx_backend import named_arrays  # noqa: E402
from fedcore.backends.models import mlx_mlp  # noqa: E402
from fedcore.config import FLConfig  # noqa: E402
from fedcore.privacy.dpsgd_mlx import (  # noqa: E402
    DPSGDMLX,
    clipped_grad_sum_mlx,
    clipped_grad_sum_mlx_loop,
    ghost_clipped_grad_sum_mlx,
    ghost_clipping_supported_mlx,
)
from fedcore.sim import simulate  # noqa: E402


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


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten well-separated Gaussian classes in 64 dimensions: DP-SGD must learn them."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).standard_normal((10, 64)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return (centers[y] + 0.5 * rng.standard_normal((n, 64))).astype(np.float32), y.astype(np.int64)


def accuracy(model: object, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.array(model(mx.array(x)))  # type: ignore[operator]
    return float((logits.argmax(axis=1) == y).mean())


def test_mlx_dp_sgd_trains() -> None:
    model = mlx_mlp(64, [32], 10, seed=0)
    x, y = blobs(600, seed=1)
    before = accuracy(model, x, y)
    dp = DPSGDMLX(clip=1.0, noise_multiplier=1.0, batch_size=60, lr=0.5, steps=150)
    result = dp.fit(model, x, y, seed=3, loss_fn=ce)
    after = accuracy(model, x, y)
    assert before < 0.3 < 0.9 < after
    assert result.num_steps == 150
    assert abs(result.mean_batch - 60) < 6  # Poisson batches at rate 60 / 600
    assert dp.accountant(600, 1e-4).epsilon(150) > 0


def test_mlx_dp_sgd_steps_by_the_clipped_sum_each_example_bounded_by_the_clip() -> None:
    """Almost no noise, the whole data as one batch: one step is -lr/n x the per-example clipped sum."""
    x, y = blobs(32, seed=4)
    clip, lr = 0.05, 0.1
    model = mlx_mlp(64, [32], 10, seed=0)
    reference, clipped = clipped_grad_sum_mlx_loop(model, ce, mx.array(x), mx.array(y), clip)
    assert clipped == 32  # every per-example gradient was longer than C and was scaled down to C
    before = {k: np.array(v) for k, v in named_arrays(model.trainable_parameters())}
    dp = DPSGDMLX(clip=clip, noise_multiplier=1e-9, batch_size=32, lr=lr, steps=1)
    result = dp.fit(model, x, y, seed=5, loss_fn=ce)
    assert result.clipped_fraction == 1.0
    moved = {k: (before[k] - np.array(v)) * 32 / lr for k, v in named_arrays(model.trainable_parameters())}
    for name, g in reference.items():
        np.testing.assert_allclose(moved[name], np.array(g), rtol=1e-3, atol=1e-5)
    total = np.sqrt(sum(float((m.astype(np.float64) ** 2).sum()) for m in moved.values()))
    assert total <= 32 * clip * (1 + 1e-4)  # the sum of 32 examples, each of norm <= C


def test_a_federated_run_trains_each_mlx_client_with_dp_sgd() -> None:
    config = FLConfig(
        clients=10,
        per_round=3,
        rounds=2,
        local_epochs=1,
        workers=0,
        seed=1,
        backend="mlx",
        dp="local:1.0,1.0",
    )
    result = simulate(config)
    assert all(r.local_epsilon is not None and r.local_epsilon > 0 for r in result.records)


@pytest.mark.parametrize("clip", [0.01, 0.5, 100.0])
@pytest.mark.parametrize("hidden", [[32], [256, 256]])
def test_mlx_ghost_clipping_equals_the_loop(clip: float, hidden: list[int]) -> None:
    model = mlx_mlp(64, hidden, 10, seed=0)
    x, y = batch(24, seed=3)
    ghost, ghost_clipped = ghost_clipped_grad_sum_mlx(model, ce, x, y, clip)
    slow, slow_clipped = clipped_grad_sum_mlx_loop(model, ce, x, y, clip)
    assert ghost_clipped == slow_clipped
    assert ghost.keys() == slow.keys()
    for name in slow:
        np.testing.assert_allclose(np.array(ghost[name]), np.array(slow[name]), rtol=1e-4, atol=1e-6)


def test_mlx_ghost_clipping_refuses_a_model_it_does_not_cover() -> None:
    from fedcore.backends.models import mlx_cnn1d

    cnn = mlx_cnn1d(64, 10, seed=0)
    assert not ghost_clipping_supported_mlx(cnn)
    assert ghost_clipping_supported_mlx(mlx_mlp(64, [32], 10, seed=0))
    x, y = batch(4, seed=1)
    with pytest.raises(ValueError, match="Linear"):
        ghost_clipped_grad_sum_mlx(cnn, ce, x, y, 1.0)
