"""The two messages every transport moves: a task to one client and its reply; no transport in here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Why a selected client's update did not reach the aggregate; recorded per client in audit.jsonl.
FAILURE_KINDS = (
    "dropped",  # never answered before the round's deadline (or the simulated dropout)
    "diverged",  # trained to non-finite weights and sent nothing
    "bad_frame",  # a payload that does not decode (garbage, truncated, oversized, forged)
    "wrong_shape",  # a payload that decodes to the wrong number of elements
    "wrong_round",  # a reply for another round than the one in progress
    "duplicate",  # a second reply from a client that already answered this round
    "disconnected",  # the client went away mid-upload
    "refused",  # an unknown, reused or missing token
    "client_error",  # the client reported that its own training failed
)


@dataclass(frozen=True)
class Task:
    """What the server sends one selected client for one round; every vector travels as a fedcodec frame.

    `model` is the global weights as a lossless frame, or, under downlink sync (`model_is_diff`), the
    encoded difference to the model this client rebuilt last. `control` is SCAFFOLD's server control.
    `mask` describes this round's partial-sharing mask (see fedcore.uplink.partial) or is empty.
    `settings` holds the per-client, per-round knobs: seeds, a straggler's epochs, an adaptive codec.
    """

    round: int  # 0-based round index; records and messages for people number rounds from 1
    client_id: int
    model_version: int
    model: bytes
    model_is_diff: bool = False
    control: bytes | None = None
    mask: bytes | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    """What one client sends back: its payload frames (update, then SCAFFOLD's control delta) and counts."""

    round: int
    client_id: int
    payloads: tuple[bytes, ...]
    num_examples: int
    num_steps: int
    loss: float
    train_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Uplink bytes: the frames as sent."""
        return sum(len(p) for p in self.payloads)


@dataclass(frozen=True)
class Failure:
    """A selected client whose update is not in the aggregate, and why (one of FAILURE_KINDS)."""

    round: int
    client_id: int
    kind: str
    message: str = ""
    nbytes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {self.kind!r}; one of {', '.join(FAILURE_KINDS)}")
