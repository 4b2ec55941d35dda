"""Aggregators: the streaming linear fold (O(model) memory) and a collecting one for rules that need all."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fedcore.compression import fedcodec
from fedcore.errors import one_line
from fedcore.protocol.messages import Failure, Reply
from fedcore.robust.spec import CenterRule
from fedcore.strategies.base import FoldSum, Strategy
from fedcore.uplink import Update, UplinkChain, UplinkContext
from fedcore.uplink.codec import CodecStage, decode_frame

log = logging.getLogger("fedcore.server")

if TYPE_CHECKING:  # typing.Self is 3.11+; annotations are never evaluated at runtime
    from typing import Self

Vector = NDArray[np.float32]


def _suspicion(clients: list[int], updates: NDArray[np.float32]) -> tuple[dict[int, float], float]:
    """Each client's suspicion score this round (far from the median, or pointing away; > 1 suspicious),
    and the round's weight as evidence."""
    from fedcore.robust import suspicion_scores

    if len(clients) < 2:
        return {}, 0.0
    largest = float(np.abs(updates).max())
    if largest > 0.0:  # scores are ratios and signs: scaling first keeps a diverged round from overflowing
        updates = updates / np.float32(largest)
    round_scores = suspicion_scores(updates)
    scores = {cid: float(s) for cid, s in zip(clients, round_scores.scores, strict=True)}
    return scores, round_scores.weight


class RefusedPayloadError(ValueError):
    """A reply whose payloads cannot be folded; `kind` is its failure kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class FoldContext:
    """What every aggregator of one round needs: model size, the uplink chain's server half, the strategy."""

    size: int
    chain: UplinkChain
    uplink: UplinkContext  # this round's server-side view: layout and mask
    strategy: Strategy
    equal_weights: bool = False  # user-level DP: every client counts once, whatever its data
    keep_updates: bool = False  # a server half (server memory) needs each client's decoded update

    def coefficient(self, reply: Reply) -> float:
        """How much one reply's update counts in the sum."""
        return 1.0 if self.equal_weights else self.strategy.coefficient(reply.num_examples, reply.num_steps)

    @property
    def with_control(self) -> bool:
        return self.strategy.uses_control


def _dense(update: Update) -> Vector:
    return decode_frame(update) if isinstance(update, bytes) else np.asarray(update, dtype=np.float32)


def decode_reply(ctx: FoldContext, reply: Reply) -> tuple[Update, Update | None]:
    """The update (and SCAFFOLD's control delta) a reply stands for, checked; raises RefusedPayloadError."""
    expected = 2 if ctx.with_control else 1
    if len(reply.payloads) != expected:
        raise RefusedPayloadError("bad_frame", f"{len(reply.payloads)} payloads, this run expects {expected}")
    try:
        update = ctx.chain.decode(reply.payloads[0], ctx.uplink)
        control = CodecStage().decode(reply.payloads[1], ctx.uplink, _no_rest) if ctx.with_control else None
        for part in (update, control):
            n = (
                part.size
                if isinstance(part, np.ndarray)
                else fedcodec().inspect(part).n
                if part
                else ctx.size
            )
            if n != ctx.size:
                raise RefusedPayloadError("wrong_shape", f"update has {n} elements, the model {ctx.size}")
            if isinstance(part, np.ndarray) and not np.isfinite(part).all():
                raise RefusedPayloadError("bad_frame", "update holds non-finite values")
    except RefusedPayloadError:
        raise
    except ValueError as exc:  # fedcodec's FrameError and ChecksumError are ValueErrors
        raise RefusedPayloadError("bad_frame", f"{type(exc).__name__}: {exc}") from None
    return update, control


def _no_rest(data: bytes) -> Update:
    raise AssertionError("the codec stage is terminal")


class _Sum:
    """A weighted running sum: lossless updates in float64, codec frames decoded-and-added in Rust (f32)."""

    def __init__(self, size: int) -> None:
        self._dense = np.zeros(size, dtype=np.float64)
        self._frames: Any = None
        self._size = size

    def _accumulator(self) -> Any:
        if self._frames is None:
            self._frames = fedcodec().Accumulator(self._size)
        return self._frames

    def add(self, update: Update, weight: float) -> None:
        """A frame goes in all-or-nothing (the Accumulator checks it first); a vector cannot fail."""
        if isinstance(update, bytes):
            self._accumulator().add(update, weight=float(weight))
        else:
            self._dense += weight * update.astype(np.float64)

    def add_decoded_frame(self, values: Vector, weight: float) -> None:
        """A frame decoded ahead (to check it) lands where the frame itself would have."""
        self._accumulator().add_array(np.ascontiguousarray(values, dtype=np.float32), weight=float(weight))

    def __getstate__(self) -> dict[str, Any]:
        """Crossing a process boundary folds the Rust sum into the float64 one, as finishing would."""
        return {"_dense": self.result(), "_frames": None, "_size": self._size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def result(self) -> NDArray[np.float64]:
        if self._frames is None:
            return self._dense.copy()
        return self._dense + np.asarray(self._frames.result(), dtype=np.float64).reshape(-1)


class LinearFold:
    """Today's FedAvg-family fold: coefficient-weighted sum of updates, streamed, O(model) memory.

    Partial folds (one per simulation worker) merge in order, so a run's sums repeat bit for bit.
    """

    def __init__(self, ctx: FoldContext) -> None:
        self._ctx = ctx
        self._deltas = _Sum(ctx.size)
        self._controls = _Sum(ctx.size) if ctx.with_control else None
        self._weight_sum = 0.0
        self._num_examples = 0
        self._weighted_steps = 0.0
        self._count = 0
        self._before: FoldSum | None = None
        # each client's decoded update and coefficient, only where a server half asks (ctx.keep_updates)
        self.kept: dict[int, tuple[float, Vector]] = {}

    def add(self, reply: Reply) -> Failure | None:
        try:
            update, control = decode_reply(self._ctx, reply)
            control_dense = _dense(control) if control is not None else None
            coef = self._ctx.coefficient(reply)
            self._deltas.add(update, coef)
        except RefusedPayloadError as exc:
            return Failure(reply.round, reply.client_id, exc.kind, str(exc), reply.nbytes)
        except ValueError as exc:
            return Failure(reply.round, reply.client_id, "bad_frame", str(exc), reply.nbytes)
        if self._controls is not None and control is not None and control_dense is not None:
            if isinstance(control, bytes):
                self._controls.add_decoded_frame(control_dense, 1.0)
            else:
                self._controls.add(control, 1.0)
        if self._ctx.keep_updates:
            self.kept[reply.client_id] = (coef, _dense(update))
        self._weight_sum += coef
        self._num_examples += reply.num_examples
        self._weighted_steps += reply.num_examples * reply.num_steps
        self._count += 1
        return None

    def _own(self) -> FoldSum:
        return FoldSum(
            delta_sum=self._deltas.result(),
            control_sum=self._controls.result() if self._controls is not None else None,
            weight_sum=self._weight_sum,
            num_examples=self._num_examples,
            weighted_steps=self._weighted_steps,
            count=self._count,
        )

    def merge(self, other: Self) -> Self:
        merged = type(self)(self._ctx)
        merged._before = self.finish() + other.finish()
        merged.kept = {**self.kept, **other.kept}
        return merged

    def finish(self) -> FoldSum:
        if self._before is None:
            return self._own()
        return self._before if self._count == 0 else self._before + self._own()


class Collecting:
    """Keeps every decoded update of the round for a rule that needs them all (median, Krum, ...).

    The strategy still applies its server step: the fold it gets carries the rule's center as its mean.
    """

    def __init__(self, ctx: FoldContext, rule: CenterRule) -> None:
        self._ctx = ctx
        self._rule = rule
        self._updates: list[Vector] = []
        self._coefs: list[float] = []
        self._client_ids: list[int] = []
        self._controls = LinearFold(ctx) if ctx.with_control else None
        self._num_examples = 0
        self._weighted_steps = 0.0
        self.suspicion: dict[int, float] = {}  # after finish: each client's suspicion score (> 1 suspicious)
        self.suspicion_weight = 0.0  # after finish: how much the round's scores tell (see RoundSuspicion)
        self.fell_back: str | None = None  # after finish: why the rule gave no center, if it did not

    @property
    def client_ids(self) -> list[int]:
        return list(self._client_ids)

    def updates(self) -> NDArray[np.float32]:
        """The round's updates as a K x d matrix, in the order they were added."""
        if not self._updates:
            return np.zeros((0, self._ctx.size), dtype=np.float32)
        return np.stack(self._updates)

    def add(self, reply: Reply) -> Failure | None:
        try:
            update, control = decode_reply(self._ctx, reply)
            dense = _dense(update)
        except RefusedPayloadError as exc:
            return Failure(reply.round, reply.client_id, exc.kind, str(exc), reply.nbytes)
        except ValueError as exc:
            return Failure(reply.round, reply.client_id, "bad_frame", str(exc), reply.nbytes)
        del control
        self._updates.append(dense)
        self._coefs.append(self._ctx.coefficient(reply))
        self._client_ids.append(reply.client_id)
        self._num_examples += reply.num_examples
        self._weighted_steps += reply.num_examples * reply.num_steps
        if self._controls is not None:
            self._controls.add(reply)
        return None

    def merge(self, other: Self) -> Self:
        merged = type(self)(self._ctx, self._rule)
        for part in (self, other):
            merged._updates += part._updates
            merged._coefs += part._coefs
            merged._client_ids += part._client_ids
            merged._num_examples += part._num_examples
            merged._weighted_steps += part._weighted_steps
        if self._controls is not None and other._controls is not None:
            merged._controls = self._controls.merge(other._controls)
        return merged

    def _center(self, updates: NDArray[np.float32]) -> NDArray[np.float32]:
        """The rule's center; where the rule cannot give one this round (too few updates for Krum's f,
        distances past float32 after a divergence) the coordinate median, which needs neither, and a log line.
        """
        try:
            weights = np.asarray(self._coefs, dtype=np.float64)
            center = np.asarray(self._rule(updates, weights), dtype=np.float32)
            if np.isfinite(center).all():
                return center
            problem = "a non-finite center"
        except ValueError as exc:  # fedcodec's CodecError is a ValueError
            problem = one_line(str(exc))
        log.warning("robust rule gave no center this round (%s); used the coordinate median", problem)
        self.fell_back = problem
        return np.median(updates, axis=0).astype(np.float32)

    def finish(self) -> FoldSum:
        count = len(self._updates)
        weight_sum = float(sum(self._coefs))
        if count == 0:
            return FoldSum.empty(self._ctx.size, self._ctx.with_control)
        updates = self.updates()
        center = self._center(updates)
        self.suspicion, self.suspicion_weight = _suspicion(self._client_ids, updates)
        controls = self._controls.finish().control_sum if self._controls is not None else None
        return FoldSum(
            delta_sum=center.astype(np.float64) * weight_sum,
            control_sum=controls,
            weight_sum=weight_sum,
            num_examples=self._num_examples,
            weighted_steps=self._weighted_steps,
            count=count,
        )
