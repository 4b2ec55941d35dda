"""The simulation loop: select, broadcast, train, fold, aggregate, evaluate, record; deterministic by seed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.client import ClientTask
from fedcore.compression import Vector, validate_spec
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.records import RoundRecord, summarize
from fedcore.selection import AvailabilityModel, RoundSelection, make_selector, select_round
from fedcore.server import Downlink, combine
from fedcore.sim.workers import (
    Pool,
    RoundTask,
    WorkerResult,
    build_model,
    limit_threads,
    load_data,
    make_pool,
    split_round_robin,
)
from fedcore.strategies.base import ServerState, Strategy

# Purposes mixed into derived seeds, so each random use gets its own stream.
_TRAIN_SEED = 1
_CODEC_SEED = 2
_DOWNLINK_SEED = 3
_CONTROL_DOWNLINK_SEED = 4
_STRAGGLER_SEED = 5


def derive_seed(seed: int, round_num: int, client_id: int, purpose: int) -> int:
    """A 32-bit seed that depends only on (run seed, round, client, purpose); client -1 is the server."""
    state = np.random.SeedSequence([seed, round_num, client_id + 1, purpose]).generate_state(1)
    return int(state[0])


@dataclass(frozen=True)
class SimResult:
    """Every round's record, the run summary and the final global weights."""

    records: list[RoundRecord]
    summary: dict[str, Any]
    weights: Vector


@dataclass
class ClientMemory:
    """Per-client memory between rounds: last loss, error-feedback residual, SCAFFOLD control."""

    losses: dict[int, float]
    residuals: dict[int, Vector]
    controls: dict[int, Vector]

    def remember(self, results: list[WorkerResult]) -> None:
        for result in results:
            for report in result.reports:
                self.losses[report.client_id] = report.loss
                if report.residual is not None:
                    self.residuals[report.client_id] = report.residual
                if report.control is not None:
                    self.controls[report.client_id] = report.control


def _evaluate(
    adapter: ModelAdapter, data: FederatedData, weights: Vector, with_clients: bool
) -> tuple[float, float, float | None]:
    adapter.set_weights(weights)
    central = adapter.evaluate(data.central_test.x, data.central_test.y)
    if not with_clients:
        return central.accuracy, central.loss, None
    correct = total = 0.0
    for cid in range(data.num_clients):
        test = data.client(cid).test
        if len(test):
            result = adapter.evaluate(test.x, test.y)
            correct += result.accuracy * result.num_examples
            total += result.num_examples
    return central.accuracy, central.loss, (correct / total if total else None)


def _train_config(config: FLConfig, strategy: Strategy) -> TrainConfig:
    base = TrainConfig(
        epochs=config.local_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    return strategy.client_config(base)


def simulate(
    config: FLConfig,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> SimResult:
    """Run `config.rounds` rounds; raises InsufficientClientsError when a round falls below min_clients."""
    validate_spec(config.codec)
    validate_spec(config.downlink_codec)
    start = time.perf_counter()
    limit_threads(config)
    data = load_data(config)
    evaluator = build_model(config, data)
    pool = make_pool(config, data)
    try:
        records, state = _run_rounds(config, data, evaluator, pool, on_round)
    finally:
        pool.close()
    wall_s = time.perf_counter() - start
    vectors = 2 if config.make_strategy().uses_control else 1
    summary = summarize(records, evaluator.layout.size, config.run_settings(), wall_s, vectors)
    summary["timing"]["workers"] = pool.size
    return SimResult(records, summary, state.weights)


def _run_rounds(
    config: FLConfig,
    data: FederatedData,
    evaluator: ModelAdapter,
    pool: Pool,
    on_round: Callable[[RoundRecord], None] | None,
) -> tuple[list[RoundRecord], ServerState]:
    strategy = config.make_strategy()
    state: ServerState = strategy.init_state(evaluator.get_weights())
    selector = make_selector(config.selection, config.poc_candidates)
    availability = (
        AvailabilityModel(config.seed, config.min_battery, config.min_bandwidth_mbps)
        if config.selection == "availability"
        else None
    )
    downlink = Downlink(config.downlink_codec)
    train = _train_config(config, strategy)
    memory = ClientMemory({}, {}, {})
    records: list[RoundRecord] = []
    for round_num in range(config.rounds):
        t0 = time.perf_counter()
        sel = select_round(
            selector,
            seed=config.seed,
            round_num=round_num,
            num_clients=config.clients,
            per_round=config.per_round,
            losses=memory.losses,
            availability=availability,
            dropout_rate=config.dropout,
            min_clients=config.min_clients,
        )
        weights, server_control, down_bytes = _broadcast(downlink, state, strategy, config.seed, round_num)
        tasks = [
            ClientTask(
                client_id=cid,
                train_seed=derive_seed(config.seed, round_num, cid, _TRAIN_SEED),
                codec_seed=derive_seed(config.seed, round_num, cid, _CODEC_SEED),
                residual=memory.residuals.get(cid),
                control=memory.controls.get(cid),
                epochs=_straggler_epochs(config, round_num, cid),
            )
            for cid in sel.answered.tolist()
        ]
        round_tasks = [
            RoundTask(round_num, weights, server_control, train, tuple(group))
            for group in split_round_robin(tasks, pool.size)
            if group
        ]
        results = pool.run(round_tasks)
        memory.remember(results)
        state = strategy.aggregate(state, combine([r.fold for r in results]))
        t_eval = time.perf_counter()
        scores = _evaluate(evaluator, data, state.weights, config.eval_clients)
        eval_s = time.perf_counter() - t_eval
        record = _round_record(round_num, sel, results, scores, down_bytes, t0, eval_s)
        records.append(record)
        if on_round is not None:
            on_round(record)
    return records, state


def _straggler_epochs(config: FLConfig, round_num: int, client_id: int) -> int | None:
    """A straggler's local epochs, uniform in 1..E as in the FedProx paper; None for a full client."""
    if config.stragglers == 0.0:
        return None
    rng = np.random.default_rng(derive_seed(config.seed, round_num, client_id, _STRAGGLER_SEED))
    if rng.random() >= config.stragglers:
        return None
    return int(rng.integers(1, config.local_epochs + 1))


def _broadcast(
    downlink: Downlink, state: ServerState, strategy: Strategy, seed: int, round_num: int
) -> tuple[Vector, Vector | None, int]:
    """What each selected client receives (weights; SCAFFOLD adds the server control) and its byte count."""
    weights, nbytes = downlink.send(state.weights, derive_seed(seed, round_num, -1, _DOWNLINK_SEED))
    if not strategy.uses_control:
        return weights, None, nbytes
    control = state.opt_state["control"].astype(np.float32)
    control_seed = derive_seed(seed, round_num, -1, _CONTROL_DOWNLINK_SEED)
    server_control, control_bytes = downlink.send(control, control_seed)
    return weights, server_control, nbytes + control_bytes


def _round_record(
    round_num: int,
    sel: RoundSelection,
    results: list[WorkerResult],
    scores: tuple[float, float, float | None],
    down_bytes: int,
    t0: float,
    eval_s: float,
) -> RoundRecord:
    """Downlink counts every selected client (dropouts got the model too); uplink only those that answered."""
    reports = [rep for r in results for rep in r.reports]
    examples = sum(rep.num_examples for rep in reports)
    accuracy, loss, client_accuracy = scores
    return RoundRecord(
        round=round_num + 1,
        clients=sorted(rep.client_id for rep in reports),
        selected=int(sel.selected.size),
        dropouts=sel.dropped.tolist(),
        unavailable=sel.unavailable,
        accuracy=accuracy,
        loss=loss,
        train_loss=sum(r.loss * r.num_examples for r in reports) / examples if examples else 0.0,
        uplink_bytes=sum(rep.uplink_bytes for rep in reports),
        downlink_bytes=down_bytes * int(sel.selected.size),
        wall_s=time.perf_counter() - t0,
        train_s=sum(rep.train_s for rep in reports),
        eval_s=eval_s,
        client_accuracy=client_accuracy,
    )
