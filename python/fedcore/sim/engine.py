"""The simulation loop: select, broadcast, train, fold, aggregate, evaluate, record; deterministic by seed."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fedcore.adaptive import Choice
from fedcore.backends.base import ModelAdapter, TrainConfig
from fedcore.backends.batches import count_steps
from fedcore.client import ClientTask
from fedcore.compression import FLOAT32_BYTES, Vector, normalise_spec, validate_spec
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.downlink import DownlinkSync
from fedcore.layout import ParamLayout
from fedcore.personalize import (
    LocalHead,
    PersonalizationReport,
    make_local_head,
    make_personalizer,
    mean_client_accuracy,
    parse_personalize,
    personalize_clients,
)
from fedcore.powersgd import PowerSGD
from fedcore.records import RoundRecord, summarize
from fedcore.selection import AvailabilityModel, RoundSelection, make_selector, select_round
from fedcore.server import Downlink, combine
from fedcore.sim.broadcast import mask_descriptor_bytes, send_control, send_models
from fedcore.sim.memory import ClientMemory
from fedcore.sim.personal import own_models, score_ditto_rounds, score_local_head
from fedcore.sim.seeds import (
    CODEC_SEED,
    PERSONALIZE_SEED,
    POWERSGD_SEED,
    STRAGGLER_SEED,
    TRAIN_SEED,
    derive_seed,
)
from fedcore.sim.uplink import AdaptiveUplink
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

if TYPE_CHECKING:
    from fedcore.partial import Mask, MaskSelector


@dataclass(frozen=True)
class SimResult:
    """Every round's record, the run summary, the final global weights, and the state left behind.

    `clients` is what each client keeps for its next round; `downlink` is the server's record of the
    model each client holds (None without a downlink codec, when every client gets the weights as they are).
    `personalization` holds every client's score before and after, when the config asks for it.
    """

    records: list[RoundRecord]
    summary: dict[str, Any]
    weights: Vector
    clients: ClientMemory
    downlink: DownlinkSync | None
    personalization: PersonalizationReport | None = None


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


def _local_config(config: FLConfig) -> TrainConfig:
    return TrainConfig(
        epochs=config.local_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )


def _train_config(config: FLConfig, strategy: Strategy) -> TrainConfig:
    return strategy.client_config(_local_config(config))


def _personalize(
    config: FLConfig,
    data: FederatedData,
    evaluator: ModelAdapter,
    weights: Vector,
    memory: ClientMemory,
    local_head: LocalHead | None,
) -> PersonalizationReport | None:
    """Every client's personal model scored against a shared one, in this process; nothing is sent.

    Post-hoc methods personalize the final global model here; in-round ones score what the clients kept
    (see fedcore.sim.personal), with the post-hoc step only for clients never selected.
    """

    def client_seed(client_id: int) -> int:
        return derive_seed(config.seed, config.rounds, client_id, PERSONALIZE_SEED)

    train = _local_config(config)
    if local_head is not None:
        return score_local_head(evaluator, data, memory, weights, local_head, train, client_seed)
    if config.personalize is None:
        return None
    if config.ditto_rounds:
        return score_ditto_rounds(evaluator, data, memory, weights, config.personalize, train, client_seed)
    personalizer = make_personalizer(parse_personalize(config.personalize), train)
    return personalize_clients(evaluator, data, weights, personalizer, config.personalize, client_seed)


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
    memory = ClientMemory()
    downlink_spec = normalise_spec(config.downlink_codec)
    sync = DownlinkSync(downlink_spec, evaluator.get_weights()) if downlink_spec is not None else None
    local_head = (
        make_local_head(config.personalize, config.local_epochs, evaluator.layout)
        if config.local_head
        else None
    )
    try:
        records, state = _run_rounds(config, data, evaluator, pool, memory, sync, local_head, on_round)
    finally:
        pool.close()
    t_personal = time.perf_counter()
    personal = _personalize(config, data, evaluator, state.weights, memory, local_head)
    personalize_s = time.perf_counter() - t_personal
    wall_s = time.perf_counter() - start
    vectors = 2 if config.make_strategy().uses_control else 1
    summary = summarize(records, evaluator.layout.size, config.run_settings(), wall_s, vectors)
    summary["timing"]["workers"] = pool.size
    summary["timing"]["personalize_s"] = personalize_s
    summary["personalization"] = personal.summary() if personal is not None else None
    return SimResult(records, summary, state.weights, memory, sync, personal)


def _run_rounds(
    config: FLConfig,
    data: FederatedData,
    evaluator: ModelAdapter,
    pool: Pool,
    memory: ClientMemory,
    sync: DownlinkSync | None,
    local_head: LocalHead | None,
    on_round: Callable[[RoundRecord], None] | None,
) -> tuple[list[RoundRecord], ServerState]:
    """With a `local_head`, its body is every round's mask: only the body travels and is averaged."""
    strategy = config.make_strategy()
    state: ServerState = strategy.init_state(evaluator.get_weights())
    initial = state.weights.copy()
    masks = _mask_selector(config)
    change = np.zeros_like(initial)  # the last round's global update, for gradient-based masks
    selector = make_selector(config.selection, config.poc_candidates)
    devices = AvailabilityModel(config.seed, config.min_battery, config.min_bandwidth_mbps)
    availability = devices if config.selection == "availability" else None
    uplink = AdaptiveUplink.from_config(config, devices)
    vectors = 2 if strategy.uses_control else 1
    control_downlink = Downlink(config.downlink_codec)
    train = _train_config(config, strategy)
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
        models, down_bytes = send_models(sync, memory, initial, state.weights, sel, config.seed, round_num)
        if local_head is not None and sync is None:  # the head is not the server's to send
            down_bytes = FLOAT32_BYTES * local_head.body.count * int(sel.selected.size)
        server_control, control_bytes = send_control(
            control_downlink, state, strategy, config.seed, round_num
        )
        mask = masks.select(round_num, state.weights, evaluator.layout, change) if masks else None
        per_client_bytes = control_bytes + mask_descriptor_bytes(mask)
        down_bytes += per_client_bytes * int(sel.selected.size)
        if local_head is not None:  # fixed by the architecture: no descriptor travels
            mask = local_head.body
        answered = sel.answered.tolist()
        epochs = {cid: _straggler_epochs(config, round_num, cid) for cid in answered}
        choices = (
            uplink.choose(
                round_num, *_upload_plan(data, train, epochs, local_head, vectors, evaluator.layout)
            )
            if uplink is not None
            else None
        )
        tasks = [
            ClientTask(
                client_id=cid,
                train_seed=derive_seed(config.seed, round_num, cid, TRAIN_SEED),
                codec_seed=derive_seed(config.seed, round_num, cid, CODEC_SEED),
                residual=memory.residuals.get(cid),
                control=memory.controls.get(cid),
                epochs=epochs[cid],
                weights=models.get(cid),
                compressor=_compressor(config, memory, evaluator.layout, cid),
                codec=choices[cid].spec if choices is not None else None,
                head=memory.heads.get(cid),
                personal=memory.personal.get(cid),
                personal_seed=_personal_seed(config, round_num, cid),
            )
            for cid in answered
        ]
        round_tasks = [
            RoundTask(round_num, state.weights, server_control, train, tuple(group), mask)
            for group in split_round_robin(tasks, pool.size)
            if group
        ]
        results = pool.run(round_tasks)
        memory.remember(results)
        before = state.weights
        fold = combine([r.fold for r in results])
        if fold.count:  # every answering client diverged: the global model stays as it was
            state = strategy.aggregate(state, fold)
        if mask is not None:
            state = replace(state, weights=_hold_unshared(mask, before, state.weights))
        change = (state.weights - before).astype(np.float32)
        t_eval = time.perf_counter()
        scores = _evaluate(evaluator, data, state.weights, config.eval_clients)
        own = own_models(memory, state.weights, local_head, config.ditto_rounds)
        personal = mean_client_accuracy(evaluator, data, own) if own is not None else None
        eval_s = time.perf_counter() - t_eval
        fraction = mask.fraction if masks is not None and mask is not None else None
        record = _round_record(round_num, sel, results, scores, down_bytes, fraction, choices, t0, eval_s)
        record = replace(record, personal_accuracy=personal)
        records.append(record)
        if on_round is not None:
            on_round(record)
    return records, state


def _personal_seed(config: FLConfig, round_num: int, client_id: int) -> int:
    """Ditto's personal epochs in rounds 0..R-1; the post-hoc step uses round R, so the streams never meet."""
    return derive_seed(config.seed, round_num, client_id, PERSONALIZE_SEED) if config.ditto_rounds else 0


def _straggler_epochs(config: FLConfig, round_num: int, client_id: int) -> int | None:
    """A straggler's local epochs, uniform in 1..E as in the FedProx paper; None for a full client."""
    if config.stragglers == 0.0:
        return None
    rng = np.random.default_rng(derive_seed(config.seed, round_num, client_id, STRAGGLER_SEED))
    if rng.random() >= config.stragglers:
        return None
    return int(rng.integers(1, config.local_epochs + 1))


def _upload_plan(
    data: FederatedData,
    train: TrainConfig,
    epochs: dict[int, int | None],
    local_head: LocalHead | None,
    vectors: int,
    layout: ParamLayout,
) -> tuple[dict[int, int], int]:
    """Each client's local steps and the float32 count it uploads; a local head adds its head epochs."""
    if local_head is None:
        return _local_steps(data, train, epochs), vectors * layout.size
    both = replace(train, epochs=local_head.head_epochs + local_head.body_epochs)
    return _local_steps(data, both, epochs), vectors * local_head.body.count


def _local_steps(data: FederatedData, train: TrainConfig, epochs: dict[int, int | None]) -> dict[int, int]:
    """The steps each client will take this round (stragglers fewer), known before anyone trains."""
    steps = {}
    for cid, own in epochs.items():
        examples = len(data.client(cid).train)
        local = replace(train, epochs=own or train.epochs)
        steps[cid] = count_steps(examples, local) if examples else 0
    return steps


def _mask_selector(config: FLConfig) -> MaskSelector | None:
    if config.partial is None:
        return None
    from fedcore.partial import parse_partial

    return parse_partial(config.partial, config.seed)


def _hold_unshared(mask: Mask, before: Vector, after: Vector) -> Vector:
    """The new weights on the masked coordinates, the old ones bit for bit elsewhere."""
    merged = np.array(before, dtype=np.float32)
    mask.scatter(mask.extract(np.asarray(after, dtype=np.float32)), merged)
    return merged


def _compressor(
    config: FLConfig, memory: ClientMemory, layout: ParamLayout, client_id: int
) -> PowerSGD | None:
    """The client's PowerSGD state from its last round, or a fresh one seeded per client."""
    if config.powersgd is None:
        return None
    kept = memory.compressors.get(client_id)
    if kept is not None:
        return kept
    return PowerSGD(config.powersgd, layout, derive_seed(config.seed, 0, client_id, POWERSGD_SEED))


def _round_record(
    round_num: int,
    sel: RoundSelection,
    results: list[WorkerResult],
    scores: tuple[float, float, float | None],
    down_bytes: int,
    mask_fraction: float | None,
    choices: dict[int, Choice] | None,
    t0: float,
    eval_s: float,
) -> RoundRecord:
    """Downlink counts every selected client (dropouts got the model too); uplink only those that answered."""
    everyone = [rep for r in results for rep in r.reports]
    reports = [rep for rep in everyone if not rep.diverged]
    codecs = None
    late = None
    if choices is not None:
        codecs = dict(sorted(Counter(c.spec for c in choices.values()).items()))
        late = sorted(cid for cid, c in choices.items() if not c.meets_deadline)
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
        downlink_bytes=down_bytes,
        wall_s=time.perf_counter() - t0,
        train_s=sum(rep.train_s for rep in reports),
        eval_s=eval_s,
        client_accuracy=client_accuracy,
        mask_fraction=mask_fraction,
        codecs=codecs,
        late=late,
        diverged=sorted(rep.client_id for rep in everyone if rep.diverged),
    )
