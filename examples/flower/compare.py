"""Plain Flower against Flower with fedcodec, same data, model and seeds, in Flower's own simulation.

    python examples/flower/compare.py [--codec topk:0.05+quant:4] [--seeds 0 1 2] [--clients 10] [--rounds 30]

Runs examples/flower/digits_app.py once plain and once compressed per seed (each in its own process: one
Ray session each) and prints the uplink bytes (as Flower's message_size_mod counts the reply records, and
as deflated objects on the wire), their ratio, and the final central accuracy of each, with the means.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

APP = Path(__file__).resolve().parent / "digits_app.py"


def run(args: list[str], timeout_s: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run.json"
        subprocess.run(
            [sys.executable, str(APP), *args, "--out", str(out)],
            check=True,
            timeout=timeout_s,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        result: dict[str, object] = json.loads(out.read_text())
        return result


def total(result: dict[str, object], key: str) -> int:
    values = result[key]
    assert isinstance(values, list)
    return sum(int(v) for v in values)


def final(result: dict[str, object]) -> float:
    values = result["accuracy"]
    assert isinstance(values, list)
    return float(values[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="topk:0.05+quant:4")
    parser.add_argument("--error-feedback", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--partial", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    args = parser.parse_args()
    common = ["--clients", str(args.clients), "--rounds", str(args.rounds), "--dataset", args.dataset]
    compressed = ["--codec", args.codec, "--error-feedback" if args.error_feedback else "--no-error-feedback"]
    compressed += ["--partial", args.partial] if args.partial else []
    rows = []
    print(f"{args.dataset}, {args.clients} clients, {args.rounds} rounds; fedcodec: {' '.join(compressed)}")
    print(
        "seed | plain bytes | fedcodec bytes | ratio | wire ratio | plain acc | fedcodec acc | diff (points)"
    )
    for seed in args.seeds:
        plain = run([*common, "--seed", str(seed), "--plain"], args.timeout)
        packed = run([*common, "--seed", str(seed), *compressed], args.timeout)
        row = (
            total(plain, "uplink_bytes"),
            total(packed, "uplink_bytes"),
            total(plain, "uplink_bytes") / total(packed, "uplink_bytes"),
            total(plain, "uplink_wire_bytes") / total(packed, "uplink_wire_bytes"),
            final(plain),
            final(packed),
            100 * (final(packed) - final(plain)),
        )
        rows.append(row)
        print(
            f"{seed} | {row[0]:,} | {row[1]:,} | {row[2]:.1f}x | {row[3]:.1f}x | "
            f"{row[4]:.4f} | {row[5]:.4f} | {row[6]:+.2f}",
            flush=True,
        )
    means = [statistics.fmean(r[i] for r in rows) for i in range(7)]
    print(
        f"mean | {means[0]:,.0f} | {means[1]:,.0f} | {means[2]:.1f}x | {means[3]:.1f}x | {means[4]:.4f} | "
        f"{means[5]:.4f} | {means[6]:+.2f}"
    )


if __name__ == "__main__":
    main()
