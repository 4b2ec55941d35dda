"""DP-SGD: vmap and ghost per-sample clipping equal the per-example loop; a seeded run is reproducible."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")

from fedcore.backends.models import torch_mlp  # noqa: E402
from fedcore.privacy import Accountant, DPSpec, Sampling  # noqa: E402
from fedcore.privacy.dpsgd import (  # noqa: E402
    DPSGD,
    clipped_grad_sum,
    clipped_grad_sum_loop,
    fastest_clipped_grad_sum,
    ghost_clipped_grad_sum,
    ghost_clipping_supported,
    per_sample_grads,
)

CE = torch.nn.functional.cross_entropy


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 64, generator=g), torch.randint(0, 10, (n,), generator=g)


def test_per_sample_grads_match_one_backward_per_example() -> None:
    model = torch_mlp(64, [32], 10, seed=0)
    x, y = batch(5)
    grads = per_sample_grads(model, CE, x, y)
    for i in range(5):
        model.zero_grad()
        CE(model(x[i : i + 1]), y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clip", [0.01, 0.5, 100.0])
def test_vectorised_clipped_sum_equals_the_loop(clip: float) -> None:
    model = torch_mlp(64, [32], 10, seed=1)
    x, y = batch(16, seed=1)
    fast, fast_clipped = clipped_grad_sum(model, CE, x, y, clip)
    slow, slow_clipped = clipped_grad_sum_loop(model, CE, x, y, clip)
    assert fast_clipped == slow_clipped
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)
    if clip == 100.0:
        assert fast_clipped == 0
    if clip == 0.01:
        assert fast_clipped == 16


def test_each_example_contributes_at_most_the_clip_norm() -> None:
    model = torch_mlp(64, [32], 10, seed=2)
    x, y = batch(8, seed=2)
    for i in range(8):
        one, _ = clipped_grad_sum(model, CE, x[i : i + 1], y[i : i + 1], 0.05)
        norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in one.values()]))
        assert float(norm) <= 0.05 * (1 + 1e-5)


def test_empty_poisson_batch_gives_zero_sum() -> None:
    model = torch_mlp(64, [8], 10, seed=0)
    x, y = batch(0)
    sums, clipped = clipped_grad_sum(model, CE, x, y, 1.0)
    assert clipped == 0
    assert all(float(s.abs().sum()) == 0.0 for s in sums.values())


def test_seeded_fit_is_reproducible_and_moves_the_weights() -> None:
    x, y = batch(200, seed=3)
    dp = DPSGD.from_spec(DPSpec.parse("local:1.0,1.1"), batch_size=20, lr=0.1, steps=5)
    runs = []
    for _ in range(2):
        model = torch_mlp(64, [16], 10, seed=4)
        result = dp.fit(model, x.numpy(), y.numpy(), seed=9)
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    start = torch.cat([p.detach().reshape(-1) for p in torch_mlp(64, [16], 10, seed=4).parameters()])
    assert not torch.equal(runs[0], start)
    assert result.num_steps == 5
    assert 5 < result.mean_batch < 40  # Poisson batches around 20
    assert 0.0 <= result.clipped_fraction <= 1.0


def test_client_accountant_samples_at_batch_over_n() -> None:
    dp = DPSGD(clip=1.0, noise_multiplier=1.1, batch_size=32, lr=0.1, steps=10)
    acct = dp.accountant(n_examples=1000, delta=1e-4)
    assert acct == Accountant(Sampling.poisson(1000, 0.032), 1.1, 1e-4, "pld")
    with pytest.raises(ValueError, match="exceeds the client's 16 examples"):
        dp.accountant(n_examples=16, delta=1e-3)


@pytest.mark.parametrize("clip", [0.01, 0.5, 100.0])
@pytest.mark.parametrize("hidden", [[32], [256, 256]])
def test_ghost_clipping_equals_the_loop_without_per_example_gradients(clip: float, hidden: list[int]) -> None:
    model = torch_mlp(64, hidden, 10, seed=0)
    x, y = batch(24, seed=3)
    ghost, ghost_clipped = ghost_clipped_grad_sum(model, CE, x, y, clip)
    slow, slow_clipped = clipped_grad_sum_loop(model, CE, x, y, clip)
    assert ghost_clipped == slow_clipped
    assert ghost.keys() == slow.keys()
    for name in slow:
        torch.testing.assert_close(ghost[name], slow[name], rtol=1e-4, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated on the model


def test_ghost_clipping_refuses_what_it_does_not_cover_and_dp_sgd_falls_back_to_vmap() -> None:
    conv = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(124, 10))
    assert not ghost_clipping_supported(conv)
    assert ghost_clipping_supported(torch_mlp(64, [32], 10, seed=0))
    x, y = batch(4)
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        ghost_clipped_grad_sum(conv, CE, x[:, None, :], y, 1.0)
    fast, _ = fastest_clipped_grad_sum(conv, CE, x[:, None, :], y, 1.0)
    slow, _ = clipped_grad_sum_loop(conv, CE, x[:, None, :], y, 1.0)
    for name in slow:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)
    seq = torch.nn.Linear(64, 10)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        ghost_clipped_grad_sum(seq, CE, torch.randn(4, 3, 64), torch.randint(0, 10, (4, 3)), 1.0)
