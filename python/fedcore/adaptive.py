"""Adaptive compression: each client sends the best codec its uplink can deliver before the deadline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fedcore.compression import FLOAT32_BYTES, fedcodec, normalise_spec, validate_spec

DEFAULT_LADDER = (
    "none",
    "quant:8",
    "quant:4",
    "eden:4",
    "eden:2",
    "eden:1",
    "topk:0.1+quant:8",
    "topk:0.01+quant:8",
)
_PROBE_SEED = 0


@dataclass(frozen=True)
class CodecLadder:
    """The codecs adaptive compression may pick from, best quality first; each checked by fedcodec once."""

    specs: tuple[str, ...] = DEFAULT_LADDER

    def __post_init__(self) -> None:
        specs = tuple(spec.strip() for spec in self.specs)
        if not specs or not all(specs):
            raise ValueError(f"adaptive ladder has an empty spec: {','.join(self.specs)!r}")
        for spec in specs:
            validate_spec(spec)
        object.__setattr__(self, "specs", specs)

    @classmethod
    def parse(cls, text: str) -> CodecLadder:
        """Comma-separated specs, best first (codec specs never contain a comma)."""
        return cls(tuple(text.split(",")))

    def __str__(self) -> str:
        return ",".join(self.specs)


def megabits_to_bytes_per_s(mbps: float) -> float:
    """The simulator reports bandwidth in Mbit/s; the policy works in bytes/s."""
    return mbps * 1e6 / 8


def frame_nbytes(spec: str, n: int) -> int:
    """Bytes one upload of n float32 takes: 4n raw, else the length of a real frame for a Gaussian vector.

    Quantizers and EDEN give the same length for any input of size n; top-k frames depend on where
    the kept indices fall, and a Gaussian vector gives the typical, spread-out case.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    codec_spec = normalise_spec(spec)
    if codec_spec is None:
        return FLOAT32_BYTES * n
    probe = np.random.default_rng(_PROBE_SEED).standard_normal(n, dtype=np.float32)
    return len(fedcodec().from_spec(codec_spec).encode(probe, seed=_PROBE_SEED))


@dataclass(frozen=True)
class Choice:
    """The codec picked for one client and round, with the size and time it was picked on."""

    spec: str
    expected_bytes: int
    expected_upload_s: float
    meets_deadline: bool


@dataclass(frozen=True)
class AdaptiveCodecPolicy:
    """An ordered ladder of codec specs, best quality first, and the round deadline they must meet."""

    ladder: Sequence[str]
    deadline_s: float
    _sizes: dict[tuple[str, int], int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ladder", tuple(self.ladder))
        if not self.ladder:
            raise ValueError("the ladder needs at least one codec spec")
        for spec in self.ladder:
            validate_spec(spec)
        if not self.deadline_s > 0:
            raise ValueError(f"deadline_s must be > 0, got {self.deadline_s}")

    def expected_bytes(self, spec: str, n: int) -> int:
        """Frame length for a model of n parameters, measured once per (spec, n) and cached."""
        key = (spec, n)
        if key not in self._sizes:
            self._sizes[key] = frame_nbytes(spec, n)
        return self._sizes[key]

    def choose(self, n: int, bandwidth_bps: float, train_s: float) -> Choice:
        """The first rung whose upload ends by the deadline after `train_s` of training, else the smallest.

        `bandwidth_bps` is the client's uplink in bytes per second (see `megabits_to_bytes_per_s`).
        """
        if not bandwidth_bps > 0:
            raise ValueError(f"bandwidth_bps must be > 0, got {bandwidth_bps}")
        if not train_s >= 0:
            raise ValueError(f"train_s must be >= 0, got {train_s}")
        choices = []
        for spec in self.ladder:
            nbytes = self.expected_bytes(spec, n)
            upload_s = nbytes / bandwidth_bps
            choice = Choice(spec, nbytes, upload_s, train_s + upload_s <= self.deadline_s)
            if choice.meets_deadline:
                return choice
            choices.append(choice)
        return min(choices, key=lambda c: c.expected_bytes)
