"""The defenses x attacks tables and plot of docs/robustness.md from a finished robustness sweep.

    python docs/experiments/robustness_table.py RUNS/DATASET [PNG]

RUNS/DATASET is one dataset's folder of a `fedcore sweep --plan docs/experiments/robustness_*.toml`
output (PARTITION/SETTING/seedN/summary.json). Each cell is the final accuracy, mean over the seeds
that finished, with the half-width of its 95 % t interval when there are two or more; a backdoor cell
adds the backdoor success of the last round. `worst` is the lowest attacked cell of the row, the
next column the lowest over CORE (the attacks a defense is asked to hold); the plot shows the latter.
The last row gives each attack's cost to the undefended mean (points below its clean run).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean, stdev

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}  # Student's t, 97.5 % quantile, by sample size
ORDER = [  # rows and columns in this order; anything else after them
    "mean", "median", "trimmed:0.2", "geomed", "bucket:2+krum:1", "nnm:2+median", "bucket:2+geomed",
    "none", "signflip", "signflip:5", "gauss", "alie:5", "ipm:0.1", "ipm:100", "minmax", "minsum",
    "labelflip", "backdoor:0,10",
]  # fmt: skip


CORE = (
    "signflip",
    "signflip:5",
    "gauss",
    "alie:5",
    "ipm:0.1",
)  # the attacks the issue asks a defense to hold


def _ordered(names: list[str]) -> list[str]:
    return sorted(dict.fromkeys(names), key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def _last_backdoor(run: Path) -> float | None:
    lines = (run / "rounds.jsonl").read_text().splitlines()
    value = json.loads(lines[-1]).get("backdoor_accuracy") if lines else None
    return None if value is None else float(value)


def collect(root: Path) -> dict[str, dict[tuple[str, str], list[tuple[float, float | None]]]]:
    """partition -> (defense, attack) -> [(final accuracy, backdoor success)] over seeds."""
    cells: dict[str, dict[tuple[str, str], list[tuple[float, float | None]]]] = defaultdict(dict)
    for summary_path in sorted(root.glob("*/*/seed*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "complete":
            continue
        config = summary["config"]
        key = (str(config["aggregator"]), str(config["attack"] or "none"))
        run = summary_path.parent
        cells[run.parent.parent.name].setdefault(key, []).append(
            (float(summary["final_accuracy"]), _last_backdoor(run))
        )
    return cells


def _fmt(values: list[float]) -> str:
    m = mean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    half = T975.get(len(values), 1.96) * stdev(values) / math.sqrt(len(values))
    return f"{m:.3f} ± {half:.3f}"


def table(cells: dict[tuple[str, str], list[tuple[float, float | None]]]) -> tuple[str, dict[str, float]]:
    """One partition's markdown table, and each defense's worst mean accuracy over the CORE attacks."""
    defenses = _ordered([d for d, _ in cells])
    attacks = _ordered([a for _, a in cells])
    lines = [
        "| defense | " + " | ".join(attacks) + " | worst | worst of " + ", ".join(CORE) + " |",
        "| --- | " + " | ".join("---" for _ in attacks) + " | --- | --- |",
    ]
    worst: dict[str, float] = {}
    for d in defenses:
        row = []
        attacked = []
        core = []
        for a in attacks:
            runs = cells.get((d, a), [])
            if not runs:
                row.append("")
                continue
            text = _fmt([acc for acc, _ in runs])
            backdoor = [b for _, b in runs if b is not None]
            if backdoor:
                text += f" (bd {mean(backdoor):.2f})"
            row.append(f"{text} [{len(runs)}]" if len(runs) < 3 else text)
            if a != "none":
                attacked.append(mean(acc for acc, _ in runs))
            if a in CORE:
                core.append(mean(acc for acc, _ in runs))
        worst[d] = min(core) if core else float("nan")
        lines.append(f"| {d} | " + " | ".join(row) + f" | {min(attacked):.3f} | {worst[d]:.3f} |")
    clean = cells.get(("mean", "none"))
    if clean:
        base = mean(acc for acc, _ in clean)
        costs = [
            f"{100 * (base - mean(acc for acc, _ in cells[('mean', a)])):+.1f}"
            if ("mean", a) in cells
            else ""
            for a in attacks
        ]
        lines.append("| cost to mean (points) | " + " | ".join(costs) + " | | |")
    return "\n".join(lines), worst


def main(root: Path, png: Path | None) -> None:
    cells = collect(root)
    worsts = {}
    for partition, part_cells in cells.items():
        text, worsts[partition] = table(part_cells)
        print(f"**{root.name}, {partition}**: final accuracy, mean ± 95 % CI over seeds ([n]: fewer than 3)")
        print()
        print(text)
        print()
    if png is not None:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        parts = list(worsts)
        defenses = _ordered([d for p in parts for d in worsts[p]])
        width = 0.8 / max(len(parts), 1)
        for i, p in enumerate(parts):
            xs = [j + i * width for j in range(len(defenses))]
            ax.bar(xs, [worsts[p].get(d, float("nan")) for d in defenses], width, label=p)
            clean = cells[p].get(("mean", "none"))
            if clean:
                ax.axhline(mean(a for a, _ in clean) - 0.05, color=f"C{i}", linestyle="--", linewidth=0.8)
        ax.set_xticks([j + width * (len(parts) - 1) / 2 for j in range(len(defenses))])
        ax.set_xticklabels(defenses, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("worst-case final accuracy")
        ax.set_title(
            f"{root.name}: worst of sign-flip (x1, x5), Gaussian, ALIE z=5, IPM 0.1 per defense\n"
            "(dashed: clean undefended mean - 5 points)",
            fontsize=9,
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png, dpi=120)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
