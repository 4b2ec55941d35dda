"""Per-round overhead of `--engine ray` against the process pool, on the same job, runs alternating.

Run: PYTHONPATH=python python benches/bench_ray_engine.py [--clients 1000] [--per-round 100] [--rounds 20]
     [--local-epochs 10] [--workers 2] [--repeats 3] [--one-by-one]
Each run is a fresh process calling `simulate` (digits, torch MLP, the given clients / per round, and the
same --workers for both engines, so both train the same clients on the same split and must give the same
final accuracy, which is checked). The engines alternate, process first, `--repeats` times.
Per run, over the rounds after the first (the first warms caches): the median round wall; the median
time in the pool (jobs out, results back); the median worker-side seconds (train + encode + fold, summed
over workers); and overhead = pool time - worker-side seconds / workers, what dispatch and transfer add
to a round when the workers run in parallel. Also the pool's start (Ray: ray.init and the actors).
Reported: the median over repeats per engine, and the ratio ray / process of each, per repeat and median.
`--one-by-one` trains each client on its own (vectorize = false) instead of stacked.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENGINES = ("process", "ray")
JOB = ("clients", "per-round", "rounds", "local-epochs", "workers", "seed")  # what a child run is given


def child(engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """One run in this process: the engine's per-round split, from the simulation's own profile."""
    from fedcore.config import FLConfig
    from fedcore.sim import simulate
    from fedcore.sim.profile import SimProfile

    config = FLConfig(
        clients=args.clients,
        per_round=args.per_round,
        rounds=args.rounds,
        local_epochs=args.local_epochs,
        workers=args.workers,
        seed=args.seed,
        engine=engine,
    )
    if args.one_by_one:
        config = replace(config, vectorize=False)
    profile = SimProfile()
    result = simulate(config, profile=profile)
    later = profile.rounds[1:]
    pool = [r["wall_s"] - r["evaluate_s"] - r["other_s"] for r in later]
    work = [r["train_s"] + r["encode_s"] + r["aggregate_s"] for r in later]
    workers = profile.workers
    phases = {name: wall for name, wall, _ in profile.phases}
    return {
        "round_s": statistics.median(r["wall_s"] for r in later),
        "pool_s": statistics.median(pool),
        "work_s": statistics.median(work),
        "overhead_s": statistics.median(p - w / workers for p, w in zip(pool, work, strict=True)),
        "start_s": phases["worker start"],
        "workers": workers,
        "accuracy": result.summary["final_accuracy"],
    }


def run(engine: str, argv: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    done = subprocess.run(
        [sys.executable, __file__, "--child", engine, *argv],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=10, help="fewer: less work, overhead shows")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one-by-one", action="store_true")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args)))
        return
    argv = [f"--{name}={getattr(args, name.replace('-', '_'))}" for name in JOB]
    argv += ["--one-by-one"] if args.one_by_one else []
    runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in ENGINES}
    for repeat in range(args.repeats):
        for engine in ENGINES:
            runs[engine].append(run(engine, argv))
            got = runs[engine][-1]
            print(
                f"repeat {repeat + 1} {engine:<8} round {1e3 * got['round_s']:7.1f} ms  "
                f"pool {1e3 * got['pool_s']:7.1f} ms  work {1e3 * got['work_s']:7.1f} ms  "
                f"overhead {1e3 * got['overhead_s']:7.1f} ms  start {got['start_s']:5.2f} s  "
                f"workers {got['workers']}  accuracy {got['accuracy']:.4f}",
                flush=True,
            )
    accuracies = {r["accuracy"] for rs in runs.values() for r in rs}
    assert len(accuracies) == 1, f"the engines disagree: {accuracies}"
    mode = "one by one" if args.one_by_one else "stacked"
    print(
        f"\n{args.clients} clients, {args.per_round} per round, {args.rounds} rounds, "
        f"{args.local_epochs} local epochs, {args.workers} workers, {mode}; "
        f"median of {args.repeats} (rounds 2..{args.rounds} per run)"
    )
    print(f"{'':<12} {'process':>10} {'ray':>10} {'ray/process':>12}  per repeat")
    for key, unit, scale in (
        ("round_s", "ms", 1e3),
        ("pool_s", "ms", 1e3),
        ("work_s", "ms", 1e3),
        ("overhead_s", "ms", 1e3),
        ("start_s", "s", 1.0),
    ):
        ours = [r[key] for r in runs["ray"]]
        theirs = [r[key] for r in runs["process"]]
        per_repeat = " ".join(f"{a / b:.2f}" if b > 0 else "nan" for a, b in zip(ours, theirs, strict=True))
        a, b = statistics.median(ours), statistics.median(theirs)
        ratio = f"{a / b:.2f}" if b > 0 else "nan"
        print(f"{key + ' ' + unit:<12} {scale * b:>10.1f} {scale * a:>10.1f} {ratio:>12}  {per_repeat}")


if __name__ == "__main__":
    main()
