"""Times the robust aggregators on one round of K updates x d parameters, beside the numpy way.

Run with `python benches/bench_robust.py [--k 100] [--d 1000000] [--repeats 3]`: prints a markdown
table (median seconds of the repeats, interleaved so both sides see the same machine load) with
the ratio numpy / ours where numpy has a counterpart, and checks that both sides agree.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcodec import robust as kernels
from fedcore.robust import parse

F32 = NDArray[np.float32]


def numpy_trimmed_mean(x: F32, trim: int) -> NDArray[np.floating]:
    """The fastest numpy trimmed mean (what scipy.stats.trim_mean does): partition, slice, mean."""
    k = x.shape[0]
    part = np.partition(x, (trim, k - trim - 1), axis=0)
    return part[trim : k - trim].mean(axis=0)


def numpy_sq_dists(x: F32) -> NDArray[np.float64]:
    """Pairwise squared distances the numpy way: one BLAS Gram matrix, then the norms."""
    g = (x @ x.T).astype(np.float64)
    n = np.diag(g)
    return np.maximum(n[:, None] + n[None, :] - 2.0 * g, 0.0)


@dataclass(frozen=True)
class Row:
    name: str
    ours: Callable[[], object]
    theirs: Callable[[], object] | None = None
    theirs_label: str = ""


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    k, d = args.k, args.d
    f = k // 5
    x = np.random.default_rng(0).standard_normal((k, d), dtype=np.float32)
    trim = f

    np.testing.assert_array_equal(kernels.coordinate_median(x), np.median(x, axis=0))
    np.testing.assert_allclose(
        kernels.trimmed_mean(x, trim), numpy_trimmed_mean(x, trim), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(kernels.pairwise_sq_dists(x), numpy_sq_dists(x), rtol=1e-3)

    rows = [
        Row(
            "median",
            lambda: kernels.coordinate_median(x),
            lambda: np.median(x, axis=0),
            "np.median(axis=0)",
        ),
        Row(
            f"trimmed mean (trim {trim} per side)",
            lambda: kernels.trimmed_mean(x, trim),
            lambda: numpy_trimmed_mean(x, trim),
            "np.partition + mean",
        ),
        Row(
            "pairwise sq. distances",
            lambda: kernels.pairwise_sq_dists(x),
            lambda: numpy_sq_dists(x),
            "x @ x.T",
        ),
    ]
    specs = [f"krum:{f}", f"multikrum:{f},{k - f}", f"bulyan:{f}", "geomed"]
    specs += ["cclip:1000.0", "normbound:1000.0", "bucket:2+median", f"nnm:{f}+median"]
    for spec in specs:
        rule = parse(spec)
        rows.append(Row(spec, lambda rule=rule: rule(x, seed=1)))

    cpu = platform.processor() or platform.machine()
    print(f"K = {k} x d = {d:,} float32, {os.cpu_count()} CPUs ({cpu}), median of {args.repeats} runs")
    print()
    print("| rule | ours (s) | numpy way | numpy (s) | numpy / ours |")
    print("| --- | ---: | --- | ---: | ---: |")
    for row in rows:
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(timed(row.ours))
            if row.theirs is not None:
                theirs.append(timed(row.theirs))
        o = statistics.median(ours)
        if theirs:
            t = statistics.median(theirs)
            print(f"| {row.name} | {o:.3f} | {row.theirs_label} | {t:.3f} | {t / o:.1f}x |", flush=True)
        else:
            print(f"| {row.name} | {o:.3f} | | | |", flush=True)


if __name__ == "__main__":
    main()
