"""Secure aggregation over gRPC: per-round wall time of `fedcore deploy-local` with and without --secagg.

Runs the same job alternately without and with `--secagg` (so both see the same machine load) and reports,
from each run's rounds.jsonl, the median round wall time, their ratio, and for the secure runs the median
seconds per SecAgg+ stage: the server's own work, the clients' own work (all clients of the round
together), and the stage's wall time at the server (send, client work, answers back).

    PYTHONPATH=python python benches/bench_grpc_secagg.py --clients 10 --per-round 5 --rounds 5 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STAGES = ("advertise", "share", "mask", "unmask")


def run(out: Path, flags: list[str], rounds: int) -> list[dict[str, Any]]:
    """One deploy-local run; its rounds.jsonl records (all of them, or the run failed)."""
    command = [sys.executable, "-c", "import sys; from fedcore.cli import main; sys.exit(main(sys.argv[1:]))"]
    command += ["deploy-local", "--out", str(out), "--poll-s", "1", *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    path = out / "rounds.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if len(records) != rounds:
        raise SystemExit(f"deploy-local failed ({done.returncode}): {done.stderr[-2000:]}")
    if done.returncode != 0:  # every round ran, but some client process was slow to exit (a loaded machine)
        print(f"note: {out.name}: {done.stderr.strip().splitlines()[-1]}")
    return records


def median_of(records: list[dict[str, Any]], key: str, stage: str) -> float:
    return statistics.median(r["secagg"][key][stage] for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs (plain, secure), alternating")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    job = ["--clients", str(args.clients), "--per-round", str(args.per_round), "--rounds", str(args.rounds)]
    walls: dict[str, list[float]] = {"plain": [], "secagg": []}
    secure: list[dict[str, Any]] = []
    accuracy: dict[str, list[float]] = {"plain": [], "secagg": []}
    with tempfile.TemporaryDirectory() as tmp:
        where = args.out if args.out is not None else Path(tmp)
        for i in range(args.repeat):
            for name, extra in (("plain", []), ("secagg", ["--secagg"])):
                records = run(where / f"{name}-{i}", [*job, *extra], args.rounds)
                walls[name] += [r["wall_s"] for r in records]
                accuracy[name].append(records[-1]["accuracy"])
                if extra:
                    secure += records
    plain, sec = statistics.median(walls["plain"]), statistics.median(walls["secagg"])
    print(f"job: deploy-local {' '.join(job)}; {args.repeat} runs each, alternating")
    print(f"round wall median: plain {plain:.3f} s, --secagg {sec:.3f} s, ratio {sec / plain:.2f}x")
    print(f"final accuracy: plain {accuracy['plain']}, --secagg {accuracy['secagg']}")
    print(f"{'stage':<10} {'server s':>9} {'clients s':>10} {'wall s':>8}   (medians over rounds)")
    for stage in STAGES:
        print(
            f"{stage:<10} {median_of(secure, 'secagg_server_seconds', stage):>9.4f}"
            f" {median_of(secure, 'secagg_client_seconds', stage):>10.4f}"
            f" {median_of(secure, 'secagg_stage_wall_seconds', stage):>8.4f}"
        )
    whole = statistics.median(r["secagg"]["secagg_seconds"] for r in secure)
    print(f"secure sum per round (all stages, decode) median: {whole:.3f} s")
    print(f"masked upload per client: {secure[0]['secagg']['secagg_upload_bytes_per_client']} bytes")


if __name__ == "__main__":
    main()
