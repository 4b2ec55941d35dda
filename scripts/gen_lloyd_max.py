"""Regenerate the Lloyd-Max tables in rust/src/kernels/lloyd_max.rs so the constants are reproducible, not magic."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

BEGIN = "// @generated begin: scripts/gen_lloyd_max.py"
END = "// @generated end"
BITS = (1, 2, 4, 8)
_erfc = np.frompyfunc(math.erfc, 1, 1)


def normal_tail(t: np.ndarray) -> np.ndarray:
    """1 - Phi(t) elementwise via math.erfc, accurate in the far tail where 1 - Phi would cancel."""
    return 0.5 * np.asarray(_erfc(t / math.sqrt(2.0)), dtype=np.float64)


def normal_pdf(t: np.ndarray) -> np.ndarray:
    """phi(t) elementwise; zero at +-inf."""
    return np.asarray(np.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi), dtype=np.float64)


def lloyd_max(levels: int, tol: float = 1e-13, max_iter: int = 1_000_000, omega: float = 1.9) -> np.ndarray:
    """MSE-optimal centroids of N(0,1) by over-relaxed Lloyd iteration on the (symmetric) positive half.

    Plain Lloyd steps crawl for 256 levels; over-relaxation (omega > 1) reaches the fixed point far sooner.
    """
    half = levels // 2
    # Start from equal-probability cells, which is already close for every size.
    q = (np.arange(half) + 0.5) / half
    c = np.sqrt(2.0) * np.array([_inv_erf(v) for v in q])
    for _ in range(max_iter):
        edges = np.concatenate(([0.0], 0.5 * (c[:-1] + c[1:]), [np.inf]))
        mass = normal_tail(edges[:-1]) - normal_tail(edges[1:])
        new = (normal_pdf(edges[:-1]) - normal_pdf(edges[1:])) / mass
        step = new - c
        c = c + omega * step
        if np.max(np.abs(step)) < tol:
            break
    else:
        raise RuntimeError(f"Lloyd iteration for {levels} levels did not converge")
    return np.concatenate((-c[::-1], c))


def _inv_erf(y: float) -> float:
    """Inverse of math.erf on (-1, 1) by bisection; only seeds the iteration."""
    lo, hi = -10.0, 10.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.erf(mid) < y:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def rust_literal(v: float) -> str:
    """Shortest f32 round-trip literal, fraction digits grouped by three as clippy asks."""
    text = np.format_float_positional(np.float32(v), unique=True, trim="0")
    whole, frac = text.split(".")
    return whole + "." + "_".join(frac[i : i + 3] for i in range(0, len(frac), 3))


def rust_array(name: str, doc: str, values: np.ndarray) -> str:
    """One `pub const NAME: [f32; N]`, six literals a line, kept out of rustfmt's way."""
    items = [rust_literal(v) for v in values]
    lines = ["    " + ", ".join(items[i : i + 6]) + "," for i in range(0, len(items), 6)]
    body = "\n".join(lines)
    return f"/// {doc}\n#[rustfmt::skip]\npub const {name}: [f32; {len(values)}] = [\n{body}\n];\n"


def generated_block() -> str:
    """The full text between the markers."""
    parts = [BEGIN + "\n"]
    for bits in BITS:
        levels = 1 << bits
        c = lloyd_max(levels)
        b = 0.5 * (c[:-1] + c[1:])
        parts.append(
            rust_array(f"CENTROIDS_{bits}", f"{levels} Lloyd-Max centroids of N(0,1), ascending.", c)
        )
        parts.append(
            rust_array(
                f"BOUNDARIES_{bits}",
                f"Decision boundaries of the {bits}-bit quantizer (centroid midpoints).",
                b,
            )
        )
    parts.append(END)
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = Path(__file__).resolve().parents[1] / "rust" / "src" / "kernels" / "lloyd_max.rs"
    parser.add_argument("path", nargs="?", type=Path, default=default)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    text = args.path.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + generated_block() + text[end:]
    if args.check:
        if new != text:
            print(f"{args.path} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
