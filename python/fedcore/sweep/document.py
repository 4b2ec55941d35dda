"""The study as Markdown: one table per dataset and partition, the plot, and the command that made them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from fedcore.sweep.plan import SweepPlan
from fedcore.sweep.stats import CONFIDENCE, TOLERANCE_POINTS, Interval, within
from fedcore.sweep.table import TARGET_SHARE, Cell


def _rounds_text(cell: Cell) -> str:
    reached = [r for r in cell.rounds_to_target if r is not None]
    if not reached:
        return "never"
    mean = sum(reached) / len(reached)
    missing = len(cell.rounds_to_target) - len(reached)
    return f"{mean:.0f}" if not missing else f"{mean:.0f} ({missing} of {len(cell.rounds_to_target)} never)"


def _difference_text(interval: Interval | None) -> str:
    """`Δ ± half width`, with ✓ where the interval's lower end is above -1 point."""
    if interval is None:
        return "—"
    return interval.text(signed=True) + (" ✓" if within(interval) else "")


def table_markdown(cells: Sequence[Cell], baseline: str) -> str:
    """Markdown tables: mean ± 95 % t-interval half width over seeds, differences paired seed by seed."""
    lines: list[str] = []
    panels = list(dict.fromkeys((c.dataset, c.partition) for c in cells))
    twins = any(c.twin is not None for c in cells)
    for dataset, partition in panels:
        rows = [c for c in cells if (c.dataset, c.partition) == (dataset, partition)]
        twin_head = " Δ vs own baseline (points) |" if twins else ""
        lines += [
            f"### {dataset}, {partition}",
            "",
            f"| setting | final accuracy | Δ vs {baseline} (points) |{twin_head} uplink MB | "
            f"float32 bytes / bytes sent | rounds to {TARGET_SHARE:.0%} of {baseline} |",
            "|---|---|---|" + ("---|" if twins else "") + "---|---|---|",
        ]
        for c in rows:
            twin_cell = ""
            if twins:
                own = f" ({c.twin})" if c.twin is not None else ""
                twin_cell = f" {_difference_text(c.twin_interval)}{own} |"
            lines.append(
                f"| {c.setting} | {c.accuracy_interval.scaled(100.0).text()} | "
                f"{_difference_text(c.delta_interval)} |{twin_cell} "
                f"{c.mean_uplink_bytes / 1e6:.3f} | {c.mean_ratio:.1f} | {_rounds_text(c)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _bounds(interval: Interval) -> list[float | None]:
    """[mean, low, high] for JSON; an unknown end (one seed) is null."""
    return [None if math.isnan(v) else v for v in (interval.mean, interval.low, interval.high)]


def write_results(plan: SweepPlan, cells: Sequence[Cell], out: Path, command: str, png: Path) -> Path:
    """OUT/results.md and OUT/results.json (every per-seed number, for anyone who wants other statistics)."""
    seeds = ", ".join(str(s) for s in plan.seeds)
    body = [
        "# Accuracy per uplink byte",
        "",
        f"Command: `{command}`",
        "",
        f"Seeds {seeds}. Accuracy is the last round's test accuracy in percent, as the mean over seeds ±",
        f"the half width of its {CONFIDENCE:.0%} t-interval. Δ is paired: each seed's run minus the",
        f"`{plan.baseline}` run of the same seed (or the setting's own baseline), mean ± {CONFIDENCE:.0%}",
        f"t-interval, in points; ✓ marks a setting within {TOLERANCE_POINTS:g} point of it, i.e. whose",
        f"interval's lower end is above -{TOLERANCE_POINTS:g}. Bytes are the frames the clients actually",
        "uploaded, headers and checksums included.",
        "",
        table_markdown(cells, plan.baseline),
        f"![accuracy against cumulative uplink bytes]({png.name})",
        "",
    ]
    path = out / "results.md"
    path.write_text("\n".join(body), encoding="utf-8")
    rows = [
        {
            "dataset": c.dataset,
            "partition": c.partition,
            "setting": c.setting,
            "seeds": list(c.seeds),
            "final_accuracy": list(c.final_accuracy),
            "baseline_accuracy": list(c.baseline_accuracy),
            "uplink_bytes": list(c.uplink_bytes),
            "uplink_ratio": list(c.uplink_ratio),
            "rounds_to_target": list(c.rounds_to_target),
            "accuracy_ci": _bounds(c.accuracy_interval),
            "delta_points_ci": _bounds(c.delta_interval),
            "within_one_point": c.within_one_point,
            "twin": c.twin,
            "twin_accuracy": list(c.twin_accuracy) if c.twin_accuracy is not None else None,
            "twin_delta_points_ci": _bounds(c.twin_interval) if c.twin_interval is not None else None,
        }
        for c in cells
    ]
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return path
