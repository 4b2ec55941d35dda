"""The tables of a sweep's results.json again, with 95 % t-intervals (for studies run before they existed).

`results.json` keeps every per-seed number, so the intervals and paired differences of `fedcore sweep`'s
tables can be rebuilt without rerunning anything. Usage:

    python docs/experiments/retable.py docs/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedcore.sweep import Cell
from fedcore.sweep.document import table_markdown


def cells_from_json(path: Path) -> list[Cell]:
    """One Cell per row; the accuracy curves are not in results.json, so they stay empty."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [
        Cell(
            dataset=row["dataset"],
            partition=row["partition"],
            setting=row["setting"],
            seeds=tuple(row["seeds"]),
            final_accuracy=tuple(row["final_accuracy"]),
            uplink_bytes=tuple(row["uplink_bytes"]),
            uplink_ratio=tuple(row["uplink_ratio"]),
            rounds_to_target=tuple(row["rounds_to_target"]),
            curves=(),
            baseline_accuracy=tuple(row["baseline_accuracy"]),
            twin=row.get("twin"),
            twin_accuracy=tuple(row["twin_accuracy"]) if row.get("twin_accuracy") else None,
        )
        for row in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results.json written by fedcore sweep")
    parser.add_argument("--baseline", default="none", help="the plan's baseline setting (default: none)")
    args = parser.parse_args()
    print(table_markdown(cells_from_json(args.results), args.baseline))


if __name__ == "__main__":
    main()
