"""The server's per-frame work (decode, dense and sparse adds into a running sum) beside the numpy
way, at 10M and 100M float32, with 1 and 2 rayon threads.

Run: `.venv/bin/python benches/bench_server_path.py [--sizes 10000000 100000000] [--threads 1 2]`.
Each (size, threads) runs in a fresh process (rayon reads RAYON_NUM_THREADS once); within it the
two sides alternate call by call, so both see the same machine load. Wall time is the median of
the calls; CPU time (all threads of the process) is reported beside it, since on a shared machine
a call longer than a scheduler slice can wait for a core. GB/s counts the bytes each call must
read and write: the frame or the array added, and the sum read and written.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import fedcodec as fc

F32 = NDArray[np.float32]
CHUNK = 4096
RESULTS = Path(__file__).with_name("RESULTS_server_path.md")
HEADER = (
    "# The server's path beside numpy\n\n"
    "Command: `.venv/bin/python benches/bench_server_path.py --write`. Median of 7 alternating calls "
    "per side, each (size, threads) in a fresh process; ratio > 1 means fedcodec is faster. CPU ms is "
    "the process's CPU time (all threads) per call; GB/s counts the bytes a call must move."
)
WEIGHT = np.float32(0.5)


def numpy_dequantize8(frame_blocks: list[tuple[NDArray[np.uint8], F32, F32]]) -> F32:
    """Per-chunk `codes * scale + lo`, as a numpy user writes it."""
    return np.concatenate([(codes * scale + lo).ravel() for codes, lo, scale in frame_blocks])


def numpy_quantize8(x: F32) -> list[tuple[NDArray[np.uint8], F32, F32]]:
    """Per-chunk min/max scale and round to uint8 (the blocks the numpy side decodes)."""
    whole = x.size // CHUNK * CHUNK
    blocks = [x[:whole].reshape(-1, CHUNK)] + ([x[whole:].reshape(1, -1)] if whole < x.size else [])
    out = []
    for block in blocks:
        lo = block.min(axis=1, keepdims=True)
        scale = (block.max(axis=1, keepdims=True) - lo) / np.float32(255)
        scale[scale == 0] = 1
        out.append((np.rint((block - lo) / scale).astype(np.uint8), lo, scale))
    return out


@dataclass(frozen=True)
class Pair:
    """One kernel: our call and the numpy call, and the bytes each must move."""

    kernel: str
    ours: str
    theirs: str
    nbytes: int
    run_ours: Callable[[], object]
    run_theirs: Callable[[], object]


def pairs(n: int) -> list[Pair]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n, dtype=np.float32)
    quant = fc.Quantize(8).encode(x)
    blocks = numpy_quantize8(x)
    acc = fc.Accumulator(n)
    total = np.zeros(n, dtype=np.float32)
    out: list[Pair] = [
        Pair(
            "decode quant:8",
            "fc.decode",
            "numpy codes*scale+lo",
            len(quant) + 4 * n,
            lambda: fc.decode(quant),
            lambda: numpy_dequantize8(blocks),
        ),
        Pair(
            "dense add of an array",
            "Accumulator.add_array",
            "numpy sum += w * x",
            12 * n,
            lambda: acc.add_array(x, 0.5),
            lambda: np.add(total, WEIGHT * x, out=total),
        ),
        Pair(
            "dense add of a quant:8 frame",
            "Accumulator.add",
            "numpy sum += w * (codes*scale+lo)",
            len(quant) + 8 * n,
            lambda: acc.add(quant, 0.5),
            lambda: np.add(total, WEIGHT * numpy_dequantize8(blocks), out=total),
        ),
    ]
    return out + [sparse_pair(spec, x, acc, total) for spec in ("topk:0.01+quant:8", "randk:0.01+quant:8")]


def sparse_pair(spec: str, x: F32, acc: fc.Accumulator, total: F32) -> Pair:
    """Adding a sparse frame, against np.add.at of its values already decoded at their indices."""
    frame = fc.from_spec(spec).encode(x, seed=1)
    decoded = fc.decode(frame)
    idx = np.flatnonzero(decoded)
    values = decoded[idx]
    return Pair(
        f"sparse add {spec}",
        "Accumulator.add (parse+decode+add)",
        "np.add.at of pre-decoded values",
        len(frame) + 8 * idx.size,
        lambda: acc.add(frame, 0.5),
        lambda: np.add.at(total, idx, WEIGHT * values),
    )


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


@dataclass(frozen=True)
class Row:
    """Medians of one pair: wall and CPU milliseconds per side, and the bytes a call moves."""

    kernel: str
    ours: str
    theirs: str
    nbytes: int
    ours_ms: float
    ours_cpu_ms: float
    theirs_ms: float
    theirs_cpu_ms: float


def measure(n: int, repeats: int) -> list[Row]:
    rows = []
    for pair in pairs(n):
        pair.run_ours()
        pair.run_theirs()
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(timed(pair.run_ours))
            theirs.append(timed(pair.run_theirs))
        rows.append(
            Row(
                pair.kernel,
                pair.ours,
                pair.theirs,
                pair.nbytes,
                statistics.median(s[0] for s in ours),
                statistics.median(s[1] for s in ours),
                statistics.median(s[0] for s in theirs),
                statistics.median(s[1] for s in theirs),
            )
        )
    return rows


def table(results: list[tuple[int, int, list[Row]]]) -> str:
    lines = [
        "| n | threads | kernel | ours | ms (cpu ms) | GB/s | theirs | ms (cpu ms) | GB/s "
        "| ratio wall | ratio cpu |",
        "| ---: | ---: | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for n, threads, rows in results:
        for r in rows:
            lines.append(
                f"| {n // 1_000_000}M | {threads} | {r.kernel} | {r.ours} "
                f"| {r.ours_ms:.2f} ({r.ours_cpu_ms:.2f}) | {r.nbytes / r.ours_ms / 1e6:.1f} "
                f"| {r.theirs} | {r.theirs_ms:.2f} ({r.theirs_cpu_ms:.2f}) "
                f"| {r.nbytes / r.theirs_ms / 1e6:.1f} | {r.theirs_ms / r.ours_ms:.2f}x "
                f"| {r.theirs_cpu_ms / r.ours_cpu_ms:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000_000, 100_000_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--write", action="store_true", help=f"also write {RESULTS.name}")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps([asdict(row) for row in measure(args.child, args.repeats)]))
        return
    results = []
    for n in args.sizes:
        for threads in args.threads:
            env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(n), "--repeats", str(args.repeats)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            results.append((n, threads, [Row(**row) for row in json.loads(child.stdout)]))
            print(f"done n={n} threads={threads}", file=sys.stderr)
    text = "\n".join(
        [
            HEADER,
            "",
            f"- Date: {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, "
            f"{os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f} at the end",
            "",
            table(results),
            "",
        ]
    )
    print(text)
    if args.write:
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
