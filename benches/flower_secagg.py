"""Flower's SecAgg+ timed on this machine, stage by stage, for benches/bench_secagg.py to stand beside.

Run: python benches/flower_secagg.py [--params 1000000] [--per-round 10] [--clients 100] [--rounds 3]
     [--shares S] [--threshold T] [--plain] [--out DIR]
(needs `pip install "fedcore[flower]"`: flwr[simulation]). Flower's own SecAgg+ as its example wires it:
`SecAggPlusWorkflow` as the fit workflow of a `DefaultWorkflow` in the ServerApp, `secaggplus_mod` on a
legacy ClientApp, FedAvg sampling `--per-round` of `--clients` simulated nodes, Ray running one ClientApp
actor per core. Each client returns the same fixed `--params` float32 update (no training), so a round
costs what the protocol costs; it reports Flower's default max_weight in examples, so the update keeps
all 2^22 levels. Flower's quantization defaults (clip 8, 2^22 levels, ring 2^32); shares
default to the whole round up to 10 clients and 11 above (the issue's "11 shares"); the threshold to
(shares + 1) // 2, the same Shamir t as bench_secagg.py's rounds (t=5 of 9 neighbours, t=6 of 10).
`--plain` runs the same round without SecAgg+ (Flower's default fit workflow, no mod).
Times are from the ServerApp thread: each stage's wall, the part of it spent waiting for the clients
(`Grid.send_and_receive`, which includes Ray's dispatch), the CPU seconds of every client's app thread
summed (an outermost mod measures them and the Grid wrapper removes its record before Flower's workflow
reads the reply), and the server thread's CPU seconds. The sum of the two CPU columns is the figure to
set beside bench_secagg.py's per-round CPU seconds (all parties in one process there). `--rounds` counts
a first round, whose wall also waits for Ray to start the actors; the medians leave it out.
Writes DIR/flower_secagg.json when --out is given.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from flwr.app import Context, Message, MetricRecord
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.simulation import run_simulation

MAX_WEIGHT = 1000  # Flower's default max_weight; each client reports this many examples (full 2^22 levels)
STAGES = ("setup", "share_keys", "collect_masked_vectors", "unmask")


def job() -> dict[str, Any]:
    """The workload, passed to the Ray actors through the environment (they do not share this process)."""
    settings: dict[str, Any] = json.loads(os.environ["FEDCORE_FLOWER_SECAGG"])
    return settings


@cache
def update() -> Any:
    """Every client's fixed update: no training, so the round's time is the protocol's."""
    import numpy as np

    rng = np.random.default_rng(1)
    return (rng.standard_normal(job()["params"]) * 0.01).astype(np.float32)


class FixedUpdate(NumPyClient):  # type: ignore[misc]  # flwr is untyped here
    def fit(self, parameters: list[Any], config: dict[str, Any]) -> tuple[list[Any], int, dict[str, float]]:
        del parameters, config
        return [update()], MAX_WEIGHT, {}


def client_fn(context: Context) -> Any:
    del context
    return FixedUpdate().to_client()


CPU_RECORD = "bench.client_cpu"


def client_cpu_mod(
    msg: Message, context: Context, call_next: Callable[[Message, Context], Message]
) -> Message:
    """Outermost mod: the CPU seconds the ClientApp (SecAgg+ mod and fit) spent on this message."""
    start = time.thread_time()
    reply = call_next(msg, context)
    if not reply.has_error():
        reply.content[CPU_RECORD] = MetricRecord({"seconds": time.thread_time() - start})
    return reply


secure_client = ClientApp(client_fn=client_fn, mods=[client_cpu_mod, secaggplus_mod])
plain_client = ClientApp(client_fn=client_fn, mods=[client_cpu_mod])


class TimedGrid:
    """The ServerApp's Grid, recording how long each send_and_receive waited for the clients."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.waited = 0.0
        self.client_cpu = 0.0

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        start = time.perf_counter()
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.waited += time.perf_counter() - start
        for reply in replies:  # take the bench's record out before Flower's workflow reads the reply
            if not reply.has_error() and CPU_RECORD in reply.content:
                self.client_cpu += float(reply.content.pop(CPU_RECORD)["seconds"])
        return replies

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


class Timings:
    """Per round: wall, client wait and server-thread CPU, in total and per stage."""

    def __init__(self) -> None:
        self.rounds: list[dict[str, dict[str, float]]] = []

    def timed(self, name: str, grid: TimedGrid, step: Callable[[], object]) -> object:
        wall, cpu, waited, client_cpu = time.perf_counter(), time.thread_time(), grid.waited, grid.client_cpu
        result = step()
        self.rounds[-1][name] = {
            "wall": time.perf_counter() - wall,
            "clients": grid.waited - waited,
            "server_cpu": time.thread_time() - cpu,
            "client_cpu": grid.client_cpu - client_cpu,
        }
        return result


TIMINGS = Timings()


class TimedSecAggPlus(SecAggPlusWorkflow):  # type: ignore[misc]  # flwr is untyped here
    """Flower's SecAgg+ workflow unchanged, each stage and the whole round timed."""

    def __call__(self, grid: Grid, context: Context) -> None:
        timed = TimedGrid(grid)
        TIMINGS.rounds.append({})
        TIMINGS.timed("round", timed, lambda: super(TimedSecAggPlus, self).__call__(timed, context))

    def _stage(self, name: str, grid: TimedGrid, context: LegacyContext, state: WorkflowState) -> bool:
        step = getattr(super(), f"{name}_stage")
        return bool(TIMINGS.timed(name, grid, lambda: step(grid, context, state)))

    def setup_stage(self, grid: TimedGrid, context: LegacyContext, state: WorkflowState) -> bool:
        return self._stage("setup", grid, context, state)

    def share_keys_stage(self, grid: TimedGrid, context: LegacyContext, state: WorkflowState) -> bool:
        return self._stage("share_keys", grid, context, state)

    def collect_masked_vectors_stage(
        self, grid: TimedGrid, context: LegacyContext, state: WorkflowState
    ) -> bool:
        return self._stage("collect_masked_vectors", grid, context, state)

    def unmask_stage(self, grid: TimedGrid, context: LegacyContext, state: WorkflowState) -> bool:
        return self._stage("unmask", grid, context, state)


def timed_plain_fit(grid: Grid, context: Context) -> None:
    """Flower's default fit workflow, timed the same way as the secure one."""
    from flwr.server.workflow.default_workflows import default_fit_workflow

    timed = TimedGrid(grid)
    TIMINGS.rounds.append({})
    TIMINGS.timed("round", timed, lambda: default_fit_workflow(timed, context))


server = ServerApp()


@server.main()
def main_server(grid: Grid, context: Context) -> None:
    import numpy as np

    settings = job()
    strategy = FedAvg(
        fraction_fit=settings["per_round"] / settings["clients"],
        min_fit_clients=settings["per_round"],
        fraction_evaluate=0.0,
        min_available_clients=settings["clients"],
        initial_parameters=ndarrays_to_parameters([np.zeros(settings["params"], dtype=np.float32)]),
    )
    legacy = LegacyContext(
        context=context, config=ServerConfig(num_rounds=settings["rounds"]), strategy=strategy
    )
    fit: Callable[[Grid, Context], None] = timed_plain_fit
    if not settings["plain"]:
        fit = TimedSecAggPlus(
            num_shares=settings["shares"],
            reconstruction_threshold=settings["threshold"],
            max_weight=MAX_WEIGHT,
        )
    DefaultWorkflow(fit_workflow=fit)(grid, legacy)
    result = legacy.state.array_records[MAIN_PARAMS_RECORD].to_numpy_ndarrays()[0]
    report(settings, float(np.max(np.abs(result - update()))))


def report(settings: dict[str, Any], error: float) -> None:
    """Medians over the rounds after the first (which also waits for Ray to start the actors)."""
    rounds = TIMINGS.rounds[1:] or TIMINGS.rounds
    kind = (
        "plain FedAvg"
        if settings["plain"]
        else f"SecAgg+ {settings['shares']} shares, t={settings['threshold']}"
    )
    print(
        f"\n## Flower {kind}: {settings['clients']} clients / {settings['per_round']} per round / "
        f"{settings['params']:,} params, {len(rounds)} timed rounds after 1 warm-up "
        f"(load {os.getloadavg()[0]:.1f})\n"
    )
    print(
        "| stage | wall s (median) | waiting for clients s | all clients CPU s | server thread CPU s |\n"
        "| --- | ---: | ---: | ---: | ---: |"
    )
    for name in (*(s for s in STAGES if s in rounds[0]), "round"):
        cells = [
            statistics.median(r[name][key] for r in rounds)
            for key in ("wall", "clients", "client_cpu", "server_cpu")
        ]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    print("\nround walls (all): " + ", ".join(f"{r['round']['wall']:.2f}" for r in TIMINGS.rounds) + " s")
    print(
        f"max |FedAvg of the identical updates - the update| = {error:.2e} (Flower's step {16 / 2**22:.1e})"
    )
    if settings.get("out"):
        out = Path(settings["out"])
        out.mkdir(parents=True, exist_ok=True)
        numbers = {"settings": settings, "rounds": TIMINGS.rounds, "max_error": error}
        (out / "flower_secagg.json").write_text(json.dumps(numbers, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--shares", type=int, help="Flower's num_shares (default: the round up to 10, else 11)"
    )
    parser.add_argument(
        "--threshold", type=int, help="Flower's reconstruction_threshold (default (shares+1)//2)"
    )
    parser.add_argument("--plain", action="store_true", help="no SecAgg+: Flower's default fit workflow")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shares = args.shares or (args.per_round if args.per_round <= 10 else 11)
    settings = {
        "params": args.params,
        "clients": args.clients,
        "per_round": args.per_round,
        "rounds": args.rounds,
        "shares": shares,
        "threshold": args.threshold or (shares + 1) // 2,
        "plain": args.plain,
        "out": str(args.out.resolve()) if args.out else "",
    }
    os.environ["FEDCORE_FLOWER_SECAGG"] = json.dumps(settings)
    # Ray's actors unpickle the apps by module name: they must import this file as a module, not __main__
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, here)
    apps = importlib.import_module("flower_secagg")
    run_simulation(
        server_app=apps.server,
        client_app=apps.plain_client if args.plain else apps.secure_client,
        num_supernodes=args.clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": os.cpu_count() or 1, "include_dashboard": False},
        },
    )


if __name__ == "__main__":
    main()
