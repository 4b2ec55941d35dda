"""FedBuff in the simulation: an event queue on the virtual clock, no barrier, the worker pool for training.

C clients train at once; when one finishes (its steps x its seconds per step later), its answer goes to the
buffer and a random idle client starts on the model version current at that moment. A client's result
depends only on the task it got, so the tasks handed out since the last training batch go to the pool
together, and their answers are consumed in virtual-time order: the same numbers inline and on a pool.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable

import numpy as np

from fedcore.config import FLConfig
from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import ReplyCollector, Transport
from fedcore.records import RoundRecord
from fedcore.seeds import derive_seed
from fedcore.server.driver import DriverState, RoundDriver
from fedcore.server.fedbuff import FedBuffServer
from fedcore.sim.clock import DeviceClock

ASYNC_PICK_SEED = 12  # which idle client starts next (a purpose of its own, see fedcore.seeds)


def run_fedbuff(
    config: FLConfig,
    state: DriverState,
    driver: RoundDriver,
    transport: Transport,
    clock: DeviceClock,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> DriverState:
    """`config.rounds` FedBuff server updates from `state`; each record's `virtual_s` is the update's time."""

    def evaluate(weights: np.ndarray) -> tuple[float, float]:
        driver.evaluator.set_weights(weights)
        result = driver.evaluator.evaluate(driver.test.x, driver.test.y)
        return result.accuracy, result.loss

    server = FedBuffServer(
        state,
        driver.layout,
        driver.strategy,
        driver.chain,
        buffer=config.async_buffer,
        staleness=config.staleness,
        clients=config.clients,
        seed=config.seed,
        evaluate=evaluate,
    )
    picks = np.random.default_rng(derive_seed(config.seed, 0, -1, ASYNC_PICK_SEED))
    idle = list(range(config.clients))  # kept sorted, so a pick depends only on the seed
    events: list[tuple[float, int, int]] = []  # (finish time, task id, client)
    pending: list[Task] = []  # handed out, not trained yet
    answers: dict[int, Reply | Failure] = {}
    failed_in_a_row = 0

    def start(now: float) -> None:
        client = idle.pop(int(picks.integers(len(idle))))
        task = server.task(client)
        pending.append(task)
        heapq.heappush(events, (now + clock.task_s(client), task.round, client))

    for _ in range(config.async_concurrency):
        start(0.0)
    while server.version < config.rounds:
        now, task_id, client = heapq.heappop(events)
        if task_id not in answers:
            answers.update(train(transport, pending))
            pending.clear()
        answer = answers.pop(task_id)
        failed_in_a_row = failed_in_a_row + 1 if isinstance(answer, Failure) else 0
        if isinstance(answer, Failure) and failed_in_a_row > 10 * config.async_concurrency:
            raise RuntimeError(f"FedBuff: the last {failed_in_a_row} clients all failed ({answer.message})")
        record = server.receive(answer, now)
        bisect.insort(idle, client)
        if record is not None and on_round is not None:
            on_round(record)
        start(now)
    return server.state


def train(transport: Transport, tasks: list[Task]) -> dict[int, Reply | Failure]:
    """Every task's answer by task id, trained on the pool; replies come back whole, unfolded."""
    clients = [t.client_id for t in tasks]
    if len(set(clients)) != len(clients):  # a client's second task starts only after its first one ends
        raise AssertionError("a client holds two untrained tasks")
    outcome = transport.run_round(tasks, ReplyCollector, None)
    assert isinstance(outcome.aggregator, ReplyCollector)
    trained: dict[int, Reply | Failure] = {r.round: r for r in outcome.aggregator.replies}
    trained.update({f.round: f for f in outcome.failures})
    return trained
