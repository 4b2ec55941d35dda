"""A Flower app (ServerApp + ClientApp) on fedcore's built-in digits, with fedcodec compression on the uplink.

    python examples/flower/digits_app.py [--codec topk:0.05+quant:4] [--error-feedback] [--rounds 30]
    python examples/flower/digits_app.py --plain            # the same app with Flower's float arrays

Only two lines make it compressed (search for `fedcore.flower`): the ClientApp's mod and the strategy
wrapper. Everything else is a plain Flower 1.4x Message-API app: FedAvg, every node trains every round,
central evaluation on the server. Offline: the data is the digits set that ships with fedcore, the model
fedcore's numpy MLP (64-100-100-10, torch's initial weights). Prints one JSON line (and writes it to
--out): final accuracy, uplink bytes per round. Flower runs it in its own simulation (Ray).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from functools import cache
from pathlib import Path

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Strategy
from flwr.simulation import run_simulation

from fedcore.backends.models import torch_mlp_without_torch
from fedcore.backends.stacked_mlp import NumpyMLP
from fedcore.client import local_train_config
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.flower import CompressedStrategy, UplinkMeter, fedcodec_mod
from fedcore.flower.strategy import FRAMES, UPLINK_BYTES, UPLINK_WIRE_BYTES
from fedcore.seeds import TRAIN_SEED, derive_seed
from fedcore.sim.workers import load_data

JOB_ENV = "FEDCODEC_FLOWER_JOB"  # Ray's actors get the job through the environment


@dataclass(frozen=True)
class Job:
    """One run of the app; `codec=None` is plain Flower."""

    clients: int = 10
    rounds: int = 30
    codec: str | None = "topk:0.05+quant:4"
    error_feedback: bool = True
    partial: str | None = None
    dataset: str = "digits"
    partition: str = "dirichlet:0.5"
    seed: int = 0
    out: str = ""

    @property
    def config(self) -> FLConfig:
        """fedcore's default local training (10 epochs, batch 8, lr 0.1) on this job's shards."""
        return FLConfig(
            dataset=self.dataset,
            clients=self.clients,
            per_round=self.clients,
            rounds=self.rounds,  # type: ignore[arg-type]
            partition=self.partition,
            seed=self.seed,  # type: ignore[arg-type]
        )


@cache
def job() -> Job:
    return Job(**json.loads(os.environ.get(JOB_ENV, "{}")))


@cache
def world() -> tuple[FederatedData, NumpyMLP]:
    """Each process (the server, every Ray actor) loads the shards and builds the model once."""
    config = job().config
    data = load_data(config)
    return data, torch_mlp_without_torch("mlp", data.in_features, data.n_classes, config.seed)


def to_arrays(model: NumpyMLP) -> ArrayRecord:
    return ArrayRecord({k: Array(v) for k, v in model.layout.unflatten(model.get_weights()).items()})


def from_arrays(model: NumpyMLP, arrays: ArrayRecord) -> None:
    model.set_weights(model.layout.flatten({k: v.numpy() for k, v in arrays.items()}))


# --- ClientApp ---------------------------------------------------------------------------------------
mods = [fedcodec_mod(error_feedback=job().error_feedback)] if job().codec else []  # <- fedcore.flower
client = ClientApp(mods=mods)


@client.train()
def train(msg: Message, context: Context) -> Message:
    data, model = world()
    partition = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])  # type: ignore[arg-type]
    from_arrays(model, msg.content["arrays"])  # type: ignore[arg-type]
    shard = data.client(partition).train
    settings = replace(
        local_train_config(job().config), seed=derive_seed(job().seed, server_round, partition, TRAIN_SEED)
    )
    fit = model.fit(shard.x, shard.y, settings)
    metrics = MetricRecord({"train_loss": fit.loss, "num-examples": max(fit.num_examples, 1)})
    return Message(RecordDict({"arrays": to_arrays(model), "metrics": metrics}), reply_to=msg)


def per_round(records: dict[int, MetricRecord], key: str) -> list[float]:
    """One metric per round, in round order (rounds without it are left out)."""
    return [float(records[r][key]) for r in sorted(records) if key in records[r]]  # type: ignore[arg-type]


# --- ServerApp ---------------------------------------------------------------------------------------
server = ServerApp()


@server.main()
def main_server(grid: Grid, context: Context) -> None:
    del context
    run, (data, model) = job(), world()
    fedavg = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=run.clients,
        min_available_nodes=run.clients,
    )
    strategy: Strategy = (
        CompressedStrategy(fedavg, codec=run.codec, partial=run.partial, seed=run.seed)  # <- fedcore.flower
        if run.codec
        else UplinkMeter(fedavg)  # counts the bytes of plain Flower's replies, changes nothing
    )

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        from_arrays(model, arrays)
        result = model.evaluate(data.central_test.x, data.central_test.y)
        return MetricRecord({"accuracy": result.accuracy, "loss": result.loss})

    result = strategy.start(
        grid=grid, initial_arrays=to_arrays(model), num_rounds=run.rounds, evaluate_fn=evaluate
    )
    client_metrics, central = result.train_metrics_clientapp, result.evaluate_metrics_serverapp
    summary = {
        **asdict(run),
        "accuracy": per_round(central, "accuracy"),
        "uplink_bytes": [int(b) for b in per_round(client_metrics, UPLINK_BYTES)],
        "uplink_wire_bytes": [int(b) for b in per_round(client_metrics, UPLINK_WIRE_BYTES)],
        "frames": [int(n) for n in per_round(client_metrics, FRAMES)],
    }
    print(json.dumps(summary))
    if run.out:
        Path(run.out).write_text(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=Job.clients)
    parser.add_argument("--rounds", type=int, default=Job.rounds)
    parser.add_argument("--codec", default=Job.codec, help="a fedcodec spec (default %(default)s)")
    parser.add_argument("--error-feedback", action=argparse.BooleanOptionalAction, default=Job.error_feedback)
    parser.add_argument("--partial", default=None, help="partial sharing, e.g. random:0.5")
    parser.add_argument("--plain", action="store_true", help="plain Flower: float arrays, no fedcodec")
    parser.add_argument("--dataset", default=Job.dataset, help="digits or mnist1d")
    parser.add_argument("--seed", type=int, default=Job.seed)
    parser.add_argument("--cpus", type=int, default=2, help="Ray CPUs (one ClientApp actor each)")
    parser.add_argument("--out", default="", help="also write the JSON line to this file")
    args = parser.parse_args()
    run = Job(
        clients=args.clients,
        rounds=args.rounds,
        codec=None if args.plain else args.codec,
        error_feedback=args.error_feedback and not args.plain,
        partial=None if args.plain else args.partial,
        dataset=args.dataset,
        seed=args.seed,
        out=args.out,
    )
    os.environ[JOB_ENV] = json.dumps(asdict(run))
    # Ray's actors load the apps by module name: this folder goes on their path, and this file is imported
    # as the module `digits_app` (not __main__) so its apps see the job above
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, here)
    apps = importlib.import_module("digits_app")
    run_simulation(
        server_app=apps.server,
        client_app=apps.client,
        num_supernodes=run.clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": args.cpus},
        },
    )


if __name__ == "__main__":
    main()
