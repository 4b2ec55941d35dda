"""Map between one flat float32 vector and a model's named tensors."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ParamEntry:
    """One named tensor's place inside the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def stop(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class ParamLayout:
    """Names, shapes and offsets: the flat vector is the currency, this gives tensors back."""

    entries: tuple[ParamEntry, ...]

    @classmethod
    def from_shapes(cls, named_shapes: Sequence[tuple[str, Sequence[int]]]) -> ParamLayout:
        entries: list[ParamEntry] = []
        offset = 0
        for name, shape in named_shapes:
            entry = ParamEntry(name, tuple(int(d) for d in shape), offset)
            entries.append(entry)
            offset = entry.stop
        return cls(tuple(entries))

    @property
    def size(self) -> int:
        return self.entries[-1].stop if self.entries else 0

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.entries)

    def __iter__(self) -> Iterator[ParamEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, name: str) -> ParamEntry:
        for entry in self.entries:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def view(self, flat: NDArray[np.float32], name: str) -> NDArray[np.float32]:
        """A reshaped view (no copy) of one tensor inside `flat`."""
        entry = self[name]
        return flat[entry.offset : entry.stop].reshape(entry.shape)

    def unflatten(self, flat: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        self._check(flat)
        return {e.name: flat[e.offset : e.stop].reshape(e.shape) for e in self.entries}

    def flatten(self, tensors: Mapping[str, NDArray[np.floating]]) -> NDArray[np.float32]:
        flat = np.empty(self.size, dtype=np.float32)
        for e in self.entries:
            value = np.asarray(tensors[e.name], dtype=np.float32)
            if value.shape != e.shape:
                raise ValueError(f"tensor {e.name!r} has shape {value.shape}, layout says {e.shape}")
            flat[e.offset : e.stop] = value.reshape(-1)
        return flat

    def _check(self, flat: NDArray[np.float32]) -> None:
        if flat.ndim != 1 or flat.size != self.size:
            raise ValueError(f"flat vector has shape {flat.shape}, layout needs ({self.size},)")
