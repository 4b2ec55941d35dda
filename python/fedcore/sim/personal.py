"""In-round personalization as the engine sees it: each client's own model, and the final before/after.

With a local head (FedRep in rounds) the global head is never trained, so the central accuracy of the
global model says nothing; what counts is each client's own head on the global body, scored on its own
test split. `after` is that model; `before` is the global body with the mean of the clients' heads,
the single model the server could hand everyone. With Ditto in rounds, `before` is the global model
and `after` the client's personal model v. A client never selected has no head or v; it gets the
post-hoc step (a head trained on the final body, or Ditto's personal step) so every client is scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.client import ClientStateStore
from fedcore.compression import Vector
from fedcore.data import FederatedData
from fedcore.personalize import (
    LocalHead,
    PersonalizationReport,
    ditto,
    fedrep,
    make_ditto_rounds,
    score_clients,
)
from fedcore.personalize.spec import PersonalizeSpec


def kept_heads(store: ClientStateStore) -> dict[int, Vector]:
    """Every client's local head, for those that trained one."""
    return {cid: head for cid in store if (head := store.get(cid).head) is not None}


def kept_personal(store: ClientStateStore) -> dict[int, Vector]:
    """Every client's Ditto model, for those that trained one."""
    return {cid: model for cid in store if (model := store.get(cid).personal) is not None}


def own_models(
    store: ClientStateStore, weights: Vector, local_head: LocalHead | None, ditto_rounds: bool
) -> Callable[[int], Vector] | None:
    """Each client's model as it holds it now (global weights where it has nothing of its own yet)."""
    if local_head is not None:
        heads = kept_heads(store)
        return lambda cid: local_head.with_head(weights, heads.get(cid))
    if ditto_rounds:
        personal = kept_personal(store)
        return lambda cid: personal.get(cid, weights)
    return None


def score_local_head(
    adapter: ModelAdapter,
    data: FederatedData,
    store: ClientStateStore,
    weights: Vector,
    local_head: LocalHead,
    train: TrainConfig,
    client_seed: Callable[[int], int],
) -> PersonalizationReport:
    """Own head vs the mean head, both on the final global body."""
    heads = kept_heads(store)
    shared = local_head.with_head(weights, local_head.mean_head(heads) if heads else None)
    head_only = replace(train, epochs=local_head.head_epochs)

    def after(cid: int) -> Vector:
        if cid in heads:
            return local_head.with_head(weights, heads[cid])
        config = replace(head_only, seed=client_seed(cid))
        return fedrep(adapter, data.client(cid).train, weights, config, local_head.head)

    method = f"fedrep:{local_head.head_epochs},{local_head.body_epochs} local head"
    report = score_clients(adapter, data, method, lambda cid: shared, after)
    return replace(report, in_rounds=sum(s.client_id in heads for s in report.scores))


def score_ditto_rounds(
    adapter: ModelAdapter,
    data: FederatedData,
    store: ClientStateStore,
    weights: Vector,
    personalize: PersonalizeSpec,
    train: TrainConfig,
    client_seed: Callable[[int], int],
) -> PersonalizationReport:
    """The personal model v vs the global model."""
    lam = make_ditto_rounds(personalize).lam
    personal = kept_personal(store)

    def after(cid: int) -> Vector:
        if cid in personal:
            return personal[cid]
        return ditto(adapter, data.client(cid).train, weights, replace(train, seed=client_seed(cid)), lam)

    report = score_clients(adapter, data, f"{personalize} in rounds", lambda cid: weights, after)
    return replace(report, in_rounds=sum(s.client_id in personal for s in report.scores))
