"""Run a sweep's simulations in parallel processes, reusing every run whose summary matches its config."""

from __future__ import annotations

import json
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any

from fedcore.config import FLConfig
from fedcore.sweep.plan import RunSpec


class SweepRunError(RuntimeError):
    """Some runs failed; every other run finished and is on disk, so fixing them and rerunning resumes."""

    def __init__(self, failures: dict[Path, str]) -> None:
        lines = "\n".join(f"  {path}: {why}" for path, why in failures.items())
        super().__init__(f"{len(failures)} run(s) failed:\n{lines}")
        self.failures = failures


def finished_summary(spec: RunSpec) -> dict[str, Any] | None:
    """The run's summary.json when it exists and was made by exactly this config, else None.

    A config field newer than the run counts as matching when it holds its default: such a field did not
    exist when the run was made, so the run behaved as the default does.
    """
    path = spec.run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        summary: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    stored = summary.get("config")
    if not isinstance(stored, dict):
        return None
    wanted = _settings(spec.config)
    defaults = _settings(FLConfig())
    for name, value in wanted.items():
        if name in stored:
            if stored[name] != value:
                return None
        elif value != defaults[name]:
            return None
    return summary if set(stored) <= set(wanted) else None


def _settings(config: FLConfig) -> dict[str, Any]:
    """What summary.json stores as its config, through a JSON round trip so tuples and lists compare."""
    loaded: dict[str, Any] = json.loads(json.dumps(config.run_settings()))
    return loaded


def _simulate(config: FLConfig) -> dict[str, Any]:
    from fedcore.sim import simulate_to_dir

    return simulate_to_dir(config).summary


def run_sweep(
    specs: Sequence[RunSpec],
    jobs: int,
    on_done: Callable[[RunSpec, dict[str, Any], bool], None] | None = None,
) -> dict[Path, dict[str, Any]]:
    """Summaries by run folder; `jobs` runs at a time, each in its own process (plans train in-process).

    Runs already on disk with the same config are not repeated: a stopped sweep resumes where it stopped.
    `on_done(spec, summary, reused)` hears of each run as it finishes. A run that raises is reported in
    the SweepRunError raised once all the others are done.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    summaries: dict[Path, dict[str, Any]] = {}

    def record(spec: RunSpec, summary: dict[str, Any], reused: bool) -> None:
        summaries[spec.run_dir] = summary
        if on_done is not None:
            on_done(spec, summary, reused)

    todo = []
    for spec in specs:
        summary = finished_summary(spec)
        if summary is None:
            todo.append(spec)
        else:
            record(spec, summary, True)
    failures: dict[Path, str] = {}
    for spec, outcome in _outcomes(todo, jobs):
        try:
            summary = outcome()
        except Exception as exc:  # one broken run must not cost the others
            failures[spec.run_dir] = f"{type(exc).__name__}: {exc}"
            continue
        record(spec, summary, False)
    if failures:
        raise SweepRunError(failures)
    return summaries


def _outcomes(todo: Sequence[RunSpec], jobs: int) -> Iterator[tuple[RunSpec, Callable[[], dict[str, Any]]]]:
    """Each run with a call that returns its summary or raises its error: in order here, or as they finish."""
    if jobs == 1 or len(todo) <= 1:
        for spec in todo:
            yield spec, partial(_simulate, spec.config)
        return
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_simulate, spec.config): spec for spec in todo}
        for future in as_completed(futures):
            yield futures[future], future.result
