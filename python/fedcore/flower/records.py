"""Flower records <-> numpy: named arrays in an ArrayRecord, and what a reply weighs in bytes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import InflatableObject
from numpy.typing import NDArray


def to_numpy(record: ArrayRecord) -> dict[str, NDArray[np.generic]]:
    """An ArrayRecord as named numpy arrays, in its order."""
    return {name: array.numpy() for name, array in record.items()}


def to_record(arrays: Mapping[str, NDArray[np.generic]]) -> ArrayRecord:
    """Named numpy arrays as an ArrayRecord, in their order."""
    return ArrayRecord({name: Array(np.ascontiguousarray(value)) for name, value in arrays.items()})


def record_bytes(content: RecordDict) -> int:
    """The bytes Flower's own `message_size_mod` counts: every record's `count_bytes()`."""
    return sum(record.count_bytes() for record in content.values())


def wire_bytes(content: RecordDict) -> int:
    """The bytes a SuperNode pushes for this content: each object of its tree deflated once (headers, ids)."""
    seen: dict[str, int] = {}
    pending: list[InflatableObject] = [content]
    while pending:
        obj = pending.pop()
        if obj.object_id not in seen:
            seen[obj.object_id] = len(obj.deflate())
            pending.extend((obj.children or {}).values())
    return sum(seen.values())
