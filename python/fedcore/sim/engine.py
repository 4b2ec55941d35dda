"""The simulation: a client population on a worker pool as the transport, driven by the round driver."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fedcore.adaptive import AdaptiveCodecPolicy, Choice, CodecLadder, megabits_to_bytes_per_s
from fedcore.backends.base import ModelAdapter
from fedcore.backends.batches import count_steps
from fedcore.backends.user import EvalFn, ModelFn, TrainFn, UserModel, is_import_path
from fedcore.client import ClientStateStore, base_train_config, local_train_config
from fedcore.config import FLConfig
from fedcore.data import FederatedData
from fedcore.downlink import DownlinkSync
from fedcore.personalize import (
    LocalHead,
    PersonalizationReport,
    make_local_head,
    make_personalizer,
    mean_client_accuracy,
    personalize_clients,
)
from fedcore.protocol.transport import Transport
from fedcore.records import RoundRecord, summarize
from fedcore.seeds import PERSONALIZE_SEED, derive_seed
from fedcore.selection import AvailabilityModel
from fedcore.server.driver import (
    DriverState,
    PersonalScore,
    RoundDriver,
    UplinkPlanner,
    initial_state,
    privacy_summary,
)
from fedcore.server.fedbuff import staleness_histogram
from fedcore.sim.attack import AttackedTransport, byzantine_clients
from fedcore.sim.clock import DeviceClock, device_speeds
from fedcore.sim.clock import seconds_per_step as seconds_per_step  # (its home was here)
from fedcore.sim.fedbuff import run_fedbuff
from fedcore.sim.personal import own_models, score_ditto_rounds, score_local_head
from fedcore.sim.profile import SimProfile
from fedcore.sim.secure import simulated_secure_transport
from fedcore.sim.transport import SimTransport
from fedcore.sim.workers import build_model, limit_threads, load_data, make_pool, prestart_workers
from fedcore.uplink.base import Vector


@dataclass(frozen=True)
class SimResult:
    """Every round's record, the run summary, the final global weights, and what was left behind.

    `clients` is every simulated device's own state; `downlink` is the server's record of the model each
    client holds (None without a downlink codec). `personalization` holds every client's score before and
    after, when the config asks for it.
    """

    records: list[RoundRecord]
    summary: dict[str, Any]
    weights: Vector
    clients: ClientStateStore
    downlink: DownlinkSync | None
    personalization: PersonalizationReport | None = None


def adaptive_planner(config: FLConfig, data: FederatedData) -> UplinkPlanner | None:
    """Adaptive compression in the simulator: codec per client from simulated bandwidth and training time.

    A local head trains its head and body epochs before the upload, so both count towards the deadline.
    """
    if config.adaptive_deadline_s is None:
        return None
    policy = AdaptiveCodecPolicy((config.adaptive_ladder or CodecLadder()).specs, config.adaptive_deadline_s)
    devices = AvailabilityModel(config.seed, config.min_battery, config.min_bandwidth_mbps)
    speeds = device_speeds(config)
    train = local_train_config(config)
    if config.local_head:
        spec = config.personalize
        head = (spec.epochs if spec is not None else None) or config.local_epochs
        body = (spec.body_epochs if spec is not None else None) or config.local_epochs
        train = replace(train, epochs=head + body)

    def plan(round_num: int, epochs: dict[int, int | None], upload_floats: int) -> dict[int, Choice]:
        bandwidth = devices.conditions(round_num, config.clients).bandwidth_mbps
        picks = {}
        for cid, own in epochs.items():
            examples = len(data.client(cid).train)
            steps = count_steps(examples, replace(train, epochs=own or train.epochs)) if examples else 0
            picks[cid] = policy.choose(
                upload_floats,
                megabits_to_bytes_per_s(float(bandwidth[cid])),
                steps * float(speeds[cid]),
            )
        return picks

    return plan


def backdoor_score(config: FLConfig, evaluator: ModelAdapter, data: FederatedData) -> PersonalScore | None:
    """Under a backdoor attack: the share of triggered central-test inputs the model sends to the target."""
    if config.attack is None:
        return None
    from fedcore.robust.attacks import Backdoor

    attack = config.attack
    if not isinstance(attack, Backdoor):
        return None
    test = data.central_test
    keep = test.y != attack.target
    x = attack.stamp(test.x[keep])
    y = np.full(int(keep.sum()), attack.target, dtype=np.int64)

    def score(weights: Vector) -> float:
        evaluator.set_weights(weights)
        return evaluator.evaluate(x, y).accuracy

    return score


def robustness_summary(config: FLConfig, state: DriverState) -> dict[str, object]:
    """Who attacked, who was flagged (mean suspicion above 1 in recent rounds), and how well that matched."""
    summary: dict[str, object] = {}
    flagged = sorted(state.suspects.flagged()) if state.suspects is not None else None
    if flagged is not None:
        summary["suspects"] = flagged
    if config.attack is not None:
        bad = byzantine_clients(config)
        summary["byzantine_clients"] = sorted(bad)
        if flagged is not None:
            seen = set(state.suspects.history) if state.suspects is not None else set()
            caught = len(bad & set(flagged))
            honest_seen = len(seen - bad)
            summary["detection"] = {
                "flagged_attackers": caught,
                "attackers_seen": len(bad & seen),
                "false_positives": len(set(flagged) - bad),
                "honest_seen": honest_seen,
            }
    return summary


def _personalize(
    config: FLConfig,
    data: FederatedData,
    evaluator: ModelAdapter,
    weights: Vector,
    devices: ClientStateStore,
    local_head: LocalHead | None,
) -> PersonalizationReport | None:
    """Every client's personal model scored against a shared one, in this process; nothing is sent.

    Post-hoc methods personalize the final global model here; in-round ones score what the clients kept
    (see fedcore.sim.personal), with the post-hoc step only for clients never selected.
    """

    def client_seed(client_id: int) -> int:
        return derive_seed(config.seed, config.rounds, client_id, PERSONALIZE_SEED)

    train = base_train_config(config)
    if local_head is not None:
        return score_local_head(evaluator, data, devices, weights, local_head, train, client_seed)
    if config.personalize is None:
        return None
    if config.ditto_rounds:
        return score_ditto_rounds(evaluator, data, devices, weights, config.personalize, train, client_seed)
    personalizer = make_personalizer(config.personalize, train)
    return personalize_clients(evaluator, data, weights, personalizer, str(config.personalize), client_seed)


def user_model(
    config: FLConfig, model_fn: ModelFn | None, train_fn: TrainFn | None, eval_fn: EvalFn | None
) -> UserModel | None:
    """Your model for this run: model_fn, else config.model when it is an import path; None: built-in."""
    if model_fn is None and is_import_path(config.model):
        return UserModel(config.model, train_fn, eval_fn)
    if model_fn is None:
        if train_fn is not None or eval_fn is not None:
            raise ValueError("train_fn and eval_fn need your own model: pass model_fn too")
        return None
    return UserModel(model_fn, train_fn, eval_fn)


def simulate(
    config: FLConfig,
    on_round: Callable[[RoundRecord], None] | None = None,
    data: FederatedData | None = None,
    model_fn: ModelFn | None = None,
    train_fn: TrainFn | None = None,
    eval_fn: EvalFn | None = None,
    profile: SimProfile | None = None,
) -> SimResult:
    """Run `config.rounds` rounds; raises InsufficientClientsError when a round falls below min_clients.

    `data` replaces the config's dataset (e.g. `FederatedData.from_arrays`); it must have `config.clients`.
    `model_fn()` replaces config.model: it returns a torch.nn.Module, an mlx.nn.Module or a scikit-learn
    estimator with partial_fit. `train_fn(model, x, y, train_config) -> loss` and
    `eval_fn(model, x, y) -> (loss, accuracy)` replace the built-in SGD loop and evaluation.
    With workers, define all three at module level so they pickle.
    `profile` collects the time of each phase and each round's split (`fedcore sim --profile`).
    """

    def phase(name: str) -> AbstractContextManager[None]:
        return profile.phase(name) if profile is not None else nullcontext()

    user = user_model(config, model_fn, train_fn, eval_fn)
    start = time.perf_counter()
    limit_threads(config, user)
    prestart_workers(config)
    if data is None:
        with phase("data load"):
            data = load_data(config)
    elif data.num_clients != config.clients:
        raise ValueError(f"the data holds {data.num_clients} clients, the config asks for {config.clients}")
    with phase("model build"):
        evaluator = build_model(config, data, user)
    devices = ClientStateStore()
    with phase("worker start"):
        simulated = SimTransport(make_pool(config, data, user), devices)
    if profile is not None:
        profile.workers = simulated.workers
    transport: Transport = simulated
    if config.attack is not None:
        transport = AttackedTransport(simulated, config)
    if config.secagg:
        largest = max(len(data.client(c).train) for c in range(data.num_clients))
        transport = simulated_secure_transport(simulated, config, largest, evaluator.layout.size)
    layout = evaluator.layout
    local_head = (
        make_local_head(config.personalize, config.local_epochs, layout) if config.local_head else None
    )

    def personal_score(weights: Vector) -> float | None:
        own = own_models(devices, weights, local_head, config.ditto_rounds)
        return mean_client_accuracy(evaluator, data, own) if own is not None else None

    driver = RoundDriver(
        config,
        layout,
        evaluator,
        data.central_test,
        transport,
        planner=adaptive_planner(config, data),
        personal_score=personal_score,
        backdoor_score=backdoor_score(config, evaluator, data),
        client_tests=(lambda: [data.client(c).test for c in range(data.num_clients)])
        if config.eval_clients
        else None,
        clock=(clock := DeviceClock.of(config, data)).round_s,
    )
    state: DriverState = initial_state(config, evaluator.get_weights())
    try:
        if config.asynchronous:
            state = run_fedbuff(config, state, driver, simulated, clock, on_round)
        while state.next_round < driver.rounds_to_run:
            with phase("later rounds" if state.records else "first round"):
                state, record, _ = driver.run_round(state)
            if profile is not None:
                profile.add_round(record, simulated.last_timing, simulated.last_pool_s)
            if on_round is not None:
                on_round(record)
    finally:
        transport.close()
    t_personal = time.perf_counter()
    personal = _personalize(config, data, evaluator, state.server.weights, devices, local_head)
    personalize_s = time.perf_counter() - t_personal
    wall_s = time.perf_counter() - start
    vectors = 2 if config.make_strategy().uses_control else 1
    records = list(state.records)
    summary = summarize(records, layout.size, config.run_settings(), wall_s, vectors)
    summary["timing"]["workers"] = simulated.workers
    summary["timing"]["engine"] = config.engine  # how it ran; the numbers are the same on either engine
    summary["timing"]["personalize_s"] = personalize_s
    summary["personalization"] = personal.summary() if personal is not None else None
    summary["data"] = data.name  # what the run trained on: the config's dataset, or your own arrays
    summary["model"] = user.name if user is not None else config.model
    summary.update(privacy_summary(driver, records))
    summary.update(robustness_summary(config, state))
    if config.asynchronous:  # how stale the buffered updates were: versions behind -> updates
        summary["staleness"] = {str(s): n for s, n in staleness_histogram(records).items()}
    return SimResult(records, summary, state.server.weights, devices, state.downlink, personal)
