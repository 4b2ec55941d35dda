"""How much of a client's update could any shift take off the codec's plate? (issue 18's control)

Runs one MNIST-1D simulation (FedYogi, `randk:0.25+eden:1` unless --codec says otherwise) in this process
and watches every client upload. For each upload x of client i it records:

- `error`: the error the server gets, ||x_hat - x||^2 / ||x||^2 (the codec's vNMSE on x, or after the
  shift with --shift);
- `shift`: ||x - h_i||^2 / ||x||^2, the energy the codec still has to carry with the client's DIANA shift;
- `last`: 1 - cos^2(x, x_prev), the least energy left by the best multiple of the client's previous
  upload, i.e. by any shift that predicts this update from the last one;
- `mean`: ||mean of the round's updates||^2 / mean ||x||^2, the share of the shared signal.

Usage (about a minute): `python docs/experiments/shift_control.py dirichlet:0.5 --shift diana:0.1`
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any

import numpy as np

from fedcore.config import FLConfig
from fedcore.sim import simulate
from fedcore.uplink import UplinkChain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("partition", help="dirichlet:0.5 or dirichlet:0.1")
    parser.add_argument("--codec", default="randk:0.25+eden:1")
    parser.add_argument("--shift", default=None, help="diana:ALPHA or ef21 (default: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    config = FLConfig(
        dataset="mnist1d",
        rounds=args.rounds,
        partition=args.partition,
        codec=args.codec,
        strategy="fedyogi",
        shift=args.shift,
        seed=args.seed,
        workers=0,
        out="/dev/null",
    )
    seen: dict[str, list[float]] = defaultdict(list)
    last: dict[int, np.ndarray] = {}
    by_round: dict[int, list[np.ndarray]] = defaultdict(list)
    encode = UplinkChain.encode

    def spy(chain: UplinkChain, x: Any, ctx: Any, states: Any) -> Any:
        h = states.get("shift")
        encoded = encode(chain, x, ctx, states)
        energy = float(x @ x)
        if energy > 0.0:
            seen["error"].append(float(np.sum((encoded.reconstruct() - x) ** 2)) / energy)
            if h is not None:
                seen["shift"].append(float(np.sum((x - h) ** 2)) / energy)
            prev = last.get(ctx.client_id)
            if prev is not None and float(prev @ prev) > 0.0:
                seen["last"].append(1.0 - float(x @ prev) ** 2 / (energy * float(prev @ prev)))
        last[ctx.client_id] = np.array(x, dtype=np.float64)
        by_round[ctx.round].append(np.array(x, dtype=np.float64))
        return encoded

    UplinkChain.encode = spy  # type: ignore[method-assign]
    result = simulate(config)
    for updates in by_round.values():
        stacked = np.stack(updates)
        mean = stacked.mean(axis=0)
        seen["mean"].append(float(mean @ mean) / float(np.mean(np.sum(stacked**2, axis=1))))
    report = {key: {"mean": float(np.mean(v)), "n": len(v)} for key, v in seen.items()}
    print(
        json.dumps(
            {
                "partition": args.partition,
                "codec": args.codec,
                "shift": args.shift,
                "seed": args.seed,
                "final_accuracy": result.records[-1].accuracy,
                **report,
            }
        )
    )


if __name__ == "__main__":
    main()
