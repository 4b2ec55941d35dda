"""Intervals over seeds: t-intervals and paired differences checked against numbers worked by hand."""

from __future__ import annotations

import math

import pytest

from fedcore.sweep.stats import paired_difference, t_interval, within

T_975_DF2 = 4.302652729749464  # Student's t, 97.5 % quantile, 2 degrees of freedom (tables)
T_975_DF3 = 3.182446305284263


def test_t_interval_of_one_two_three() -> None:
    # mean 2, sample std 1, half width t(2) * 1 / sqrt(3)
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.mean == pytest.approx(2.0)
    assert ci.half_width == pytest.approx(T_975_DF2 / math.sqrt(3))
    assert (ci.low, ci.high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)


def test_one_seed_gives_a_mean_without_an_interval() -> None:
    ci = t_interval([0.5])
    assert ci.mean == 0.5
    assert math.isnan(ci.low)
    assert math.isnan(ci.high)
    assert ci.text() == "0.50"
    assert not within(ci)


def test_pairing_cancels_what_the_seeds_share() -> None:
    # the baseline swings by 10 points between seeds; the setting trails it by 0.4 to 0.6 every time
    baseline = [0.50, 0.60, 0.40, 0.55]
    setting = [0.495, 0.596, 0.394, 0.545]
    diff = paired_difference(setting, baseline).scaled(100.0)
    assert diff.mean == pytest.approx(-0.5)
    # differences -0.5, -0.4, -0.6, -0.5: sample std sqrt(0.02 / 3), half width t(3) * s / 2
    assert diff.half_width == pytest.approx(T_975_DF3 * math.sqrt(0.02 / 3) / 2)
    assert diff.low == pytest.approx(-0.629923, abs=1e-6)
    assert within(diff)
    # unpaired, the same numbers say nothing: each mean's interval is ten points wide
    assert t_interval(setting).half_width > 0.1


def test_a_mean_inside_one_point_is_not_enough() -> None:
    # differences 0, +2, +4 points: mean +2, but the interval reaches -2.97
    diff = paired_difference([0.80, 0.82, 0.84], [0.80, 0.80, 0.80]).scaled(100.0)
    assert diff.mean == pytest.approx(2.0)
    assert diff.low == pytest.approx(2.0 - 2 * T_975_DF2 / math.sqrt(3))
    assert not within(diff)


def test_paired_difference_needs_the_same_seeds() -> None:
    with pytest.raises(ValueError, match="3 values against 2"):
        paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])
