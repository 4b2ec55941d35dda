"""The server's secure round over any transport: training replies arrive without updates, then the four
SecAgg+ stages run through a stage transport, and the round's fold is the unmasked sum.

`SecureTransport` wraps a transport that can also exchange stage messages (`StagedTransport`): the
simulation's in-process clients (`fedcore.sim.secure.LocalParties`) or the gRPC server
(`fedcore.transport.grpc.server.GrpcServerTransport`). Both run the same `run_stages` here and the same
client half (`fedcore.secure.party.SecureParty`); only how a message reaches a client differs.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from fedcore.protocol.messages import Failure, Reply, Task
from fedcore.protocol.transport import (
    AggregatorFactory,
    ReplyCollector,
    ReplyInfo,
    RoundOutcome,
    Transport,
    collect_replies,
)
from fedcore.secure.encoding import RingConfig
from fedcore.secure.messages import SecAggAbort, SecAggResult
from fedcore.secure.params import SecAggParams, choose_params
from fedcore.secure.server import ServerCollect, start_server
from fedcore.secure.sim import make_setup
from fedcore.secure.update import SecureSetup, kept_length, ring_sum
from fedcore.secure.wire import STAGE_MESSAGES, STAGES, ClientMessage, ServerMessage
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:
    from fedcore.privacy.distributed import DistributedDP

__all__ = [
    "SecureRoundReport",
    "SecureSettings",
    "SecureTransport",
    "StageAnswers",
    "StageRun",
    "StageTransport",
    "StagedTransport",
    "TrainsWhile",
    "run_stages",
]


@dataclass(frozen=True)
class StageAnswers:
    """One stage's answers: a message per client that answered, a typed failure per client that did not."""

    answers: dict[int, ClientMessage]
    failures: tuple[Failure, ...] = ()
    client_seconds: float = 0.0  # the clients' own work on this stage, all together


class StageTransport(Protocol):
    """Delivers one stage's server messages and brings back each client's answer or why there is none."""

    def exchange(
        self, round_num: int, stage: str, outbox: Mapping[int, ServerMessage], deadline_s: float | None
    ) -> StageAnswers: ...


class StagedTransport(Transport, StageTransport, Protocol):
    """A transport whose clients hold their updates (replies come without frames) and answer stages."""


@runtime_checkable
class TrainsWhile(Protocol):
    """A staged transport that can run work of its own while its clients train (the simulation's).

    Its clients must answer stages 1-2 before they hold their updates: those stages then run during
    training, for the clients the round's tasks name.
    """

    def run_round_while(
        self,
        tasks: Sequence[Task],
        make_aggregator: AggregatorFactory,
        deadline_s: float | None,
        meanwhile: Callable[[], None],
    ) -> RoundOutcome: ...


@dataclass(frozen=True)
class SecureRoundReport:
    """The stages' outcome: the sum (None after an abort), who failed where, and seconds per stage."""

    result: SecAggResult | None
    abort: SecAggAbort | None
    failures: tuple[Failure, ...]
    client_seconds: dict[str, float]
    server_seconds: dict[str, float]
    wall_seconds: dict[str, float]
    upload_bytes: int
    upload_sha256: dict[int, str]  # each masked input as the server received it, for the audit log


def run_stages(
    round_num: int, announced: SecureSetup, stages: StageTransport, deadline_s: float | None
) -> SecureRoundReport:
    """The four SecAgg+ stages with `announced.setup`'s clients; one that fails a stage is dropped."""
    run = StageRun(round_num, announced, stages, deadline_s)
    run.keys()
    return run.finish()


class StageRun:
    """One round's four stages in two halves: `keys` (stages 1-2, which need no update) then `finish`.

    The simulation calls `keys` while its clients train and `finish` once they hold their updates;
    `run_stages` calls both in a row. Either way the same messages pass and the same checks run.
    """

    def __init__(
        self, round_num: int, announced: SecureSetup, stages: StageTransport, deadline_s: float | None
    ) -> None:
        self.round_num = round_num
        self.announced = announced
        self._stages = stages
        self._deadline_s = deadline_s
        self._client_s = dict.fromkeys(STAGES, 0.0)
        self._server_s = dict.fromkeys(STAGES, 0.0)
        self.wall_s = dict.fromkeys(STAGES, 0.0)
        self._failures: list[Failure] = []
        self._abort: SecAggAbort | None = None
        self._third: ServerCollect | None = None
        self._deliveries: Mapping[int, ServerMessage] = {}

    def keys(self) -> None:
        """Stages 1 and 2: the clients advertise their public keys, then share their secrets sealed."""
        try:
            t0 = time.perf_counter()
            first = start_server(self.announced.setup)
            self._server("advertise", t0)
            adverts = self._exchange("advertise", dict.fromkeys(self.announced.setup.clients, self.announced))
            t0 = time.perf_counter()
            keys, second = first.collect(adverts)
            self._server("advertise", t0)
            shares = self._exchange("share", keys)
            t0 = time.perf_counter()
            self._deliveries, self._third = second.collect(shares)
            self._server("share", t0)
        except SecAggAbort as exc:
            self._abort = exc

    def finish(self) -> SecureRoundReport:
        """Stages 3 and 4 (the masked inputs, then the unmasking) after `keys`: the round's report."""
        upload = 0
        digests: dict[int, str] = {}
        if self._abort is not None:
            return self._report(None, self._abort, upload, digests)
        if self._third is None:
            raise RuntimeError("StageRun.finish before StageRun.keys")
        try:
            masked = self._exchange("mask", self._deliveries)
            upload = max((len(m.payload) for m in masked), default=0)
            senders, payloads = [m.sender for m in masked], [m.payload for m in masked]
            digests.update(zip(senders, _sha256_each(payloads), strict=True))
            t0 = time.perf_counter()
            requests, fourth = self._third.collect(masked)
            self._server("mask", t0)
            responses = self._exchange("unmask", requests)
            t0 = time.perf_counter()
            result = fourth.finish(responses)
            self._server("unmask", t0)
        except SecAggAbort as exc:
            return self._report(None, exc, upload, digests)
        return self._report(result, None, upload, digests)

    def _report(
        self, result: SecAggResult | None, abort: SecAggAbort | None, upload: int, digests: dict[int, str]
    ) -> SecureRoundReport:
        failures = tuple(self._failures)
        return SecureRoundReport(
            result, abort, failures, self._client_s, self._server_s, self.wall_s, upload, digests
        )

    def _exchange(self, stage: str, outbox: Mapping[int, ServerMessage]) -> list[Any]:
        t0 = time.perf_counter()
        got = self._stages.exchange(self.round_num, stage, outbox, self._deadline_s)
        self.wall_s[stage] = time.perf_counter() - t0
        self._client_s[stage] = got.client_seconds
        self._failures.extend(got.failures)
        answers = []
        for client, message in got.answers.items():
            problem = _misfit(stage, client, message, outbox)
            if problem is None:
                answers.append(message)
            else:
                self._failures.append(
                    Failure(self.round_num, client, "bad_frame", f"secagg {stage}: {problem}")
                )
        return answers

    def _server(self, stage: str, t0: float) -> None:
        self._server_s[stage] += time.perf_counter() - t0


def _sha256_each(payloads: Sequence[bytes]) -> list[str]:
    """Each payload's SHA-256, side by side on the cores (hashlib lets go of the GIL for long inputs)."""
    if len(payloads) < 2:
        return [hashlib.sha256(p).hexdigest() for p in payloads]
    with ThreadPoolExecutor(min(len(payloads), os.cpu_count() or 1)) as threads:
        return list(threads.map(lambda p: hashlib.sha256(p).hexdigest(), payloads))


def _misfit(stage: str, client: int, message: object, outbox: Mapping[int, ServerMessage]) -> str | None:
    """Why an answer cannot be this client's message for this stage (None when it can)."""
    expected = STAGE_MESSAGES[stage][1]
    if client not in outbox:
        return "an answer from a client that was asked nothing"
    if not isinstance(message, expected):
        return f"a {type(message).__name__} where {expected.__name__} belongs"
    if message.sender != client:
        return f"a message signed as client {message.sender}"
    return None


# distributed DP sizes each client's noise share so that up to this fraction of a round's SecAgg clients
# may drop inside the protocol and the survivors' shares still reach the accounted variance
SECAGG_DROPOUT_TOLERANCE = 0.05


@dataclass(frozen=True)
class SecureSettings:
    """The run's secure-aggregation flags, as the server needs them each round."""

    seed: int
    clip: float
    bits: int
    per_round: int
    fraction: float
    weight_cap: int
    model_size: int
    dropout: float = 0.0
    neighbors: int | None = None
    threshold: int | None = None
    dp_clip: float | None = None  # distributed DP (`--dp distributed:CLIP`): the clients' clip norm
    dp_noise_multiplier: float | None = None  # and z, calibrated by the server's privacy plan

    def params(self, n: int) -> SecAggParams:
        """k and t for a round of n clients: the flags', else chosen (every pair when n is too small)."""
        if self.neighbors is not None and self.threshold is not None:
            return SecAggParams(self.neighbors, self.threshold, "set by --secagg-neighbors/-threshold")
        try:
            chosen = choose_params(n, dropout=max(self.dropout, 0.05))
        except ValueError:  # too few clients for SecAgg+'s sparse-graph bounds: every pair, as in SecAgg
            chosen = SecAggParams(
                n - 1,
                n // 2 + 1,
                f"complete graph (Bonawitz et al. 2017): {n} clients are too few for SecAgg+",
            )
        if self.neighbors is not None or self.threshold is not None:
            degree = self.neighbors or chosen.degree
            threshold = self.threshold or min(chosen.threshold, degree)
            return SecAggParams(degree, threshold, "partly set by flags")
        return chosen

    def announce(self, round_num: int, clients: tuple[int, ...]) -> SecureSetup:
        """The round's setup for these clients (round id, graph seed and ring seed from the run seed)."""
        from fedcore.seeds import SECAGG_SEED, derive_seed

        seed = derive_seed(self.seed, round_num, -1, SECAGG_SEED)
        ring = RingConfig(self.clip, self.bits, max(self.per_round, 2), seed=seed)
        dp = self.distributed(len(clients))
        length = kept_length(self.model_size, self.fraction, seed, weighted=dp is None)
        if dp is not None:
            ring = ring.with_headroom(dp.headroom_bits(ring, length))
        setup = make_setup(clients, length, self.params(len(clients)), ring.ring_bits, seed)
        return SecureSetup(setup, ring, self.weight_cap, self.fraction, dp)

    def distributed(self, clients: int) -> DistributedDP | None:
        """This round's distributed DP, each client's noise share sized for `clients` SecAgg clients."""
        if self.dp_clip is None or self.dp_noise_multiplier is None:
            return None
        from fedcore.privacy.distributed import DistributedDP

        return DistributedDP.for_round(
            self.dp_clip, self.dp_noise_multiplier, clients, SECAGG_DROPOUT_TOLERANCE
        )


@dataclass
class SecureSumResult:
    """The round's fold as the server learns it: the sum over whoever the protocol included."""

    fold: FoldSum
    metrics: dict[str, Any] = field(default_factory=dict)

    def add(self, reply: Reply) -> Failure | None:
        raise TypeError("a secure sum is finished by the protocol, not folded reply by reply")

    def merge(self, other: SecureSumResult) -> SecureSumResult:
        raise TypeError("a secure sum is one protocol run")

    def finish(self) -> FoldSum:
        return self.fold


class SecureTransport:
    """Runs the round's training on the inner transport (replies hold no update), then the SecAgg+ stages.

    Where the inner transport can work while its clients train (`TrainsWhile`: the simulation), stages
    1-2 run then, for the clients the tasks name; if one of them does not answer training, those keys
    are dropped and the round runs all four stages afterwards, as it always does over gRPC.
    """

    def __init__(self, inner: StagedTransport, settings: SecureSettings) -> None:
        self._inner = inner
        self._settings = settings
        RingConfig(settings.clip, settings.bits, max(settings.per_round, 2))  # refuse a ring that could wrap

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        return self._inner.wait_ready(clients, timeout_s)

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        early = self._keys_while_training(tasks, deadline_s)
        if early is None:
            replies, lost = collect_replies(self._inner, tasks, deadline_s)
        else:
            assert isinstance(self._inner, TrainsWhile)
            collected = self._inner.run_round_while(tasks, ReplyCollector, deadline_s, early.keys)
            assert isinstance(collected.aggregator, ReplyCollector)
            replies, lost = collected.aggregator.replies, collected.failures
        if not replies:
            return RoundOutcome(make_aggregator(), (), lost)
        round_num = replies[0].round
        cap = self._settings.weight_cap
        answered = tuple(sorted(r.client_id for r in replies))
        start = time.perf_counter()
        hidden_s = 0.0
        if early is not None and (early.round_num, early.announced.setup.clients) == (round_num, answered):
            # every task's client answered: the setup is the one announced now, and its keys are out
            announced, report = early.announced, early.finish()
            hidden_s = early.wall_s["advertise"] + early.wall_s["share"]
        else:  # the round announces its setup after training, to those who answered (all keys anew)
            announced = self._settings.announce(round_num, answered)
            report = run_stages(round_num, announced, self._inner, deadline_s)
        if report.result is None:
            message = f"secure aggregation aborted: {report.abort}"
            failed = {f.client_id for f in report.failures}
            aborted = tuple(
                Failure(round_num, r.client_id, "client_error", message)
                for r in replies
                if r.client_id not in failed
            )
            return RoundOutcome(make_aggregator(), (), (*lost, *report.failures, *aborted))
        result = report.result
        dp = announced.dp
        if dp is not None and len(result.included) < dp.noise_floor:
            message = (
                f"secure aggregation withheld the sum: {len(result.included)} clients survived, fewer than "
                f"the {dp.noise_floor} whose noise shares the accountant charged"
            )
            withheld = tuple(Failure(round_num, c, "client_error", message) for c in result.included)
            return RoundOutcome(make_aggregator(), (), (*lost, *report.failures, *withheld))
        t_decode = time.perf_counter()
        delta, weight = ring_sum(result.total, len(result.included), self._settings.model_size, announced)
        decode_s = time.perf_counter() - t_decode
        included = set(result.included)
        accepted = [r for r in replies if r.client_id in included]
        # distributed DP is DP-FedAvg: equal weights over the expected cohort, not over who answered
        scale, weight_sum = (1.0, float(self._settings.per_round)) if dp is not None else (cap, weight * cap)
        fold = FoldSum(
            delta_sum=delta * scale,
            weight_sum=weight_sum,
            num_examples=sum(r.num_examples for r in accepted),
            weighted_steps=float(sum(r.num_examples * r.num_steps for r in accepted)),
            count=len(accepted),
        )
        infos = tuple(
            ReplyInfo(
                r.client_id,
                r.num_examples,
                r.num_steps,
                r.loss,
                report.upload_bytes,
                r.train_s,
                (report.upload_sha256[r.client_id],),
            )
            for r in accepted
        )
        failed = {f.client_id for f in report.failures}
        unexplained = tuple(  # answered training, then was left out of the sum with no stage failure
            Failure(round_num, r.client_id, "dropped", "left out of the secure sum")
            for r in replies
            if r.client_id not in included and r.client_id not in failed
        )
        flagged = tuple(
            Failure(round_num, f.client, "client_error", f"secure aggregation: {f.reason}")
            for f in result.flagged
        )
        metrics = {
            "secagg_seconds": round(time.perf_counter() - start, 4),
            "secagg_hidden_seconds": round(hidden_s, 4),
            "secagg_client_seconds": _rounded(report.client_seconds),
            "secagg_server_seconds": _rounded(report.server_seconds),
            "secagg_stage_wall_seconds": _rounded(report.wall_seconds),
            "secagg_decode_seconds": round(decode_s, 4),
            "secagg_upload_bytes_per_client": report.upload_bytes,
            "secagg_neighbors": announced.setup.degree,
            "secagg_threshold": announced.setup.threshold,
            "secagg_dropped": list(result.dropped),
        }
        if dp is not None:
            ring, d = announced.ring, announced.setup.length
            variance = dp.total_variance(ring, d)
            metrics["secagg_dp_noise_floor"] = dp.noise_floor
            metrics["secagg_dp_headroom_bits"] = ring.headroom_bits
            metrics["secagg_dp_noise_std"] = round(math.sqrt(variance) * 2.0 * ring.clip / ring.levels, 6)
            metrics["secagg_dp_effective_noise_multiplier"] = round(
                dp.effective_noise_multiplier(ring, d, variance), 6
            )
        return RoundOutcome(
            SecureSumResult(fold, metrics), infos, (*lost, *report.failures, *unexplained, *flagged)
        )

    def close(self) -> None:
        self._inner.close()

    def _keys_while_training(self, tasks: Sequence[Task], deadline_s: float | None) -> StageRun | None:
        """Stages 1-2 for the clients the tasks name, to run while they train; None where that cannot be."""
        if not tasks or not isinstance(self._inner, TrainsWhile):
            return None
        round_num = tasks[0].round
        clients = tuple(sorted({t.client_id for t in tasks}))
        if len(clients) != len(tasks) or any(t.round != round_num for t in tasks):
            return None
        try:
            announced = self._settings.announce(round_num, clients)
        except ValueError:  # announced after training instead, where the error is the round's to report
            return None
        return StageRun(round_num, announced, self._inner, deadline_s)


def _rounded(seconds: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in seconds.items()}
