"""Server side of a round: what clients receive, folding their payloads, combining partial folds in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from fedcore.client import ClientUpdate
from fedcore.compression import DeltaSum, Encoder, Payload, Vector, decode, payload_nbytes
from fedcore.strategies.base import FoldSum

if TYPE_CHECKING:
    from fedcore.partial import Mask


class FoldBuilder:
    """Decode-and-accumulate one update at a time, so no list of client updates ever exists.

    With a round `mask` every client sends the same coordinates, so each masked coordinate is averaged
    over all of them (sample-weighted) and the rest of the sum stays zero.
    """

    def __init__(self, size: int, with_control: bool, mask: Mask | None = None) -> None:
        self._mask = mask
        self._deltas = DeltaSum(size)
        self._controls = DeltaSum(size) if with_control else None
        self._weight_sum = 0.0
        self._num_examples = 0
        self._weighted_steps = 0.0
        self._count = 0

    def add(self, update: ClientUpdate, coef: float) -> None:
        self._deltas.add(self._full(update.delta), coef)
        if self._controls is not None:
            if update.control_delta is None:
                raise ValueError(f"client {update.client_id} sent no control delta to a SCAFFOLD server")
            self._controls.add(update.control_delta, 1.0)
        self._weight_sum += coef
        self._num_examples += update.num_examples
        self._weighted_steps += update.num_examples * update.num_steps
        self._count += 1

    def _full(self, payload: Payload) -> Payload:
        """A masked upload as the full-size update it stands for: zeros where the mask skipped."""
        if self._mask is None:
            return payload
        full = np.zeros(self._mask.size, dtype=np.float32)
        self._mask.scatter_add(decode(payload), full)
        return full

    def finish(self) -> FoldSum:
        return FoldSum(
            delta_sum=self._deltas.result(),
            control_sum=self._controls.result() if self._controls is not None else None,
            weight_sum=self._weight_sum,
            num_examples=self._num_examples,
            weighted_steps=self._weighted_steps,
            count=self._count,
        )


def combine(partials: Sequence[FoldSum]) -> FoldSum:
    """Add partial folds left to right; callers pass them in worker order so the float sums repeat exactly."""
    if not partials:
        raise ValueError("no partial folds to combine")
    total = partials[0]
    for part in partials[1:]:
        total = total + part
    return total


@dataclass
class Downlink:
    """A vector the server sends alike to every client (SCAFFOLD's control), through the downlink codec."""

    spec: str | None
    _encoder: Encoder = field(init=False)

    def __post_init__(self) -> None:
        self._encoder = Encoder(self.spec)

    def send(self, vector: Vector, seed: int) -> tuple[Vector, int]:
        """The vector every client will see (decoded, as they see it) and the bytes sent to each."""
        payload, _ = self._encoder.encode(vector, seed)
        return np.array(decode(payload), dtype=np.float32), payload_nbytes(payload)
