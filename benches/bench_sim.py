"""Simulation overhead: wall time per round and what a sampled client costs beyond its own local training.

Run: PYTHONPATH=python python benches/bench_sim.py [--rounds 20] [--workers 0 2]
Workload: digits, 100 clients, 10 per round, default MLP and local training (the `fedcore sim` defaults).
Overhead per client = (round wall - summed fit time - evaluation) / clients, measured in-process where
every second is accounted for; with worker processes the fit time runs in parallel, so only the wall
time per round is reported for them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from fedcore.config import FLConfig
from fedcore.sim import simulate


def bench(config: FLConfig) -> dict[str, float]:
    start = time.perf_counter()
    result = simulate(config)
    total = time.perf_counter() - start
    records = result.records[1:]  # round 1 pays one-off warm-up (allocator, first autograd graph)
    clients = sum(len(r.clients) for r in records)
    wall = sum(r.wall_s for r in records)
    train = sum(r.train_s for r in records)
    evaluation = sum(r.eval_s for r in records)
    numbers = {
        "total_s": total,
        "round_ms_median": 1e3 * statistics.median(r.wall_s for r in records),
        "eval_ms_per_round": 1e3 * evaluation / len(records),
        "final_accuracy": result.records[-1].accuracy,
    }
    if config.num_workers == 0:
        numbers["train_share"] = train / wall
        numbers["outside_training_share"] = (wall - train) / wall
        numbers["overhead_ms_per_client"] = 1e3 * (wall - train - evaluation) / clients
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    base = replace(FLConfig(), rounds=args.rounds, out="runs/bench")
    for workers in args.workers:
        numbers = bench(replace(base, workers=workers))
        label = "in-process" if workers <= 1 else f"{workers} workers"
        fields = ", ".join(f"{k}={v:.3f}" for k, v in numbers.items())
        print(f"{label}: {fields}", flush=True)


if __name__ == "__main__":
    main()
