"""Accuracy against cumulative uplink bytes: one panel per dataset and partition, one line per setting."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # choose the file-only backend before pyplot loads
import matplotlib.pyplot as plt
import numpy as np

from fedcore.sweep.table import Cell


def _panels(cells: Sequence[Cell]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((c.dataset, c.partition) for c in cells))


LINE_STYLES = ("-", "--", ":", "-.")


def line_styles(settings: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """(color, line style) per setting: a setting named "CODEC, VARIANT" takes its codec's color and
    its variant's line style, so one codec under several server optimizers reads as one family."""
    parts = {s: s.partition(", ")[::2] for s in settings}  # (codec, variant); variant "" if none
    codecs = list(dict.fromkeys(codec for codec, _ in parts.values()))
    variants = list(dict.fromkeys(variant for _, variant in parts.values()))
    colors = plt.get_cmap("tab20")(np.arange(len(codecs)) % 20)
    return {
        s: (colors[codecs.index(codec)], LINE_STYLES[variants.index(variant) % len(LINE_STYLES)])
        for s, (codec, variant) in parts.items()
    }


def plot_accuracy_vs_bytes(cells: Sequence[Cell], path: Path) -> Path:
    """Curves are averaged over seeds round by round (bytes and accuracy alike); the x axis is log scale."""
    panels = _panels(cells)
    datasets = list(dict.fromkeys(d for d, _ in panels))
    partitions = list(dict.fromkeys(p for _, p in panels))
    fig, axes = plt.subplots(
        len(datasets),
        len(partitions),
        figsize=(6.5 * len(partitions), 4.5 * len(datasets)),
        squeeze=False,
        constrained_layout=True,
    )
    styles = line_styles(list(dict.fromkeys(c.setting for c in cells)))
    for cell in cells:
        ax = axes[datasets.index(cell.dataset)][partitions.index(cell.partition)]
        rounds = min(len(c.accuracy) for c in cell.curves)
        uplink = np.mean([c.cumulative_uplink[:rounds] for c in cell.curves], axis=0)
        accuracy = np.mean([c.accuracy[:rounds] for c in cell.curves], axis=0)
        color, style = styles[cell.setting]
        ax.plot(uplink / 1e6, accuracy, color=color, linestyle=style, label=cell.setting, linewidth=1.4)
    for row, dataset in enumerate(datasets):
        for col, partition in enumerate(partitions):
            ax = axes[row][col]
            ax.set_xscale("log")
            ax.set(
                xlabel="cumulative uplink (MB, log scale)",
                ylabel="test accuracy",
                title=f"{dataset}, {partition}",
            )
            ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
