"""Split one pooled dataset's indices among clients: IID, Dirichlet label skew, or label shards."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcore.data.dataset import Dataset
from fedcore.data.spec import PartitionSpec

Indices = NDArray[np.int64]

DIRICHLET_ATTEMPTS = 100


def iid(labels: NDArray[np.int64], num_clients: int, rng: np.random.Generator) -> list[Indices]:
    """A random permutation cut into near-equal parts."""
    _check_clients(len(labels), num_clients, 1)
    return [part.astype(np.int64) for part in np.array_split(rng.permutation(len(labels)), num_clients)]


def dirichlet(
    labels: NDArray[np.int64],
    num_clients: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
) -> list[Indices]:
    """Label skew (Hsu et al. 2019): each class is split among clients by proportions ~ Dir(alpha).

    Smaller alpha gives each client fewer classes. Clients already above the mean size get no
    more of later classes (as in NIID-Bench), draws repeat until every client has `min_size`
    samples, and if that keeps failing the largest clients hand samples to the smallest.
    """
    if not alpha > 0:
        raise ValueError(f"dirichlet alpha must be > 0, got {alpha}")
    n = len(labels)
    _check_clients(n, num_clients, min_size)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(DIRICHLET_ATTEMPTS):
        draw = _dirichlet_draw(by_class, num_clients, alpha, n, rng)
        if draw.sizes.min() >= min_size:
            parts = draw.parts()
            break
    else:
        parts = _top_up(draw.parts(), min_size, rng)
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def shards(
    labels: NDArray[np.int64], num_clients: int, shards_per_client: int, rng: np.random.Generator
) -> list[Indices]:
    """Pathological non-IID (McMahan et al. 2017): sort by label, cut into shards, deal them out."""
    if shards_per_client < 1:
        raise ValueError(f"shards_per_client must be >= 1, got {shards_per_client}")
    num_shards = num_clients * shards_per_client
    _check_clients(len(labels), num_shards, 1)
    shuffled = rng.permutation(len(labels))
    by_label = shuffled[np.argsort(labels[shuffled], kind="stable")]
    pieces = np.array_split(by_label, num_shards)
    dealt = rng.permutation(num_shards).reshape(num_clients, shards_per_client)
    return [np.sort(np.concatenate([pieces[s] for s in row])).astype(np.int64) for row in dealt]


def partition(dataset: Dataset, num_clients: int, spec: PartitionSpec | str, seed: int) -> list[Indices]:
    """Indices of `dataset` for each client, from a spec or its text: "iid", "dirichlet:0.5", "shards:2".

    Dirichlet asks for min(10, N // num_clients) samples per client.
    """
    rng = np.random.default_rng(seed)
    parsed = PartitionSpec.parse(spec) if isinstance(spec, str) else spec
    if parsed.alpha is not None:
        min_size = min(10, len(dataset) // max(num_clients, 1))
        return dirichlet(dataset.y, num_clients, parsed.alpha, rng, max(min_size, 1))
    if parsed.shards is not None:
        return shards(dataset.y, num_clients, parsed.shards, rng)
    return iid(dataset.y, num_clients, rng)


def _check_clients(n: int, num_clients: int, min_size: int) -> None:
    if num_clients < 1:
        raise ValueError(f"num_clients must be >= 1, got {num_clients}")
    if n < num_clients * min_size:
        raise ValueError(f"{n} samples cannot give {num_clients} parts at least {min_size} each")


def _dirichlet_draw(
    by_class: list[Indices], num_clients: int, alpha: float, n: int, rng: np.random.Generator
) -> _Draw:
    """One draw; only its sizes decide whether to draw again, so the parts are cut once, from the last."""
    sizes = np.zeros(num_clients, dtype=np.int64)
    pieces: list[tuple[Indices, NDArray[np.int64]]] = []
    for members in by_class:
        members = rng.permutation(members)
        shares = rng.dirichlet(np.full(num_clients, alpha))
        shares *= sizes < n / num_clients
        total = shares.sum()
        shares = shares / total if total > 0 else np.full(num_clients, 1.0 / num_clients)
        cuts = (np.cumsum(shares) * len(members)).astype(np.int64)[:-1]
        bounds = np.concatenate(([0], cuts, [len(members)]))
        sizes += np.diff(bounds)
        pieces.append((members, bounds))
    return _Draw(sizes, pieces)


@dataclass(frozen=True)
class _Draw:
    """A Dirichlet draw as each class's shuffled members and the cuts that deal them to the clients."""

    sizes: NDArray[np.int64]
    pieces: list[tuple[Indices, NDArray[np.int64]]]

    def parts(self) -> list[list[int]]:
        parts: list[list[int]] = [[] for _ in range(len(self.sizes))]
        for members, bounds in self.pieces:
            for part, start, stop in zip(parts, bounds[:-1], bounds[1:], strict=True):
                part.extend(members[start:stop].tolist())
        return parts


def _top_up(parts: list[list[int]], min_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Move random samples from the largest client to each one short of `min_size`."""
    parts = [list(p) for p in parts]
    for small in range(len(parts)):
        while len(parts[small]) < min_size:
            large = max(range(len(parts)), key=lambda i: len(parts[i]))
            taken = parts[large].pop(int(rng.integers(len(parts[large]))))
            parts[small].append(taken)
    return parts
