"""A dataset cut into per-client train/test splits plus a central test set the server evaluates on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcore.data.builtin import load_digits_dataset, load_mnist1d, synthetic
from fedcore.data.dataset import Dataset, concat
from fedcore.data.loaders import load_leaf_json, load_npz
from fedcore.data.partition import partition
from fedcore.data.spec import DatasetSpec, PartitionSpec


@dataclass(frozen=True)
class ClientData:
    """One client's local train and test split."""

    client_id: int
    train: Dataset
    test: Dataset


@dataclass(frozen=True)
class FederatedData:
    """Clients by id (0..num_clients-1) and a central test set no client ever trains on."""

    name: str
    clients: tuple[ClientData, ...]
    central_test: Dataset

    def __post_init__(self) -> None:
        if not self.clients:
            raise ValueError("federated data needs at least one client")
        if any(c.client_id != i for i, c in enumerate(self.clients)):
            raise ValueError("client ids must be 0..num_clients-1 in order")

    @property
    def num_clients(self) -> int:
        return len(self.clients)

    @property
    def n_classes(self) -> int:
        return self.central_test.n_classes

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return self.central_test.feature_shape

    @property
    def in_features(self) -> int:
        return self.central_test.in_features

    def client(self, client_id: int) -> ClientData:
        if not 0 <= client_id < len(self.clients):
            raise IndexError(f"client id {client_id} out of range 0..{len(self.clients) - 1}")
        return self.clients[client_id]

    @classmethod
    def from_arrays(
        cls,
        clients: Mapping[int, tuple[ArrayLike, ArrayLike]],
        test: tuple[ArrayLike, ArrayLike],
        client_test_fraction: float = 0.2,
        seed: int = 0,
        name: str = "arrays",
    ) -> FederatedData:
        """Your own data: {client_id: (X, y)} for ids 0..N-1 and the server's test set (X, y).

        Each client keeps `client_test_fraction` of its rows (seeded) as its own test split; labels are
        integers in [0, n_classes), n_classes the largest label + 1 over everything.
        """
        if sorted(clients) != list(range(len(clients))):
            raise ValueError(f"client ids must be 0..{len(clients) - 1}, got {sorted(clients)[:5]}...")
        if not 0 <= client_test_fraction < 1:
            raise ValueError(f"client_test_fraction must be in [0, 1), got {client_test_fraction}")
        pairs = {cid: _as_arrays(x, y, f"client {cid}") for cid, (x, y) in clients.items()}
        central_x, central_y = _as_arrays(*test, "test")
        n_classes = int(max([central_y.max(initial=0)] + [y.max(initial=0) for _, y in pairs.values()])) + 1
        shapes = {x.shape[1:] for x, _ in pairs.values()} | {central_x.shape[1:]}
        if len(shapes) != 1:
            raise ValueError(f"every X must have the same row shape, got {sorted(shapes)}")
        rng = np.random.default_rng([seed, 2])
        parts = tuple(
            _client(cid, Dataset(x, y, n_classes, name), client_test_fraction, rng)
            for cid, (x, y) in sorted(pairs.items())
        )
        return cls(name, parts, Dataset(central_x, central_y, n_classes, "central-test"))

    def train_sizes(self) -> NDArray[np.int64]:
        """Samples each client trains on: FedAvg's weights."""
        return np.array([len(c.train) for c in self.clients], dtype=np.int64)


def build_federated(
    dataset_spec: DatasetSpec | str,
    num_clients: int,
    partition_spec: PartitionSpec | str = "iid",
    seed: int = 0,
    test_fraction: float = 0.2,
    client_test_fraction: float = 0.2,
) -> FederatedData:
    """From specs (or their text, as the CLI's --dataset/--partition write them) to clients.

    Pooled datasets (digits, mnist1d, npz) lose `test_fraction` to the central test set first,
    then are partitioned. Naturally partitioned ones (synthetic, leaf) give `test_fraction` of
    every client's data to the central test set and ignore `partition_spec`.
    """
    for label, fraction in (("test_fraction", test_fraction), ("client_test_fraction", client_test_fraction)):
        if not 0 <= fraction < 1:
            raise ValueError(f"{label} must be in [0, 1), got {fraction}")
    spec = DatasetSpec.parse(dataset_spec) if isinstance(dataset_spec, str) else dataset_spec
    if spec.kind == "synthetic":
        per_client = synthetic(spec.alpha, spec.beta, num_clients, seed)
        name = f"synthetic({spec.alpha:g},{spec.beta:g})"
        return _from_clients(name, per_client, seed, test_fraction, client_test_fraction)
    if spec.kind == "leaf":
        users = load_leaf_json(spec.path)
        if len(users) < num_clients:
            raise ValueError(
                f"{spec.path} holds {len(users)} users, fewer than {num_clients} clients asked for"
            )
        chosen = np.sort(np.random.default_rng([seed, 3]).choice(len(users), num_clients, replace=False))
        datasets = list(users.values())
        return _from_clients("leaf", [datasets[i] for i in chosen], seed, test_fraction, client_test_fraction)
    pooled = _pooled(spec)
    rng = np.random.default_rng([seed, 1])
    order = rng.permutation(len(pooled))
    n_central = round(len(pooled) * test_fraction)
    central, rest = pooled.subset(order[:n_central], "central-test"), pooled.subset(order[n_central:])
    parts = partition(rest, num_clients, partition_spec, seed)
    split_rng = np.random.default_rng([seed, 2])
    clients = tuple(
        _client(i, rest.subset(idx), client_test_fraction, split_rng) for i, idx in enumerate(parts)
    )
    return FederatedData(pooled.name, clients, central)


def _pooled(spec: DatasetSpec) -> Dataset:
    if spec.kind == "digits":
        return load_digits_dataset()
    if spec.kind == "mnist1d":
        return load_mnist1d() if spec.samples is None else load_mnist1d(num_samples=spec.samples)
    return load_npz(spec.path)


def _from_clients(
    name: str, per_client: Sequence[Dataset], seed: int, test_fraction: float, client_test_fraction: float
) -> FederatedData:
    rng = np.random.default_rng([seed, 1])
    split_rng = np.random.default_rng([seed, 2])
    central_parts, clients = [], []
    for i, data in enumerate(per_client):
        kept, central = _split(data, test_fraction, rng)
        central_parts.append(central)
        clients.append(_client(i, kept, client_test_fraction, split_rng))
    return FederatedData(name, tuple(clients), concat(central_parts, "central-test"))


def _as_arrays(x: ArrayLike, y: ArrayLike, what: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """float32 rows and int64 labels, or an error that says whose arrays are wrong."""
    features = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y)
    if features.ndim < 2 or labels.ndim != 1 or len(features) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"{what}: need X [N, ...] and y [N] with N >= 1, got shapes {features.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(f"{what}: labels must be integers >= 0")
    return features, labels.astype(np.int64)


def _client(client_id: int, data: Dataset, test_fraction: float, rng: np.random.Generator) -> ClientData:
    train, test = _split(data, test_fraction, rng)
    return ClientData(client_id, train, test)


def _split(data: Dataset, fraction: float, rng: np.random.Generator) -> tuple[Dataset, Dataset]:
    """Random (kept, taken) split; `taken` gets round(n * fraction) but `kept` keeps at least one."""
    if len(data) == 0:
        raise ValueError(f"dataset {data.name!r} is empty")
    order = rng.permutation(len(data))
    n_taken = min(round(len(data) * fraction), len(data) - 1)
    return data.subset(np.sort(order[n_taken:])), data.subset(np.sort(order[:n_taken]))
