"""Server memory (MIFA, Gu et al. 2021): the server steps along the mean of every client's last update.

With ~1 client in 10 per round and a codec whose error is ~5x an update's energy (randk:0.25+eden:1 on
MNIST-1D), a round's mean of 10 decoded updates is mostly codec noise. The server already decodes each
update, so it can keep the last one of every client and step along their mean: the noise of ~N independent
frames instead of 10, at the price of updates up to a few rounds stale. It needs nothing from the clients,
so it composes with every codec; the server holds one float32 vector per client it has heard from.
Measured on MNIST-1D it does not make a codec cheaper (docs/results.md, third round of issue 18): each
frame still enters the model with the same total weight (1/N for ~N/K rounds), only spread over time.

`max_age` forgets an update once it is that many rounds old (1: only this round's; None: never).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fedcore.config import FLConfig
from fedcore.uplink.base import ServerOnly, Vector

if TYPE_CHECKING:
    from fedcore.strategies.base import FoldSum

# One client's decoded update of this round and its coefficient in the fold (what the aggregator kept).
Kept = Mapping[int, tuple[float, Vector]]


@dataclass(frozen=True)
class Remembered:
    """A client's last decoded update, its coefficient then, and the memory round it arrived in."""

    update: Vector
    coefficient: float
    round: int


@dataclass(frozen=True)
class Memory:
    """The server half's state: each client's last update, and how many rounds the memory has seen."""

    clients: dict[int, Remembered] = field(default_factory=dict)
    rounds: int = 0


@dataclass(frozen=True)
class ServerMemoryStage(ServerOnly):
    """Client half: nothing. Server half: the round's mean becomes the weighted mean of the memory."""

    max_age: int | None = None

    @property
    def key(self) -> str:
        return "memory"

    def remember(self, fold: FoldSum, kept: Kept, memory: Memory | None) -> tuple[FoldSum, Memory]:
        """The fold the strategy steps with (its mean is the memory's), and the memory with this round in."""
        if fold.count and not kept:
            raise ValueError("server memory needs each client's update; this round's aggregator kept none")
        memory = memory if memory is not None else Memory()
        now = memory.rounds
        clients = dict(memory.clients)
        for cid, (coefficient, update) in kept.items():
            clients[cid] = Remembered(np.asarray(update, dtype=np.float32), float(coefficient), now)
        if self.max_age is not None:
            clients = {cid: r for cid, r in clients.items() if now - r.round < self.max_age}
        updated = Memory(clients, now + 1)
        if fold.count == 0 or fold.weight_sum <= 0.0 or not clients:
            return fold, updated
        return replace(fold, delta_sum=_mean(clients) * fold.weight_sum), updated


def _mean(clients: Mapping[int, Remembered]) -> NDArray[np.float64]:
    """sum_j c_j m_j / sum_j c_j over the remembered clients, in client order (sums repeat bit for bit)."""
    total = np.zeros(next(iter(clients.values())).update.size, dtype=np.float64)
    weight = 0.0
    for cid in sorted(clients):
        r = clients[cid]
        total += r.coefficient * r.update.astype(np.float64)
        weight += r.coefficient
    return total / weight if weight > 0.0 else total


def memory_from_config(config: FLConfig) -> ServerMemoryStage | None:
    if not config.server_memory:
        return None
    return ServerMemoryStage(config.server_memory_age)
