"""The server's aggregators: a reply that does not decode is refused whole; median sees every update."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.protocol import Failure, Reply, Task, fold_in_order
from fedcore.protocol.transport import ReplyCollector, fold_answer
from fedcore.server import Collecting, FoldContext, LinearFold, aggregator_factory
from fedcore.sim import simulate
from fedcore.strategies import FedAvg
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame

fc = pytest.importorskip("fedcodec")

SIZE = 64
LAYOUT = ParamLayout.from_shapes([("w", (SIZE,))])
TINY = FLConfig(clients=12, per_round=4, rounds=3, local_epochs=2, batch_size=8, lr=0.1, workers=0, seed=5)


def round_context(config: FLConfig = TINY) -> FoldContext:
    """What the server folds a round with: model size, the run's uplink chain, this round's view, strategy."""
    return FoldContext(SIZE, UplinkChain.from_config(config), UplinkContext(LAYOUT), config.make_strategy())


def reply(cid: int, *payloads: bytes, n: int = 10) -> Reply:
    return Reply(round=3, client_id=cid, payloads=payloads, num_examples=n, num_steps=2, loss=0.5)


def update(cid: int) -> np.ndarray:
    return np.random.default_rng(cid).standard_normal(SIZE).astype(np.float32)


def test_a_linear_fold_refuses_bad_frames_whole_and_keeps_its_sum_exactly() -> None:
    quant = fc.from_spec("quant:8")
    good = [
        reply(0, encode_frame(None, update(0), 0), n=10),  # lossless: folded in float64
        reply(1, quant.encode(update(1), seed=1), n=30),  # a codec frame: folded in Rust
        reply(2, encode_frame(None, update(2), 0), n=20),
    ]
    raw = encode_frame(None, update(5), 0)
    coded = quant.encode(update(6), seed=6)
    flipped = raw[:-12] + bytes([raw[-12] ^ 1]) + raw[-11:]
    bad = {
        10: (reply(10, b"not a fedcodec frame"), "bad_frame"),
        11: (reply(11, coded[:-3]), "bad_frame"),  # truncated
        12: (reply(12, flipped), "bad_frame"),  # one bit flipped: the checksum catches it
        13: (reply(13, encode_frame(None, update(7)[:-1], 0)), "wrong_shape"),
        14: (reply(14, quant.encode(np.zeros(SIZE + 8, np.float32), seed=1)), "wrong_shape"),
        15: (reply(15), "bad_frame"),  # no payload at all
        16: (reply(16, raw, raw), "bad_frame"),  # a control delta FedAvg never asked for
    }
    clean = LinearFold(round_context())
    for r in good:
        assert clean.add(r) is None
    mixed = LinearFold(round_context())
    refused = []
    arrivals = [good[0], bad[10][0], bad[11][0], good[1], bad[12][0], bad[13][0], bad[14][0], good[2]]
    for r in [*arrivals, bad[15][0], bad[16][0]]:
        failure = mixed.add(r)
        if failure is not None:
            refused.append(failure)
    assert [(f.client_id, f.kind) for f in refused] == [(cid, kind) for cid, (_, kind) in bad.items()]
    assert all(f.round == 3 and f.nbytes == bad[f.client_id][0].nbytes for f in refused)
    expected, got = clean.finish(), mixed.finish()
    np.testing.assert_array_equal(got.delta_sum, expected.delta_sum)
    assert (got.weight_sum, got.num_examples, got.weighted_steps, got.count) == (60.0, 60, 120.0, 3)
    assert (got.weight_sum, got.count) == (expected.weight_sum, expected.count)


def test_median_aggregation_is_the_coordinate_median_of_the_decoded_updates() -> None:
    make = aggregator_factory("median", round_context(replace(TINY, aggregator="median")))
    aggregator = make()
    assert isinstance(aggregator, Collecting)
    quant = fc.from_spec("quant:8")
    frames = [quant.encode(update(cid), seed=cid) for cid in range(4)]
    frames.append(quant.encode(np.full(SIZE, 1e4, np.float32), seed=4))  # one client far off
    for cid, frame in enumerate(frames):
        assert aggregator.add(reply(cid, frame, n=4 if cid == 4 else 1)) is None
    assert aggregator.add(reply(9, b"garbage")) is not None
    decoded = np.stack([fc.decode(frame) for frame in frames])
    np.testing.assert_array_equal(aggregator.updates(), decoded)  # the frames as they decode, no more
    assert aggregator.client_ids == [0, 1, 2, 3, 4]
    fold = aggregator.finish()
    assert (fold.count, fold.weight_sum, fold.num_examples) == (5, 8.0, 8)
    median = np.median(decoded, axis=0)
    np.testing.assert_array_equal(fold.delta_sum / fold.weight_sum, median)  # weights of sum 8: exact
    assert np.abs(median).max() < 10  # the far-off client moves no coordinate
    start = FedAvg().init_state(np.zeros(SIZE, np.float32))
    np.testing.assert_allclose(FedAvg().aggregate(start, fold).weights, median, rtol=1e-6)
    # Workers' partial collections merge into the same set of updates, in worker order.
    first, second = make(), make()
    for cid, frame in enumerate(frames):
        assert (first if cid < 2 else second).add(reply(cid, frame, n=4 if cid == 4 else 1)) is None
    merged = first.merge(second)
    assert isinstance(merged, Collecting)
    np.testing.assert_array_equal(merged.updates(), decoded)
    np.testing.assert_array_equal(merged.finish().delta_sum, fold.delta_sum)


@pytest.mark.parametrize(
    ("spec", "rows"),
    [
        ("krum:2", np.random.default_rng(0).standard_normal((3, SIZE))),  # Krum with f = 2 needs 7 updates
        ("krum:1", np.where(np.arange(5)[:, None] == 0, -3e38, 3e38) * np.ones((5, SIZE))),  # inf distances
    ],
)
def test_a_round_the_robust_rule_cannot_center_falls_back_to_the_median(spec: str, rows: np.ndarray) -> None:
    aggregator = aggregator_factory(spec, round_context(replace(TINY, aggregator=spec)))()
    assert isinstance(aggregator, Collecting)
    updates = rows.astype(np.float32)
    for cid, row in enumerate(updates):
        assert aggregator.add(reply(cid, fc.from_spec("none").encode(row, seed=0))) is None
    fold = aggregator.finish()  # a diverged or thin round must not end the run
    assert aggregator.fell_back is not None
    np.testing.assert_allclose(fold.delta_sum / fold.weight_sum, np.median(updates, axis=0), rtol=1e-6)
    assert all(np.isfinite(s) for s in aggregator.suspicion.values())


def test_aggregator_specs_are_checked_when_the_config_is_built() -> None:
    assert isinstance(aggregator_factory("mean", round_context())(), LinearFold)  # the streaming fold
    assert isinstance(aggregator_factory("median", round_context())(), Collecting)
    with pytest.raises(ValueError, match=r"'krum-of-three'.*aggregat"):
        replace(TINY, aggregator="krum-of-three")


def test_a_median_run_trains_and_repeats_in_worker_processes() -> None:
    config = replace(TINY, aggregator="median")
    inline = simulate(config)
    workers = simulate(replace(config, workers=2))
    accuracies = [r.accuracy for r in inline.records]
    assert all(np.isfinite(a) for a in accuracies)
    assert max(accuracies) > 0.2  # ten classes: chance is 0.1
    assert not np.array_equal(inline.weights, simulate(TINY).weights)  # the median is not the mean
    # Two workers collect in another order; the coordinate median of the same updates is the same.
    np.testing.assert_allclose(workers.weights, inline.weights, atol=1e-6)


def test_fold_in_order_folds_in_task_order_and_names_every_client_that_is_not_in() -> None:
    tasks = [Task(round=3, client_id=cid, model_version=3, model=b"") for cid in range(4)]
    good = reply(2, encode_frame(None, update(2), 0))
    diverged = Failure(3, 1, "diverged", "non-finite weights")
    arrived = [reply(3, b"garbage"), good, diverged]  # in any order; client 0 never answers
    outcome = fold_in_order(aggregator_factory("mean", round_context()), tasks, arrived)
    assert [r.client_id for r in outcome.replies] == [2]
    assert outcome.replies[0].sha256 == (hashlib.sha256(good.payloads[0]).hexdigest(),)
    assert [(f.client_id, f.kind) for f in outcome.failures] == [
        (0, "dropped"),
        (1, "diverged"),
        (3, "bad_frame"),
    ]
    only = LinearFold(round_context())
    assert only.add(good) is None
    np.testing.assert_array_equal(outcome.aggregator.finish().delta_sum, only.finish().delta_sum)


def test_a_collector_keeps_replies_whole_so_their_fold_records_no_digests() -> None:
    good = reply(2, encode_frame(None, update(2), 0))
    collector = ReplyCollector()
    info = fold_answer(collector, good)
    assert collector.replies == [good]  # whoever reads the reply there records it, digests and all
    assert not isinstance(info, Failure)
    assert info.sha256 == ()
    folded = fold_answer(LinearFold(round_context()), good)
    assert not isinstance(folded, Failure)
    assert folded.sha256 == (hashlib.sha256(good.payloads[0]).hexdigest(),)
