"""Secure aggregation: mask-stream GB/s per core beside numpy's generators, and whole SecAgg+ rounds
beside a plain float sum of the same updates.

Run: PYTHONPATH=python python benches/bench_secagg.py [--params 1000000] [--skip-rounds]
Per-core throughput is bytes over the process's CPU seconds with one rayon thread (honest on a
shared machine, where wall time also counts other processes' turns); wall GB/s is printed too.
Rounds run every client and the server in this one process, one after another, so "clients" is
the sum over all clients of a round (a deployed client pays that divided by the clients).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # before fedcodec starts its pool: per-core numbers

import numpy as np

from fedcodec import Accumulator, secagg
from fedcore.secure import RingConfig, SecAggParams, choose_params, secure_sum
from fedcore.secure.messages import MASK_PRG


def _rate(fn: Callable[[], object], nbytes: int, repeat: int = 5) -> tuple[float, float]:
    """Best (CPU GB/s, wall GB/s) over `repeat` runs."""
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return nbytes / min(cpu) / 1e9, nbytes / min(wall) / 1e9


def bench_masks(n: int) -> None:
    seed = secagg.derive_scalar(b"bench", b"mask")
    pcg = np.random.default_rng(0)
    mt = np.random.Generator(np.random.MT19937(0))
    acc = np.zeros(n, dtype=np.uint32)
    rows: dict[str, Callable[[], object]] = {}
    for prg in secagg.prgs():
        rows[f"fedcodec {prg} mask_stream (Z_2^32)"] = partial(secagg.mask_stream, seed, n, 32, prg)
        rows[f"fedcodec {prg} mask added in place (apply_masks)"] = partial(
            secagg.apply_masks, acc, [seed], [1], 32, prg
        )
    rows |= {
        "numpy PCG64 Generator.integers uint32": lambda: pcg.integers(0, 2**32, n, dtype=np.uint32),
        "numpy PCG64 Generator.bytes": lambda: pcg.bytes(4 * n),
        "numpy MT19937 integers uint32 (Flower's generator)": lambda: mt.integers(
            0, 2**32, n, dtype=np.uint32
        ),
    }
    print(f"\n## Mask generation, {n:,} uint32 ({4 * n / 2**20:.0f} MiB), one core\n")
    print("| generator | GB/s per CPU-second | GB/s wall |\n| --- | ---: | ---: |")
    rates = {}
    for name, fn in rows.items():
        rates[name], wall = _rate(fn, 4 * n)
        print(f"| {name} | {rates[name]:.2f} | {wall:.2f} |")
    numpy_rate = rates["numpy PCG64 Generator.integers uint32"]
    for prg in secagg.prgs():
        mine = rates[f"fedcodec {prg} mask added in place (apply_masks)"]
        print(f"\n{prg} mask added in place / numpy PCG64 integers: {mine / numpy_rate:.2f}x", end="")
    print()


def bench_client_kernels(n: int) -> None:
    """A client's two heavy calls on n floats, CPU ms, beside the numpy way of the same step."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(n) * 0.01).astype(np.float32)
    clip, bits, ring_bits, k = 0.05, 16, 20, 10
    seed = secagg.derive_scalar(b"bench", b"rounding")
    codes = secagg.quantize(x, clip, bits, seed)
    seeds = [secagg.derive_scalar(b"bench", b"mask %d" % i) for i in range(k)]
    signs = [1 if i % 2 else -1 for i in range(k)]
    top = (1 << bits) - 1

    def numpy_quantize() -> object:
        t = (np.clip(x.astype(np.float64), -clip, clip) + clip) * (top / (2 * clip))
        return np.minimum(np.floor(t + rng.random(n)), top).astype(np.uint32)

    def numpy_mask() -> object:
        acc = codes.copy()
        for s in signs:
            acc += np.uint32(s % 2**32) * rng.integers(0, 2**32, n, dtype=np.uint32)
        return acc & np.uint32((1 << ring_bits) - 1)

    rows = {
        f"quantize (clip, stochastic rounding to {bits} bits)": (
            lambda: secagg.quantize(x, clip, bits, seed),
            numpy_quantize,
        ),
        f"mask with {k} AES-128-CTR streams and pack to {ring_bits} bits": (
            lambda: secagg.mask(codes, seeds, signs, ring_bits, "aes128-ctr"),
            numpy_mask,
        ),
    }
    print(f"\n## A client's kernels, {n:,} values, one core (best of 20, CPU ms)\n")
    print("| step | fedcodec | numpy way (PCG64, no packing) | ratio |\n| --- | ---: | ---: | ---: |")
    for name, (mine, theirs) in rows.items():
        ours = min(_cpu(mine) for _ in range(20))
        numpy_ms = min(_cpu(theirs) for _ in range(5))
        print(f"| {name} | {ours * 1e3:.2f} | {numpy_ms * 1e3:.2f} | {numpy_ms / ours:.1f}x |")


def _cpu(fn: Callable[[], object]) -> float:
    """CPU seconds of one call of fn."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def bench_round(
    n_clients: int, n_params: int, params: SecAggParams, label: str, prg: str = MASK_PRG, repeat: int = 3
) -> None:
    """One warm-up round, then `repeat` rounds; the round of median CPU is reported (Flower's figures are
    medians over the rounds after its first, too)."""
    rng = np.random.default_rng(1)
    updates = {c: (rng.standard_normal(n_params) * 0.01).astype(np.float32) for c in range(n_clients)}
    config = RingConfig(clip=0.05, bits=16, max_clients=n_clients, seed=3)
    start, cpu = time.perf_counter(), time.process_time()
    acc = Accumulator(n_params)
    for x in updates.values():
        acc.add_array(x)
    plain_sum = acc.result()
    plain, plain_cpu = time.perf_counter() - start, time.process_time() - cpu
    rounds = []
    for _ in range(repeat + 1):
        start, cpu = time.perf_counter(), time.process_time()
        total, report, codec = secure_sum(updates, config, params, clock=time.process_time, prg=prg)
        rounds.append((time.process_time() - cpu, time.perf_counter() - start, total, report, codec))
    cpus = sorted(r[0] for r in rounds[1:])
    round_cpu, wall, total, report, codec = sorted(rounds[1:], key=lambda r: r[0])[len(cpus) // 2]
    clipped = sum(np.clip(x, -config.clip, config.clip).astype(np.float64) for x in updates.values())
    err = float(np.max(np.abs(total - clipped)))
    clip_err = float(np.max(np.abs(total - plain_sum)))
    print(
        f"\n## {label}: {n_clients} clients, {n_params:,} params, k={params.degree}, t={params.threshold}, "
        f"mask PRG {prg}\n"
    )
    print("| stage (CPU seconds) | all clients | server |\n| --- | ---: | ---: |")
    for stage in report.client_seconds:
        print(f"| {stage} | {report.client_seconds[stage]:.3f} | {report.server_seconds[stage]:.3f} |")
    print(f"| encode (clip; the rounding is in mask) | {codec['encode']:.3f} | |")
    print(f"| decode to float sum | | {codec['decode']:.3f} |")
    per_client = sum(report.client_seconds.values()) / n_clients
    print(
        f"\nround: {round_cpu:.3f} CPU s ({wall:.2f} s wall), all clients and the server in one process "
        f"(median of {repeat} rounds after a warm-up: {', '.join(f'{c:.3f}' for c in cpus)}; "
        f"warm-up {rounds[0][0]:.3f}); "
        f"per client {per_client:.3f} CPU s, server {sum(report.server_seconds.values()):.3f} CPU s. "
        f"Plain float sum of the same updates: {plain_cpu:.3f} CPU s ({plain:.3f} s wall); "
        f"ratio {round_cpu / plain_cpu:.0f}x"
    )
    print(
        f"upload {report.upload_bytes / n_params:.3f} B/param (ring {config.ring_bits} bits); "
        f"max |secure - clipped plain sum| = {err:.2e} (code step {2 * config.clip / config.levels:.1e}); "
        f"max |secure - unclipped plain sum| = {clip_err:.2e} (clip {config.clip})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--skip-rounds", action="store_true")
    args = parser.parse_args()
    print(f"RAYON_NUM_THREADS={os.environ['RAYON_NUM_THREADS']}, os.cpu_count()={os.cpu_count()}")
    bench_masks(1 << 22)
    bench_client_kernels(args.params)
    if args.skip_rounds:
        return
    print(
        "\nFlower SecAgg+ reference (issue #11's figures; benches/flower_secagg.py measures Flower here): "
        "1.9 s a round at 100 clients / 10 per round / 1M params (0.56 s plain); 8.0 s at 1,000 / 100 "
        "with 11 shares."
    )
    complete = SecAggParams(9, 5, "complete graph")
    for prg in reversed(secagg.prgs()):  # ChaCha20 (the previous default) first, then AES-128-CTR
        bench_round(10, args.params, complete, "100 clients / 10 per round", prg)
    bench_round(
        100, args.params, SecAggParams(10, 6, "Flower's 11 shares"), "1,000 clients / 100 per round, k=10"
    )
    chosen = choose_params(100)
    bench_round(100, args.params, chosen, "1,000 clients / 100 per round, choose_params(100)")
    print(f"\nchoose_params(100): {chosen.reason}")


if __name__ == "__main__":
    main()
