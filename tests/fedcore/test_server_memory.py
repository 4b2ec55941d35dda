"""Server halves that read each client's decoded update: server memory (MIFA) and the noise-aware shrink."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from fedcore.client import ClientStateStore
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.protocol.messages import Reply
from fedcore.records import RoundRecord
from fedcore.server.aggregation import FoldContext, LinearFold
from fedcore.server.checkpoint import load_checkpoint
from fedcore.server.run import run_federation
from fedcore.sim.transport import SimTransport
from fedcore.sim.workers import load_data, make_pool
from fedcore.strategies import FedAvg
from fedcore.strategies.base import FoldSum
from fedcore.uplink import UplinkChain, UplinkContext
from fedcore.uplink.codec import CodecStage
from fedcore.uplink.memory import Memory, ServerMemoryStage
from fedcore.uplink.shrink import ServerShrinkStage, signal_share

pytest.importorskip("fedcodec")


def _fold(kept: dict[int, tuple[float, list[float]]]) -> tuple[FoldSum, dict[int, tuple[float, np.ndarray]]]:
    """A round's fold and the per-client updates the aggregator kept, from (coefficient, update) pairs."""
    updates = {cid: (c, np.asarray(u, dtype=np.float32)) for cid, (c, u) in kept.items()}
    total = sum(c * u.astype(np.float64) for c, u in updates.values())
    fold = FoldSum(np.asarray(total), weight_sum=sum(c for c, _ in updates.values()), count=len(updates))
    return fold, updates


def _mean(fold: FoldSum) -> np.ndarray:
    return fold.delta_sum / fold.weight_sum


def test_the_server_steps_along_the_weighted_mean_of_every_clients_last_update() -> None:
    stage = ServerMemoryStage()
    fold, kept = _fold({0: (1.0, [1, 0]), 1: (3.0, [0, 4])})
    out, memory = stage.remember(fold, kept, None)
    np.testing.assert_allclose(_mean(out), [0.25, 3.0])  # (1*[1,0] + 3*[0,4]) / 4: round one's plain mean
    fold, kept = _fold({1: (1.0, [2, 2]), 2: (2.0, [4, 0])})
    out, memory = stage.remember(fold, kept, memory)
    # client 0 is remembered from round one, client 1's new update replaces its old one
    np.testing.assert_allclose(_mean(out), [(1 + 2 + 8) / 4, 2 / 4])
    assert out.weight_sum == fold.weight_sum
    assert out.count == 2
    assert sorted(memory.clients) == [0, 1, 2]
    assert memory.rounds == 2


def test_an_age_limit_forgets_clients_that_stayed_away() -> None:
    stage = ServerMemoryStage(max_age=1)  # only this round's clients: the plain mean
    memory = None
    for kept_round in ({0: (1.0, [1, 0])}, {1: (1.0, [0, 2])}):
        fold, kept = _fold(kept_round)  # type: ignore[arg-type]
        out, memory = stage.remember(fold, kept, memory)
        np.testing.assert_allclose(_mean(out), _mean(fold))
    assert memory is not None
    assert sorted(memory.clients) == [1]


def test_an_empty_round_steps_nowhere_and_a_fold_without_kept_updates_is_refused() -> None:
    stage = ServerMemoryStage()
    _, memory = stage.remember(*_fold({0: (1.0, [1, 1])}), None)
    out, memory = stage.remember(FoldSum.empty(2), {}, memory)
    assert out.count == 0
    assert not out.delta_sum.any()
    assert memory.rounds == 2
    fold, _ = _fold({0: (1.0, [1, 1])})
    with pytest.raises(ValueError, match="kept none"):
        stage.remember(fold, {}, memory)


def _reply(chain: UplinkChain, layout: ParamLayout, cid: int, x: np.ndarray, examples: int) -> Reply:
    payload = chain.encode(x, UplinkContext(layout, client_id=cid, seed=cid), {}).payload
    return Reply(round=0, client_id=cid, payloads=(payload,), num_examples=examples, num_steps=1, loss=0.0)


@pytest.mark.parametrize("codec", ["randk:0.25+eden:1", "topk:0.1+eden:2", None])
def test_with_any_codec_the_aggregator_keeps_what_it_folded(codec: str | None) -> None:
    layout = ParamLayout.from_shapes([("w", (256,))])
    chain = UplinkChain((ServerMemoryStage(), CodecStage(codec)))
    assert chain.keeps_updates
    ctx = FoldContext(layout.size, chain, UplinkContext(layout), FedAvg(), keep_updates=chain.keeps_updates)
    rng = np.random.default_rng(0)
    first, second = LinearFold(ctx), LinearFold(ctx)  # two partial folds, as two simulation workers
    for cid, part in ((3, first), (5, second), (8, second)):
        assert part.add(_reply(chain, layout, cid, rng.standard_normal(256).astype(np.float32), cid)) is None
    merged = first.merge(second)
    fold = merged.finish()
    assert sorted(merged.kept) == [3, 5, 8]
    total = sum(c * u.astype(np.float64) for c, u in merged.kept.values())
    np.testing.assert_allclose(fold.delta_sum, total, rtol=1e-5, atol=1e-5)
    out, _ = chain.server_round(fold, {}, clients=10, updates=merged.kept)
    np.testing.assert_allclose(_mean(out), _mean(fold), rtol=1e-6, atol=1e-6)  # memory holds only this round


def test_full_participation_with_memory_is_plain_fedavg() -> None:
    from fedcore.sim import simulate

    base = FLConfig(clients=4, per_round=4, rounds=3, local_epochs=1, workers=0, seed=2, codec="quant:8")
    plain = simulate(base)
    remembered = simulate(FLConfig(**{**base.to_dict(), "server_memory": True}))
    for a, b in zip(plain.records, remembered.records, strict=True):
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-9)


def _federate(config: FLConfig, out: Path, resume: bool = False, stop_after: int | None = None) -> None:
    class Stop(Exception):
        pass

    def stop(record: RoundRecord) -> None:
        if stop_after is not None and record.round == stop_after:
            raise Stop

    transport = SimTransport(make_pool(config, load_data(config)), ClientStateStore())
    try:
        run_federation(config, transport, out, resume=resume, on_round=stop)
    except Stop:
        pass
    finally:
        transport.close()


def test_the_memory_survives_a_checkpoint_and_a_resumed_run_ends_as_a_clean_one(tmp_path: Path) -> None:
    config = FLConfig(
        clients=8,
        per_round=2,
        rounds=4,
        local_epochs=1,
        workers=0,
        seed=1,
        codec="quant:4",
        server_memory=True,
    )
    _federate(config, tmp_path / "clean")
    _federate(config, tmp_path / "stopped", stop_after=2)
    halfway = load_checkpoint(tmp_path / "stopped", config.run_settings())
    memory: Memory = halfway.uplink["memory"]
    assert halfway.next_round == 2
    assert memory.rounds == 2
    assert 2 <= len(memory.clients) <= 4
    back = pickle.loads(pickle.dumps(memory))
    for cid, kept in memory.clients.items():
        np.testing.assert_array_equal(back.clients[cid].update, kept.update)
    _federate(config, tmp_path / "stopped", resume=True)
    clean = load_checkpoint(tmp_path / "clean", config.run_settings())
    resumed = load_checkpoint(tmp_path / "stopped", config.run_settings())
    np.testing.assert_array_equal(resumed.server.weights, clean.server.weights)
    assert sorted(resumed.uplink["memory"].clients) == sorted(clean.uplink["memory"].clients)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"server_memory_age": 5}, "needs --server-memory"),
        ({"server_memory": True, "server_memory_age": 0}, ">= 1"),
        ({"server_memory": True, "codec": "quant:4", "shift": "ef21"}, "drop --shift"),
        ({"server_memory": True, "aggregator": "median"}, "drop --aggregator median"),
        ({"server_memory": True, "strategy": "scaffold"}, "drop --strategy scaffold"),
        ({"server_memory": True, "dp": "central:1", "noise_multiplier": 1.0}, "drop --dp"),
    ],
)
def test_configs_that_cannot_work_are_refused_in_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        FLConfig(**fields)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)


def test_the_flags_reach_the_config_and_the_chain() -> None:
    from fedcore.cli import _overrides, _parser
    from fedcore.config import load_config

    args = _parser().parse_args(["sim", "--server-memory", "--server-memory-age", "7"])
    config = load_config(None, _overrides(args))
    assert config.server_memory
    assert config.server_memory_age == 7
    assert UplinkChain.from_config(config).names[0] == "memory"


def test_the_shrink_scales_the_mean_by_one_minus_its_variance_over_its_energy() -> None:
    # [1, 0] and [3, 0]: mean [2, 0], energy 4; variance of the mean (1 + 1) / 2^2 x 2 / 1 = 1; share 3/4
    fold, kept = _fold({0: (1.0, [1, 0]), 1: (1.0, [3, 0])})
    out, share = ServerShrinkStage().remember(fold, kept, None)
    assert share == pytest.approx(0.75)
    np.testing.assert_allclose(_mean(out), [1.5, 0.0])
    assert signal_share(_fold({0: (2.0, [1, 1]), 1: (5.0, [1, 1])})[1]) == 1.0  # agreeing updates: no noise
    assert signal_share(_fold({0: (1.0, [1, 0]), 1: (1.0, [-1, 0])})[1]) == 0.0  # mean zero: all noise
    assert signal_share(_fold({0: (1.0, [1, 0])})[1]) == 1.0  # one update: no spread to measure


def test_the_shrink_composes_with_a_codec_and_refuses_a_fold_without_updates() -> None:
    layout = ParamLayout.from_shapes([("w", (256,))])
    chain = UplinkChain((ServerShrinkStage(), CodecStage("randk:0.25+eden:1")))
    ctx = FoldContext(layout.size, chain, UplinkContext(layout), FedAvg(), keep_updates=chain.keeps_updates)
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(256).astype(np.float32)
    aggregator = LinearFold(ctx)
    for cid in range(6):
        x = (shared + 0.5 * rng.standard_normal(256)).astype(np.float32)
        assert aggregator.add(_reply(chain, layout, cid, x, 10)) is None
    fold = aggregator.finish()
    out, states = chain.server_round(fold, {}, clients=10, updates=aggregator.kept)
    assert 0.0 < states["shrink"] < 1.0  # random-k's noise is ~3x an update's energy, six updates
    np.testing.assert_allclose(out.delta_sum, fold.delta_sum * states["shrink"])
    with pytest.raises(ValueError, match="kept none"):
        ServerShrinkStage().remember(fold, {}, None)


def test_the_shrink_flag_reaches_the_chain_and_refuses_memory_beside_it() -> None:
    assert UplinkChain.from_config(FLConfig(server_shrink=True)).names == ("shrink", "codec")
    with pytest.raises(ValueError, match="pick one"):
        FLConfig(server_shrink=True, server_memory=True)
    with pytest.raises(ValueError, match="--server-shrink reads each client's plain update; drop --secagg"):
        FLConfig(server_shrink=True, secagg=True, codec="randk:0.5")
