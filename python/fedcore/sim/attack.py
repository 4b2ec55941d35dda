"""Byzantine clients in the simulated population: poisoned data, or updates replaced by an attack."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fedcore.config import FLConfig
from fedcore.data.dataset import Dataset
from fedcore.protocol.messages import Reply, Task
from fedcore.protocol.transport import (
    AggregatorFactory,
    RoundOutcome,
    Transport,
    collect_replies,
    fold_in_order,
)
from fedcore.seeds import ATTACK_SEED, derive_seed
from fedcore.server.aggregation import decode_reply
from fedcore.uplink.codec import encode_frame


def byzantine_clients(config: FLConfig) -> frozenset[int]:
    """A seeded `byzantine` share of the population, fixed for the whole run."""
    count = round(config.byzantine * config.clients)
    rng = np.random.default_rng(derive_seed(config.seed, 0, -1, ATTACK_SEED))
    return frozenset(int(c) for c in rng.choice(config.clients, size=count, replace=False))


def poisoned_data(config: FLConfig, data_for: Callable[[int], Dataset]) -> Callable[[int], Dataset]:
    """Byzantine clients of a data attack (label flip, backdoor) train on poisoned data; others on theirs."""
    if config.attack is None:
        return data_for
    from fedcore.robust.attacks import Backdoor, LabelFlip

    attack = config.attack
    if not isinstance(attack, LabelFlip | Backdoor):
        return data_for
    bad = byzantine_clients(config)

    def poisoned(cid: int) -> Dataset:
        clean = data_for(cid)
        if cid not in bad or not len(clean):
            return clean
        if isinstance(attack, LabelFlip):
            x, y = attack.poison(clean.x, clean.y, clean.n_classes)
        else:
            x, y = attack.poison(clean.x, clean.y, seed=derive_seed(config.seed, 0, cid, ATTACK_SEED))
        return Dataset(x.reshape(clean.x.shape), y, clean.n_classes, clean.name)

    return poisoned


class AttackedTransport:
    """The simulation with a colluding Byzantine share: their replies are rewritten after honest training.

    Model attacks (sign flip, Gaussian, ALIE, IPM, min-max/sum) see every honest update of the round (the
    omniscient adversary of the papers); a backdoor client boosts its own poisoned update. The rewritten
    update is encoded with the run's codec, so compression applies to attackers too.
    """

    def __init__(self, inner: Transport, config: FLConfig) -> None:
        from fedcore.robust.attacks import LabelFlip

        if config.attack is None:
            raise ValueError("an attacked transport needs config.attack")
        self._inner = inner
        self._config = config
        self._attack = config.attack
        self._rewrites = not isinstance(self._attack, LabelFlip)
        self.byzantine = byzantine_clients(config)

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        return self._inner.wait_ready(clients, timeout_s)

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        replies, failures = collect_replies(self._inner, tasks, deadline_s)
        if self._rewrites and tasks:
            replies = self._rewrite(replies, make_aggregator, tasks[0].round)
        return fold_in_order(make_aggregator, tasks, [*replies, *failures])

    def _rewrite(
        self, replies: list[Reply], make_aggregator: AggregatorFactory, round_num: int
    ) -> list[Reply]:
        from fedcore.robust.attacks import Backdoor, LabelFlip

        ctx = getattr(make_aggregator, "ctx")  # noqa: B009 - the driver's factory carries its fold context
        dense = {r.client_id: _dense(ctx, r) for r in replies}
        bad = [r for r in replies if r.client_id in self.byzantine]
        honest = [dense[r.client_id] for r in replies if r.client_id not in self.byzantine]
        if not bad:
            return replies
        own = np.stack([dense[r.client_id] for r in bad])
        seed = derive_seed(self._config.seed, round_num, -1, ATTACK_SEED)
        attack = self._attack
        if isinstance(attack, Backdoor):
            forged = attack.boost_delta(own)
        elif honest and not isinstance(attack, LabelFlip):
            forged = attack(np.stack(honest), own, seed=seed)
        else:
            return replies  # nobody honest answered: an omniscient attack has nothing to read
        rewritten = {
            r.client_id: Reply(
                r.round,
                r.client_id,
                (
                    encode_frame(self._config.codec, np.ascontiguousarray(forged[i]), seed + i),
                    *r.payloads[1:],
                ),
                r.num_examples,
                r.num_steps,
                r.loss,
                r.train_s,
                r.metrics,
            )
            for i, r in enumerate(bad)
        }
        return [rewritten.get(r.client_id, r) for r in replies]

    def close(self) -> None:
        self._inner.close()


def _dense(ctx: Any, reply: Reply) -> np.ndarray:
    from fedcore.uplink.codec import decode_frame

    update, _ = decode_reply(ctx, reply)
    return decode_frame(update) if isinstance(update, bytes) else np.asarray(update, dtype=np.float32)
