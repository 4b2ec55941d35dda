"""The study's table: each setting on each dataset and partition, over seeds, against the baseline setting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedcore.records import read_rounds
from fedcore.sweep.plan import RunSpec, SweepPlan
from fedcore.sweep.stats import Interval, paired_difference, t_interval, within

# The table's rounds-to-target column: first round at this share of the baseline's final accuracy.
TARGET_SHARE = 0.95


@dataclass(frozen=True)
class Curve:
    """One run's accuracy after each round against the uplink bytes sent up to then."""

    cumulative_uplink: NDArray[np.float64]
    accuracy: NDArray[np.float64]


@dataclass(frozen=True)
class Cell:
    """One setting on one dataset and partition: a value per seed, in plan seed order."""

    dataset: str
    partition: str
    setting: str
    seeds: tuple[int, ...]
    final_accuracy: tuple[float, ...]
    uplink_bytes: tuple[int, ...]
    uplink_ratio: tuple[float, ...]
    rounds_to_target: tuple[int | None, ...]  # None: never reached TARGET_SHARE of the baseline's final
    curves: tuple[Curve, ...]
    baseline_accuracy: tuple[float, ...]
    # The setting's own baseline (its server optimizer uncompressed), where the plan names one for it.
    twin: str | None = None
    twin_accuracy: tuple[float, ...] | None = None

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(self.final_accuracy))

    @property
    def std_accuracy(self) -> float:
        return float(np.std(self.final_accuracy, ddof=1)) if len(self.final_accuracy) > 1 else 0.0

    @property
    def delta_points(self) -> float:
        """Mean final accuracy minus the baseline's, in percentage points, seed by seed."""
        return 100.0 * float(np.mean(np.subtract(self.final_accuracy, self.baseline_accuracy)))

    @property
    def accuracy_interval(self) -> Interval:
        """Final accuracy: mean and 95 % t-interval over seeds."""
        return t_interval(self.final_accuracy)

    @property
    def delta_interval(self) -> Interval:
        """Points against the plan's baseline, paired seed by seed, with its 95 % t-interval."""
        return paired_difference(self.final_accuracy, self.baseline_accuracy).scaled(100.0)

    @property
    def twin_interval(self) -> Interval | None:
        """Points against the setting's own baseline, paired seed by seed; None without one."""
        if self.twin_accuracy is None:
            return None
        return paired_difference(self.final_accuracy, self.twin_accuracy).scaled(100.0)

    @property
    def within_one_point(self) -> bool:
        """Within 1 point of the plan's baseline: the paired interval's lower end is above -1."""
        return within(self.delta_interval)

    @property
    def mean_ratio(self) -> float:
        return float(np.mean(self.uplink_ratio))

    @property
    def mean_uplink_bytes(self) -> float:
        return float(np.mean(self.uplink_bytes))


def _curve(run_dir: Path) -> Curve:
    records = read_rounds(run_dir / "rounds.jsonl")
    return Curve(
        np.cumsum([r.uplink_bytes for r in records], dtype=np.float64),
        np.array([r.accuracy for r in records], dtype=np.float64),
    )


def _first_round_reaching(curve: Curve, target: float) -> int | None:
    hits = np.flatnonzero(curve.accuracy >= target)
    return int(hits[0]) + 1 if hits.size else None


def collect_cells(
    plan: SweepPlan, specs: Sequence[RunSpec], summaries: Mapping[Path, Mapping[str, Any]]
) -> list[Cell]:
    """Cells in plan order; every run in `specs` must have its summary (and rounds.jsonl) by now."""
    by_key = {(s.dataset, s.partition, s.setting.name, s.seed): s for s in specs}

    def finals(name: str, dataset: str, partition: str) -> tuple[float, ...]:
        runs = (by_key[dataset, partition, name, seed] for seed in plan.seeds)
        return tuple(float(summaries[r.run_dir]["final_accuracy"]) for r in runs)

    cells = []
    for dataset in plan.datasets:
        for partition in plan.partitions:
            baseline_final = finals(plan.baseline, dataset, partition)
            for setting in plan.settings:
                runs = [by_key[dataset, partition, setting.name, seed] for seed in plan.seeds]
                done = [summaries[r.run_dir] for r in runs]
                curves = tuple(_curve(r.run_dir) for r in runs)
                cells.append(
                    Cell(
                        dataset=dataset,
                        partition=partition,
                        setting=setting.name,
                        seeds=plan.seeds,
                        final_accuracy=tuple(float(d["final_accuracy"]) for d in done),
                        uplink_bytes=tuple(int(d["uplink_bytes"]) for d in done),
                        uplink_ratio=tuple(float(d["uplink_ratio"]) for d in done),
                        rounds_to_target=tuple(
                            _first_round_reaching(c, TARGET_SHARE * b)
                            for c, b in zip(curves, baseline_final, strict=True)
                        ),
                        curves=curves,
                        baseline_accuracy=baseline_final,
                        twin=setting.baseline,
                        twin_accuracy=finals(setting.baseline, dataset, partition)
                        if setting.baseline is not None
                        else None,
                    )
                )
    return cells
