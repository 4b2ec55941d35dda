"""`fedcore sim --profile`: where start-up and round time go, measured in a fresh interpreter.

The run happens in a child process started with Python's import timer (`-X importtime`), so start-up is
timed from the first byte and every import, even those before `main`, is attributed to its package. The
child writes its phase and round timings as JSON; the parent prints both tables after the run's own output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedcore.records import RoundRecord

PROFILE_ENV = "FEDCORE_PROFILE"  # in the child: "LAUNCH_TIME PATH" (the parent's clock, where to write)
_IMPORT_LINE = "import time:"
_TOP_PACKAGES = 10


@dataclass(frozen=True)
class WorkTiming:
    """Seconds a worker spent on its share of a round: training, the rest of the clients' work, folding."""

    train_s: float = 0.0
    encode_s: float = 0.0  # uplink chain (clip, codec, error feedback) and client state, after training
    aggregate_s: float = 0.0  # folding the replies into the worker's partial aggregate

    def plus(self, other: WorkTiming) -> WorkTiming:
        """Two workers' seconds added up: a round's total over its workers."""
        return WorkTiming(
            self.train_s + other.train_s,
            self.encode_s + other.encode_s,
            self.aggregate_s + other.aggregate_s,
        )


class SimProfile:
    """Wall and CPU seconds per start-up phase, and each round split into train/encode/aggregate/evaluate."""

    def __init__(self, launched: float | None = None) -> None:
        self.phases: list[tuple[str, float, float]] = []  # name, wall s, cpu s
        self.rounds: list[dict[str, float]] = []
        self.workers = 0
        if launched is not None:  # from the parent's launch to here: interpreter and module imports
            self.add("interpreter and imports before main", time.time() - launched, time.process_time())

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Times the block (wall and this process's CPU) as phase `name`."""
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - wall, time.process_time() - cpu)

    def add(self, name: str, wall_s: float, cpu_s: float) -> None:
        """Time for a phase; a phase met again (each later round) adds up in its first row."""
        for i, (known, wall, cpu) in enumerate(self.phases):
            if known == name:
                self.phases[i] = (name, wall + wall_s, cpu + cpu_s)
                return
        self.phases.append((name, wall_s, cpu_s))

    def add_round(self, record: RoundRecord, work: WorkTiming, pool_s: float) -> None:
        """One round: worker-side phases as measured, evaluation from the record, the rest is the server's."""
        self.rounds.append(
            {
                "wall_s": record.wall_s,
                "train_s": work.train_s,
                "encode_s": work.encode_s,
                "aggregate_s": work.aggregate_s,
                "evaluate_s": record.eval_s,
                "other_s": max(0.0, record.wall_s - record.eval_s - pool_s),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """What the child writes for the parent to print (JSON)."""
        return {"phases": self.phases, "rounds": self.rounds, "workers": self.workers}


def child_profile() -> tuple[SimProfile, Path] | None:
    """In the profiled child: a profile that starts at the parent's launch, and where to write it."""
    spec = os.environ.get(PROFILE_ENV)
    if spec is None:
        return None
    # multiprocessing starts its forkserver and workers with this interpreter's -X options: without
    # this, their imports would print into the same stream and count as this process's
    sys._xoptions.pop("importtime", None)
    launched, path = spec.split(" ", 1)
    return SimProfile(float(launched)), Path(path)


def run_profiled(argv: Sequence[str]) -> int:
    """Run `fedcore <argv>` in a child under the import timer; print where its time went; its exit code."""
    with tempfile.TemporaryDirectory(prefix="fedcore-profile-") as tmp:
        path = Path(tmp) / "profile.json"
        env = {**os.environ, PROFILE_ENV: f"{time.time()!r} {path}"}
        command = [sys.executable, "-X", "importtime", "-m", "fedcore.cli", *argv]
        imports: list[tuple[str, float]] = []
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as child:
            assert child.stderr is not None
            for line in child.stderr:
                if not line.startswith(_IMPORT_LINE):
                    sys.stderr.write(line)
                elif (parsed := _parse_import_line(line)) is not None:
                    imports.append(parsed)
            code = child.wait()
        if path.is_file():
            print(render(json.loads(path.read_text(encoding="utf-8")), imports))
    return code


def _parse_import_line(line: str) -> tuple[str, float] | None:
    """`import time: SELF_US | CUMULATIVE_US | NAME` as (top-level package, self seconds)."""
    fields = line[len(_IMPORT_LINE) :].split("|")
    if len(fields) != 3 or not fields[0].strip().isdigit():
        return None  # the header line
    return fields[2].strip().split(".")[0], int(fields[0]) / 1e6


def imports_by_package(imports: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """Self time summed per top-level package, largest first; the rest as one "other" row."""
    totals: dict[str, float] = {}
    for package, seconds in imports:
        totals[package] = totals.get(package, 0.0) + seconds
    ranked = sorted(totals.items(), key=lambda item: -item[1])
    head, tail = ranked[:_TOP_PACKAGES], ranked[_TOP_PACKAGES:]
    if tail:
        head.append((f"other ({len(tail)} packages)", sum(s for _, s in tail)))
    return head


def render(profile: dict[str, Any], imports: Sequence[tuple[str, float]]) -> str:
    """The three tables --profile prints: start-up and run phases, imports by package, a round's split."""
    lines = [
        "",
        "profile: wall and CPU (user+sys) seconds of this process (worker processes' CPU not included)",
        f"  {'phase':<40}{'wall':>9}{'cpu':>9}",
    ]
    phases = profile["phases"]
    for name, wall, cpu in phases:
        lines.append(f"  {name:<40}{wall:>9.3f}{cpu:>9.3f}")
    start_up = [p for p in phases if p[0] not in ("later rounds", "output files")]
    lines.append(
        f"  {'start-up (through the first round)':<40}{sum(p[1] for p in start_up):>9.3f}"
        f"{sum(p[2] for p in start_up):>9.3f}"
    )
    if imports:
        total = sum(s for _, s in imports)
        lines += [
            "",
            f"imports by package (self time, python -X importtime, this process; total {total:.3f} s)",
        ]
        lines += [f"  {package:<40}{seconds:>9.3f}" for package, seconds in imports_by_package(imports)]
    rounds = profile["rounds"]
    if rounds:
        keys = ("wall_s", "train_s", "encode_s", "aggregate_s", "evaluate_s", "other_s")
        workers = profile["workers"]
        where = f"summed over {workers} workers" if workers > 1 else "in this process"
        lines += [
            "",
            f"a round, {len(rounds)} rounds (train, encode, aggregate: {where}; "
            "other: selection, tasks, merging, the server's update)",
            f"  {'':<12}{'median ms':>11}{'total s':>10}{'share':>8}",
        ]
        wall_total = sum(r["wall_s"] for r in rounds) or 1.0
        for key in keys:
            values = sorted(r[key] for r in rounds)
            total, median_ms = sum(values), values[len(values) // 2] * 1e3
            lines.append(f"  {key[:-2]:<12}{median_ms:>11.2f}{total:>10.3f}{total / wall_total:>8.0%}")
    return "\n".join(lines)
