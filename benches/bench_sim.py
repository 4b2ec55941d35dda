"""Simulation speed: `fedcore sim` as a user runs it, batched and one client at a time, beside Flower.

Run: PYTHONPATH=python python benches/bench_sim.py [--repeats 2] [--rounds 60] [--jobs default big]
     [--flower-python PYTHON]   (a Python that can import flwr[simulation]; see benches/flower_sim.py)
Jobs: default = `fedcore sim` with no flags (digits, 100 clients, 10 per round, Dirichlet 0.5, torch MLP,
60 rounds); big = the same with 1,000 clients and 100 per round.
Variants, each a fresh process, run alternately `--repeats` times: `batched` (the defaults: clients of a
round train as one stacked model, worker count from the job) and `one-by-one` (`vectorize = false`, as
fedcore trained before batching, on its default pool of one worker per core), plus `flower` when asked.
Reported per variant (median over repeats): whole-process wall, median round wall, training's share of
the round walls (summed train_s / summed wall_s: above 1 when workers train in parallel), final accuracy,
and start-up: the whole-process wall of `fedcore sim --rounds 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JOBS: dict[str, list[str]] = {"default": [], "big": ["--clients", "1000", "--per-round", "100"]}
VARIANTS: dict[str, dict[str, object]] = {"batched": {}, "one-by-one": {"vectorize": False}}
CLI = "import sys; from fedcore.cli import main; sys.exit(main())"


def run_fedcore(flags: list[str], settings: dict[str, object], out: Path) -> dict[str, float]:
    """One `fedcore sim` process; its wall time, and what rounds.jsonl says about its rounds."""
    command = [sys.executable, "-c", CLI, "sim", "--out", str(out), *flags]
    if settings:
        toml = out.with_suffix(".toml")
        toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        command += ["--config", str(toml)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=_env())
    wall = time.perf_counter() - start
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    return {
        "wall_s": wall,
        "round_ms": 1e3 * statistics.median(r["wall_s"] for r in rounds),
        "train_share": sum(r["train_s"] for r in rounds) / sum(r["wall_s"] for r in rounds),
        "accuracy": rounds[-1]["accuracy"],
    }


def run_flower(python: str, flags: list[str], out: Path) -> dict[str, float]:
    """benches/flower_sim.py in its own process: the same job in Flower's simulation engine."""
    command = [python, str(ROOT / "benches" / "flower_sim.py"), "--out", str(out), *flags]
    start = time.perf_counter()
    with (out / "flower.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=_env())
    wall = time.perf_counter() - start
    numbers: dict[str, float] = json.loads((out / "flower.json").read_text())
    return {"wall_s": wall, **numbers}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "python"), env.get("PYTHONPATH")) if p)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=["default", "big"])
    parser.add_argument("--flower-python", help="a Python with flwr[simulation]; leave out to skip Flower")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        for job in args.jobs:
            flags = [*JOBS[job], "--rounds", str(args.rounds)]
            runs: dict[str, list[dict[str, float]]] = {}
            for repeat in range(args.repeats):  # alternate the variants, so load changes hit them alike
                for name, settings in VARIANTS.items():
                    out = Path(tmp) / f"{job}-{name}-{repeat}"
                    numbers = run_fedcore(flags, settings, out)
                    start = run_fedcore([*JOBS[job], "--rounds", "1"], settings, Path(f"{out}-start"))
                    numbers["startup_s"] = start["wall_s"]
                    runs.setdefault(name, []).append(numbers)
                if args.flower_python:
                    out = Path(tmp) / f"{job}-flower-{repeat}"
                    out.mkdir()
                    runs.setdefault("flower", []).append(run_flower(args.flower_python, flags, out))
            medians = {
                name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
                for name, rs in runs.items()
            }
            for name, numbers in medians.items():
                fields = ", ".join(f"{k}={v:.3f}" for k, v in numbers.items())
                print(f"{job} {name}: {fields}", flush=True)
            ours = medians["batched"]["wall_s"]
            for other in [n for n in medians if n != "batched"]:
                ratio = medians[other]["wall_s"] / ours
                print(f"{job}: {other} wall / batched wall = {ratio:.2f}x", flush=True)


if __name__ == "__main__":
    main()
