"""The round driver: select, configure, hand tasks to a transport, aggregate, evaluate, record, checkpoint.

It owns the global model, the strategy's state, the downlink record and what selection remembers; it knows
nothing of processes or sockets (the transport) nor of any client's own state (the client side).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from fedcore.adaptive import Choice
from fedcore.backends.base import ModelAdapter
from fedcore.compression import FLOAT32_BYTES, normalise_spec
from fedcore.config import FLConfig
from fedcore.data.dataset import Dataset
from fedcore.downlink import DownlinkSync
from fedcore.layout import ParamLayout
from fedcore.personalize import LocalHead, make_local_head
from fedcore.privacy.adaptive import update_noise_multiplier
from fedcore.privacy.plan import DEFAULT_INITIAL_CLIP, PrivacyPlan
from fedcore.protocol.messages import Task
from fedcore.protocol.transport import ReplyInfo, RoundOutcome, Transport
from fedcore.records import RoundRecord
from fedcore.robust.detect import SuspectTracker
from fedcore.seeds import (
    CODEC_SEED,
    CONTROL_DOWNLINK_SEED,
    DOWNLINK_SEED,
    DP_NOISE_SEED,
    PERSONALIZE_SEED,
    STRAGGLER_SEED,
    TRAIN_SEED,
    derive_seed,
)
from fedcore.selection import (
    AvailabilityModel,
    InsufficientClientsError,
    RoundSelection,
    make_selector,
    select_round,
)
from fedcore.server.aggregation import FoldContext
from fedcore.server.private_fold import RoundNoise
from fedcore.server.registry import aggregator_factory
from fedcore.strategies.base import ServerState
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame, mask_to_bytes
from fedcore.uplink.base import Vector

if TYPE_CHECKING:
    from fedcore.partial import Mask, MaskSelector

# Simulation-only planning: (round, each answering client's epochs, float32 count uploaded) -> codec picks.
UplinkPlanner = Callable[[int, dict[int, int | None], int], dict[int, Choice]]
PersonalScore = Callable[[Vector], float | None]


@dataclass(frozen=True)
class DriverState:
    """Everything the server carries from one round to the next; a checkpoint is exactly this."""

    next_round: int
    server: ServerState
    initial: Vector
    change: Vector  # the last round's global update (gradient-based masks score it)
    losses: dict[int, float] = field(default_factory=dict)
    downlink: DownlinkSync | None = None
    records: tuple[RoundRecord, ...] = ()
    dp_clip: float | None = None  # user-level DP: the clip norm clients use next round
    suspects: SuspectTracker | None = None  # robust aggregators: who looked suspicious in recent rounds
    uplink: dict[str, Any] = field(default_factory=dict)  # stateful uplink stages' server halves

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A checkpoint from before `uplink` existed loads with no uplink state (nothing kept any then)."""
        self.__dict__.update({"uplink": {}, **state})


def initial_state(config: FLConfig, weights: Vector) -> DriverState:
    strategy = config.make_strategy()
    server = strategy.init_state(weights)
    spec = normalise_spec(config.downlink_codec)
    sync = DownlinkSync(spec, weights) if spec is not None else None
    initial = server.weights.copy()
    return DriverState(0, server, initial, np.zeros_like(initial), {}, sync, dp_clip=_first_clip(config))


def _first_clip(config: FLConfig) -> float | None:
    """Central DP's fixed clip, or adaptive clipping's small starting one; None without user-level DP."""
    if config.dp is None:
        return None
    spec = config.dp
    if spec.mode in ("central", "distributed"):
        return spec.clip
    return DEFAULT_INITIAL_CLIP if spec.mode == "adaptive" else None


def straggler_epochs(config: FLConfig, round_num: int, client_id: int) -> int | None:
    """A straggler's local epochs, uniform in 1..E as in the FedProx paper; None for a full client."""
    if config.stragglers == 0.0 or config.speed_spread is not None:
        return None  # (with --speed-spread, stragglers are slow devices that train every epoch)
    rng = np.random.default_rng(derive_seed(config.seed, round_num, client_id, STRAGGLER_SEED))
    if rng.random() >= config.stragglers:
        return None
    return int(rng.integers(1, config.local_epochs + 1))


def _hold_unshared(mask: Mask, before: Vector, after: Vector) -> Vector:
    """The new weights on the masked coordinates, the old ones bit for bit elsewhere."""
    merged = np.array(before, dtype=np.float32)
    mask.scatter(mask.extract(np.asarray(after, dtype=np.float32)), merged)
    return merged


def _mask_selector(config: FLConfig) -> MaskSelector | None:
    if config.partial is None:
        return None
    return config.partial.selector(config.seed)


def _intersect(a: Mask | None, b: Mask | None) -> Mask | None:
    if a is None or b is None:
        return a if b is None else b
    from fedcore.partial import Mask

    return Mask.from_bool(a.to_bool() & b.to_bool())


@dataclass
class RoundDriver:
    """Runs rounds over any transport; `evaluate` scores the global model on the server's test set."""

    config: FLConfig
    layout: ParamLayout
    evaluator: ModelAdapter
    test: Dataset
    transport: Transport
    planner: UplinkPlanner | None = None
    personal_score: PersonalScore | None = None
    backdoor_score: PersonalScore | None = None
    client_tests: Callable[[], list[Dataset]] | None = None
    deadline_s: float | None = None
    clock: Callable[[Sequence[ReplyInfo]], float] | None = None  # simulation: a round's virtual seconds

    def __post_init__(self) -> None:
        config = self.config
        self.strategy = config.make_strategy()
        self.chain = UplinkChain.from_config(config)
        self.masks = _mask_selector(config)
        self.selector = make_selector(config.selection, config.poc_candidates)
        devices = AvailabilityModel(config.seed, config.min_battery, config.min_bandwidth_mbps)
        self.availability = devices if config.selection == "availability" else None
        self.privacy = PrivacyPlan.from_config(config)
        self.local_head: LocalHead | None = (
            make_local_head(config.personalize, config.local_epochs, self.layout)
            if config.local_head
            else None
        )

    def run_round(self, state: DriverState) -> tuple[DriverState, RoundRecord, RoundOutcome]:
        """One round from `state`; raises InsufficientClientsError when too few clients get through."""
        config = self.config
        round_num = state.next_round
        t0 = time.perf_counter()
        server = state.server
        sel = select_round(
            self.selector,
            seed=config.seed,
            round_num=round_num,
            num_clients=config.clients,
            per_round=config.per_round,
            losses=state.losses,
            availability=self.availability,
            dropout_rate=config.dropout,
            min_clients=config.min_clients,
            excluded=state.suspects.flagged() if state.suspects and config.exclude_suspects else frozenset(),
        )
        model_for, down_bytes, sync = self._models(state, sel, round_num)
        control, control_bytes = self._control(server, round_num)
        mask = self.masks.select(round_num, server.weights, self.layout, state.change) if self.masks else None
        descriptor = 0 if mask is None or mask.is_seeded else len(mask.to_bitmap())
        down_bytes += (control_bytes + descriptor) * int(sel.selected.size)
        round_mask = _intersect(mask, self.local_head.body if self.local_head is not None else None)
        answered = sel.answered.tolist()
        epochs = {cid: straggler_epochs(config, round_num, cid) for cid in answered}
        choices = None
        if self.planner is not None:
            shared = round_mask.count if round_mask is not None else self.layout.size
            vectors = 2 if self.strategy.uses_control else 1
            choices = self.planner(round_num, epochs, vectors * shared)
        tasks = [
            Task(
                round=round_num,
                client_id=cid,
                model_version=round_num,
                model=model_for(cid),
                model_is_diff=sync is not None,
                control=control,
                mask=mask_to_bytes(round_mask) if round_mask is not None else None,
                settings={
                    "train_seed": derive_seed(config.seed, round_num, cid, TRAIN_SEED),
                    "codec_seed": derive_seed(config.seed, round_num, cid, CODEC_SEED),
                    "epochs": epochs[cid],
                    "codec": choices[cid].spec if choices is not None else None,
                    "personal_seed": self._personal_seed(round_num, cid),
                    "dp_clip": state.dp_clip,
                },
            )
            for cid in answered
        ]
        fold_ctx = FoldContext(
            self.layout.size,
            self.chain,
            UplinkContext(self.layout, mask=round_mask),
            self.strategy,
            equal_weights=self.privacy is not None,
            keep_updates=self.chain.keeps_updates,
        )
        noise = self._noise(state, round_num)
        factory = aggregator_factory(
            config.aggregator, fold_ctx, noise, derive_seed(config.seed, round_num, -1, 0)
        )
        outcome = self.transport.run_round(tasks, factory, self.deadline_s)
        reached = len(outcome.replies) + sum(f.kind == "diverged" for f in outcome.failures)
        if reached < config.min_clients:  # a diverged client did answer, as in the simulation
            raise InsufficientClientsError(round_num, reached, config.min_clients)
        fold = outcome.aggregator.finish()
        kept = getattr(outcome.aggregator, "kept", None)  # each client's update, where a server half asks
        fold, uplink = self.chain.server_round(fold, state.uplink, config.clients, kept)
        dp_metrics: dict[str, Any] = getattr(outcome.aggregator, "metrics", {})
        suspicion: dict[int, float] = getattr(outcome.aggregator, "suspicion", {})
        suspicion_weight: float = getattr(outcome.aggregator, "suspicion_weight", 0.0)
        suspects = state.suspects
        if suspicion:
            tracker = suspects if suspects is not None else SuspectTracker()
            suspects = tracker.observe(list(suspicion), list(suspicion.values()), suspicion_weight)
        before = server.weights
        if fold.count:  # every answering client failed: the global model stays as it was
            server = self.strategy.aggregate(server, fold)
        if round_mask is not None:
            server = replace(server, weights=_hold_unshared(round_mask, before, server.weights))
        change = (server.weights - before).astype(np.float32)
        t_eval = time.perf_counter()
        accuracy, loss, client_accuracy = self._evaluate(server.weights)
        personal = self.personal_score(server.weights) if self.personal_score is not None else None
        eval_s = time.perf_counter() - t_eval
        losses = dict(state.losses)
        losses.update({r.client_id: r.loss for r in outcome.replies})
        fraction = mask.fraction if mask is not None else None
        record = _round_record(
            round_num,
            sel,
            outcome,
            (accuracy, loss, client_accuracy),
            down_bytes,
            fraction,
            choices,
            t0,
            eval_s,
        )
        epsilon = self.privacy.epsilons[round_num] if self.privacy is not None else None
        local = [r.metrics["local_epsilon"] for r in outcome.replies if "local_epsilon" in r.metrics]
        record = replace(
            record,
            suspicion={str(c): s for c, s in sorted(suspicion.items())} or None,
            suspicion_weight=suspicion_weight if suspicion else None,
            secagg={k: v for k, v in dp_metrics.items() if k.startswith("secagg")} or None,
            backdoor_accuracy=self.backdoor_score(server.weights) if self.backdoor_score else None,
            personal_accuracy=personal,
            epsilon=epsilon,
            dp_clip=state.dp_clip,
            local_epsilon=max(local) if local else None,
            virtual_s=self._virtual_s(state, outcome),
        )
        next_clip = dp_metrics.get("dp_next_clip", state.dp_clip)
        new_state = DriverState(
            round_num + 1,
            server,
            state.initial,
            change,
            losses,
            sync,
            (*state.records, record),
            next_clip,
            suspects,
            uplink,
        )
        return new_state, record, outcome

    def _virtual_s(self, state: DriverState, outcome: RoundOutcome) -> float | None:
        """The simulated clock after this round: the one before plus the slowest answering client's time."""
        if self.clock is None:
            return None
        before = state.records[-1].virtual_s if state.records else None
        return (before or 0.0) + self.clock(outcome.replies)

    @property
    def rounds_to_run(self) -> int:
        """The config's rounds, or fewer when a privacy budget ends the run (see stop_message)."""
        return self.privacy.rounds_within_budget if self.privacy is not None else self.config.rounds

    def stop_message(self) -> str | None:
        return self.privacy.stop_message() if self.privacy is not None else None

    def _noise(self, state: DriverState, round_num: int) -> RoundNoise | None:
        """This round's DP mechanism at the aggregator, seeded per round; None without user-level DP."""
        plan = self.privacy
        if plan is None or state.dp_clip is None or plan.spec.mode == "distributed":
            return None  # (distributed DP: the clients' shares are already in the secure sum)
        seed = derive_seed(self.config.seed, round_num, -1, DP_NOISE_SEED)
        cohort = plan.sampling.expected_cohort
        if not plan.adaptive:
            return RoundNoise(state.dp_clip, plan.noise_multiplier, cohort, seed)
        count_noise = plan.count_noise()
        on_sum = update_noise_multiplier(plan.noise_multiplier, count_noise)
        return RoundNoise(state.dp_clip, on_sum, cohort, seed, plan.spec.quantile, count_noise)

    def _models(
        self, state: DriverState, sel: RoundSelection, round_num: int
    ) -> tuple[Callable[[int], bytes], int, DownlinkSync | None]:
        """Each client's model message (the one broadcast frame, or its own difference) and their bytes.

        A broadcast is counted for every selected client, dropouts included; a downlink-sync message exists
        only for a client that gets a task, since the server records what each client holds.
        """
        weights = state.server.weights
        selected = int(sel.selected.size)
        if state.downlink is None:
            frame = encode_frame(None, weights, 0)
            sent = self.local_head.body.count if self.local_head is not None else self.layout.size
            # (with a local head only the body counts: the head is not the server's to send)
            return lambda cid: frame, FLOAT32_BYTES * sent * selected, None
        sync = state.downlink.copy()
        models: dict[int, bytes] = {}
        total = 0
        for cid in sel.answered.tolist():  # a dropped client never gets its message, so it is not recorded
            payload, nbytes = sync.send(
                cid, weights, derive_seed(self.config.seed, round_num, cid, DOWNLINK_SEED)
            )
            models[cid] = payload
            total += nbytes
        return models.__getitem__, total, sync

    def _control(self, server: ServerState, round_num: int) -> tuple[bytes | None, int]:
        """SCAFFOLD's server control as one frame for every client, and its bytes per client."""
        if not self.strategy.uses_control:
            return None, 0
        control = server.opt_state["control"].astype(np.float32)
        seed = derive_seed(self.config.seed, round_num, -1, CONTROL_DOWNLINK_SEED)
        frame = encode_frame(self.config.downlink_codec, control, seed)
        lossless = normalise_spec(self.config.downlink_codec) is None
        return frame, FLOAT32_BYTES * control.size if lossless else len(frame)

    def _personal_seed(self, round_num: int, client_id: int) -> int:
        """Ditto's personal epochs in rounds 0..R-1; the post-hoc step uses round R: streams never meet."""
        if not self.config.ditto_rounds:
            return 0
        return derive_seed(self.config.seed, round_num, client_id, PERSONALIZE_SEED)

    def _evaluate(self, weights: Vector) -> tuple[float, float, float | None]:
        self.evaluator.set_weights(weights)
        central = self.evaluator.evaluate(self.test.x, self.test.y)
        if self.client_tests is None:
            return central.accuracy, central.loss, None
        correct = total = 0.0
        for test in self.client_tests():
            if len(test):
                result = self.evaluator.evaluate(test.x, test.y)
                correct += result.accuracy * result.num_examples
                total += result.num_examples
        return central.accuracy, central.loss, (correct / total if total else None)


def privacy_summary(driver: RoundDriver, records: Sequence[RoundRecord]) -> dict[str, object]:
    """summary.json's privacy fields: epsilon, delta, accountant, noise multiplier, why a run stopped."""
    if driver.privacy is not None:
        summary = driver.privacy.summary(len(records))
        summary["stopped_by_budget"] = driver.stop_message()
        return summary
    local = [r.local_epsilon for r in records if r.local_epsilon is not None]
    if not local:
        return {}
    return {
        "dp": str(driver.config.dp),
        "local_epsilon_max": max(local),
        "accountant": "rdp (Poisson sampling of each client's examples)",
        "privacy_unit": "one training example of one client",
    }


def _round_record(
    round_num: int,
    sel: RoundSelection,
    outcome: RoundOutcome,
    scores: tuple[float, float, float | None],
    down_bytes: int,
    mask_fraction: float | None,
    choices: dict[int, Choice] | None,
    t0: float,
    eval_s: float,
) -> RoundRecord:
    """Downlink counts every selected client (dropouts got the model too); uplink only accepted replies."""
    replies = outcome.replies
    codecs = late = None
    if choices is not None:
        codecs = dict(sorted(Counter(c.spec for c in choices.values()).items()))
        late = sorted(cid for cid, c in choices.items() if not c.meets_deadline)
    examples = sum(r.num_examples for r in replies)
    accuracy, loss, client_accuracy = scores
    lost = [f for f in outcome.failures if f.kind in ("dropped", "disconnected")]
    return RoundRecord(
        round=round_num + 1,
        clients=sorted(r.client_id for r in replies),
        selected=int(sel.selected.size),
        dropouts=sorted([*sel.dropped.tolist(), *(f.client_id for f in lost)]),
        unavailable=sel.unavailable,
        accuracy=accuracy,
        loss=loss,
        train_loss=sum(r.loss * r.num_examples for r in replies) / examples if examples else 0.0,
        uplink_bytes=sum(r.nbytes for r in replies),
        downlink_bytes=down_bytes,
        wall_s=time.perf_counter() - t0,
        train_s=sum(r.train_s for r in replies),
        eval_s=eval_s,
        client_accuracy=client_accuracy,
        mask_fraction=mask_fraction,
        codecs=codecs,
        late=late,
        diverged=sorted(f.client_id for f in outcome.failures if f.kind == "diverged"),
        refused=sorted(
            f.client_id for f in outcome.failures if f.kind not in ("dropped", "disconnected", "diverged")
        ),
    )
