"""Detection in the simulation loop: replay the server's SuspectTracker over runs' rounds.jsonl.

Each round record of a run with a robust `--aggregator` holds every answering client's suspicion score;
summary.json names the Byzantine clients. Replaying the tracker over the records gives exactly the flags
the server kept (it observes the same scores in the same order), so other thresholds can be compared
without rerunning. Prints one markdown row per run and the pooled totals.

Run: `python benches/robust_detection_loop.py RUN_DIR... [--threshold 1.0] [--m 10] [--min-rounds 1]`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fedcore.robust import SuspectTracker


def replay(run: Path, tracker: SuspectTracker) -> tuple[int, int, int, int]:
    """(attackers flagged, attackers seen, honest flagged, honest seen) at the end of one run."""
    summary = json.loads((run / "summary.json").read_text())
    bad = set(summary.get("byzantine_clients", []))
    for line in (run / "rounds.jsonl").read_text().splitlines():
        record = json.loads(line)
        scores = record.get("suspicion") or {}
        weight = record.get("suspicion_weight")  # None in runs from before round weights: each round counts 1
        clients = [int(c) for c in scores]
        tracker = tracker.observe(clients, list(scores.values()), 1.0 if weight is None else weight)
    seen = set(tracker.history)
    flagged = tracker.flagged()
    return len(flagged & bad), len(seen & bad), len(flagged - bad), len(seen - bad)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--threshold", type=float, default=SuspectTracker.threshold)
    ap.add_argument("--m", type=int, default=SuspectTracker.m)
    ap.add_argument("--min-rounds", type=int, default=SuspectTracker.min_rounds)
    args = ap.parse_args()
    tracker = SuspectTracker(args.threshold, args.m, args.min_rounds)
    rule = f"weighted mean score over the last {args.m} rounds > {args.threshold}, seen >= {args.min_rounds}"
    print(f"tracker: {rule}")
    print()
    print("| run | attackers flagged / seen | honest flagged / seen |")
    print("| --- | ---: | ---: |")
    total = [0, 0, 0, 0]
    for run in args.runs:
        counts = replay(run, tracker)
        total = [t + c for t, c in zip(total, counts, strict=True)]
        print(f"| {run.name} | {counts[0]} / {counts[1]} | {counts[2]} / {counts[3]} |")
    hit = total[0] / total[1] if total[1] else float("nan")
    fp = total[2] / total[3] if total[3] else float("nan")
    print(f"| all | {total[0]} / {total[1]} ({hit:.1%}) | {total[2]} / {total[3]} ({fp:.1%}) |")


if __name__ == "__main__":
    main()
