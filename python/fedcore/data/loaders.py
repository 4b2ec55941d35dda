"""Loaders for data users bring: LEAF-style JSON (FEMNIST, Shakespeare-like) and .npz arrays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.npyio import NpzFile
from numpy.typing import NDArray

from fedcore.data.dataset import Dataset


def load_npz(
    path: str | Path,
    x_key: str = "x",
    y_key: str = "y",
    n_classes: int | None = None,
) -> Dataset:
    """One pooled dataset from `path`; n_classes defaults to max label + 1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such .npz file: {path}")
    try:
        stored = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError) as err:  # what np.load raises for non-numpy files
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    if not isinstance(stored, NpzFile):
        raise ValueError(f"{path}: holds one array, not an .npz archive with keys {x_key!r} and {y_key!r}")
    with stored:
        missing = [k for k in (x_key, y_key) if k not in stored.files]
        if missing:
            raise ValueError(f"{path}: missing key {missing[0]!r}; keys present: {sorted(stored.files)}")
        x, y = stored[x_key], stored[y_key]
    return _dataset(x, y, n_classes, path.stem, str(path))


def load_leaf_json(path: str | Path, n_classes: int | None = None) -> dict[str, Dataset]:
    """Per-user datasets from a LEAF JSON file, or from every *.json in a directory (users merged).

    n_classes defaults to the largest label over all users + 1, so every user agrees on it.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise FileNotFoundError(f"no *.json files in {path}")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"no such LEAF file or directory: {path}")
    raw: dict[str, tuple[NDArray[Any], NDArray[Any]]] = {}
    for file in files:
        for user, arrays in _read_leaf_file(file).items():
            if user in raw:
                old_x, old_y = raw[user]
                arrays = (np.concatenate([old_x, arrays[0]]), np.concatenate([old_y, arrays[1]]))
            raw[user] = arrays
    if n_classes is None:
        n_classes = int(max((int(y.max()) for _, y in raw.values() if y.size), default=0)) + 1
    return {user: _dataset(x, y, n_classes, user, f"{path} user {user!r}") for user, (x, y) in raw.items()}


def _read_leaf_file(file: Path) -> dict[str, tuple[NDArray[Any], NDArray[Any]]]:
    try:
        doc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err
    if not isinstance(doc, dict):
        raise ValueError(f"{file}: top level must be an object with 'users' and 'user_data'")
    for key in ("users", "user_data"):
        if key not in doc:
            raise ValueError(f"{file}: missing key {key!r}")
    users, user_data = doc["users"], doc["user_data"]
    counts = doc.get("num_samples")
    if counts is not None and len(counts) != len(users):
        raise ValueError(f"{file}: 'num_samples' has {len(counts)} entries for {len(users)} users")
    out: dict[str, tuple[NDArray[Any], NDArray[Any]]] = {}
    for i, user in enumerate(users):
        if user not in user_data:
            raise ValueError(f"{file}: user {user!r} listed in 'users' but missing from 'user_data'")
        record = user_data[user]
        for key in ("x", "y"):
            if key not in record:
                raise ValueError(f"{file}: user {user!r} is missing key {key!r}")
        try:
            x = np.asarray(record["x"], dtype=np.float32)
        except ValueError as err:
            raise ValueError(f"{file}: user {user!r} has ragged or non-numeric 'x' ({err})") from err
        y = np.asarray(record["y"])
        if counts is not None and counts[i] != len(y):
            raise ValueError(f"{file}: user {user!r} has {len(y)} samples, 'num_samples' says {counts[i]}")
        out[str(user)] = (x, y)
    return out


def _dataset(x: NDArray[Any], y: NDArray[Any], n_classes: int | None, name: str, where: str) -> Dataset:
    """Check shapes and label types with messages naming the source, then build a Dataset."""
    if x.ndim == 1 and x.size == 0:
        x = x.reshape(0, 1)
    if x.ndim < 2:
        raise ValueError(f"{where}: x must be [N, features...], got shape {x.shape}")
    if y.ndim != 1:
        raise ValueError(f"{where}: y must be 1-D labels, got shape {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    integral = np.issubdtype(y.dtype, np.integer) or (
        np.issubdtype(y.dtype, np.floating) and bool(np.all(np.mod(y, 1) == 0))
    )
    if y.size and not integral:
        raise ValueError(f"{where}: labels must be integers, got dtype {y.dtype}")
    labels = y.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"{where}: labels must be >= 0, got {labels.min()}")
    classes = n_classes if n_classes is not None else (int(labels.max()) + 1 if labels.size else 1)
    if labels.size and labels.max() >= classes:
        raise ValueError(f"{where}: label {labels.max()} >= n_classes {classes}")
    return Dataset(np.ascontiguousarray(x, dtype=np.float32), labels, classes, name)
