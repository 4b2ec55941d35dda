"""The study as Markdown: one table per dataset and partition, the plot, and the command that made them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from fedcore.sweep.plan import SweepPlan
from fedcore.sweep.table import TARGET_SHARE, Cell


def _rounds_text(cell: Cell) -> str:
    reached = [r for r in cell.rounds_to_target if r is not None]
    if not reached:
        return "never"
    mean = sum(reached) / len(reached)
    missing = len(cell.rounds_to_target) - len(reached)
    return f"{mean:.0f}" if not missing else f"{mean:.0f} ({missing} of {len(cell.rounds_to_target)} never)"


def table_markdown(cells: Sequence[Cell], baseline: str) -> str:
    """Markdown tables; accuracy is the mean ± sample std over seeds of the last round's test accuracy."""
    lines: list[str] = []
    panels = list(dict.fromkeys((c.dataset, c.partition) for c in cells))
    for dataset, partition in panels:
        rows = [c for c in cells if (c.dataset, c.partition) == (dataset, partition)]
        lines += [
            f"### {dataset}, {partition}",
            "",
            "| setting | final accuracy | Δ vs "
            f"{baseline} (points) | uplink MB | float32 bytes / bytes sent | "
            f"rounds to {TARGET_SHARE:.0%} of {baseline} |",
            "|---|---|---|---|---|---|",
        ]
        for c in rows:
            lines.append(
                f"| {c.setting} | {c.mean_accuracy:.4f} ± {c.std_accuracy:.4f} | {c.delta_points:+.2f} | "
                f"{c.mean_uplink_bytes / 1e6:.3f} | {c.mean_ratio:.1f} | {_rounds_text(c)} |"
            )
        lines.append("")
    return "\n".join(lines)


def write_results(plan: SweepPlan, cells: Sequence[Cell], out: Path, command: str, png: Path) -> Path:
    """OUT/results.md and OUT/results.json (every per-seed number, for anyone who wants other statistics)."""
    seeds = ", ".join(str(s) for s in plan.seeds)
    body = [
        "# Accuracy per uplink byte",
        "",
        f"Command: `{command}`",
        "",
        f"Seeds {seeds}; every number is a mean over them. Δ compares each seed with the",
        f"`{plan.baseline}` run of the same seed. Bytes are the frames the clients actually uploaded,",
        "headers and checksums included.",
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
        }
        for c in cells
    ]
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return path
