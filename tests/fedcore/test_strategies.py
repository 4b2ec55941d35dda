"""Aggregation arithmetic, checked against small cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.backends.base import TrainConfig
from fedcore.client import ClientUpdate
from fedcore.server import FoldBuilder, combine
from fedcore.strategies import FedAvg, FedNova, FedOpt, FoldSum, Scaffold, Strategy, make_strategy
from fedcore.strategies.fedopt import adam_step, momentum_step, yogi_step
from fedcore.strategies.scaffold import client_control_update


def update(
    cid: int, delta: list[float], n: int, steps: int, control: list[float] | None = None
) -> ClientUpdate:
    return ClientUpdate(
        client_id=cid,
        delta=np.array(delta, dtype=np.float32),
        control_delta=None if control is None else np.array(control, dtype=np.float32),
        num_examples=n,
        num_steps=steps,
        loss=0.0,
        uplink_bytes=0,
        residual=None,
        control=None,
        train_s=0.0,
    )


def fold(strategy: Strategy, updates: list[ClientUpdate], size: int = 2) -> FoldSum:
    builder = FoldBuilder(size, strategy.uses_control)
    for u in updates:
        builder.add(u, strategy.coefficient(u.num_examples, u.num_steps))
    return builder.finish()


def test_fedavg_is_sample_weighted_mean_of_deltas() -> None:
    strategy = FedAvg()
    state = strategy.init_state(np.array([1.0, 1.0], dtype=np.float32))
    s = fold(strategy, [update(0, [1.0, -2.0], 1, 1), update(1, [3.0, 3.0], 3, 3)])
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
    s = fold(strategy, [update(0, [1.0, -2.0], 1, 1), update(1, [3.0, 3.0], 3, 3)])
    new = strategy.aggregate(state, s)
    np.testing.assert_allclose(new.weights, [2.5, 0.625], rtol=1e-6)


def test_fednova_uses_each_clients_own_steps() -> None:
    # Swapping which client took more steps must change the result (002's bug used the wrong tau).
    strategy = FedNova()
    state = strategy.init_state(np.zeros(2, dtype=np.float32))
    swapped = fold(strategy, [update(0, [1.0, -2.0], 1, 3), update(1, [3.0, 3.0], 3, 1)])
    # d_A = [1/3, -2/3], d_B = [3, 3]; sum p d = [1/12 + 9/4, -1/6 + 9/4] = [7/3, 25/12];
    # tau_eff = 1/4*3 + 3/4*1 = 1.5; update = [3.5, 3.125].
    np.testing.assert_allclose(strategy.aggregate(state, swapped).weights, [3.5, 3.125], rtol=1e-6)


def test_fold_is_associative_over_workers() -> None:
    strategy = FedNova()
    updates = [update(i, [float(i), 1.0 - i], i + 1, 2 * i + 1) for i in range(5)]
    whole = fold(strategy, updates)
    parts = combine([fold(strategy, updates[:2]), fold(strategy, updates[2:])])
    np.testing.assert_allclose(whole.delta_sum, parts.delta_sum)
    assert (whole.weight_sum, whole.num_examples, whole.weighted_steps, whole.count) == (
        parts.weight_sum,
        parts.num_examples,
        parts.weighted_steps,
        parts.count,
    )


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
    s = fold(
        strategy, [update(0, [-0.2, 0.2], 10, 2, [0.5, -0.5]), update(1, [-0.4, 0.0], 30, 4, [0.5, 0.5])]
    )
    new = strategy.aggregate(state, s)
    np.testing.assert_allclose(new.weights, [0.7, 2.1], rtol=1e-6)
    np.testing.assert_allclose(new.opt_state["control"], [0.75, -0.5], rtol=1e-6)


def test_scaffold_rejects_update_without_control() -> None:
    with pytest.raises(ValueError, match="control"):
        fold(Scaffold(num_clients=2), [update(0, [1.0, 1.0], 1, 1)])


def test_fedadam_one_step_by_hand() -> None:
    # m = 0.1*delta = [0.01,-0.02]; v = 0.99*tau^2 + 0.01*delta^2 = [1.0099e-4, 4.0099e-4]
    # x = 0.01 * m / (sqrt(v) + 1e-3) = [0.01*0.01/0.0110494, -0.01*0.02/0.0210247] = [9.0503e-3, -9.5126e-3]
    strategy = FedOpt("fedadam", server_lr=0.01, beta1=0.9, beta2=0.99, tau=1e-3)
    state = strategy.init_state(np.zeros(2, dtype=np.float32))
    s = fold(strategy, [update(0, [0.1, -0.2], 5, 1)])
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
    s = fold(strategy, [update(0, [1.0, -1.0, 0.0], 2, 1), update(1, [1.0, -1.0, 0.0], 2, 1)], size=3)
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
