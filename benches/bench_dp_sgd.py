"""DP-SGD per-sample clipping: vmap(grad) and ghost clipping against a loop over examples, torch and MLX.

Run: PYTHONPATH=python python benches/bench_dp_sgd.py [--repeats 20] [--threads 1]
Workload: the digits MLP 64-128-10 and a wider 64-256-256-10, batches of 64 and 256. Both paths compute the
same thing (sum over the batch of gradients clipped to norm C = 1, checked equal before timing); the time is
the median of `repeats` runs after one warm-up, the three paths of a row timed in turn. Ratios = loop / vmap
and loop / ghost. torch: torch.func over functional_call, and ghost clipping (per-example norms from layer
inputs and output gradients, one backward pass; what DP-SGD uses for all-Linear models); MLX (rows only if
mlx imports): mx.vmap(mx.grad) and the same ghost clipping, on the CPU device.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from fedcore.backends.models import torch_mlp
from fedcore.privacy.dpsgd import clipped_grad_sum, clipped_grad_sum_loop, ghost_clipped_grad_sum

CE = torch.nn.functional.cross_entropy


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    print(
        f"{'lib':<6} {'model':<16} {'batch':>5} {'loop ms':>9} {'vmap ms':>9} {'ghost ms':>9} "
        f"{'loop/vmap':>9} {'loop/ghost':>10}"
    )
    for hidden in ([128], [256, 256]):
        model = torch_mlp(64, hidden, 10, seed=0)
        name = "-".join(str(w) for w in [64, *hidden, 10])
        for size in (64, 256):
            g = torch.Generator().manual_seed(size)
            x, y = torch.randn(size, 64, generator=g), torch.randint(0, 10, (size,), generator=g)
            slow, _ = clipped_grad_sum_loop(model, CE, x, y, 1.0)
            for fast_path in (clipped_grad_sum, ghost_clipped_grad_sum):
                fast, _ = fast_path(model, CE, x, y, 1.0)
                for key in slow:
                    torch.testing.assert_close(fast[key], slow[key], rtol=1e-4, atol=1e-6)
            loop = median_ms(lambda: clipped_grad_sum_loop(model, CE, x, y, 1.0), args.repeats)  # noqa: B023
            vec = median_ms(lambda: clipped_grad_sum(model, CE, x, y, 1.0), args.repeats)  # noqa: B023
            ghost = median_ms(lambda: ghost_clipped_grad_sum(model, CE, x, y, 1.0), args.repeats)  # noqa: B023
            print(
                f"{'torch':<6} {name:<16} {size:>5} {loop:>9.2f} {vec:>9.2f} {ghost:>9.2f} "
                f"{loop / vec:>8.1f}x {loop / ghost:>9.1f}x"
            )
    mlx_rows(args.repeats)


def mlx_rows(repeats: int) -> None:
    try:
        import mlx.core as mx
    except ImportError:
        print("mlx not installed: no MLX rows")
        return
    import numpy as np
    from mlx.nn.losses import cross_entropy

    from fedcore.backends.models import mlx_mlp
    from fedcore.privacy.dpsgd_mlx import (
        clipped_grad_sum_mlx,
        clipped_grad_sum_mlx_loop,
        ghost_clipped_grad_sum_mlx,
    )

    mx.set_default_device(mx.cpu)

    def ce(logits: mx.array, labels: mx.array) -> mx.array:
        return cross_entropy(logits, labels, reduction="mean")

    for hidden in ([128], [256, 256]):
        model = mlx_mlp(64, hidden, 10, seed=0)
        name = "-".join(str(w) for w in [64, *hidden, 10])
        for size in (64, 256):
            rng = np.random.default_rng(size)
            x = mx.array(rng.standard_normal((size, 64)).astype(np.float32))
            y = mx.array(rng.integers(0, 10, size))
            slow, _ = clipped_grad_sum_mlx_loop(model, ce, x, y, 1.0)
            for fast_path in (clipped_grad_sum_mlx, ghost_clipped_grad_sum_mlx):
                fast, _ = fast_path(model, ce, x, y, 1.0)
                for key in slow:
                    np.testing.assert_allclose(np.array(fast[key]), np.array(slow[key]), rtol=1e-4, atol=1e-6)
            loop = median_ms(lambda: clipped_grad_sum_mlx_loop(model, ce, x, y, 1.0), repeats)  # noqa: B023
            vec = median_ms(lambda: clipped_grad_sum_mlx(model, ce, x, y, 1.0), repeats)  # noqa: B023
            ghost = median_ms(lambda: ghost_clipped_grad_sum_mlx(model, ce, x, y, 1.0), repeats)  # noqa: B023
            print(
                f"{'mlx':<6} {name:<16} {size:>5} {loop:>9.2f} {vec:>9.2f} {ghost:>9.2f} "
                f"{loop / vec:>8.1f}x {loop / ghost:>9.1f}x"
            )


if __name__ == "__main__":
    main()
