"""The simulation's secure round beside its plain round: `fedcore sim` with and without --secagg.

Alternates plain and secure runs of the same job (so both see the same machine load) and reports the
median round wall time of each, their ratio, the simulating process's CPU seconds (what the secure sum adds
there, robust to a busy machine), and the secure sum's own seconds per round after training (stages
3-4 with every simulated client's half, plus decoding; stages 1-2 run while the workers train, and
their wall time is printed as "hidden"), with the median per-stage split.

    PYTHONPATH=python python benches/bench_sim_secagg.py --rounds 10 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from typing import Any

from fedcore.config import FLConfig
from fedcore.sim import simulate

STAGES = ("advertise", "share", "mask", "unmask")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs (plain, secure), alternating")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--neighbors", type=int, default=None, help="SecAgg+ degree k (default: chosen)")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=10)
    args = parser.parse_args()
    job = FLConfig(
        rounds=args.rounds,
        workers=args.workers,
        dataset=args.dataset,
        model=args.model,
        clients=args.clients,
        per_round=args.per_round,
    )
    secure_job = replace(job, secagg=True, secagg_neighbors=args.neighbors)
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}  # this (the server's) process, whole runs
    secure: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for secagg in (False, True):
            c0 = time.process_time()
            result = simulate(secure_job if secagg else job)
            cpu[secagg].append(time.process_time() - c0)
            walls[secagg] += [r.wall_s for r in result.records[1:]]  # round 1 warms the workers up
            secure += [r.secagg for r in result.records[1:] if r.secagg is not None]
    plain, sec = statistics.median(walls[False]), statistics.median(walls[True])
    print(
        f"job: FLConfig(rounds={args.rounds}, workers={args.workers}, dataset={args.dataset!r}, "
        f"model={args.model!r}, clients={args.clients}, per_round={args.per_round}, "
        f"secagg_neighbors={args.neighbors})"
    )
    print(
        f"round wall median (rounds 2..): plain {plain:.4f} s, --secagg {sec:.4f} s, ratio {sec / plain:.2f}x"
    )
    plain_cpu, sec_cpu = statistics.median(cpu[False]), statistics.median(cpu[True])
    print(
        f"simulating process CPU per run median: plain {plain_cpu:.3f} s, --secagg {sec_cpu:.3f} s; "
        f"the secure sum's CPU per round: {(sec_cpu - plain_cpu) / args.rounds:.4f} s (the clients' training "
        "runs in the worker processes, not counted here)"
    )
    whole = statistics.median(s["secagg_seconds"] for s in secure)
    print(f"secure sum per round median, after training: {whole:.4f} s")
    hidden = statistics.median(s.get("secagg_hidden_seconds", 0.0) for s in secure)
    print(f"stages 1-2 run while the workers train (hidden), per round median: {hidden:.4f} s")
    for stage in STAGES:
        clients = statistics.median(s["secagg_client_seconds"][stage] for s in secure)
        server = statistics.median(s["secagg_server_seconds"][stage] for s in secure)
        print(f"  {stage:<10} clients {clients:.4f} s  server {server:.4f} s")


if __name__ == "__main__":
    main()
