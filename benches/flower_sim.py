"""The `fedcore sim` job in Flower's simulation engine, for benches/bench_sim.py to time beside fedcore.

Run: python benches/flower_sim.py --out DIR [--clients 100] [--per-round 10] [--rounds 60] [--legacy]
(needs `pip install "fedcore[flower]"`: flwr[simulation]). Same clients' shards, same initial MLP and
the same local SGD (fedcore's TorchAdapter.fit: 10 epochs, batch 8, lr 0.1) as `fedcore sim`; Flower's
FedAvg samples the clients, Ray runs one ClientApp actor per core, and the server evaluates centrally
every round as fedcore does. `--legacy` runs the deprecated `flwr.simulation.start_simulation` with a
NumPyClient instead of `run_simulation`. Writes DIR/flower.json: median round wall (ms), final accuracy.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import statistics
import sys
import time
from functools import cache
from pathlib import Path

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from fedcore.backends.models import make_adapter
from fedcore.backends.torch_backend import TorchAdapter
from fedcore.client import local_train_config
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.sim.workers import load_data


def job() -> FLConfig:
    """The job, passed to the Ray actors through the environment (they do not share this process)."""
    settings = json.loads(os.environ["FEDCORE_FLOWER_JOB"])
    return FLConfig(**settings)


@cache
def world() -> tuple[FLConfig, FederatedData, TorchAdapter]:
    """Each process (server, every actor) loads the shards and builds the model once."""
    import torch

    torch.set_num_threads(1)  # one thread per actor, as fedcore gives each worker
    config = job()
    data = load_data(config)
    model = make_adapter(config.backend, config.model, data.in_features, data.n_classes, config.seed)
    assert isinstance(model, TorchAdapter)  # Flower trains the torch model one client at a time
    return config, data, model


def arrays(model: TorchAdapter) -> ArrayRecord:
    return ArrayRecord(model.module.state_dict())


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    config, data, model = world()
    client_id = int(context.node_config["partition-id"])
    model.module.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    shard = data.client(client_id).train
    train_config = local_train_config(config)
    examples, loss = 0, 0.0
    if shard.y.size:
        fit = model.fit(shard.x, shard.y, train_config)
        examples, loss = fit.num_examples, fit.loss
    metrics = MetricRecord({"train_loss": loss, "num-examples": max(examples, 1)})
    return Message(RecordDict({"arrays": arrays(model), "metrics": metrics}), reply_to=msg)


server = ServerApp()


@server.main()
def main_server(grid: Grid, context: Context) -> None:
    del context
    config, data, model = world()
    round_ends: list[float] = [time.perf_counter()]
    accuracies: list[float] = []

    def evaluate(server_round: int, weights: ArrayRecord) -> MetricRecord:
        model.module.load_state_dict(weights.to_torch_state_dict())
        result = model.evaluate(data.central_test.x, data.central_test.y)
        if server_round > 0:
            round_ends.append(time.perf_counter())
            accuracies.append(result.accuracy)
        return MetricRecord({"accuracy": result.accuracy, "loss": result.loss})

    strategy = FedAvg(
        fraction_train=config.per_round / config.clients,
        fraction_evaluate=0.0,
        min_train_nodes=config.per_round,
        min_available_nodes=config.clients,
    )
    round_ends[0] = time.perf_counter()
    strategy.start(grid=grid, initial_arrays=arrays(model), num_rounds=config.rounds, evaluate_fn=evaluate)
    walls = [b - a for a, b in itertools.pairwise(round_ends)]
    out = Path(os.environ["FEDCORE_FLOWER_OUT"])
    numbers = {"round_ms": 1e3 * statistics.median(walls), "accuracy": accuracies[-1]}
    (out / "flower.json").write_text(json.dumps(numbers))


def legacy_client(context: Context) -> object:
    """The same client as `train` above, as the legacy engine's NumPyClient."""
    import numpy as np
    from flwr.client import NumPyClient

    client_id = int(context.node_config["partition-id"])

    class Legacy(NumPyClient):  # type: ignore[misc]  # flwr is untyped here
        def fit(
            self, parameters: list[np.ndarray], fit_config: dict[str, object]
        ) -> tuple[object, int, dict[str, float]]:
            config, data, model = world()
            model.set_weights(np.concatenate([p.ravel() for p in parameters]).astype(np.float32))
            shard = data.client(client_id).train
            examples, loss = 0, 0.0
            if shard.y.size:
                fit = model.fit(shard.x, shard.y, local_train_config(config))
                examples, loss = fit.num_examples, fit.loss
            return [model.get_weights()], max(examples, 1), {"train_loss": loss}

    return Legacy().to_client()


def run_legacy(args: argparse.Namespace) -> None:
    """fedcore's job in Flower's legacy engine: start_simulation, FedAvg, central evaluation per round."""
    import numpy as np
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.simulation import start_simulation

    config, data, model = world()
    round_ends: list[float] = []
    accuracies: list[float] = []

    def evaluate(server_round: int, parameters: list[np.ndarray], _: dict[str, object]) -> tuple[float, dict]:
        model.set_weights(np.concatenate([p.ravel() for p in parameters]).astype(np.float32))
        result = model.evaluate(data.central_test.x, data.central_test.y)
        round_ends.append(time.perf_counter())
        if server_round > 0:
            accuracies.append(result.accuracy)
        return result.loss, {"accuracy": result.accuracy}

    strategy = LegacyFedAvg(
        fraction_fit=config.per_round / config.clients,
        fraction_evaluate=0.0,
        min_fit_clients=config.per_round,
        min_available_clients=config.clients,
        evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters([model.get_weights()]),
    )
    start_simulation(
        client_fn=legacy_client,
        num_clients=config.clients,
        config=ServerConfig(num_rounds=config.rounds),
        strategy=strategy,
        client_resources={"num_cpus": 1, "num_gpus": 0.0},
        ray_init_args={"num_cpus": os.cpu_count() or 1, "include_dashboard": False},
    )
    walls = [b - a for a, b in itertools.pairwise(round_ends)]
    numbers = {"round_ms": 1e3 * statistics.median(walls), "accuracy": accuracies[-1]}
    (args.out / "flower.json").write_text(json.dumps(numbers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legacy", action="store_true", help="flwr.simulation.start_simulation (deprecated)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=FLConfig.clients)
    parser.add_argument("--per-round", type=int, default=FLConfig.per_round)
    parser.add_argument("--rounds", type=int, default=FLConfig.rounds)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"clients": args.clients, "per_round": args.per_round, "rounds": args.rounds}
    os.environ["FEDCORE_FLOWER_JOB"] = json.dumps(settings)
    os.environ["FEDCORE_FLOWER_OUT"] = str(args.out.resolve())
    cores = os.cpu_count() or 1
    # Ray's actors unpickle the apps by module name: they must import this file as a module, not __main__
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    sys.path.insert(0, here)
    apps = importlib.import_module("flower_sim")
    if args.legacy:
        apps.run_legacy(args)
        return
    run_simulation(
        server_app=apps.server,
        client_app=apps.client,
        num_supernodes=args.clients,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": cores},
        },
    )


if __name__ == "__main__":
    main()
