"""SecAgg+'s communication graph: a Harary graph of even degree k over a seeded random client order."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

__all__ = ["all_neighbours", "neighbours"]


def _order(clients: Sequence[int], seed: bytes) -> tuple[int, ...]:
    """Clients placed on the ring in a permutation every party derives from the public seed."""
    return _seeded_order(tuple(clients), seed)


@functools.lru_cache(maxsize=8)
def _seeded_order(clients: tuple[int, ...], seed: bytes) -> tuple[int, ...]:
    """`_order`, remembered: in a simulation every party of a round asks for the same public permutation."""
    rng = np.random.default_rng(np.frombuffer(seed, dtype=np.uint8).astype(np.uint64))
    return tuple(clients[i] for i in rng.permutation(len(clients)))


def _ring(order: tuple[int, ...], position: int, degree: int) -> frozenset[int]:
    n = len(order)
    if degree >= n - 1:
        return frozenset(c for c in order if c != order[position])
    half = degree // 2
    return frozenset(order[(position + d) % n] for d in range(-half, half + 1) if d != 0)


def neighbours(clients: Sequence[int], degree: int, seed: bytes, me: int) -> frozenset[int]:
    """`me`'s neighbours: the k/2 clients on each side of it on the seeded ring (everyone when k >= n - 1)."""
    if degree >= len(clients) - 1:  # the complete graph: no permutation needed
        return frozenset(c for c in clients if c != me)
    order = _order(clients, seed)
    return _ring(order, order.index(me), degree)


def all_neighbours(clients: Sequence[int], degree: int, seed: bytes) -> dict[int, frozenset[int]]:
    """Every client's neighbours (the server's view of the same graph)."""
    order = tuple(clients) if degree >= len(clients) - 1 else _order(clients, seed)
    return {c: _ring(order, i, degree) for i, c in enumerate(order)}
