"""Aggregation arithmetic, checked against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.backends.base import TrainConfig
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.protocol import Reply
from fedcore.server import FoldContext, LinearFold
from fedcore.strategies import FedAvg, FedNova, FedOpt, FoldSum, Scaffold, Strategy, make_strategy
from fedcore.strategies.fedopt import adam_step, momentum_step, yogi_step
from fedcore.strategies.scaffold import client_control_update
from fedcore.uplink import UplinkChain, UplinkContext, encode_frame


def reply(cid: int, delta: list[float], n: int, steps: int, control: list[float] | None = None) -> Reply:
    """A client's reply as it arrives: its delta (then SCAFFOLD's control delta) as lossless frames."""
    vectors = [delta] if control is None else [delta, control]
    payloads = tuple(encode_frame(None, np.array(v, dtype=np.float32), 0) for v in vectors)
    return Reply(round=0, client_id=cid, payloads=payloads, num_examples=n, num_steps=steps, loss=0.0)


def linear_fold(strategy: Strategy, replies: list[Reply], size: int = 2) -> LinearFold:
    """The server's streaming fold of one round's replies, through the run's plain (codec-less) uplink."""
    layout = ParamLayout.from_shapes([("w", (size,))])
    aggregator = LinearFold(
        FoldContext(size, UplinkChain.from_config(FLConfig()), UplinkContext(layout), strategy)
    )
    for r in replies:
        assert aggregator.add(r) is None
    return aggregator


def fold(strategy: Strategy, replies: list[Reply], size: int = 2) -> FoldSum:
    return linear_fold(strategy, replies, size).finish()


def test_fedavg_is_sample_weighted_mean_of_deltas() -> None:
    strategy = FedAvg()
    state = strategy.init_state(np.array([1.0, 1.0], dtype=np.float32))
    s = fold(strategy, [reply(0, [1.0, -2.0], 1, 1), reply(1, [3.0, 3.0], 3, 3)])
    new = strategy.aggregate(state, s)
    # (1*[1,-2] + 3*[3,3]) / 4 = [2.5, 1.75]
    np.testing.assert_allclose(new.weights, [3.5, 2.75])
    assert new.round == 1
    assert state.round == 0


def test_fedprox_only_changes_client_config() -> None:
    strategy = make_strategy("fedprox:0.1", num_clients=10)
    assert strategy.client_config(TrainConfig()).prox_mu == pytest.approx(0.1)
    assert FedAvg().client_config(TrainConfig(prox_mu=0.5)).prox_mu == 0.0


def test_fednova_hand_case() -> None:
    # Client A: n=1, tau=1, delta=[1,-2]; client B: n=3, tau=3, delta=[3,3].
    # p = [1/4, 3/4]; normalised d_A=[1,-2], d_B=[1,1]; sum p d = [1.0, 0.25];
    # tau_eff = 1/4*1 + 3/4*3 = 2.5; update = 2.5 * [1.0, 0.25] = [2.5, 0.625].
    strategy = FedNova()
    state = strategy.init_state(np.zeros(2, dtype=np.float32))
    s = fold(strategy, [reply(0, [1.0, -2.0], 1, 1), reply(1, [3.0, 3.0], 3, 3)])
    new = strategy.aggregate(state, s)
    np.testing.assert_allclose(new.weights, [2.5, 0.625], rtol=1e-6)


def test_fednova_uses_each_clients_own_steps() -> None:
    # Swapping which client took more steps must change the result (002's bug used the wrong tau).
    strategy = FedNova()
    state = strategy.init_state(np.zeros(2, dtype=np.float32))
    swapped = fold(strategy, [reply(0, [1.0, -2.0], 1, 3), reply(1, [3.0, 3.0], 3, 1)])
    # d_A = [1/3, -2/3], d_B = [3, 3]; sum p d = [1/12 + 9/4, -1/6 + 9/4] = [7/3, 25/12];
    # tau_eff = 1/4*3 + 3/4*1 = 1.5; update = [3.5, 3.125].
    np.testing.assert_allclose(strategy.aggregate(state, swapped).weights, [3.5, 3.125], rtol=1e-6)


def test_merging_partial_folds_is_adding_their_sums_and_repeats_the_whole_fold() -> None:
    strategy = FedNova()
    replies = [reply(i, [float(i), 1.0 - i], i + 1, 2 * i + 1) for i in range(5)]
    whole = fold(strategy, replies)
    first, second = linear_fold(strategy, replies[:2]), linear_fold(strategy, replies[2:])
    merged = first.merge(second).finish()
    summed = first.finish() + second.finish()
    np.testing.assert_array_equal(merged.delta_sum, summed.delta_sum)
    np.testing.assert_allclose(merged.delta_sum, whole.delta_sum)
    counts = [(f.weight_sum, f.num_examples, f.weighted_steps, f.count) for f in (whole, merged, summed)]
    assert counts[0] == counts[1] == counts[2]
    # A merged fold keeps folding: workers merge partial folds, then the server may add more replies.
    resumed = linear_fold(strategy, replies[:2]).merge(linear_fold(strategy, replies[2:4]))
    assert resumed.add(replies[4]) is None
    np.testing.assert_allclose(resumed.finish().delta_sum, whole.delta_sum)
    assert resumed.finish().count == whole.count


def test_scaffold_client_control_hand_case() -> None:
    # x=[1,2], c=[0.5,-0.5], lr=0.1.  Client 1: c_1=0, y_1=[0.8,2.2], K=2:
    # c_1+ = 0 - c + ([0.2,-0.2])/(0.2) = [0.5,-0.5].  Client 2: c_2=[1,0], y_2=[0.6,2.0], K=4:
    # c_2+ = [1,0] - c + [0.4,0]/0.4 = [1.5,0.5].
    x = np.array([1.0, 2.0], dtype=np.float32)
    c = np.array([0.5, -0.5])
    c1 = client_control_update(np.zeros(2), c, x, np.array([0.8, 2.2], dtype=np.float32), 2, 0.1)
    c2 = client_control_update(np.array([1.0, 0.0]), c, x, np.array([0.6, 2.0], dtype=np.float32), 4, 0.1)
    np.testing.assert_allclose(c1, [0.5, -0.5], rtol=1e-5)
    np.testing.assert_allclose(c2, [1.5, 0.5], rtol=1e-5)


def test_scaffold_server_hand_case() -> None:
    # N=4, S=2, dy_1=[-0.2,0.2], dy_2=[-0.4,0], dc_1=[0.5,-0.5], dc_2=[0.5,0.5]:
    # x+ = [1,2] + mean dy = [0.7, 2.1];  c+ = [0.5,-0.5] + (2/4) * [0.5, 0] = [0.75, -0.5].
    strategy = Scaffold(num_clients=4)
    state = strategy.init_state(np.array([1.0, 2.0], dtype=np.float32))
    state = type(state)(0, state.weights, {"control": np.array([0.5, -0.5])})
    s = fold(strategy, [reply(0, [-0.2, 0.2], 10, 2, [0.5, -0.5]), reply(1, [-0.4, 0.0], 30, 4, [0.5, 0.5])])
    new = strategy.aggregate(state, s)
    np.testing.assert_allclose(new.weights, [0.7, 2.1], rtol=1e-6)
    np.testing.assert_allclose(new.opt_state["control"], [0.75, -0.5], rtol=1e-6)


def test_scaffold_refuses_a_reply_without_control() -> None:
    aggregator = linear_fold(Scaffold(num_clients=2), [])
    without_control = reply(0, [1.0, 1.0], 1, 1)
    failure = aggregator.add(without_control)
    assert failure is not None
    assert (failure.client_id, failure.kind, failure.nbytes) == (0, "bad_frame", without_control.nbytes)
    assert "expects 2" in failure.message
    assert aggregator.finish().count == 0


def test_fedadam_one_step_by_hand() -> None:
    # m = 0.1*delta = [0.01,-0.02]; v = 0.99*tau^2 + 0.01*delta^2 = [1.0099e-4, 4.0099e-4]
    # x = 0.01 * m / (sqrt(v) + 1e-3) = [0.01*0.01/0.0110494, -0.01*0.02/0.0210247] = [9.0503e-3, -9.5126e-3]
    strategy = FedOpt("fedadam", server_lr=0.01, beta1=0.9, beta2=0.99, tau=1e-3)
    state = strategy.init_state(np.zeros(2, dtype=np.float32))
    s = fold(strategy, [reply(0, [0.1, -0.2], 5, 1)])
    new = strategy.aggregate(state, s)
    np.testing.assert_allclose(new.weights, [9.0503e-3, -9.5126e-3], rtol=1e-4)
    np.testing.assert_allclose(new.opt_state["v"], [1.0099e-4, 4.0099e-4], rtol=1e-6)
    assert state.opt_state["m"].tolist() == [0.0, 0.0]  # the input state is not modified


def test_server_optimizer_steps() -> None:
    x, m = momentum_step(np.zeros(1), np.array([1.0]), np.array([0.5]), lr=1.0, beta=0.9)
    assert (x.tolist(), m.tolist()) == ([1.4], [1.4])
    # From v=0 Yogi and Adam agree; above delta^2 Yogi lowers v by only (1-beta2)*delta^2.
    _, _, v = yogi_step(np.zeros(1), np.zeros(1), np.array([0.0]), np.array([2.0]), 0.1, 0.9, 0.99, 1e-3)
    _, _, v_adam = adam_step(np.zeros(1), np.zeros(1), np.array([0.0]), np.array([2.0]), 0.1, 0.9, 0.99, 1e-3)
    assert v.tolist() == pytest.approx([0.04])
    assert v_adam.tolist() == pytest.approx([0.04])
    _, _, v = yogi_step(np.zeros(1), np.zeros(1), np.array([10.0]), np.array([2.0]), 0.1, 0.9, 0.99, 1e-3)
    assert v.tolist() == pytest.approx([10.0 - 0.04])


@pytest.mark.parametrize("spec", ["fedavgm", "fedadam", "fedyogi", "fedadagrad"])
def test_fedopt_moves_towards_mean_delta(spec: str) -> None:
    strategy = make_strategy(spec, num_clients=4)
    state = strategy.init_state(np.zeros(3, dtype=np.float32))
    s = fold(strategy, [reply(0, [1.0, -1.0, 0.0], 2, 1), reply(1, [1.0, -1.0, 0.0], 2, 1)], size=3)
    new = strategy.aggregate(state, s)
    assert new.weights[0] > 0 > new.weights[1]
    assert new.weights[2] == 0.0


@pytest.mark.parametrize("spec", ["fedprox", "fedprox:-1", "fedavg:2", "krum", "fedprox:x"])
def test_bad_strategy_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"strategy|fedprox"):
        make_strategy(spec, num_clients=4)


def test_empty_fold_leaves_weights_unchanged() -> None:
    for strategy in (FedAvg(), FedNova()):
        state = strategy.init_state(np.ones(2, dtype=np.float32))
        np.testing.assert_array_equal(strategy.aggregate(state, FoldSum.empty(2)).weights, [1.0, 1.0])


def test_a_registered_strategy_is_built_by_name_with_its_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    from fedcore.strategies import CUSTOM_STRATEGIES, StrategySettings

    def half_step(settings: StrategySettings) -> FedAvg:
        return FedAvg(server_lr=float(settings.arg or 0.5))

    monkeypatch.setitem(CUSTOM_STRATEGIES, "halfstep", half_step)
    assert make_strategy("halfstep", 10) == FedAvg(server_lr=0.5)
    assert FLConfig(strategy="halfstep:0.25").make_strategy() == FedAvg(server_lr=0.25)
    with pytest.raises(ValueError, match=r"choose from .*scaffold, halfstep"):
        make_strategy("halfstpe", 10)
