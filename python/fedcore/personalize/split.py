"""The body/head split FedPer and FedRep share: which named tensors stay on the client."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from fedcore.layout import ParamLayout


def head_names(layout: ParamLayout) -> tuple[str, ...]:
    """The last layer as the layout lists it: the last matrix-or-larger entry and the last 1-D entry.

    Torch and mlx list a layer's weight beside its bias, sklearn lists all coefs then all intercepts;
    taking the last of each kind finds the output layer in both orders.
    """
    weights = [e.name for e in layout if len(e.shape) >= 2]
    biases = [e.name for e in layout if len(e.shape) == 1]
    picked = {names[-1] for names in (weights, biases) if names}
    if not picked:
        raise ValueError("layout has no weight or bias tensors to make a head from")
    return tuple(name for name in layout.names if name in picked)


def head_mask(layout: ParamLayout, names: Sequence[str] | None = None) -> NDArray[np.bool_]:
    """True on the head's coordinates of the flat vector; `names` overrides the default last layer."""
    chosen = head_names(layout) if names is None else tuple(names)
    if not chosen:
        raise ValueError("the head needs at least one tensor")
    unknown = sorted(set(chosen) - set(layout.names))
    if unknown:
        raise ValueError(f"head tensor(s) not in the layout: {', '.join(unknown)}")
    mask = np.zeros(layout.size, dtype=np.bool_)
    for name in chosen:
        entry = layout[name]
        mask[entry.offset : entry.stop] = True
    return mask
