"""What a sweep runs: every dataset, partition, setting and seed; each one FLConfig with its own folder."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fedcore.config import FLConfig, load_config
from fedcore.config_files import parse_toml

# Fields a sweep decides itself; a plan that sets them in [base], a dataset or a setting is refused.
# Runs train in-process (workers 0): a sweep's parallelism is across runs, and seeds fix the numbers anyway.
_SWEEP_FIELDS = ("dataset", "partition", "seed", "out", "workers")


@dataclass(frozen=True)
class Setting:
    """One row of the study: a label and the FLConfig fields that make it (codec, partial, powersgd ...)."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The label as a folder name: runs stay findable by eye."""
        return _slug(self.name) or "setting"


@dataclass(frozen=True)
class RunSpec:
    """One simulation of the sweep and where its rounds.jsonl and summary.json go."""

    dataset: str
    partition: str
    setting: Setting
    seed: int
    config: FLConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.out)


@dataclass(frozen=True)
class SweepPlan:
    """Datasets (each with its own FLConfig fields, e.g. rounds), partitions, settings and seeds.

    `baseline` names the setting whose final accuracy the table's deltas and rounds-to-95 % refer to.
    """

    datasets: Mapping[str, Mapping[str, Any]]
    partitions: tuple[str, ...]
    settings: tuple[Setting, ...]
    seeds: tuple[int, ...]
    base: Mapping[str, Any] = field(default_factory=dict)
    baseline: str = "none"

    def __post_init__(self) -> None:
        for name, values in (
            ("datasets", self.datasets),
            ("partitions", self.partitions),
            ("settings", self.settings),
            ("seeds", self.seeds),
        ):
            if not values:
                raise ValueError(f"a sweep needs at least one entry in {name}")
        names = [s.name for s in self.settings]
        if len(set(names)) != len(names):
            raise ValueError(f"setting names must be unique, got {names}")
        slugs = [s.slug for s in self.settings]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"setting names must differ in more than punctuation, got {names}")
        if self.baseline not in names:
            raise ValueError(f"baseline {self.baseline!r} is not one of the settings {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {list(self.seeds)}")
        for where, fields in [
            ("base", self.base),
            *((f"dataset {d}", f) for d, f in self.datasets.items()),
            *((f"setting {s.name}", s.overrides) for s in self.settings),
        ]:
            taken = sorted(set(fields) & set(_SWEEP_FIELDS))
            if taken:
                raise ValueError(f"{where} sets {', '.join(taken)}; the sweep sets those itself")

    def runs(self, out: Path) -> list[RunSpec]:
        """Every run in table order; building each FLConfig validates the whole plan before anything runs."""
        specs = []
        for dataset, dataset_fields in self.datasets.items():
            for partition in self.partitions:
                for setting in self.settings:
                    for seed in self.seeds:
                        run_dir = out / _slug(dataset) / _slug(partition) / setting.slug / f"seed{seed}"
                        fields = {
                            **self.base,
                            **dataset_fields,
                            **setting.overrides,
                            "dataset": dataset,
                            "partition": partition,
                            "seed": seed,
                            "out": str(run_dir),
                            "workers": 0,
                        }
                        try:
                            config = load_config(None, fields)
                        except ValueError as exc:
                            raise ValueError(f"{dataset} / {partition} / {setting.name}: {exc}") from exc
                        specs.append(RunSpec(dataset, partition, setting, seed, config))
        return specs

    def with_seeds(self, seeds: tuple[int, ...]) -> SweepPlan:
        return replace(self, seeds=seeds)

    def with_datasets(self, names: tuple[str, ...]) -> SweepPlan:
        """The plan on a subset of its datasets, each keeping its own fields."""
        unknown = sorted(set(names) - set(self.datasets))
        if unknown:
            raise ValueError(f"dataset(s) {', '.join(unknown)} not in the plan's {', '.join(self.datasets)}")
        return replace(self, datasets={name: self.datasets[name] for name in names})


def _slug(text: str) -> str:
    """Runs of anything but letters, digits and dots become one underscore."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def plan_from_dict(data: Mapping[str, Any]) -> SweepPlan:
    """The TOML layout: seeds, partitions, baseline, [base], [datasets.NAME], [[settings]] with a name."""
    known = {"seeds", "partitions", "baseline", "base", "datasets", "settings"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown sweep key(s): {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    settings = []
    for entry in data.get("settings", []):
        if not isinstance(entry, Mapping) or "name" not in entry:
            raise ValueError(f"every [[settings]] entry needs a name, got {entry!r}")
        fields = {k.replace("-", "_"): v for k, v in entry.items() if k != "name"}
        settings.append(Setting(str(entry["name"]), fields))
    datasets = data.get("datasets", {})
    if not isinstance(datasets, Mapping):
        raise ValueError("datasets must be a table of [datasets.NAME] sections")
    return SweepPlan(
        datasets={str(k): dict(v) for k, v in datasets.items()},
        partitions=tuple(str(p) for p in data.get("partitions", ())),
        settings=tuple(settings),
        seeds=tuple(int(s) for s in data.get("seeds", ())),
        base=dict(data.get("base", {})),
        baseline=str(data.get("baseline", "none")),
    )


def load_plan(path: Path) -> SweepPlan:
    return plan_from_dict(parse_toml(path.read_text(encoding="utf-8"), str(path)))


def builtin_plan() -> SweepPlan:
    """The study in docs/results.md: digits and MNIST-1D, Dirichlet 0.5 and 0.1, the issue's settings."""
    text = resources.files("fedcore.sweep").joinpath("study.toml").read_text(encoding="utf-8")
    return plan_from_dict(parse_toml(text, "study.toml"))
