"""PowerSGD (Vogels et al. 2019): each weight matrix of an update travels as two thin factors P·Qᵀ."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcore.layout import ParamLayout

Vector = NDArray[np.float32]
Matrix = NDArray[np.float32]

WIRE_MAGIC = b"PSGD"
WIRE_VERSION = 1
DEFAULT_MAX_ELEMENTS = 2**31
_HEADER = struct.Struct("<4sBxxxQII")  # magic, version, n, low-rank parts, raw parts
_LOW_RANK = struct.Struct("<QQQI")  # offset, rows, cols, rank; then P (rows x rank), Q (cols x rank)
_RAW = struct.Struct("<QQ")  # offset, length; then the values
_CRC = struct.Struct("<I")  # zlib crc32 of everything before it
_F32 = np.dtype("<f4")


@dataclass(frozen=True)
class LowRankPart:
    """One matrix of the update, approximated by p @ q.T."""

    offset: int
    p: Matrix
    q: Matrix

    def __post_init__(self) -> None:
        if self.p.dtype != np.float32 or self.q.dtype != np.float32 or self.p.ndim != 2 or self.q.ndim != 2:
            raise ValueError("low-rank factors must be 2-D float32 arrays")
        if self.p.shape[1] != self.q.shape[1]:
            raise ValueError(f"factor ranks differ: P is {self.p.shape}, Q is {self.q.shape}")

    @property
    def stop(self) -> int:
        return self.offset + int(self.p.shape[0]) * int(self.q.shape[0])


@dataclass(frozen=True)
class RawPart:
    """Coordinates sent as they are (biases, and matrices too small to gain from factoring)."""

    offset: int
    values: Vector

    def __post_init__(self) -> None:
        if self.values.dtype != np.float32 or self.values.ndim != 1:
            raise ValueError("raw values must be a 1-D float32 array")

    @property
    def stop(self) -> int:
        return self.offset + self.values.size


@dataclass(frozen=True)
class PowerSGDPayload:
    """What one client uploads; self-describing, so the server decompresses it without any state."""

    size: int
    low_rank: tuple[LowRankPart, ...]
    raw: tuple[RawPart, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")
        spans = sorted([(p.offset, p.stop) for p in self.low_rank] + [(r.offset, r.stop) for r in self.raw])
        previous_stop = 0
        for start, stop in spans:
            if start < previous_stop or stop > self.size:
                raise ValueError(f"part [{start}, {stop}) overlaps another or leaves [0, {self.size})")
            previous_stop = stop

    @property
    def nbytes(self) -> int:
        """float32 bytes of the factors and raw values: what the compression really costs."""
        floats = sum(p.p.size + p.q.size for p in self.low_rank) + sum(r.values.size for r in self.raw)
        return 4 * floats

    @property
    def wire_nbytes(self) -> int:
        """len(self.to_bytes()): nbytes plus headers and checksum."""
        headers = _LOW_RANK.size * len(self.low_rank) + _RAW.size * len(self.raw)
        return _HEADER.size + headers + self.nbytes + _CRC.size

    def to_bytes(self) -> bytes:
        """Little-endian wire format v1: header, parts, crc32."""
        chunks = [_HEADER.pack(WIRE_MAGIC, WIRE_VERSION, self.size, len(self.low_rank), len(self.raw))]
        for part in self.low_rank:
            chunks.append(_LOW_RANK.pack(part.offset, part.p.shape[0], part.q.shape[0], part.p.shape[1]))
            chunks.append(part.p.astype(_F32).tobytes())
            chunks.append(part.q.astype(_F32).tobytes())
        for raw in self.raw:
            chunks.append(_RAW.pack(raw.offset, raw.values.size))
            chunks.append(raw.values.astype(_F32).tobytes())
        body = b"".join(chunks)
        return body + _CRC.pack(zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> PowerSGDPayload:
        """Parses and checks a payload; every length is checked against the bytes present first."""
        reader = _Reader(bytes(data))
        magic, version, size, num_low_rank, num_raw = reader.unpack(_HEADER)
        if magic != WIRE_MAGIC:
            raise ValueError(f"not a PowerSGD payload (magic {magic!r})")
        if version != WIRE_VERSION:
            raise ValueError(f"PowerSGD payload version {version}, this reader knows {WIRE_VERSION}")
        if len(data) < _HEADER.size + _CRC.size:
            raise ValueError("PowerSGD payload truncated")
        (crc,) = _CRC.unpack_from(data, len(data) - _CRC.size)
        if zlib.crc32(data[: len(data) - _CRC.size]) != crc:
            raise ValueError("PowerSGD payload checksum mismatch")
        if size > max_elements:
            raise ValueError(f"payload claims {size} elements, more than max_elements={max_elements}")
        reader.end = len(data) - _CRC.size
        low_rank = []
        for _ in range(num_low_rank):
            offset, rows, cols, rank = reader.unpack(_LOW_RANK)
            p = reader.floats(rows * rank).reshape(rows, rank)
            q = reader.floats(cols * rank).reshape(cols, rank)
            low_rank.append(LowRankPart(offset, p, q))
        raw = []
        for _ in range(num_raw):
            offset, length = reader.unpack(_RAW)
            raw.append(RawPart(offset, reader.floats(length)))
        if reader.pos != reader.end:
            raise ValueError(f"PowerSGD payload has {reader.end - reader.pos} unexpected trailing bytes")
        return cls(size, tuple(low_rank), tuple(raw))


class _Reader:
    """Sequential reads that fail with ValueError instead of reading past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def _take(self, nbytes: int) -> int:
        if nbytes > self.end - self.pos:
            raise ValueError(f"PowerSGD payload truncated: {nbytes} bytes needed at {self.pos} of {self.end}")
        start = self.pos
        self.pos += nbytes
        return start

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        return layout.unpack_from(self.data, self._take(layout.size))

    def floats(self, count: int) -> Vector:
        start = self._take(4 * count)
        return np.frombuffer(self.data, dtype=_F32, count=count, offset=start).astype(np.float32)


def decompress(payload: PowerSGDPayload) -> Vector:
    """The flat update a payload stands for: P·Qᵀ per matrix, raw parts as sent, zeros elsewhere."""
    flat = np.zeros(payload.size, dtype=np.float32)
    for part in payload.low_rank:
        flat[part.offset : part.stop] = (part.p @ part.q.T).reshape(-1)
    for raw in payload.raw:
        flat[raw.offset : raw.stop] = raw.values
    return flat


@dataclass(frozen=True)
class _MatrixPlan:
    offset: int
    rows: int
    cols: int
    rank: int

    @property
    def stop(self) -> int:
        return self.offset + self.rows * self.cols


class PowerSGD:
    """One client's PowerSGD compressor: warm-started Q per matrix and an error-feedback residual.

    `warm_start=False` and `error_feedback=False` exist for ablations (the paper's Table 2).
    """

    def __init__(
        self,
        rank: int,
        layout: ParamLayout,
        seed: int,
        min_compression_rate: float = 2.0,
        *,
        warm_start: bool = True,
        error_feedback: bool = True,
    ) -> None:
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        if not min_compression_rate >= 1.0:
            raise ValueError(f"min_compression_rate must be >= 1, got {min_compression_rate}")
        self.rank = rank
        self.layout = layout
        self.seed = seed
        self.warm_start = warm_start
        self.error_feedback = error_feedback
        plan = self._plan(rank, layout, min_compression_rate)
        self._matrices, self._raw_spans, self.compressed_names = plan
        self._q = [self._gaussian_q(i, 0) for i in range(len(self._matrices))]
        self._residual = np.zeros(layout.size, dtype=np.float32)
        self._calls = 0

    @staticmethod
    def _plan(
        rank: int, layout: ParamLayout, min_rate: float
    ) -> tuple[list[_MatrixPlan], list[tuple[int, int]], tuple[str, ...]]:
        """Which tensors are factored; the rest become contiguous raw spans."""
        matrices: list[_MatrixPlan] = []
        raw: list[tuple[int, int]] = []
        names: list[str] = []
        for entry in layout:
            if entry.size == 0:
                continue
            if len(entry.shape) >= 2:
                rows, cols = entry.shape[0], entry.size // entry.shape[0]
                r = min(rank, rows, cols)
                if rows * cols >= min_rate * r * (rows + cols):
                    matrices.append(_MatrixPlan(entry.offset, rows, cols, r))
                    names.append(entry.name)
                    continue
            if raw and raw[-1][1] == entry.offset:
                raw[-1] = (raw[-1][0], entry.stop)
            else:
                raw.append((entry.offset, entry.stop))
        return matrices, raw, tuple(names)

    def _gaussian_q(self, index: int, call: int) -> Matrix:
        plan = self._matrices[index]
        rng = np.random.default_rng([self.seed, index, call])
        return rng.standard_normal((plan.cols, plan.rank), dtype=np.float32)

    def _revive_dead_columns(self, q: Matrix, index: int) -> Matrix:
        """A zero update leaves Q = 0, and P = M·0 would stay blind forever: redraw such columns."""
        dead = ~(np.linalg.norm(q, axis=0) > 0)
        if not dead.any():
            return q
        revived = q.copy()
        revived[:, dead] = self._gaussian_q(index, self._calls + 1)[:, dead]
        return revived

    @property
    def calls(self) -> int:
        """Updates compressed so far; each one moved the warm start and the residual on."""
        return self._calls

    @property
    def residual(self) -> Vector:
        """What earlier payloads failed to carry (a copy); zero outside the factored matrices."""
        return self._residual.copy()

    def compress(self, flat_update: ArrayLike) -> PowerSGDPayload:
        """One power iteration per matrix on update + residual: P = M Q, orthonormalise P, Q = Mᵀ P."""
        x = np.asarray(flat_update)
        if x.dtype != np.float32 or x.shape != (self.layout.size,):
            raise ValueError(f"update must be float32 of shape ({self.layout.size},), got {x.dtype}{x.shape}")
        parts = []
        for i, plan in enumerate(self._matrices):
            m = x[plan.offset : plan.stop].reshape(plan.rows, plan.cols)
            residual = self._residual[plan.offset : plan.stop].reshape(plan.rows, plan.cols)
            if self.error_feedback:
                m = m + residual
            q = self._q[i] if self.warm_start else self._gaussian_q(i, self._calls)
            p, _ = np.linalg.qr(m @ q)
            q = m.T @ p
            self._q[i] = self._revive_dead_columns(q, i)
            if self.error_feedback:
                residual[...] = m - p @ q.T
            parts.append(LowRankPart(plan.offset, p, q))
        raw = tuple(RawPart(start, x[start:stop].copy()) for start, stop in self._raw_spans)
        self._calls += 1
        return PowerSGDPayload(self.layout.size, tuple(parts), raw)

    decompress = staticmethod(decompress)
