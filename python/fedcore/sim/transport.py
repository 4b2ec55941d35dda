"""The simulation as a transport: tasks go to worker processes, device state stays in the population."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

from fedcore.client import ClientStateStore
from fedcore.protocol.messages import Task
from fedcore.protocol.transport import AggregatorFactory, RoundOutcome
from fedcore.sim.profile import WorkTiming
from fedcore.sim.workers import Pool, WorkerJob, split_round_robin


class SimTransport:
    """Splits a round's tasks over the pool in a fixed order and merges the partial folds in worker order.

    `devices` is every simulated client's own storage: a state goes out with its task and comes back
    with the result, as it would stay on a phone; the round driver never reads it.
    """

    def __init__(self, pool: Pool, devices: ClientStateStore) -> None:
        self._pool = pool
        self.devices = devices
        self.last_timing = WorkTiming()  # the last round's worker-side seconds, summed over workers
        self.last_pool_s = 0.0  # the last round's wall time in the pool, transfers included

    @property
    def workers(self) -> int:
        return self._pool.size

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        """Simulated clients are always there."""
        del timeout_s
        return clients

    def run_round(
        self,
        tasks: Sequence[Task],
        make_aggregator: AggregatorFactory,
        deadline_s: float | None,
        meanwhile: Callable[[], None] | None = None,
    ) -> RoundOutcome:
        """The round's tasks on the pool; `meanwhile` runs here while the workers train (see Pool.run)."""
        del deadline_s  # simulated dropouts are decided by selection; nobody is late in a simulation
        jobs = [
            WorkerJob(tuple(group), tuple(self.devices.get(t.client_id) for t in group), make_aggregator)
            for group in split_round_robin(tasks, self._pool.size)
            if group
        ]
        self.last_timing, self.last_pool_s = WorkTiming(), 0.0
        if not jobs:
            if meanwhile is not None:
                meanwhile()
            return RoundOutcome(make_aggregator(), (), ())
        start = time.perf_counter()
        results = self._pool.run(jobs, meanwhile)
        self.last_pool_s = time.perf_counter() - start
        self.last_timing = functools.reduce(WorkTiming.plus, (r.timing for r in results), WorkTiming())
        for job, result in zip(jobs, results, strict=True):
            for task, state in zip(job.tasks, result.states, strict=True):
                self.devices.put(task.client_id, state)
        aggregator = results[0].aggregator
        for result in results[1:]:
            aggregator = aggregator.merge(result.aggregator)
        replies = tuple(r for res in results for r in res.replies)  # worker order, the order folded
        failures = tuple(f for res in results for f in res.failures)
        return RoundOutcome(aggregator, replies, failures)

    def close(self) -> None:
        self._pool.close()
