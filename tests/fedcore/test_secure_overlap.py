"""The simulation's secure round runs stages 1-2 (keys) while its clients train: the sum must be the one
the round gets with every stage after training, and a client that fails training leaves it as before."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from grpc_fakes import SumFold, model_frame
from grpc_secure_peer import N, examples, update

import fedcodec as fc
from fedcore.config import FLConfig
from fedcore.protocol import Failure, Reply, Task
from fedcore.protocol.transport import AggregatorFactory, RoundOutcome, fold_in_order
from fedcore.secure.encoding import ring_codes
from fedcore.secure.round import SecureSettings, SecureSumResult, SecureTransport, StageAnswers, TrainsWhile
from fedcore.secure.update import ring_input, ring_sum
from fedcore.secure.wire import ServerMessage
from fedcore.sim import simulate
from fedcore.sim.secure import LocalParties

SETTINGS = SecureSettings(
    seed=11,
    clip=1.0,
    bits=16,
    per_round=6,
    fraction=1.0,
    weight_cap=20,
    model_size=N,
    neighbors=4,
    threshold=3,
)


class Trainer:
    """Clients that answer training with their fixed update, except those in `fails`; logs what ran when."""

    def __init__(self, fails: frozenset[int] = frozenset()) -> None:
        self.fails = fails
        self.log: list[str] = []

    def wait_ready(self, clients: int, timeout_s: float) -> int:
        return clients

    def run_round(
        self, tasks: Sequence[Task], make_aggregator: AggregatorFactory, deadline_s: float | None
    ) -> RoundOutcome:
        self.log.append("train")
        frame = fc.from_spec("none")
        answers: list[Reply | Failure] = [
            Failure(t.round, t.client_id, "client_error", "training failed")
            if t.client_id in self.fails
            else Reply(
                t.round, t.client_id, (frame.encode(update(t.client_id)),), examples(t.client_id), 3, 0.5
            )
            for t in tasks
        ]
        return fold_in_order(make_aggregator, tasks, answers)

    def close(self) -> None:
        """Nothing held."""


class LoggedParties(LocalParties):
    """The simulation's parties, noting each stage as it starts (to see which ran before training)."""

    def __init__(self, trainer: Trainer) -> None:
        super().__init__(trainer)
        self.log = trainer.log

    def exchange(
        self, round_num: int, stage: str, outbox: Mapping[int, ServerMessage], deadline_s: float | None
    ) -> StageAnswers:
        self.log.append(stage)
        return super().exchange(round_num, stage, outbox, deadline_s)


def _round(fails: frozenset[int] = frozenset()) -> tuple[RoundOutcome, list[str]]:
    trainer = Trainer(fails)
    parties = LoggedParties(trainer)
    assert isinstance(parties, TrainsWhile)
    tasks = [Task(0, c, 0, model_frame()) for c in range(SETTINGS.per_round)]
    return SecureTransport(parties, SETTINGS).run_round(tasks, SumFold, None), trainer.log


def _expected(included: list[int]) -> tuple[np.ndarray, float]:
    """The included clients' ring inputs summed in the clear and decoded: what the secure sum must equal."""
    announced = SETTINGS.announce(0, tuple(included))
    inputs = [ring_codes(ring_input(update(c), examples(c), announced, c)) for c in included]
    codes = sum(x.astype(np.uint64) for x in inputs)
    assert isinstance(codes, np.ndarray)
    total = (codes % (1 << announced.setup.ring_bits)).astype(np.uint32)
    delta, weight = ring_sum(total, len(included), N, announced)
    return delta * SETTINGS.weight_cap, weight * SETTINGS.weight_cap


def _sum(outcome: RoundOutcome) -> tuple[np.ndarray, float, dict[str, object]]:
    assert isinstance(outcome.aggregator, SecureSumResult)
    fold = outcome.aggregator.finish()
    return fold.delta_sum, fold.weight_sum, outcome.aggregator.metrics


def test_keys_go_out_before_training_and_the_sum_is_exact() -> None:
    outcome, log = _round()
    assert log == ["advertise", "share", "train", "mask", "unmask"]
    delta, weight, metrics = _sum(outcome)
    want_delta, want_weight = _expected(list(range(SETTINGS.per_round)))
    np.testing.assert_array_equal(delta, want_delta)
    assert weight == want_weight
    assert outcome.failures == ()
    assert isinstance(metrics["secagg_hidden_seconds"], float)
    assert metrics["secagg_hidden_seconds"] > 0


def test_a_client_that_fails_training_gets_a_round_announced_without_it() -> None:
    outcome, log = _round(frozenset({2}))
    # the early keys named client 2: dropped, and the four stages run anew for those who answered
    assert log == ["advertise", "share", "train", "advertise", "share", "mask", "unmask"]
    delta, weight, metrics = _sum(outcome)
    want_delta, want_weight = _expected([0, 1, 3, 4, 5])
    np.testing.assert_array_equal(delta, want_delta)
    assert weight == want_weight
    assert [(f.client_id, f.kind) for f in outcome.failures] == [(2, "client_error")]
    assert metrics["secagg_hidden_seconds"] == 0.0


def test_the_simulation_hides_the_key_stages_behind_its_workers() -> None:
    job = FLConfig(rounds=2, clients=20, per_round=5, workers=2, secagg=True)
    records = simulate(job).records
    assert all(r.secagg is not None and r.secagg["secagg_hidden_seconds"] > 0 for r in records)
    assert [r.secagg["secagg_dropped"] for r in records if r.secagg is not None] == [[], []]
    assert simulate(replace(job, workers=0)).records[-1].accuracy == records[-1].accuracy
