"""Partial sharing with a mask you choose: clients upload only the hidden layers, never the output layer.

    python examples/fixed_mask.py [--rounds 20] [--out runs/example-fixed-mask]

The mask is a .npy file of one bool per model weight (in the model's flat layout); `--partial fixed:FILE`
hands it to any `fedcore sim` run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fedcore.backends.models import make_adapter
from fedcore.cli import main as fedcore
from fedcore.config import FLConfig
from fedcore.data import build_federated


def body_mask(config: FLConfig) -> np.ndarray:
    """True for every weight except the last layer's (its weight matrix and bias)."""
    data = build_federated(config.dataset, config.clients, config.partition, config.seed)
    layout = make_adapter(config.backend, config.model, data.in_features, data.n_classes, config.seed).layout
    *body, head_w, head_b = layout.entries
    print(f"model: {', '.join(f'{e.name} {e.shape}' for e in layout.entries)}")
    shared = sum(e.size for e in body)
    print(f"sharing {shared} of {layout.size} weights; {head_w.name} and {head_b.name} stay on the clients")
    flags = np.ones(layout.size, dtype=bool)
    flags[head_w.offset : head_b.stop] = False
    return flags


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/example-fixed-mask"))
    args = parser.parse_args()
    config = FLConfig(clients=20, per_round=5, local_epochs=2)
    args.out.mkdir(parents=True, exist_ok=True)
    mask_file = args.out.parent / f"{args.out.name}-mask.npy"
    np.save(mask_file, body_mask(config))
    return fedcore(
        [
            *("sim", "--clients", "20", "--per-round", "5", "--local-epochs", "2", "--workers", "2"),
            *("--rounds", str(args.rounds), "--partial", f"fixed:{mask_file}"),
            *("--out", str(args.out), "--overwrite"),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(run())
