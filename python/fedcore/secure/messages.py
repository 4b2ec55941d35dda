"""The SecAgg+ messages: plain frozen dataclasses of ints and bytes, so any transport can carry them.

Stage 0 the server sends `RoundSetup`; then four stages, each a client message and the server's
answer: advertise keys (`AdvertiseKeys` -> `NeighbourKeys`), share keys (`ShareKeys` ->
`ShareDelivery`), masked input (`MaskedInput` -> `UnmaskRequest`), unmask (`UnmaskResponse`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fedcodec import secagg

__all__ = [
    "MASK_PRG",
    "PRGS",
    "AdvertiseKeys",
    "EncryptedShare",
    "Flag",
    "MaskedInput",
    "NeighbourKeys",
    "RevealedShare",
    "RoundSetup",
    "SecAggAbort",
    "SecAggResult",
    "ShareDelivery",
    "ShareKeys",
    "UnmaskRequest",
    "UnmaskResponse",
]

MAX_CLIENT_ID = (1 << 32) - 1  # ids travel as 32-bit fields of the AEAD nonce
PRGS = tuple(secagg.prgs())  # the mask keystreams the Rust kernels know, the default first
MASK_PRG = PRGS[0]  # AES-128-CTR: AES-NI makes it the fastest stream per core (docs/security.md)


class SecAggAbort(RuntimeError):
    """The round cannot finish safely (too few survivors, a request exposing a client, bad shares)."""

    def __init__(self, message: str, flagged: tuple[Flag, ...] = ()) -> None:
        super().__init__(message)
        self.flagged = flagged


@dataclass(frozen=True)
class RoundSetup:
    """What every client learns before stage 1: who takes part, the graph, threshold, ring and mask PRG."""

    round_id: bytes
    clients: tuple[int, ...]
    degree: int
    threshold: int
    ring_bits: int
    length: int
    graph_seed: bytes
    prg: str = MASK_PRG  # the keystream every party expands mask seeds with (fedcodec.secagg.prgs())

    def __post_init__(self) -> None:
        if len(self.round_id) < 16:
            raise ValueError("round_id must be at least 16 bytes (it separates every key of the round)")
        if len(set(self.clients)) != len(self.clients) or len(self.clients) < 2:
            raise ValueError("clients must be at least two distinct ids")
        if any(not 0 <= c <= MAX_CLIENT_ID for c in self.clients):
            raise ValueError(f"client ids must be in 0..={MAX_CLIENT_ID}")
        if not 1 <= self.threshold <= min(self.degree, len(self.clients) - 1):
            raise ValueError(
                f"threshold must be in 1..=min(degree, clients - 1), got t={self.threshold}, k={self.degree}"
            )
        if not 1 <= self.ring_bits <= 32:
            raise ValueError(f"ring_bits must be in 1..=32, got {self.ring_bits}")
        if self.length < 1:
            raise ValueError(f"length must be positive, got {self.length}")
        if self.prg not in PRGS:
            raise ValueError(f"mask PRG {self.prg!r} is not one this side expands ({', '.join(PRGS)})")

    def point(self, client: int) -> int:
        """The Shamir point (x != 0) of the shares this client holds."""
        return self.clients.index(client) + 1

    def info(self, purpose: bytes) -> bytes:
        """HKDF info binding a key to this round and one purpose."""
        return b"fedcore/secagg/" + purpose + b"/" + self.round_id


def share_nonce(sender: int, recipient: int) -> bytes:
    """The AEAD nonce of sender's share for recipient: unique per direction under the pair's key."""
    return struct.pack(">II4x", sender, recipient)


@dataclass(frozen=True)
class AdvertiseKeys:
    """Stage 1, client -> server: the client's two X25519 public keys (share encryption, pair masks)."""

    sender: int
    enc_public: bytes
    mask_public: bytes


@dataclass(frozen=True)
class NeighbourKeys:
    """Stage 1, server -> client: the advertised keys of the client's neighbours."""

    recipient: int
    keys: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True)
class EncryptedShare:
    """One Shamir share (of the pair-mask secret and of the self-mask seed), sealed for its holder."""

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True)
class ShareKeys:
    """Stage 2, client -> server: a sealed share for each neighbour and a commitment to the self-mask seed."""

    sender: int
    shares: tuple[EncryptedShare, ...]
    self_mask_commitment: bytes


@dataclass(frozen=True)
class ShareDelivery:
    """Stage 2, server -> client: the sealed shares its neighbours made for it."""

    recipient: int
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True)
class MaskedInput:
    """Stage 3, client -> server: the masked, bit-packed update and neighbours whose shares failed to open."""

    sender: int
    payload: bytes
    bad_shares_from: tuple[int, ...] = ()


@dataclass(frozen=True)
class UnmaskRequest:
    """Stage 3, server -> client: who sent a masked input and who dropped after sharing keys."""

    recipient: int
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass(frozen=True)
class RevealedShare:
    """One field element of a share: of `owner`'s self-mask seed or of its pair-mask secret."""

    owner: int
    share: bytes


@dataclass(frozen=True)
class UnmaskResponse:
    """Stage 4, client -> server: self-mask shares of survivors, pair-key shares of dropped clients."""

    sender: int
    self_mask_shares: tuple[RevealedShare, ...]
    key_shares: tuple[RevealedShare, ...]


@dataclass(frozen=True)
class Flag:
    """A client the server caught misbehaving, with who reported it (None: the server's own check)."""

    client: int
    reason: str
    reporter: int | None = None


@dataclass(frozen=True)
class SecAggResult:
    """Outcome: the unmasked sum in Z_2^ring_bits over `included`; who dropped; who is flagged."""

    total: NDArray[np.uint32]
    included: tuple[int, ...]
    dropped: tuple[int, ...]
    flagged: tuple[Flag, ...]
