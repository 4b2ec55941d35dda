"""The privacy-utility table and plot of docs/results.md from finished `fedcore sim` runs.

    python docs/experiments/privacy_utility.py RUNS_DIR docs/privacy_utility.png

RUNS_DIR holds one folder per run, named as in docs/results.md (lr_nonprivate, lr_eps2_clip1, ...).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

EPSILONS = (1, 2, 4, 8)


def final(run: Path) -> tuple[float, float | None]:
    summary = json.loads((run / "summary.json").read_text())
    return float(summary["final_accuracy"]), summary.get("epsilon")


def main(runs: Path, png: Path) -> None:
    base, _ = final(runs / "lr_nonprivate")
    print("| ε (δ = 1e-5) | final accuracy | Δ to non-private (points) |")
    print("| --- | --- | --- |")
    xs, ys = [], []
    for eps in EPSILONS:
        acc, spent = final(runs / f"lr_eps{eps}_clip1")
        xs.append(float(spent or eps))
        ys.append(acc)
        print(f"| {eps} (spent {spent:.4f}) | {acc:.4f} | {100 * (acc - base):+.2f} |")
    print(f"| ∞ (non-private) | {base:.4f} | 0 |")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, ys, marker="o", label="DP-FedAvg, clip 1.0")
    ax.axhline(base, color="grey", linestyle="--", label="non-private")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ε after 100 rounds (δ = 1e-5)")
    ax.set_ylabel("final accuracy")
    ax.set_title("MNIST-1D logreg, 10,000 clients, 200 per round")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
