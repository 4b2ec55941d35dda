"""Simulation speed: `fedcore sim` as a user runs it, batched and one client at a time, beside Flower.

Run: PYTHONPATH=python python benches/bench_sim.py [--repeats 2] [--rounds 60] [--jobs default big]
     [--flower-python PYTHON]   (a Python that can import flwr[simulation]; see benches/flower_sim.py)
     [--before DIR]   (another tree's python/ folder, e.g. `git archive` of an older commit: `before`)
Jobs: default = `fedcore sim` with no flags (digits, 100 clients, 10 per round, Dirichlet 0.5, torch MLP,
60 rounds); big = the same with 1,000 clients and 100 per round.
Variants, each a fresh process, run alternately `--repeats` times: `batched` (the defaults: clients of a
round train as one stacked model, worker count from the job) and `one-by-one` (`vectorize = false`, as
fedcore trained before batching, on its default pool of one worker per core), plus `flower` and `before`
(the default job with another tree's code) when asked.
Reported per variant (median over repeats): whole-process wall and CPU (user+sys of the process and the
children it waited for; on a busy machine CPU is the steadier number; nan for a run with worker processes,
whose forkserver children nobody here waits for), median round wall, training's share of
the round walls (summed train_s / summed wall_s: above 1 when workers train in parallel), final accuracy,
and start-up: the whole-process wall of `fedcore sim --rounds 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run_fedcore(
    flags: list[str], settings: dict[str, object], out: Path, tree: Path | None = None
) -> dict[str, float]:
    """One `fedcore sim` process (from `tree`, a python/ folder, if given); its wall and CPU time, and
    what rounds.jsonl says about its rounds."""
    command = [sys.executable, "-c", CLI, "sim", "--out", str(out), *flags]
    if settings:
        toml = out.with_suffix(".toml")
        toml.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        command += ["--config", str(toml)]
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=_env(tree))
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    workers = json.loads((out / "summary.json").read_text())["timing"]["workers"]
    return {
        "wall_s": wall,
        "cpu_s": cpu if workers <= 1 else float("nan"),  # forkserver workers are never waited for here
        "round_ms": 1e3 * statistics.median(r["wall_s"] for r in rounds),
        "train_share": sum(r["train_s"] for r in rounds) / sum(r["wall_s"] for r in rounds),
        "accuracy": rounds[-1]["accuracy"],
    }


def run_flower(python: str, flags: list[str], out: Path) -> dict[str, float]:
    """benches/flower_sim.py in its own process: the same job in Flower's simulation engine."""
    command = [python, str(ROOT / "benches" / "flower_sim.py"), "--out", str(out), *flags]
    start, cpu = time.perf_counter(), _children_cpu()
    with (out / "flower.log").open("w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, env=_env())
    wall = time.perf_counter() - start
    numbers: dict[str, float] = json.loads((out / "flower.json").read_text())
    return {"wall_s": wall, "cpu_s": _children_cpu() - cpu, **numbers}


def _children_cpu() -> float:
    """User+sys seconds of every child process this one has waited for (Ray's too, once shut down)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env(tree: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    first = str(tree if tree is not None else ROOT / "python")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (first, env.get("PYTHONPATH")) if p)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=["default", "big"])
    parser.add_argument("--flower-python", help="a Python with flwr[simulation]; leave out to skip Flower")
    parser.add_argument(
        "--before", type=Path, help="another tree's python/ folder: its default job as `before`"
    )
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
                    numbers["startup_s"], numbers["startup_cpu_s"] = start["wall_s"], start["cpu_s"]
                    runs.setdefault(name, []).append(numbers)
                if args.before is not None:
                    out = Path(tmp) / f"{job}-before-{repeat}"
                    numbers = run_fedcore(flags, {}, out, args.before)
                    start = run_fedcore([*JOBS[job], "--rounds", "1"], {}, Path(f"{out}-start"), args.before)
                    numbers["startup_s"], numbers["startup_cpu_s"] = start["wall_s"], start["cpu_s"]
                    runs.setdefault("before", []).append(numbers)
                if args.flower_python:
                    out = Path(tmp) / f"{job}-flower-{repeat}"
                    out.mkdir()
                    runs.setdefault("flower", []).append(run_flower(args.flower_python, flags, out))
                    out = Path(tmp) / f"{job}-flower-legacy-{repeat}"
                    out.mkdir()
                    legacy = run_flower(args.flower_python, [*flags, "--legacy"], out)
                    runs.setdefault("flower_legacy", []).append(legacy)
            medians = {
                name: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
                for name, rs in runs.items()
            }
            for name, numbers in medians.items():
                fields = ", ".join(f"{k}={v:.3f}" for k, v in numbers.items())
                print(f"{job} {name}: {fields}", flush=True)
            ours = medians["batched"]
            for other in [n for n in medians if n != "batched"]:
                wall, cpu = (medians[other][k] / ours[k] for k in ("wall_s", "cpu_s"))
                print(f"{job}: {other} / batched = {wall:.2f}x wall, {cpu:.2f}x CPU", flush=True)


if __name__ == "__main__":
    main()
