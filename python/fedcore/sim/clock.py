"""The simulation's virtual clock: how long each device takes per training step, so rounds have a duration.

Without `speed_spread` every device keeps today's seeded lognormal speed (median 10 ms a step). With
`speed_spread S`, the slowest device is S times slower than the fastest: a `stragglers` share of the
population (picked by the seed) runs at S x 10 ms a step and the rest at 10 ms; with no stragglers the
speeds spread log-uniformly over [10 ms, S x 10 ms].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.backends.batches import count_steps
from fedcore.client import local_train_config
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.protocol.transport import ReplyInfo
from fedcore.seeds import DEVICE_SPEED_SEED, derive_seed

MEDIAN_SECONDS_PER_STEP = 0.01
_SPEED_SPREAD = 0.5  # lognormal sigma: a tenth of the devices are ~2x slower than the median


def seconds_per_step(seed: int, client_id: int) -> float:
    """A device's fixed training speed, seeded per client, so picks never depend on this machine's clock."""

    rng = np.random.default_rng(derive_seed(seed, 0, client_id, DEVICE_SPEED_SEED))
    return float(rng.lognormal(np.log(MEDIAN_SECONDS_PER_STEP), _SPEED_SPREAD))


def device_speeds(config: FLConfig) -> NDArray[np.float64]:
    """Every client's seconds per local step under the config's speed model (see the module text)."""
    n = config.clients
    spread = config.speed_spread
    if spread is None:
        return np.array([seconds_per_step(config.seed, cid) for cid in range(n)], dtype=np.float64)
    rng = np.random.default_rng(derive_seed(config.seed, 0, -1, DEVICE_SPEED_SEED))
    if config.stragglers > 0.0:
        slow = rng.permutation(n)[: round(config.stragglers * n)]
        speeds = np.full(n, MEDIAN_SECONDS_PER_STEP)
        speeds[slow] *= spread
        return speeds
    return MEDIAN_SECONDS_PER_STEP * spread ** rng.random(n)


@dataclass(frozen=True)
class DeviceClock:
    """Each client's seconds per step and full local-training steps: a client's task takes their product."""

    seconds_per_step: tuple[float, ...]
    steps: tuple[int, ...]

    @classmethod
    def of(cls, config: FLConfig, data: FederatedData) -> DeviceClock:
        train = local_train_config(config)
        steps = []
        for cid in range(config.clients):
            examples = len(data.client(cid).train)
            steps.append(count_steps(examples, train) if examples else 0)
        return cls(tuple(float(s) for s in device_speeds(config)), tuple(steps))

    def task_s(self, client_id: int) -> float:
        """How long one full local-training task keeps this client busy."""
        return self.steps[client_id] * self.seconds_per_step[client_id]

    def round_s(self, replies: Sequence[ReplyInfo]) -> float:
        """A synchronous round waits for its slowest answering client (its steps as it reported them)."""
        return max((r.num_steps * self.seconds_per_step[r.client_id] for r in replies), default=0.0)
