"""SecAgg+ messages as bytes: every kind round-trips, and any other bytes (cut, extended, flipped, another
kind or version, a count larger than the message) are a StagePayloadError, never another exception."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest

import fedcodec
from fedcore.protocol import Reply
from fedcore.secure import (
    AdvertiseKeys,
    EncryptedShare,
    MaskedInput,
    NeighbourKeys,
    RevealedShare,
    SecAggAbort,
    ShareDelivery,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fedcore.secure.messages import MASK_PRG
from fedcore.secure.party import SecureParty
from fedcore.secure.round import SecureSettings
from fedcore.secure.wire import WIRE_VERSION, Message, StagePayloadError, decode, encode

SETTINGS = SecureSettings(seed=5, clip=1.0, bits=16, per_round=4, fraction=0.5, weight_cap=9, model_size=64)
DISTRIBUTED_DP = replace(SETTINGS, bits=12, dp_clip=1.0, dp_noise_multiplier=0.8)  # headroom + noise numbers
KEY = bytes(range(32))
MESSAGES: list[Message] = [
    SETTINGS.announce(2, (3, 5, 8, 13)),
    DISTRIBUTED_DP.announce(2, (3, 5, 8, 13)),
    AdvertiseKeys(3, KEY, KEY[::-1]),
    NeighbourKeys(3, (AdvertiseKeys(5, KEY, KEY), AdvertiseKeys(8, KEY[::-1], KEY))),
    ShareKeys(3, (EncryptedShare(3, 5, b"sealed" * 13), EncryptedShare(3, 8, b"")), KEY),
    ShareDelivery(5, (EncryptedShare(3, 5, b"x" * 80),)),
    MaskedInput(3, b"\x00\xff" * 40, (8,)),
    UnmaskRequest(3, (3, 5, 13), (8,)),
    UnmaskResponse(3, (RevealedShare(5, KEY),), (RevealedShare(8, KEY[::-1]), RevealedShare(13, KEY))),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    assert decode(encode(message), type(message)) == message


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_cut_extended_or_relabelled_bytes_are_refused(message: Message) -> None:
    data = encode(message)
    for end in range(len(data)):
        with pytest.raises(StagePayloadError):
            decode(data[:end], type(message))
    with pytest.raises(StagePayloadError, match="after the end"):
        decode(data + b"\x00", type(message))
    with pytest.raises(StagePayloadError, match="version"):
        decode(data[:2] + bytes([WIRE_VERSION + 1]) + data[3:], type(message))
    other = next(type(m) for m in MESSAGES if type(m) is not type(message))
    with pytest.raises(StagePayloadError, match="belongs"):
        decode(data, other)


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_flipped_bytes_decode_to_a_message_or_a_stage_payload_error(message: Message) -> None:
    data = encode(message)
    rng = np.random.default_rng(0)
    for _ in range(300):
        forged = bytearray(data)
        for at in rng.integers(0, len(data), size=rng.integers(1, 4)):
            forged[at] ^= int(rng.integers(1, 256))
        with contextlib.suppress(StagePayloadError):
            assert isinstance(decode(bytes(forged), type(message)), type(message))


def test_the_setup_names_its_mask_prg_and_a_prg_this_side_does_not_know_is_refused() -> None:
    announced = SETTINGS.announce(2, (3, 5, 8, 13))
    assert announced.setup.prg == MASK_PRG == "aes128-ctr"
    chacha = replace(announced, setup=replace(announced.setup, prg="chacha20"))
    data = encode(chacha)
    assert decode(data, type(chacha)).setup.prg == "chacha20"
    # a peer that expands masks with a PRG this side lacks: refused on arrival, never silently misread
    unknown = data.replace(b"chacha20", b"chacha08")
    with pytest.raises(StagePayloadError, match="mask PRG 'chacha08' is not one this side expands"):
        decode(unknown, type(chacha))
    with pytest.raises(ValueError, match="mask PRG"):
        replace(announced.setup, prg="aes256-ctr")


def test_a_count_larger_than_the_message_is_refused_before_allocating() -> None:
    data = encode(UnmaskRequest(3, (3, 5), ()))
    forged = data[:8] + (2**32 - 1).to_bytes(4, "big") + data[12:]
    with pytest.raises(StagePayloadError, match="too short to hold them"):
        decode(forged, UnmaskRequest)


def test_a_party_refuses_garbage_and_stages_out_of_order() -> None:
    party = SecureParty(3)
    with pytest.raises(StagePayloadError, match="bad magic"):
        party.answer_bytes(2, "advertise", b"not a message")
    announced = SETTINGS.announce(2, (3, 5, 8, 13))
    with pytest.raises(SecAggAbort, match="no update held"):
        party.answer(2, "advertise", announced)
    frame = fedcodec.from_spec("none").encode(np.zeros(64, dtype=np.float32))
    held = party.hold(Reply(2, 3, (frame,), 4, 1, 0.5))
    assert held.payloads == ()  # only the counts leave the client
    assert held.num_examples == 4
    with pytest.raises(SecAggAbort, match="out of order"):
        party.answer(2, "mask", ShareDelivery(3, ()))
    keys = decode(party.answer_bytes(2, "advertise", encode(announced)), AdvertiseKeys)
    assert keys.sender == 3
