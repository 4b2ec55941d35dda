"""Secure aggregation in the simulation: every round's sum goes through a full SecAgg+ protocol run.

The simulated clients train in the worker pool as usual; each answering client's update is then held
by that client's `SecureParty` in this process, and the server's `fedcore.secure.round.run_stages`
drives the four stages by calling the parties directly (no bytes, no network). A gRPC deployment runs
the same parties in the client processes and the same driver in the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from fedcore.config import FLConfig
from fedcore.protocol.messages import Failure, Task
from fedcore.protocol.transport import (
    AggregatorFactory,
    ReplyCollector,
    RoundOutcome,
    Transport,
    collect_replies,
    fold_in_order,
)
from fedcore.secure.messages import SecAggAbort
from fedcore.secure.party import SecureParty
from fedcore.secure.round import SecureSettings, SecureTransport, StageAnswers
from fedcore.secure.wire import ClientMessage, ServerMessage
from fedcore.sim.transport import SimTransport


def secagg_fraction(config: FLConfig) -> float:
    """`--codec randk:F` under secure aggregation: the ring keeps the same seeded F of every update."""
    if config.codec is None or config.codec.raw:
        return 1.0
    ((name, arg),) = config.codec.stages[:1]
    if name != "randk" or len(config.codec.stages) > 1:
        raise ValueError(
            f"--secagg adds codes in the ring, so only linear compression composes: --codec randk:F, got "
            f"'{config.codec}'"
        )
    return float(arg)


def secure_settings(config: FLConfig, weight_cap: int, model_size: int) -> SecureSettings:
    """The run's secure-aggregation flags for the server's round driver (simulated or over gRPC)."""
    dp_clip = z = None
    if config.dp is not None and config.dp.mode == "distributed":
        from fedcore.privacy.plan import PrivacyPlan

        plan = PrivacyPlan.from_config(config)  # z given, or calibrated for the target epsilon
        assert plan is not None
        dp_clip, z = config.dp.clip, plan.noise_multiplier
    return SecureSettings(
        seed=config.seed,
        clip=config.secagg_clip,
        bits=config.secagg_bits,
        per_round=config.per_round,
        fraction=secagg_fraction(config),
        weight_cap=max(weight_cap, 1),
        model_size=model_size,
        dropout=config.dropout,
        neighbors=config.secagg_neighbors,
        threshold=config.secagg_threshold,
        dp_clip=dp_clip,
        dp_noise_multiplier=z,
    )


class LocalParties:
    """The simulated clients' secure halves, in this process: they hold the updates and answer stages."""

    def __init__(self, inner: Transport) -> None:
        self._inner = inner
        self._parties: dict[int, SecureParty] = {}

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        return self._inner.wait_ready(clients, timeout_s)

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        """Train on the inner transport; each client keeps its update, the replies come back without it."""
        replies, lost = collect_replies(self._inner, tasks, deadline_s)
        held = [self._party(r.client_id).hold(r) for r in replies]
        return fold_in_order(make_aggregator, tasks, [*held, *lost])

    def run_round_while(
        self,
        tasks: Sequence[Task],
        make_aggregator: AggregatorFactory,
        deadline_s: float | None,
        meanwhile: Callable[[], None],
    ) -> RoundOutcome:
        """`run_round`, with `meanwhile` run here while the workers train (the key stages: no update yet)."""
        if not isinstance(self._inner, SimTransport):  # no pool to overlap with: simply first
            meanwhile()
            return self.run_round(tasks, make_aggregator, deadline_s)
        collected = self._inner.run_round(tasks, ReplyCollector, deadline_s, meanwhile)
        assert isinstance(collected.aggregator, ReplyCollector)
        held = [self._party(r.client_id).hold(r) for r in collected.aggregator.replies]
        return fold_in_order(make_aggregator, tasks, [*held, *collected.failures])

    def exchange(
        self, round_num: int, stage: str, outbox: Mapping[int, ServerMessage], deadline_s: float | None
    ) -> StageAnswers:
        """Each addressed client's answer, computed here and timed; a client that refuses is client_error."""
        del deadline_s  # nobody is late in a simulation
        answers: dict[int, ClientMessage] = {}
        failures: list[Failure] = []
        seconds = 0.0
        for client in sorted(outbox):
            t0 = time.perf_counter()
            try:
                answers[client] = self._party(client).answer(round_num, stage, outbox[client])
            except SecAggAbort as exc:
                failures.append(Failure(round_num, client, "client_error", str(exc)))
            seconds += time.perf_counter() - t0
        return StageAnswers(answers, tuple(failures), seconds)

    def close(self) -> None:
        self._inner.close()

    def _party(self, client: int) -> SecureParty:
        party = self._parties.get(client)
        if party is None:
            party = self._parties[client] = SecureParty(client, keys_before_update=True)
        return party


def simulated_secure_transport(
    inner: Transport, config: FLConfig, weight_cap: int, model_size: int
) -> SecureTransport:
    """The simulation's secure round: in-process parties under the server's SecAgg+ driver."""
    return SecureTransport(LocalParties(inner), secure_settings(config, weight_cap, model_size))
