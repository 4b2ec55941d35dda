"""A whole federation over any transport: rounds.jsonl, audit.jsonl and a checkpoint after every round."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fedcore.backends.base import ModelAdapter
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import Transport
from fedcore.records import RoundRecord, RoundsWriter, summarize, write_summary
from fedcore.server.audit import AuditLog
from fedcore.server.checkpoint import load_checkpoint, save_checkpoint
from fedcore.server.driver import DriverState, RoundDriver, initial_state, privacy_summary
from fedcore.server.fedbuff import FedBuffServer, staleness_histogram
from fedcore.sim.workers import build_model, load_data
from fedcore.uplink import UplinkChain
from fedcore.uplink.base import Vector


@dataclass(frozen=True)
class Evaluation:
    """What the server evaluates with: the run's data (for its central test split) and a model to score."""

    data: FederatedData
    model: ModelAdapter

    @classmethod
    def load(cls, config: FLConfig) -> Evaluation:
        """Built once at start-up: the transport's size limits and the driver both use it."""
        data = load_data(config)
        return cls(data, build_model(config, data))


def run_federation(
    config: FLConfig,
    transport: Transport,
    out: Path,
    resume: bool = False,
    on_round: Callable[[RoundRecord], None] | None = None,
    deadline_s: float | None = None,
    wait_clients_s: float = 60.0,
    evaluation: Evaluation | None = None,
) -> dict[str, Any]:
    """Run the config's rounds with whatever clients the transport reaches; `resume` continues a checkpoint.

    The server evaluates on the dataset's central test split, which it builds from the run seed as the
    clients build their shards. A resumed run rewrites rounds.jsonl from the checkpoint, so a round the
    crash interrupted never appears twice.
    """
    start = time.perf_counter()
    evaluation = evaluation if evaluation is not None else Evaluation.load(config)
    evaluator = evaluation.model
    driver = RoundDriver(
        config, evaluator.layout, evaluator, evaluation.data.central_test, transport, deadline_s=deadline_s
    )
    settings = config.run_settings()
    state: DriverState = (
        load_checkpoint(out, settings) if resume else initial_state(config, evaluator.get_weights())
    )
    if state.next_round < driver.rounds_to_run:  # a resumed run that had finished needs nobody
        transport.wait_ready(config.per_round, wait_clients_s)
    audit = AuditLog(out / "audit.jsonl")
    try:
        with RoundsWriter(out / "rounds.jsonl") as writer:
            for record in state.records:
                writer.write(record)
            while state.next_round < driver.rounds_to_run:
                state, record, outcome = driver.run_round(state)
                save_checkpoint(out, state, settings)
                writer.write(record)
                audit.write(record, outcome)
                if on_round is not None:
                    on_round(record)
    finally:
        audit.close()
    vectors = 2 if config.make_strategy().uses_control else 1
    summary = summarize(
        list(state.records), evaluator.layout.size, settings, time.perf_counter() - start, vectors
    )
    summary["resumed"] = resume
    summary.update(privacy_summary(driver, state.records))
    write_summary(out / "summary.json", summary)
    return summary


# ---- async (FedBuff) over a transport that hands out tasks one at a time ---------------------------------


class BufferedTransport(Protocol):
    """A transport that serves FedBuff: tasks as clients free up, every answer to `take` (see gRPC's)."""

    def run_async(
        self, concurrency: int, make_task: Callable[[int], Task], take: Callable[[Reply | Failure], bool]
    ) -> None: ...


def run_fedbuff_federation(
    config: FLConfig,
    transport: BufferedTransport,
    out: Path,
    on_round: Callable[[RoundRecord], None] | None = None,
    evaluation: Evaluation | None = None,
) -> dict[str, Any]:
    """`config.rounds` FedBuff server updates with real clients; `virtual_s` is the real seconds elapsed.

    There are no rounds to checkpoint: a FedBuff run over a network starts from the initial model.
    """
    start = time.perf_counter()
    evaluation = evaluation if evaluation is not None else Evaluation.load(config)
    evaluator = evaluation.model
    test = evaluation.data.central_test

    def evaluate(weights: Vector) -> tuple[float, float]:
        evaluator.set_weights(weights)
        result = evaluator.evaluate(test.x, test.y)
        return result.accuracy, result.loss

    server = FedBuffServer(
        initial_state(config, evaluator.get_weights()),
        evaluator.layout,
        config.make_strategy(),
        UplinkChain.from_config(config),
        buffer=config.async_buffer,
        staleness=config.staleness,
        clients=config.clients,
        seed=config.seed,
        evaluate=evaluate,
    )
    with RoundsWriter(out / "rounds.jsonl") as writer:

        def take(answer: Reply | Failure) -> bool:
            record = server.receive(answer, time.perf_counter() - start)
            if record is not None:
                writer.write(record)
                if on_round is not None:
                    on_round(record)
            return server.version >= config.rounds

        if config.rounds > 0:
            transport.run_async(config.async_concurrency, server.task, take)
    records = list(server.state.records)
    summary = summarize(records, evaluator.layout.size, config.run_settings(), time.perf_counter() - start)
    summary["resumed"] = False
    summary["staleness"] = {str(s): n for s, n in staleness_histogram(records).items()}
    write_summary(out / "summary.json", summary)
    return summary
