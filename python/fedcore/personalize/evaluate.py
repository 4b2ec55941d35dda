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
    """Per-client scores of one method; clients without test examples are counted in `skipped`.

    `in_rounds` counts the scored clients whose personal model was trained in the rounds (the rest,
    never selected, got the post-hoc step); None for a post-hoc method.
    """

    method: str
    scores: tuple[ClientScore, ...]
    skipped: int
    in_rounds: int | None = None

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
            "in_rounds": self.in_rounds,
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

    def personal(cid: int) -> Vector:
        return personalizer(adapter, data.client(cid).train, global_weights, client_seed(cid))

    return score_clients(adapter, data, method, lambda cid: global_weights, personal)


def score_clients(
    adapter: ModelAdapter,
    data: FederatedData,
    method: str,
    before: Callable[[int], Vector],
    after: Callable[[int], Vector],
) -> PersonalizationReport:
    """Each client with a test split scored on it under its `before` and its `after` weights."""
    scores: list[ClientScore] = []
    skipped = 0
    for cid in range(data.num_clients):
        test = data.client(cid).test
        if len(test) == 0:
            skipped += 1
            continue
        adapter.set_weights(before(cid))
        accuracy_before = adapter.evaluate(test.x, test.y).accuracy
        adapter.set_weights(after(cid))
        accuracy_after = adapter.evaluate(test.x, test.y).accuracy
        scores.append(ClientScore(cid, len(test), accuracy_before, accuracy_after))
    return PersonalizationReport(method, tuple(scores), skipped)


def mean_client_accuracy(
    adapter: ModelAdapter, data: FederatedData, weights: Callable[[int], Vector]
) -> float | None:
    """Unweighted mean over clients with a test split of each one's accuracy under its own weights."""
    accuracies = []
    for cid in range(data.num_clients):
        test = data.client(cid).test
        if len(test):
            adapter.set_weights(weights(cid))
            accuracies.append(adapter.evaluate(test.x, test.y).accuracy)
    return sum(accuracies) / len(accuracies) if accuracies else None
