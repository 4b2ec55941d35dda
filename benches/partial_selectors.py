"""Per-round shared fraction and cumulative coverage of every partial-sharing selector in a real run.

    PYTHONPATH=python python benches/partial_selectors.py [--rounds 20] [--fraction 0.1]

Coverage after round r is the share of the model's coordinates that were in at least one of the masks
of rounds 1..r: a coordinate never covered never moves from its initial value.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

import fedcore.server.driver as driver
from fedcore.config import FLConfig
from fedcore.layout import ParamLayout
from fedcore.partial import Mask, MaskSelector, parse_partial
from fedcore.sim import simulate


@dataclass
class Recording(MaskSelector):
    """Passes every call to the real selector and keeps the masks it returned."""

    inner: MaskSelector
    masks: list[NDArray[np.bool_]] = field(default_factory=list)

    def select(
        self,
        round: int,
        weights: NDArray[np.float32],
        layout: ParamLayout,
        gradient: NDArray[np.float32] | None = None,
    ) -> Mask:
        mask = self.inner.select(round, weights, layout, gradient)
        self.masks.append(mask.to_bool())
        return mask


def measure(spec: str, rounds: int) -> tuple[list[float], list[float], float]:
    """(fraction per round, cumulative coverage per round, final accuracy) of one 20-client digits run."""
    config = FLConfig(
        clients=20, per_round=5, rounds=rounds, local_epochs=5, partial=spec, workers=0, seed=0
    )
    recording = Recording(parse_partial(spec, config.seed))
    real = driver._mask_selector
    driver._mask_selector = lambda c: recording  # type: ignore[assignment]
    try:
        result = simulate(config)
    finally:
        driver._mask_selector = real  # type: ignore[assignment]
    covered = np.zeros_like(recording.masks[0])
    coverage = []
    for flags in recording.masks:
        covered |= flags
        coverage.append(float(covered.mean()))
    return [float(m.mean()) for m in recording.masks], coverage, result.records[-1].accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fractions", default="0.1,0.5")
    args = parser.parse_args()
    print("| spec | fraction per round: min / mean / max | coverage after 5 / 10 / 20 rounds | accuracy |")
    print("| --- | --- | --- | --- |")
    for fraction in args.fractions.split(","):
        for name in ("random", "topk", "gradient", "structured"):
            spec = f"{name}:{fraction}"
            fractions, coverage, accuracy = measure(spec, args.rounds)
            at = [coverage[min(r, len(coverage)) - 1] for r in (5, 10, 20)]
            print(
                f"| {spec} | {min(fractions):.3f} / {np.mean(fractions):.3f} / {max(fractions):.3f} "
                f"| {at[0]:.3f} / {at[1]:.3f} / {at[2]:.3f} | {accuracy:.4f} |"
            )


if __name__ == "__main__":
    main()
