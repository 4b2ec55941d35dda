"""Plot a finished run: accuracy and cumulative bytes per round, from DIR/rounds.jsonl to DIR/report.png."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # choose the file-only backend before pyplot loads
import matplotlib.pyplot as plt
import numpy as np

from fedcore.records import read_rounds


def write_report(run_dir: Path) -> Path:
    """Two panels side by side; returns the PNG's path."""
    rounds_path = run_dir / "rounds.jsonl"
    if not rounds_path.is_file():
        raise FileNotFoundError(f"{rounds_path} not found; run `fedcore sim --out {run_dir}` first")
    records = read_rounds(rounds_path)
    if not records:
        raise ValueError(f"{rounds_path} holds no rounds")
    x = [r.round for r in records]
    fig, (acc_ax, bytes_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    acc_ax.plot(x, [r.accuracy for r in records], label="central test")
    client_acc = [r.client_accuracy for r in records]
    if all(a is not None for a in client_acc):
        acc_ax.plot(x, client_acc, label="mean client test")
    acc_ax.set(xlabel="round", ylabel="accuracy", title="Global model accuracy")
    acc_ax.legend()
    acc_ax.grid(alpha=0.3)
    bytes_ax.plot(x, np.cumsum([r.uplink_bytes for r in records]) / 1e6, label="uplink")
    bytes_ax.plot(x, np.cumsum([r.downlink_bytes for r in records]) / 1e6, label="downlink")
    bytes_ax.set(xlabel="round", ylabel="MB (cumulative)", title="Bytes on the wire")
    bytes_ax.legend()
    bytes_ax.grid(alpha=0.3)
    path = run_dir / "report.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
