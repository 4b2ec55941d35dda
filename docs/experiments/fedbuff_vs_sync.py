"""FedBuff against synchronous FedAvg on the virtual clock, with stragglers (issue 14's done-when).

For each dataset and seed: the synchronous run (`fedcore sim` defaults, 10 of 100 clients a round) and
FedBuff (`--async --buffer 10 --concurrency 20 --staleness poly:0.5`), both with `--stragglers 0.5
--speed-spread 10` (half the devices take 10x as long per step). The target is the synchronous run's final
accuracy; the table gives the virtual time at which FedBuff first reaches it (`first`) and at which the
mean of its last 5 evaluations does (`smoothed`, robust to one lucky evaluation), each over the synchronous
run's whole virtual time, FedBuff's accuracy at half the synchronous time, and how many client updates
FedBuff folded until it first reached the target over the synchronous run's (C = 20 clients train at once,
twice a synchronous round's 10, so FedBuff does more client work per virtual second). A control runs both
with `--speed-spread 1` (every device equally fast).

Usage (about two minutes on one core): `python docs/experiments/fedbuff_vs_sync.py [--seeds 0,1,2]`;
prints a markdown table and writes docs/fedbuff.png (seed 0's curves).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

from fedcore.config import FLConfig
from fedcore.records import RoundRecord
from fedcore.sim import simulate

# FedBuff server updates per (dataset, speed spread): enough to run past the synchronous run's whole time
UPDATES = {("digits", 10.0): 320, ("mnist1d", 10.0): 520, ("digits", 1.0): 150, ("mnist1d", 1.0): 200}
DATASETS = ("digits", "mnist1d")
BUFFER, CONCURRENCY, STALENESS = 10, 20, "poly:0.5"
WINDOW = 5


@dataclass(frozen=True)
class Pair:
    """One dataset, seed and speed setting: the synchronous records and FedBuff's."""

    dataset: str
    seed: int
    spread: float
    sync: list[RoundRecord]
    fedbuff: list[RoundRecord]

    @property
    def target(self) -> float:
        return self.sync[-1].accuracy

    @property
    def sync_s(self) -> float:
        return self.sync[-1].virtual_s or 0.0

    def first(self, smoothed: bool) -> float | None:
        """FedBuff's virtual time when it (or the mean of its last WINDOW evaluations) reaches the target."""
        for i, record in enumerate(self.fedbuff):
            window = self.fedbuff[max(0, i - WINDOW + 1) : i + 1]
            score = sum(r.accuracy for r in window) / len(window) if smoothed else record.accuracy
            if score >= self.target and (not smoothed or len(window) == WINDOW):
                return record.virtual_s
        return None

    def work_ratio(self) -> str:
        """Client updates FedBuff folded until it first reached the target, over the synchronous run's."""
        hit = next((r for r in self.fedbuff if r.accuracy >= self.target), None)
        if hit is None:
            return "not reached"
        done = sum(len(r.clients) for r in self.fedbuff if r.round <= hit.round)
        return f"{done / sum(len(r.clients) for r in self.sync):.2f}"

    def fedbuff_at(self, seconds: float) -> float:
        """FedBuff's accuracy at the last server update before `seconds` of virtual time."""
        before = [r for r in self.fedbuff if (r.virtual_s or 0.0) <= seconds]
        return before[-1].accuracy if before else float("nan")


def run_pair(dataset: str, seed: int, spread: float) -> Pair:
    base = FLConfig(dataset=dataset, seed=seed, stragglers=0.5, speed_spread=spread, out="/dev/null")
    sync = simulate(base).records
    fedbuff = replace(
        base,
        asynchronous=True,
        buffer=BUFFER,
        concurrency=CONCURRENCY,
        staleness=STALENESS,
        rounds=UPDATES[dataset, spread],
    )
    return Pair(dataset, seed, spread, sync, simulate(fedbuff).records)


def ratio(seconds: float | None, total: float) -> str:
    return "not reached" if seconds is None else f"{seconds / total:.3f}"


def plot(pairs: list[Pair], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 4))
    for ax, pair in zip(axes, pairs, strict=True):
        for label, records in (("synchronous FedAvg", pair.sync), ("FedBuff", pair.fedbuff)):
            ax.plot([r.virtual_s for r in records], [r.accuracy for r in records], label=label)
        ax.axhline(pair.target, color="gray", lw=0.8, ls=":", label="sync final accuracy")
        ax.axvline(0.5 * pair.sync_s, color="gray", lw=0.8, ls="--", label="0.5 x sync time")
        ax.set_title(f"{pair.dataset}, stragglers 0.5, speed spread {pair.spread:g}x (seed {pair.seed})")
        ax.set_xlim(0, 1.1 * pair.sync_s)
        ax.set_xlabel("virtual time (s)")
        ax.set_ylabel("test accuracy")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--png", type=Path, default=Path(__file__).parents[1] / "fedbuff.png")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        "| dataset | speed spread | seed | sync final acc | sync virtual s | FedBuff first (x sync time) "
        "| smoothed (x sync time) | FedBuff acc at 0.5x sync time | client updates to first (x sync's) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    shown: list[Pair] = []
    for spread in (10.0, 1.0):
        for dataset in DATASETS:
            for seed in seeds:
                pair = run_pair(dataset, seed, spread)
                if spread == 10.0 and seed == seeds[0]:
                    shown.append(pair)
                print(
                    f"| {dataset} | {spread:g}x | {seed} | {pair.target:.4f} | {pair.sync_s:.1f} "
                    f"| {ratio(pair.first(False), pair.sync_s)} | {ratio(pair.first(True), pair.sync_s)} "
                    f"| {pair.fedbuff_at(0.5 * pair.sync_s):.4f} | {pair.work_ratio()} |",
                    flush=True,
                )
    plot(shown, args.png)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
