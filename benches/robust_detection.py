"""Detection on synthetic rounds: how often the suspicion scores flag attackers, and honest clients.

A population of 100 clients, 20 of them Byzantine (10 sign-flip, 10 Gaussian noise). Each round 30
clients are sampled (seeded); an honest client sends the round's shared mean plus its own noise of
scale sigma_h (sigma_h is the honest heterogeneity), a sign-flipper the negative of that, a Gaussian
attacker N(0, sigma_g^2 I). Per round every sampled client gets two scores: its distance to the
coordinate-wise median over the round's median distance (suspicious above 2), and its Krum score
over the round's median Krum score (squared distances, so suspicious above 4: the threshold
squared); and the combined `suspicion_scores` (far from the median, or disagreeing with the others'
consensus signs more than a coin; suspicious above 1, the tracker's default). A SuspectTracker per
score flags clients whose mean score over their last 10 rounds exceeds that threshold (the suspicion
tracker weighs each round by its `RoundSuspicion.weight`).

Run: `python benches/robust_detection.py [--rounds 50] [--d 10000] [--threshold 2]`; prints one
markdown table.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from fedcore.robust import Median, SuspectTracker, distance_scores, krum_scores, suspicion_scores
from fedcore.robust.attacks import Gaussian, SignFlip

POPULATION = 100
PER_ROUND = 30
SIGNFLIP = range(0, 10)
GAUSS = range(10, 20)
BYZANTINE = frozenset([*SIGNFLIP, *GAUSS])


@dataclass
class Tally:
    """Flags counted per kind of client over all rounds, and the tracker at the end."""

    flags: dict[str, int]
    seen: dict[str, int]
    tracker: SuspectTracker

    def add(self, kinds: list[str], flagged: np.ndarray) -> None:
        for kind, flag in zip(kinds, flagged, strict=True):
            self.seen[kind] = self.seen.get(kind, 0) + 1
            self.flags[kind] = self.flags.get(kind, 0) + int(flag)

    def rate(self, kind: str) -> float:
        return self.flags.get(kind, 0) / max(self.seen.get(kind, 0), 1)


def kind_of(c: int) -> str:
    return "signflip" if c in SIGNFLIP else "gauss" if c in GAUSS else "honest"


def run(sigma_h: float, sigma_g: float, rounds: int, d: int, seed: int, threshold: float) -> dict[str, Tally]:
    rng = np.random.default_rng(seed)
    tallies = {
        "distance": Tally({}, {}, SuspectTracker(threshold=threshold)),
        "krum": Tally({}, {}, SuspectTracker(threshold=threshold**2)),
        "suspicion": Tally({}, {}, SuspectTracker()),
    }
    for r in range(rounds):
        clients = sorted(rng.choice(POPULATION, PER_ROUND, replace=False).tolist())
        mean = rng.standard_normal(d)
        x = (mean + sigma_h * rng.standard_normal((PER_ROUND, d))).astype(np.float32)
        sf = [i for i, c in enumerate(clients) if c in SIGNFLIP]
        ga = [i for i, c in enumerate(clients) if c in GAUSS]
        honest = [i for i, c in enumerate(clients) if c not in BYZANTINE]
        x[sf] = SignFlip()(x[honest], x[sf], seed=r)
        x[ga] = Gaussian(sigma_g)(x[honest], x[ga], seed=10_000 + r)
        kinds = [kind_of(c) for c in clients]
        f = len(sf) + len(ga)
        suspicion = suspicion_scores(x)
        scores = {
            "distance": (distance_scores(x, Median()(x)), 1.0),
            "krum": (krum_scores(x, min(f, (PER_ROUND - 3) // 2)), 1.0),
            "suspicion": (suspicion.scores, suspicion.weight),
        }
        for name, (s, weight) in scores.items():
            t = tallies[name]
            t.add(kinds, s > t.tracker.threshold)
            t.tracker = t.tracker.observe(clients, s, weight)
    return tallies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--d", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=2.0, help="distance-score threshold")
    args = ap.parse_args()
    print(
        f"{POPULATION} clients (10 sign-flip, 10 Gaussian), {PER_ROUND} per round, "
        f"{args.rounds} rounds, d = {args.d:,}, seed {args.seed}, thresholds {args.threshold} (distance), "
        f"{args.threshold**2} (Krum)"
    )
    print()
    print(
        "| sigma_h | sigma_g | score | per-round flag rate: sign-flip | Gaussian | honest (false pos.) "
        "| tracker flags: Byzantine / 20 | honest / 80 |"
    )
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for sigma_h, sigma_g in [(0.5, 1.0), (1.0, 1.0), (1.0, 3.0), (2.0, 3.0)]:
        for name, t in run(sigma_h, sigma_g, args.rounds, args.d, args.seed, args.threshold).items():
            flagged = t.tracker.flagged()
            byz = len(flagged & BYZANTINE)
            hon = len(flagged - BYZANTINE)
            rates = f"{t.rate('signflip'):.1%} | {t.rate('gauss'):.1%} | {t.rate('honest'):.2%}"
            print(f"| {sigma_h} | {sigma_g} | {name} | {rates} | {byz} | {hon} |", flush=True)


if __name__ == "__main__":
    main()
