"""Intervals over seeds: t-intervals and paired differences checked against numbers worked by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedcore.records import RoundRecord, write_jsonl, write_summary
from fedcore.sweep import Setting, SweepPlan, collect_cells
from fedcore.sweep.document import table_markdown
from fedcore.sweep.plan import plan_from_dict
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


def _fake_run(run_dir: Path, final: float, config: dict[str, object]) -> dict[str, object]:
    write_jsonl(
        run_dir / "rounds.jsonl", [RoundRecord(1, [0], 1, [], 0, final, 1.0, 1.0, 100, 0, 0, 0, 0).to_dict()]
    )
    summary = {"final_accuracy": final, "uplink_bytes": 100, "uplink_ratio": 4.0, "config": config}
    write_summary(run_dir / "summary.json", summary)
    return summary


def test_cells_compare_with_the_plan_baseline_and_their_own_twin(tmp_path: Path) -> None:
    plan = SweepPlan(
        datasets={"digits": {"rounds": 1}},
        partitions=("iid",),
        settings=(
            Setting("none"),
            Setting("none, FedYogi", {"strategy": "fedyogi"}),
            Setting(
                "quant:4, FedYogi", {"codec": "quant:4", "strategy": "fedyogi"}, baseline="none, FedYogi"
            ),
        ),
        seeds=(0, 1, 2),
    )
    finals = {
        "none": [0.50, 0.52, 0.54],
        "none, FedYogi": [0.60, 0.62, 0.64],
        "quant:4, FedYogi": [0.59, 0.61, 0.63],  # 10 points over FedAvg, exactly 1 under its twin
    }
    specs = plan.runs(tmp_path)
    summaries = {
        s.run_dir: _fake_run(s.run_dir, finals[s.setting.name][s.seed], s.config.run_settings())
        for s in specs
    }
    cells = collect_cells(plan, specs, summaries)
    quant = cells[2]
    assert quant.delta_interval.mean == pytest.approx(9.0)
    assert quant.delta_interval.half_width == pytest.approx(0.0, abs=1e-9)
    assert quant.within_one_point
    twin = quant.twin_interval
    assert twin is not None
    assert twin.mean == pytest.approx(-1.0)
    assert not within(twin)  # exactly -1 is not above -1
    assert cells[0].twin_interval is None
    table = table_markdown(cells, "none")
    assert "| quant:4, FedYogi | 61.00 ± 4.97 | +9.00 ± 0.00 ✓ | -1.00 ± 0.00 (none, FedYogi) |" in table


def test_a_setting_baseline_must_be_a_setting() -> None:
    data: dict[str, object] = {
        "seeds": [0],
        "partitions": ["iid"],
        "datasets": {"digits": {"rounds": 2}},
        "settings": [{"name": "none"}, {"name": "quant:4", "codec": "quant:4", "baseline": "fedyogi"}],
    }
    with pytest.raises(ValueError, match="baseline 'fedyogi' is not one of the settings"):
        plan_from_dict(data)
