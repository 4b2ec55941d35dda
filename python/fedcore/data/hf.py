"""A Hugging Face `datasets` dataset as a federation: one client per value of a column (extra `hf`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fedcore.data.dataset import Dataset

INSTALL = 'pip install "fedcore[hf]"'


class MissingExtraError(ImportError):
    """The optional package a data source needs is not installed; the message has the pip command."""


def require_datasets() -> Any:
    """The `datasets` module, or an error that says how to install it."""
    if importlib.util.find_spec("datasets") is None:
        raise MissingExtraError(f"Hugging Face datasets need the datasets package: {INSTALL}")
    import datasets  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return datasets


def load_hf(source: Any) -> Any:
    """A `datasets.Dataset` as given, or read from a folder `Dataset.save_to_disk` wrote."""
    if isinstance(source, str | Path):
        datasets = require_datasets()
        if not Path(source).is_dir():
            raise FileNotFoundError(f"no saved Hugging Face dataset folder: {source}")
        return datasets.load_from_disk(str(source))
    if not hasattr(source, "with_format") or not hasattr(source, "column_names"):
        raise ValueError(f"expected a datasets.Dataset or a save_to_disk folder, got {type(source).__name__}")
    return source


def columns(source: Any, by: str | None, features: Sequence[str], label: str) -> dict[str, NDArray[Any]]:
    """The named columns as numpy arrays, each checked to exist (the error lists the ones there are)."""
    wanted = list(dict.fromkeys(c for c in (by, *features, label) if c is not None))
    missing = [c for c in wanted if c not in source.column_names]
    if missing:
        raise ValueError(
            f"the dataset has no column {missing[0]!r}; columns: {', '.join(source.column_names)}"
        )
    table: dict[str, Any] = source.select_columns(wanted).with_format("numpy")[:]
    return {name: np.asarray(table[name]) for name in wanted}


def to_dataset(table: dict[str, NDArray[Any]], features: Sequence[str], label: str, name: str) -> Dataset:
    """Feature columns flattened side by side into float32 rows; integer labels (e.g. a ClassLabel)."""
    parts = []
    for column in features:
        values = table[column]
        if values.dtype == object or not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"feature column {column!r} is not numeric (dtype {values.dtype})")
        parts.append(values.reshape(len(values), -1).astype(np.float32))
    y = table[label]
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"label column {label!r} holds {y.dtype}, not integers; "
            f"dataset.class_encode_column({label!r}) turns names into class ids"
        )
    return Dataset(np.concatenate(parts, axis=1), y.astype(np.int64), int(y.max(initial=0)) + 1, name)


def split_by(source: Any, by: str, features: Sequence[str], label: str) -> tuple[list[Any], list[Dataset]]:
    """One Dataset per distinct value of column `by`, in sorted order of the values."""
    table = columns(source, by, features, label)
    keys = table[by]
    values = np.unique(keys)
    whole = to_dataset(table, features, label, "hf")
    parts = [whole.subset(np.flatnonzero(keys == value), str(value)) for value in values]
    return list(values), parts
