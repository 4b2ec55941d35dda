"""SecAgg+ messages as bytes for a network transport: versioned, length-checked, nothing trusted.

Layout: b"SA", a version byte, a message-kind byte, then the fields in order: integers big-endian
(client ids u32, sizes u32, the ring seed u64), floats as IEEE-754 doubles, byte strings with a u32
length, sequences with a u32 count. Keys, commitments and revealed shares are exactly 32 bytes. A
decoder reads exactly one message of the expected kind and refuses anything else (short, long,
another kind, another version, a count larger than the bytes left) with `StagePayloadError`, so
bytes from the network become a typed message or one typed failure, never an exception elsewhere.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from fedcore.secure.encoding import RingConfig
from fedcore.secure.messages import (
    AdvertiseKeys,
    EncryptedShare,
    MaskedInput,
    NeighbourKeys,
    RevealedShare,
    RoundSetup,
    ShareDelivery,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedcore.secure.update import SecureSetup

__all__ = [
    "WIRE_VERSION",
    "ClientMessage",
    "ServerMessage",
    "StagePayloadError",
    "decode",
    "encode",
]

WIRE_VERSION = 3  # 2: the ring's headroom bits and distributed DP's numbers; 3: the mask PRG's name
_MAGIC = b"SA"
KEY = 32  # X25519 keys, commitments, Shamir shares of one scalar

ServerMessage = SecureSetup | NeighbourKeys | ShareDelivery | UnmaskRequest
ClientMessage = AdvertiseKeys | ShareKeys | MaskedInput | UnmaskResponse
Message = ServerMessage | ClientMessage
M = TypeVar("M", bound=Message)

# The four stages in order: what the server sends each client, and what the client answers.
STAGE_MESSAGES: dict[str, tuple[type[ServerMessage], type[ClientMessage]]] = {
    "advertise": (SecureSetup, AdvertiseKeys),
    "share": (NeighbourKeys, ShareKeys),
    "mask": (ShareDelivery, MaskedInput),
    "unmask": (UnmaskRequest, UnmaskResponse),
}
STAGES = tuple(STAGE_MESSAGES)


class StagePayloadError(ValueError):
    """Bytes that are not one well-formed SecAgg+ message of the kind expected."""


class _Writer:
    def __init__(self, kind: int) -> None:
        self.parts: list[bytes] = [_MAGIC, bytes([WIRE_VERSION, kind])]

    def u32(self, value: int) -> None:
        self.parts.append(struct.pack(">I", value))

    def u64(self, value: int) -> None:
        self.parts.append(struct.pack(">Q", value))

    def f64(self, value: float) -> None:
        self.parts.append(struct.pack(">d", value))

    def blob(self, value: bytes) -> None:
        self.u32(len(value))
        self.parts.append(value)

    def ids(self, values: tuple[int, ...]) -> None:
        self.u32(len(values))
        self.parts.append(struct.pack(f">{len(values)}I", *values))

    def done(self) -> bytes:
        return b"".join(self.parts)


class _Reader:
    def __init__(self, data: bytes, kind: int) -> None:
        if len(data) < 4 or data[:2] != _MAGIC:
            raise StagePayloadError("not a SecAgg+ message (bad magic)")
        if data[2] != WIRE_VERSION:
            raise StagePayloadError(f"SecAgg+ message version {data[2]}, this side speaks {WIRE_VERSION}")
        if data[3] != kind:
            raise StagePayloadError(
                f"a {_NAMES.get(data[3], 'unknown')} message where {_NAMES[kind]} belongs"
            )
        self._view = memoryview(data)
        self._at = 4

    def _take(self, n: int) -> memoryview:
        if n > len(self._view) - self._at:
            raise StagePayloadError(f"truncated: {n} more bytes declared, {len(self._view) - self._at} left")
        out = self._view[self._at : self._at + n]
        self._at += n
        return out

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def f64(self) -> float:
        value = float(struct.unpack(">d", self._take(8))[0])
        if not math.isfinite(value):
            raise StagePayloadError("a non-finite number")
        return value

    def blob(self, exact: int | None = None) -> bytes:
        n = self.u32()
        if exact is not None and n != exact:
            raise StagePayloadError(f"a {n}-byte field where {exact} bytes belong")
        return bytes(self._take(n))

    def count(self, item_bytes: int) -> int:
        """A sequence length, refused before anything is allocated when the bytes left cannot hold it."""
        n = self.u32()
        if n * item_bytes > len(self._view) - self._at:
            raise StagePayloadError(f"{n} items declared, the message is too short to hold them")
        return n

    def ids(self) -> tuple[int, ...]:
        n = self.count(4)
        return tuple(int(v) for v in struct.unpack(f">{n}I", self._take(4 * n)))

    def end(self) -> None:
        if self._at != len(self._view):
            raise StagePayloadError(f"{len(self._view) - self._at} bytes after the end of the message")


# ---- one writer and one reader per message kind ------------------------------------------------------


def _w_setup(w: _Writer, m: SecureSetup) -> None:
    s, r = m.setup, m.ring
    w.blob(s.round_id)
    w.ids(s.clients)
    for value in (s.degree, s.threshold, s.ring_bits, s.length):
        w.u32(value)
    w.blob(s.graph_seed)
    w.blob(s.prg.encode("ascii"))
    w.f64(r.clip)
    w.u32(r.bits)
    w.u32(r.max_clients)
    w.u32(int(r.rotate))
    w.f64(r.fraction)
    w.u64(r.seed)
    w.u64(m.weight_cap)
    w.f64(m.fraction)
    w.u32(r.headroom_bits)
    w.u32(int(m.dp is not None))
    if m.dp is not None:
        w.f64(m.dp.clip)
        w.f64(m.dp.noise_multiplier)
        w.u32(m.dp.noise_floor)


def _r_setup(r: _Reader) -> SecureSetup:
    round_id = r.blob()
    clients = r.ids()
    degree, threshold, ring_bits, length = r.u32(), r.u32(), r.u32(), r.u32()
    graph_seed, prg = r.blob(), r.blob().decode("ascii")  # a non-ASCII name: ValueError, refused
    setup = RoundSetup(round_id, clients, degree, threshold, ring_bits, length, graph_seed, prg)
    clip, bits, max_clients = r.f64(), r.u32(), r.u32()
    rotate, fraction, seed = bool(r.u32()), r.f64(), r.u64()
    weight_cap, kept = r.u64(), r.f64()
    ring = RingConfig(clip, bits, max_clients, rotate, fraction, seed, headroom_bits=r.u32())
    dp = None
    if r.u32():
        from fedcore.privacy.distributed import DistributedDP

        dp = DistributedDP(r.f64(), r.f64(), r.u32())
    return SecureSetup(setup, ring, weight_cap, kept, dp)


def _w_keys(w: _Writer, m: AdvertiseKeys) -> None:
    w.u32(m.sender)
    w.blob(m.enc_public)
    w.blob(m.mask_public)


def _r_keys(r: _Reader) -> AdvertiseKeys:
    return AdvertiseKeys(r.u32(), r.blob(KEY), r.blob(KEY))


def _w_neighbours(w: _Writer, m: NeighbourKeys) -> None:
    w.u32(m.recipient)
    w.u32(len(m.keys))
    for k in m.keys:
        _w_keys(w, k)


def _r_neighbours(r: _Reader) -> NeighbourKeys:
    recipient = r.u32()
    return NeighbourKeys(recipient, tuple(_r_keys(r) for _ in range(r.count(4 + 2 * (4 + KEY)))))


def _w_sealed(w: _Writer, shares: tuple[EncryptedShare, ...]) -> None:
    w.u32(len(shares))
    for s in shares:
        w.u32(s.sender)
        w.u32(s.recipient)
        w.blob(s.ciphertext)


def _r_sealed(r: _Reader) -> tuple[EncryptedShare, ...]:
    return tuple(EncryptedShare(r.u32(), r.u32(), r.blob()) for _ in range(r.count(12)))


def _w_share_keys(w: _Writer, m: ShareKeys) -> None:
    w.u32(m.sender)
    _w_sealed(w, m.shares)
    w.blob(m.self_mask_commitment)


def _r_share_keys(r: _Reader) -> ShareKeys:
    return ShareKeys(r.u32(), _r_sealed(r), r.blob(KEY))


def _w_delivery(w: _Writer, m: ShareDelivery) -> None:
    w.u32(m.recipient)
    _w_sealed(w, m.shares)


def _r_delivery(r: _Reader) -> ShareDelivery:
    return ShareDelivery(r.u32(), _r_sealed(r))


def _w_masked(w: _Writer, m: MaskedInput) -> None:
    w.u32(m.sender)
    w.blob(m.payload)
    w.ids(m.bad_shares_from)


def _r_masked(r: _Reader) -> MaskedInput:
    return MaskedInput(r.u32(), r.blob(), r.ids())


def _w_request(w: _Writer, m: UnmaskRequest) -> None:
    w.u32(m.recipient)
    w.ids(m.survivors)
    w.ids(m.dropped)


def _r_request(r: _Reader) -> UnmaskRequest:
    return UnmaskRequest(r.u32(), r.ids(), r.ids())


def _w_revealed(w: _Writer, shares: tuple[RevealedShare, ...]) -> None:
    w.u32(len(shares))
    for s in shares:
        w.u32(s.owner)
        w.blob(s.share)


def _r_revealed(r: _Reader) -> tuple[RevealedShare, ...]:
    return tuple(RevealedShare(r.u32(), r.blob(KEY)) for _ in range(r.count(8 + KEY)))


def _w_response(w: _Writer, m: UnmaskResponse) -> None:
    w.u32(m.sender)
    _w_revealed(w, m.self_mask_shares)
    _w_revealed(w, m.key_shares)


def _r_response(r: _Reader) -> UnmaskResponse:
    return UnmaskResponse(r.u32(), _r_revealed(r), _r_revealed(r))


_KINDS: dict[type, tuple[int, Callable[[_Writer, Any], None], Callable[[_Reader], Message]]] = {
    SecureSetup: (1, _w_setup, _r_setup),
    AdvertiseKeys: (2, _w_keys, _r_keys),
    NeighbourKeys: (3, _w_neighbours, _r_neighbours),
    ShareKeys: (4, _w_share_keys, _r_share_keys),
    ShareDelivery: (5, _w_delivery, _r_delivery),
    MaskedInput: (6, _w_masked, _r_masked),
    UnmaskRequest: (7, _w_request, _r_request),
    UnmaskResponse: (8, _w_response, _r_response),
}
_NAMES = {kind: cls.__name__ for cls, (kind, _, _) in _KINDS.items()}


def encode(message: Message) -> bytes:
    """The message's bytes (see the module docstring for the layout)."""
    kind, write, _ = _KINDS[type(message)]
    w = _Writer(kind)
    write(w, message)
    return w.done()


def decode(data: bytes, expected: type[M]) -> M:
    """Exactly one message of type `expected` from `data`; anything else raises StagePayloadError."""
    kind, _, read = _KINDS[expected]
    reader = _Reader(data, kind)
    try:
        message = read(reader)
    except StagePayloadError:
        raise
    except (ValueError, OverflowError) as exc:  # a field the message's own checks refuse
        raise StagePayloadError(f"{_NAMES[kind]}: {exc}") from exc
    reader.end()
    assert isinstance(message, expected)
    return message
