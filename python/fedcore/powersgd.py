"""PowerSGD (Vogels et al. 2019): each weight matrix of an update travels as two thin factors P·Qᵀ."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from fedcore.layout import ParamLayout

Vector = NDArray[np.float32]
Matrix = NDArray[np.float32]


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

    def to_vector(self) -> Vector:
        """Every factor and raw value in one float32 vector: the body of the frame that travels."""
        pieces = [a.reshape(-1) for part in self.low_rank for a in (part.p, part.q)]
        pieces += [raw.values for raw in self.raw]
        return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


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


def factor_plan(
    rank: int, layout: ParamLayout, min_rate: float = 2.0
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


def payload_from_vector(values: Vector, rank: int, layout: ParamLayout) -> PowerSGDPayload:
    """The payload a frame's float32 body stands for, cut by the plan both sides derive (rank, layout)."""
    matrices, raw_spans, _ = factor_plan(rank, layout)
    expected = sum((m.rows + m.cols) * m.rank for m in matrices) + sum(b - a for a, b in raw_spans)
    if values.shape != (expected,):
        raise ValueError(
            f"PowerSGD frame holds {values.size} values, rank {rank} on this model needs {expected}"
        )
    pos = 0
    parts = []
    for m in matrices:
        p = values[pos : pos + m.rows * m.rank].reshape(m.rows, m.rank)
        pos += m.rows * m.rank
        q = values[pos : pos + m.cols * m.rank].reshape(m.cols, m.rank)
        pos += m.cols * m.rank
        parts.append(LowRankPart(m.offset, p, q))
    raw = []
    for start, stop in raw_spans:
        raw.append(RawPart(start, values[pos : pos + stop - start]))
        pos += stop - start
    return PowerSGDPayload(layout.size, tuple(parts), tuple(raw))


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
        plan = factor_plan(rank, layout, min_compression_rate)
        self._matrices, self._raw_spans, self.compressed_names = plan
        self._q = [self._gaussian_q(i, 0) for i in range(len(self._matrices))]
        self._residual = np.zeros(layout.size, dtype=np.float32)
        self._calls = 0

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
