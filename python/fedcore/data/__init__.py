"""Datasets, loaders, partitioners and per-client splits; needs neither torch nor mlx."""

from fedcore.data.builtin import cache_dir, load_digits_dataset, load_mnist1d, synthetic
from fedcore.data.dataset import Dataset, concat
from fedcore.data.federated import ClientData, FederatedData, build_federated
from fedcore.data.loaders import load_leaf_json, load_npz
from fedcore.data.partition import dirichlet, iid, partition, shards

__all__ = [
    "ClientData",
    "Dataset",
    "FederatedData",
    "build_federated",
    "cache_dir",
    "concat",
    "dirichlet",
    "iid",
    "load_digits_dataset",
    "load_leaf_json",
    "load_mnist1d",
    "load_npz",
    "partition",
    "shards",
    "synthetic",
]
