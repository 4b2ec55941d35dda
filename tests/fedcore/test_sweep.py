"""`fedcore sweep`: plans, resumable runs, and the table's numbers checked against hand-made runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from fedcore.cli import main
from fedcore.records import RoundRecord, write_jsonl, write_summary
from fedcore.sweep import RunSpec, Setting, SweepPlan, builtin_plan, collect_cells
from fedcore.sweep.document import table_markdown
from fedcore.sweep.plan import load_plan, plan_from_dict
from fedcore.sweep.plot import line_styles
from fedcore.sweep.runner import finished_summary
from fedcore.sweep.stats import within

TINY_PLAN = """
seeds = [0, 1]
partitions = ["iid"]
baseline = "none"
[base]
clients = 8
per_round = 3
local_epochs = 1
[datasets.digits]
rounds = 3
[[settings]]
name = "none"
[[settings]]
name = "quant:4"
codec = "quant:4"
"""


def test_builtin_study_covers_the_issue_settings_on_both_datasets() -> None:
    plan = builtin_plan()
    assert set(plan.datasets) == {"digits", "mnist1d"}
    assert plan.partitions == ("dirichlet:0.5", "dirichlet:0.1")
    overrides = [dict(s.overrides) for s in plan.settings]
    for expected in (
        {},
        {"codec": "quant:8"},
        {"codec": "quant:4"},
        {"codec": "topk:0.1+quant:8"},
        {"codec": "topk:0.01+quant:8", "error_feedback": True},
        {"codec": "randk:0.1"},
        {"codec": "eden:1"},
        {"codec": "eden:2"},
        {"codec": "sign", "error_feedback": True},
        {"powersgd": 2},
        {"partial": "random:0.5"},
    ):
        assert expected in overrides
    runs = plan.runs(Path("out"))
    assert len(runs) == 2 * 2 * len(plan.settings) * len(plan.seeds)
    assert all(r.config.clients == 100 and r.config.per_round == 10 and r.config.workers == 0 for r in runs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"settings": [{"name": "none"}, {"name": "none"}]}, "unique"),
        ({"baseline": "missing"}, "baseline"),
        ({"settings": [{"name": "none", "seed": 3}]}, "sweep sets those itself"),
        ({"base": {"dataset": "mnist1d"}}, "sweep sets those itself"),
        ({"colour": "blue"}, "unknown sweep key"),
        ({"seeds": []}, "at least one"),
        ({"settings": [{"name": "none"}, {"name": "bad", "codec": "quant:17"}]}, "bad"),
    ],
)
def test_bad_plans_say_what_is_wrong(change: dict[str, object], message: str) -> None:
    data: dict[str, object] = {
        "seeds": [0],
        "partitions": ["iid"],
        "datasets": {"digits": {"rounds": 2}},
        "settings": [{"name": "none"}],
    }
    data.update(change)
    with pytest.raises(ValueError, match=message):
        plan_from_dict(data).runs(Path("out"))


def _fake_run(
    run_dir: Path, accuracies: list[float], uplink: int, config: dict[str, object]
) -> dict[str, object]:
    records = [
        RoundRecord(i + 1, [0], 1, [], 0, acc, 1.0, 1.0, uplink, 0, 0.0, 0.0, 0.0).to_dict()
        for i, acc in enumerate(accuracies)
    ]
    write_jsonl(run_dir / "rounds.jsonl", records)
    summary = {
        "final_accuracy": accuracies[-1],
        "uplink_bytes": uplink * len(accuracies),
        "uplink_ratio": 400.0 / uplink,
        "config": config,
    }
    write_summary(run_dir / "summary.json", summary)
    return summary


def test_table_numbers_by_hand(tmp_path: Path) -> None:
    plan = SweepPlan(
        datasets={"digits": {"rounds": 3}},
        partitions=("iid",),
        settings=(Setting("none"), Setting("quant:4", {"codec": "quant:4"})),
        seeds=(0, 1),
    )
    specs = plan.runs(tmp_path)
    curves = {
        ("none", 0): ([0.5, 0.7, 0.8], 400),
        ("none", 1): ([0.6, 0.9, 0.9], 400),
        ("quant:4", 0): ([0.5, 0.77, 0.78], 50),  # 95 % of 0.8 = 0.76: reached in round 2
        ("quant:4", 1): ([0.5, 0.6, 0.8], 50),  # 95 % of 0.9 = 0.855: never
    }
    summaries = {
        s.run_dir: _fake_run(s.run_dir, *curves[s.setting.name, s.seed], s.config.run_settings())
        for s in specs
    }
    none, quant = collect_cells(plan, specs, summaries)
    assert none.delta_points == pytest.approx(0.0)
    assert none.rounds_to_target == (3, 2)
    assert quant.mean_accuracy == pytest.approx(0.79)
    assert quant.delta_points == pytest.approx(100 * ((0.78 - 0.8) + (0.8 - 0.9)) / 2)
    assert quant.rounds_to_target == (2, None)
    assert quant.mean_ratio == pytest.approx(8.0)
    assert quant.curves[0].cumulative_uplink.tolist() == [50.0, 100.0, 150.0]


def test_sweep_runs_then_resumes_from_disk(tmp_path: Path) -> None:
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(TINY_PLAN)
    out = tmp_path / "sweep"
    assert main(["sweep", "--plan", str(plan_path), "--out", str(out), "--jobs", "2"]) == 0
    summary_path = out / "runs" / "digits" / "iid" / "quant_4" / "seed1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary["config"]["codec"] == "quant:4"
    assert summary["config"]["seed"] == 1
    rows = json.loads((out / "results.json").read_text())
    assert [(r["setting"], r["seeds"]) for r in rows] == [("none", [0, 1]), ("quant:4", [0, 1])]
    assert rows[1]["final_accuracy"][1] == summary["final_accuracy"]
    assert "| quant:4 |" in (out / "results.md").read_text()
    assert (out / "accuracy_vs_bytes.png").stat().st_size > 0

    stamp = summary_path.stat().st_mtime_ns
    assert main(["sweep", "--plan", str(plan_path), "--out", str(out), "--jobs", "1"]) == 0
    assert summary_path.stat().st_mtime_ns == stamp  # reused, not run again


def test_a_changed_setting_is_run_again(tmp_path: Path) -> None:
    def one_run(rounds: int) -> RunSpec:
        datasets = {"digits": {"rounds": rounds}}
        plan = {"seeds": [0], "partitions": ["iid"], "datasets": datasets, "settings": [{"name": "none"}]}
        (spec,) = plan_from_dict(plan).runs(tmp_path)
        return spec

    spec = one_run(2)
    _fake_run(spec.run_dir, [0.5, 0.6], 400, spec.config.run_settings())
    assert finished_summary(spec) is not None
    other = one_run(3)
    assert other.run_dir == spec.run_dir
    assert finished_summary(other) is None


def test_a_run_older_than_a_config_field_still_counts_while_that_field_is_default(tmp_path: Path) -> None:
    (spec,) = plan_from_dict(
        {"seeds": [0], "partitions": ["iid"], "datasets": {"digits": {}}, "settings": [{"name": "none"}]}
    ).runs(tmp_path)
    settings = spec.config.run_settings()
    del settings["stragglers"]  # as if the run predates the field
    _fake_run(spec.run_dir, [0.5], 400, settings)
    assert finished_summary(spec) is not None
    straggling = replace(spec, config=replace(spec.config, stragglers=0.5))
    assert finished_summary(straggling) is None


def test_dry_run_lists_runs_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "--out", str(tmp_path), "--datasets", "digits", "--seeds", "4", "--dry-run"]) == 0
    assert f"{len(builtin_plan().settings) * 2} runs" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_unknown_dataset_subset_exits_2(tmp_path: Path) -> None:
    assert main(["sweep", "--out", str(tmp_path), "--datasets", "cifar10"]) == 2


def test_a_failing_run_is_reported_after_the_others_finish(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(
        TINY_PLAN.replace("seeds = [0, 1]", "seeds = [0]")
        + '[[settings]]\nname = "unreachable quorum"\ndropout = 0.9\nmin_clients = 3\n'
    )
    out = tmp_path / "sweep"
    assert main(["sweep", "--plan", str(plan_path), "--out", str(out), "--jobs", "1"]) == 1
    assert "unreachable_quorum" in capsys.readouterr().err
    for setting in ("none", "quant_4"):
        assert (out / "runs" / "digits" / "iid" / setting / "seed0" / "summary.json").is_file()
    assert not (out / "results.md").exists()


def test_one_codec_keeps_its_color_across_server_variants_and_each_variant_its_line_style() -> None:
    styles = line_styles(["none", "eden:1", "eden:1, FedYogi", "none, FedYogi", "eden:1, FedAvgM"])
    assert list(styles["eden:1"][0]) != list(styles["none"][0])
    assert list(styles["eden:1, FedYogi"][0]) == list(styles["eden:1"][0])
    assert list(styles["none, FedYogi"][0]) == list(styles["none"][0])
    assert styles["eden:1"][1] == "-"
    assert styles["eden:1, FedYogi"][1] == styles["none, FedYogi"][1] != "-"
    assert styles["eden:1, FedAvgM"][1] not in {"-", styles["eden:1, FedYogi"][1]}


@pytest.mark.parametrize(
    "plan_file", sorted((Path(__file__).parents[2] / "docs").glob("*.toml")), ids=lambda p: p.name
)
def test_the_plans_the_results_page_cites_load_and_name_every_run(plan_file: Path, tmp_path: Path) -> None:
    plan = load_plan(plan_file)
    runs = plan.runs(tmp_path)
    assert len(runs) == len(plan.datasets) * len(plan.partitions) * len(plan.settings) * len(plan.seeds)
    assert len({run.run_dir for run in runs}) == len(runs)


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
        s.run_dir: _fake_run(s.run_dir, [finals[s.setting.name][s.seed]], 100, s.config.run_settings())
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
