"""fedcore.robust.attacks: what each attack sends, reproducibly, and what it does to a mean."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from fedcore.robust import Median, attacks
from fedcore.robust.attacks import (
    ALIE,
    IPM,
    Backdoor,
    Gaussian,
    LabelFlip,
    MinMax,
    SignFlip,
    alie_z,
    flip_labels,
)

F32 = NDArray[np.float32]


def honest(n: int = 16, d: int = 64, seed: int = 0) -> F32:
    rng = np.random.default_rng(seed)
    return (0.5 + 0.1 * rng.standard_normal((n, d))).astype(np.float32)


def own(f: int = 4, d: int = 64) -> F32:
    return honest(f, d, seed=99)


def test_sign_flip_reverses_the_clients_own_updates() -> None:
    np.testing.assert_array_equal(SignFlip()(honest(), own()), -own())
    np.testing.assert_array_equal(SignFlip(3.0)(honest(), own()), -3.0 * own())


def test_gaussian_noise_is_seeded_and_per_client() -> None:
    a = Gaussian(2.0)(honest(), own(), seed=1)
    assert a.shape == (4, 64)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, Gaussian(2.0)(honest(), own(), seed=1))
    assert not np.array_equal(a, Gaussian(2.0)(honest(), own(), seed=2))
    assert not np.array_equal(a[0], a[1])
    assert 1.5 < a.std() < 2.5


def test_alie_z_follows_the_paper() -> None:
    # n = 50, f = 10 (Baruch et al.'s running example): s = 16, z = Phi^-1(34 / 50) ~ 0.47.
    assert alie_z(50, 10) == pytest.approx(0.4677, abs=1e-4)
    with pytest.raises(ValueError, match="ALIE"):
        alie_z(10, 6)


def test_alie_sits_z_standard_deviations_below_the_mean() -> None:
    h = honest()
    sent = ALIE()(h, own())
    z = alie_z(20, 4)
    np.testing.assert_allclose(sent[0], h.mean(axis=0) - z * h.std(axis=0), rtol=1e-5)
    assert np.all(sent == sent[0])  # colluders send one vector


@pytest.mark.parametrize("eps", [0.1, 100.0])
def test_ipm_sends_minus_epsilon_times_the_honest_mean(eps: float) -> None:
    h = honest()
    np.testing.assert_allclose(IPM(eps)(h, own())[0], -eps * h.mean(axis=0), rtol=1e-5)


def test_ipm_100_reverses_the_mean_but_not_the_median() -> None:
    h = honest()
    x = np.vstack([h, IPM(100.0)(h, own())])
    assert float(x.mean(axis=0) @ h.mean(axis=0)) < 0.0
    assert float(Median()(x) @ h.mean(axis=0)) > 0.0


@pytest.mark.parametrize("kind", ["std", "unit", "sign"])
def test_min_max_stays_within_the_honest_diameter_at_its_largest_scale(kind: str) -> None:
    h = honest()
    attack = MinMax(kind)  # type: ignore[arg-type]
    sent = attack(h, own())[0].astype(np.float64)
    diam = max(np.linalg.norm(a - b) for a in h for b in h)
    reach = np.linalg.norm(h - sent, axis=1).max()
    assert reach <= diam * (1 + 1e-6)
    assert reach >= diam * 0.99  # the bisection pushes gamma to the boundary
    assert attack.gamma(h) > 0.0


def test_min_sum_keeps_the_sum_of_squared_distances_in_range() -> None:
    h = honest()
    sent = MinMax(sum=True)(h, own())[0].astype(np.float64)
    sq = ((h[:, None, :].astype(np.float64) - h[None, :, :]) ** 2).sum(axis=2)
    assert ((h - sent) ** 2).sum() <= sq.sum(axis=1).max() * (1 + 1e-6)


def test_label_flip_maps_y_to_c_minus_1_minus_y() -> None:
    np.testing.assert_array_equal(flip_labels([0, 1, 9], 10), [9, 8, 0])
    _x, y = LabelFlip().poison(np.zeros((3, 2)), [0, 1, 2], 3)
    np.testing.assert_array_equal(y, [2, 1, 0])
    with pytest.raises(ValueError, match="labels"):
        flip_labels([10], 10)


def test_backdoor_stamps_relabels_and_boosts() -> None:
    bd = Backdoor(target=7, boost=10.0, size=3, value=2.5, fraction=0.5)
    x = np.zeros((10, 4, 4), dtype=np.float32)
    y = np.arange(10) % 3
    px, py = bd.poison(x, y, seed=1)
    hit = py == 7
    assert hit.sum() == 5
    assert np.all(px[hit].reshape(5, -1)[:, -3:] == 2.5)
    assert np.all(px[~hit] == 0.0)
    np.testing.assert_array_equal(bd.poison(x, y, seed=1)[1], py)
    np.testing.assert_array_equal(bd.boost_delta(np.ones(3)), np.full(3, 10.0))
    # A model that has learnt the trigger sends every stamped sample to the target.
    learnt = lambda batch: np.where(batch.reshape(len(batch), -1)[:, -1] == 2.5, 7, 0)  # noqa: E731
    assert bd.success_rate(learnt, x, y) == 1.0


@pytest.mark.parametrize("spec", ["signflip", "gauss:1.0", "alie", "ipm:0.1", "minmax", "minsum"])
def test_a_round_without_byzantine_clients_sends_nothing(spec: str) -> None:
    attack = attacks.parse(spec)
    assert isinstance(attack, attacks.ModelAttack)
    assert attack(honest(), np.zeros((0, 64), dtype=np.float32)).shape == (0, 64)


SPECS = [
    "signflip",
    "signflip:2.0",
    "gauss:1.0",
    "alie",
    "alie:1.5",
    "ipm:0.1",
    "ipm:100.0",
    "minmax",
    "minsum:sign",
    "labelflip",
    "backdoor:3",
    "backdoor:0,20.0",
    "backdoor:2,1.0,9,-1.0,0.25",
]


@pytest.mark.parametrize("spec", SPECS)
def test_attack_specs_round_trip(spec: str) -> None:
    a = attacks.parse(spec)
    assert str(a) == spec
    assert attacks.parse(str(a)) == a


@pytest.mark.parametrize("spec", ["", "flip", "gauss:-1", "minmax:mean", "backdoor", "labelflip:3"])
def test_bad_attack_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="spec"):
        attacks.parse(spec)
