"""The paired difference of two settings of a sweep, from its results.json (seed by seed, 95 % t-interval).

`fedcore sweep` compares each setting with the plan's baseline and its own; this compares any pair, e.g.
a codec with server memory against the same rule uncompressed. Usage:

    python docs/experiments/paired.py docs/issue18/server_rules.json "SETTING" "AGAINST"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fedcore.sweep.stats import paired_difference, within


def _rows(path: Path, setting: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = [r for r in json.loads(path.read_text(encoding="utf-8")) if r["setting"] == setting]
    if not rows:
        raise SystemExit(f"no setting {setting!r} in {path}")
    return {(r["dataset"], r["partition"]): r for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a sweep's results.json")
    parser.add_argument("setting")
    parser.add_argument("against")
    args = parser.parse_args()
    ours, theirs = _rows(args.results, args.setting), _rows(args.results, args.against)
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], theirs[key]
        if a["seeds"] != b["seeds"]:
            raise SystemExit(f"{key}: the two settings ran different seeds")
        d = paired_difference([100 * x for x in a["final_accuracy"]], [100 * x for x in b["final_accuracy"]])
        mark = " ✓" if within(d) else ""
        print(f"{key[0]}, {key[1]}: {d.mean:+.2f} ± {d.mean - d.low:.2f} points{mark} (n = {d.n})")


if __name__ == "__main__":
    main()
