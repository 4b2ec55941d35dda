"""Times each fedcodec kernel beside the numpy/torch code a user would otherwise write, in one run.

Run with `make bench` (or `.venv/bin/python benches/report.py`): prints one table and writes it,
with the machine it ran on, to benches/RESULTS.md. `pytest benches --benchmark-enable` times the
same pairs through pytest-benchmark.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from numpy.typing import NDArray

import fedcodec as fc

N = 10_000_000
EDEN_N = 2**20
CHUNK = 4096
TOPK = N // 100
MASK_FRACTION = 0.1
REPEATS = 7
RESULTS = Path(__file__).with_name("RESULTS.md")

F32 = NDArray[np.float32]
Floating = TypeVar("Floating", bound=np.floating[Any])
QuantBlocks = list[tuple[NDArray[np.uint8], F32, F32]]


@dataclass(frozen=True)
class Inputs:
    """Everything the pairs read, built once so no timing includes setting up."""

    x: F32
    x_eden: F32
    x_eden_f64: NDArray[np.float64]
    codes4: NDArray[np.uint16]
    quant_frame: bytes
    quant_blocks: QuantBlocks
    sparse_frame: bytes
    sparse_indices: NDArray[np.intp]
    sparse_values: F32
    sparse_gaps: NDArray[np.uint32]
    sparse_value_blocks: QuantBlocks
    randk_frame: bytes
    randk_indices: NDArray[np.intp]
    randk_values: F32
    accumulator: fc.Accumulator
    numpy_sum: F32
    decode_out: F32
    numpy_out: F32


def make_inputs(seed: int = 0) -> Inputs:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(N, dtype=np.float32)
    x_eden = rng.standard_normal(EDEN_N, dtype=np.float32)
    sparse_frame = (fc.TopK(0.01) + fc.Quantize(8)).encode(x, seed=1)
    sparse = fc.decode(sparse_frame)
    sparse_indices = np.flatnonzero(sparse)
    randk_frame = (fc.RandK(0.01) + fc.Quantize(8)).encode(x, seed=1)
    randk = fc.decode(randk_frame)
    randk_indices = np.flatnonzero(randk)
    return Inputs(
        x=x,
        x_eden=x_eden,
        x_eden_f64=x_eden.astype(np.float64),
        codes4=rng.integers(0, 16, size=N).astype(np.uint16),
        quant_frame=fc.Quantize(8).encode(x),
        quant_blocks=numpy_quantize8(x),
        sparse_frame=sparse_frame,
        sparse_indices=sparse_indices,
        sparse_values=sparse[sparse_indices],
        sparse_gaps=np.diff(sparse_indices, prepend=0).astype(np.uint32),
        sparse_value_blocks=numpy_quantize8(sparse[sparse_indices]),
        randk_frame=randk_frame,
        randk_indices=randk_indices,
        randk_values=randk[randk_indices],
        accumulator=fc.Accumulator(N),
        numpy_sum=np.zeros(N, dtype=np.float32),
        decode_out=np.zeros(N, dtype=np.float32),
        numpy_out=np.zeros(N, dtype=np.float32),
    )


# --- the numpy/torch way -------------------------------------------------------------------------


def chunked(x: F32) -> list[F32]:
    """Whole chunks as one 2-d view, plus the partial last chunk."""
    whole = x.size // CHUNK * CHUNK
    blocks = [x[:whole].reshape(-1, CHUNK)]
    if whole < x.size:
        blocks.append(x[whole:].reshape(1, -1))
    return blocks


def numpy_quantize8(x: F32) -> QuantBlocks:
    """Per-chunk min/max scale and round to uint8, as a numpy user writes it."""
    out = []
    for block in chunked(x):
        lo = block.min(axis=1, keepdims=True)
        scale = (block.max(axis=1, keepdims=True) - lo) / np.float32(255)
        scale[scale == 0] = 1
        codes = np.rint((block - lo) / scale).astype(np.uint8)
        out.append((codes, lo, scale))
    return out


def numpy_dequantize8(blocks: QuantBlocks) -> F32:
    return np.concatenate([(codes * scale + lo).ravel() for codes, lo, scale in blocks])


def numpy_dequantize8_astype(blocks: QuantBlocks) -> F32:
    """The textbook spelling: widen the codes to float32, then `lo + codes * step`."""
    return np.concatenate([(lo + codes.astype(np.float32) * scale).ravel() for codes, lo, scale in blocks])


def numpy_dequantize8_in_place(blocks: QuantBlocks, out: F32 | None = None) -> F32:
    """The careful numpy way: one output array (or `out`), the multiply written into it, `lo` added."""
    if out is None:
        out = np.empty(sum(codes.size for codes, _, _ in blocks), dtype=np.float32)
    start = 0
    for codes, lo, scale in blocks:
        view = out[start : start + codes.size].reshape(codes.shape)
        np.multiply(codes, scale, out=view)
        view += lo
        start += codes.size
    return out


def numpy_sparse_add(total: F32, gaps: NDArray[np.uint32], value_blocks: QuantBlocks, weight: float) -> None:
    """numpy decoding what the frame carries: indices from gaps, 8-bit values, then np.add.at."""
    np.add.at(
        total, np.cumsum(gaps, dtype=np.intp), np.float32(weight) * numpy_dequantize8_in_place(value_blocks)
    )


def numpy_randk_add(total: F32, fraction: float, seed: int, values: F32, weight: float) -> None:
    """numpy regenerating a seeded sparse mask as randk's decoder must: geometric gaps, cumsum, np.add.at."""
    gaps = np.random.default_rng(seed).geometric(fraction, size=values.size)
    idx = np.cumsum(gaps) - 1
    kept = idx < total.size
    np.add.at(total, idx[kept], np.float32(weight) * values[kept])


def numpy_fwht(x: NDArray[Floating]) -> NDArray[Floating]:
    """The standard iterative fast Walsh-Hadamard transform with reshape butterflies, orthonormal."""
    n = x.size
    y = x.copy()
    h = 1
    while h < n:
        pairs = y.reshape(-1, 2, h)
        total = pairs[:, 0] + pairs[:, 1]
        pairs[:, 1] = pairs[:, 0] - pairs[:, 1]
        pairs[:, 0] = total
        h *= 2
    y *= 1 / np.sqrt(n)
    return y


def numpy_pack_bits(codes: NDArray[np.uint16], bits: int) -> bytes:
    """LSB-first bit packing via np.packbits, the same layout as fc.kernels.pack_bits."""
    planes = ((codes[:, None] >> np.arange(bits, dtype=np.uint16)) & 1).astype(np.uint8)
    return np.packbits(planes.ravel(), bitorder="little").tobytes()


def numpy_mask_extract(x: F32, fraction: float, seed: int) -> F32:
    """A seeded random mask drawn with numpy's PCG64, then boolean extraction."""
    mask = np.random.default_rng(seed).random(x.size, dtype=np.float32) < fraction
    return x[mask]


def torch_topk(x: F32, k: int) -> torch.Tensor:
    return torch.topk(torch.from_numpy(x).abs(), k).indices


# --- the pairs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    label: str
    run: Callable[[Inputs], object]


@dataclass(frozen=True)
class Pair:
    kernel: str
    ours: Contender
    theirs: Contender


TOPK_EXACT = Contender("fc.kernels.topk_indices", lambda i: fc.kernels.topk_indices(i.x, TOPK))
TOPK_SAMPLED = Contender(
    "fc.kernels.topk_indices(sampled=True)",
    lambda i: fc.kernels.topk_indices(i.x, TOPK, sampled=True, seed=1),
)
TORCH_TOPK = Contender("torch.topk", lambda i: torch_topk(i.x, TOPK))
SPARSE_ADD = Contender(
    "fc.Accumulator.add (parse+decode+add)", lambda i: i.accumulator.add(i.sparse_frame, 0.5)
)
RANDK_ADD = Contender(
    "fc.Accumulator.add of the randk frame (parse+decode+add)",
    lambda i: i.accumulator.add(i.randk_frame, 0.5),
)
FC_DECODE = Contender("fc.decode", lambda i: fc.decode(i.quant_frame))
FC_DECODE_OUT = Contender("fc.decode(out=array)", lambda i: fc.decode(i.quant_frame, out=i.decode_out))
NUMPY_FWHT_F32 = Contender("numpy FWHT (float32)", lambda i: numpy_fwht(i.x_eden))

PAIRS = [
    Pair(
        "8-bit per-chunk quantize, 10M",
        Contender("fc.Quantize(8).encode (whole frame)", lambda i: fc.Quantize(8).encode(i.x)),
        Contender("numpy min/max/scale/rint/uint8", lambda i: numpy_quantize8(i.x)),
    ),
    Pair(
        "decode quant:8, 10M",
        FC_DECODE,
        Contender("numpy codes*scale+lo", lambda i: numpy_dequantize8(i.quant_blocks)),
    ),
    Pair(
        "decode quant:8, 10M",
        FC_DECODE,
        Contender("numpy lo + codes.astype(f32)*step", lambda i: numpy_dequantize8_astype(i.quant_blocks)),
    ),
    Pair(
        "decode quant:8, 10M",
        FC_DECODE,
        Contender(
            "numpy in place: multiply(codes, step, out=) += lo",
            lambda i: numpy_dequantize8_in_place(i.quant_blocks),
        ),
    ),
    Pair(
        "decode quant:8 over an existing array, 10M",
        FC_DECODE_OUT,
        Contender(
            "numpy over an existing array: multiply(codes, step, out=) += lo",
            lambda i: numpy_dequantize8_in_place(i.quant_blocks, i.numpy_out),
        ),
    ),
    Pair(
        "decode quant:8 over an existing array, 10M",
        FC_DECODE_OUT,
        Contender("numpy codes*scale+lo", lambda i: numpy_dequantize8(i.quant_blocks)),
    ),
    Pair(
        "exact top-1%, 10M",
        TOPK_EXACT,
        Contender("np.argpartition", lambda i: np.argpartition(np.abs(i.x), -TOPK)[-TOPK:]),
    ),
    Pair("exact top-1%, 10M", TOPK_EXACT, TORCH_TOPK),
    Pair("sampled top-1%, 10M", TOPK_SAMPLED, TORCH_TOPK),
    Pair(
        "pack 4-bit codes, 10M",
        Contender("fc.kernels.pack_bits", lambda i: fc.kernels.pack_bits(i.codes4, 4)),
        Contender("np.packbits of bit planes", lambda i: numpy_pack_bits(i.codes4, 4)),
    ),
    Pair(
        "EDEN 1-bit encode, 2^20",
        Contender("fc.Eden(1).encode", lambda i: fc.Eden(1).encode(i.x_eden, seed=1)),
        Contender("numpy FWHT alone (float64)", lambda i: numpy_fwht(i.x_eden_f64)),
    ),
    Pair(
        "FWHT, 2^20",
        Contender("fc.kernels.fwht", lambda i: fc.kernels.fwht(i.x_eden)),
        NUMPY_FWHT_F32,
    ),
    Pair(
        "seeded mask extract 10%, 10M",
        Contender("fc.kernels.mask_extract", lambda i: fc.kernels.mask_extract(i.x, MASK_FRACTION, 3)),
        Contender("numpy PCG64 mask + x[mask]", lambda i: numpy_mask_extract(i.x, MASK_FRACTION, 3)),
    ),
    Pair(
        "seeded mask extract 1% (geometric gaps), 10M",
        Contender("fc.kernels.mask_extract(fraction=0.01)", lambda i: fc.kernels.mask_extract(i.x, 0.01, 3)),
        Contender("numpy PCG64 mask + x[mask] (1%)", lambda i: numpy_mask_extract(i.x, 0.01, 3)),
    ),
    Pair(
        "add a quant:8 frame to a sum, 10M",
        Contender("fc.Accumulator.add of the quant:8 frame", lambda i: i.accumulator.add(i.quant_frame, 0.5)),
        Contender(
            "numpy sum += w * (codes*scale+lo)",
            lambda i: np.add(
                i.numpy_sum, np.float32(0.5) * numpy_dequantize8(i.quant_blocks), out=i.numpy_sum
            ),
        ),
    ),
    Pair(
        "add a float32 array to a sum, 10M",
        Contender("fc.Accumulator.add_array", lambda i: i.accumulator.add_array(i.x, 0.5)),
        Contender(
            "numpy sum += w * x",
            lambda i: np.add(i.numpy_sum, np.float32(0.5) * i.x, out=i.numpy_sum),
        ),
    ),
    Pair(
        "add a randk:0.01+quant:8 frame to a sum, 10M",
        RANDK_ADD,
        Contender(
            "np.add.at of decoded values at the mask's indices",
            lambda i: np.add.at(i.numpy_sum, i.randk_indices, np.float32(0.5) * i.randk_values),
        ),
    ),
    Pair(
        "add a randk:0.01+quant:8 frame to a sum, 10M",
        RANDK_ADD,
        Contender(
            "numpy regenerating a seeded 1% mask: geometric gaps, cumsum, np.add.at",
            lambda i: numpy_randk_add(i.numpy_sum, 0.01, 1, i.randk_values, 0.5),
        ),
    ),
    Pair(
        "add a topk:0.01+quant:8 frame to a sum, 10M",
        SPARSE_ADD,
        Contender(
            "np.add.at of decoded values",
            lambda i: np.add.at(i.numpy_sum, i.sparse_indices, np.float32(0.5) * i.sparse_values),
        ),
    ),
    Pair(
        "add a topk:0.01+quant:8 frame to a sum, 10M",
        SPARSE_ADD,
        Contender(
            "numpy decoding the same information: cumsum(gaps), codes*step+lo, np.add.at",
            lambda i: numpy_sparse_add(i.numpy_sum, i.sparse_gaps, i.sparse_value_blocks, 0.5),
        ),
    ),
]


# --- timing and the report -----------------------------------------------------------------------


def paired_ms(
    ours: Callable[[], object], theirs: Callable[[], object], repeats: int = REPEATS
) -> tuple[float, float]:
    """Median wall times of each side, alternating, so a passing load on a shared machine hits both."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, spent in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times[0]), 1e3 * statistics.median(times[1])


@dataclass(frozen=True)
class Row:
    pair: Pair
    ours_ms: float
    theirs_ms: float

    @property
    def speedup(self) -> float:
        """How many times faster ours is (theirs over ours)."""
        return self.theirs_ms / self.ours_ms


def measure(inputs: Inputs) -> list[Row]:
    return [
        Row(pair, *paired_ms(lambda: pair.ours.run(inputs), lambda: pair.theirs.run(inputs)))  # noqa: B023
        for pair in PAIRS
    ]


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def machine() -> list[str]:
    blas = os.environ.get("OPENBLAS_CORETYPE")
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), fedcodec {fc.__version__}",
        f"- OPENBLAS_CORETYPE={blas} (numpy's element-wise kernels do not use BLAS)" if blas else "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    ]


def table(rows: list[Row]) -> list[str]:
    lines = [
        "| kernel | ours | ours (ms) | theirs | theirs (ms) | ratio (theirs/ours) |",
        "| --- | --- | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        p = row.pair
        lines.append(
            f"| {p.kernel} | {p.ours.label} | {row.ours_ms:.2f} | {p.theirs.label} "
            f"| {row.theirs_ms:.2f} | {row.speedup:.2f}x |"
        )
    return lines


def report(rows: list[Row]) -> str:
    header = [
        "# fedcodec kernels beside numpy/torch",
        "",
        f"Command: `make bench` (`.venv/bin/python benches/report.py`). Median of {REPEATS} runs of each "
        "side, alternating, after one warm-up, same process, same inputs; ratio > 1: fedcodec is faster.",
        "",
        *[line for line in machine() if line],
        "",
        "The server's path (decode, dense and sparse adds) at 10M and 100M with 1 and 2 threads, with CPU "
        "time and GB/s: `benches/RESULTS_server_path.md`, written by `benches/bench_server_path.py`.",
        "",
        "`fc.decode` without `out=` writes a fresh 40 MB array, and its time is mostly the kernel faulting "
        "those pages in: on a 2-core virtual machine two threads faulting fresh memory at once sometimes "
        "slow to 20-50 ms a call for seconds at a time, so those rows vary from run to run. "
        "`fc.decode(frame, out=array)` writes over an array that is already mapped and does not vary.",
        "",
    ]
    return "\n".join([*header, *table(rows), ""])


def main() -> None:
    text = report(measure(make_inputs()))
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
