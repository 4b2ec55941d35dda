"""Each client's own test accuracy under the global model and under its personalized one, and the summary."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fedcore.backends.base import ModelAdapter
from fedcore.compression import Vector
from fedcore.data import FederatedData
from fedcore.personalize.methods import Personalizer


@dataclass(frozen=True)
class ClientScore:
    """One client's test accuracy before (global model) and after personalization."""

    client_id: int
    test_examples: int
    before: float
    after: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worst_decile(values: Sequence[float]) -> float:
    """Mean of the lowest 10 % of clients (at least one): how the unluckiest clients fare, not a quantile."""
    if not values:
        raise ValueError("no values to take a worst decile of")
    count = max(1, math.ceil(len(values) / 10))
    return sum(sorted(values)[:count]) / count


@dataclass(frozen=True)
class PersonalizationReport:
    """Per-client scores of one method; clients without test examples are counted in `skipped`."""

    method: str
    scores: tuple[ClientScore, ...]
    skipped: int

    def summary(self) -> dict[str, Any]:
        """Unweighted means over clients; each worst decile is taken over its own ranking of clients."""
        before = [s.before for s in self.scores]
        after = [s.after for s in self.scores]
        return {
            "method": self.method,
            "clients": len(self.scores),
            "skipped": self.skipped,
            "mean_before": sum(before) / len(before) if before else None,
            "mean_after": sum(after) / len(after) if after else None,
            "worst_decile_before": worst_decile(before) if before else None,
            "worst_decile_after": worst_decile(after) if after else None,
        }


def personalize_clients(
    adapter: ModelAdapter,
    data: FederatedData,
    global_weights: Vector,
    personalizer: Personalizer,
    method: str,
    client_seed: Callable[[int], int],
) -> PersonalizationReport:
    """Personalize every client with a test split on its own train split; nothing leaves the client."""
    scores: list[ClientScore] = []
    skipped = 0
    for cid in range(data.num_clients):
        client = data.client(cid)
        if len(client.test) == 0:
            skipped += 1
            continue
        adapter.set_weights(global_weights)
        before = adapter.evaluate(client.test.x, client.test.y).accuracy
        personal = personalizer(adapter, client.train, global_weights, client_seed(cid))
        adapter.set_weights(personal)
        after = adapter.evaluate(client.test.x, client.test.y).accuracy
        scores.append(ClientScore(cid, len(client.test), before, after))
    return PersonalizationReport(method, tuple(scores), skipped)
