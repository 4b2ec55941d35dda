"""Frames from the network are hostile: each mutated or forged frame decodes sanely or raises CodecError.

Mutations that keep the checksum valid (it is recomputed after the damage) get past the crc32c and
reach the parser itself, which is what these tests are for.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import fedcodec as fc

Mutator = Callable[[bytes, np.random.Generator], Iterator[bytes]]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum that closes every frame; test-only, to forge valid frames."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def reseal(body: bytes) -> bytes:
    """Appends a valid checksum to any bytes, so only the parser stands between them and the decoder."""
    return body + struct.pack("<I", crc32c(body))


def body_of(frame: bytes) -> bytes:
    return frame[:-4]


SPECS = [
    "none",
    "f16",
    "bf16",
    "quant:1",
    "quant:3",
    "quant:8",
    "quant:16",
    "quant:4:stochastic:chunk=16",
    "qsgd:2",
    "qsgd:8:bucket=32",
    "topk:0.05",
    "topk:0.2:sampled",
    "randk:0.3",
    "eden:1",
    "eden:2",
    "eden:4",
    "eden:8",
    "sign",
    "sign:chunk=16",
    "topk:0.1+quant:8",
    "topk:0.3+f16",
    "randk:0.5+eden:2",
    "randk:0.5+topk:0.2+quant:4",
]
SHAPES = [(50,), (97,), (8, 25)]


def base_frames() -> list[bytes]:
    rng = np.random.default_rng(2024)
    frames = []
    for spec in SPECS:
        for shape in SHAPES:
            x = rng.standard_normal(shape, dtype=np.float32) * np.float32(rng.uniform(1e-3, 1e3))
            frames.append(fc.from_spec(spec).encode(x, seed=int(rng.integers(2**63))))
    return frames


BASE_FRAMES = base_frames()


def test_reseal_reproduces_the_codecs_checksum() -> None:
    for frame in BASE_FRAMES:
        assert reseal(body_of(frame)) == frame


RANDOM_MUTATIONS_PER_FRAME = 200
BOUNDARY_BYTES = np.array([0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF])


def flip_bits(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for _ in range(RANDOM_MUTATIONS_PER_FRAME):
        out = bytearray(frame)
        for pos in rng.integers(0, 8 * len(frame), size=rng.integers(1, 4)):
            out[pos // 8] ^= 1 << (pos % 8)
        yield bytes(out)


def flip_bits_resealed(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for mutated in flip_bits(body_of(frame), rng):
        yield reseal(mutated)


def overwrite_bytes(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for _ in range(RANDOM_MUTATIONS_PER_FRAME):
        out = bytearray(frame)
        count = rng.integers(1, 5)
        # Half the time a boundary value, which is what breaks length and count fields.
        boundary = rng.choice(BOUNDARY_BYTES, count)
        values = np.where(rng.random(count) < 0.5, boundary, rng.integers(0, 256, count))
        for pos, value in zip(rng.integers(0, len(frame), size=count), values, strict=True):
            out[pos] = int(value)
        yield bytes(out)


def overwrite_bytes_resealed(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for mutated in overwrite_bytes(body_of(frame), rng):
        yield reseal(mutated)


def truncate(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for length in range(len(frame)):
        yield frame[:length]


def truncate_resealed(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    body = body_of(frame)
    for length in range(len(body)):
        yield reseal(body[:length])


def extend(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for _ in range(RANDOM_MUTATIONS_PER_FRAME // 2):
        extra = rng.integers(0, 256, size=rng.integers(1, 65), dtype=np.uint8).tobytes()
        yield frame + extra
        yield reseal(body_of(frame) + extra)


def garbage(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    for _ in range(RANDOM_MUTATIONS_PER_FRAME // 2):
        noise = rng.integers(0, 256, size=rng.integers(0, len(frame) + 1), dtype=np.uint8).tobytes()
        yield noise
        # The real header, then noise where the stages and payload should be.
        yield reseal(frame[: rng.integers(4, 40)] + noise)


def splice(frame: bytes, rng: np.random.Generator) -> Iterator[bytes]:
    """Frankenframes: the front of this frame glued to the back of another, checksum made valid."""
    for _ in range(RANDOM_MUTATIONS_PER_FRAME):
        other = body_of(BASE_FRAMES[int(rng.integers(len(BASE_FRAMES)))])
        cut = int(rng.integers(0, len(frame)))
        yield reseal(body_of(frame)[:cut] + other[int(rng.integers(0, len(other))) :])


MUTATORS: dict[str, Mutator] = {
    "bit-flips": flip_bits,
    "bit-flips-resealed": flip_bits_resealed,
    "byte-overwrites": overwrite_bytes,
    "byte-overwrites-resealed": overwrite_bytes_resealed,
    "truncation": truncate,
    "truncation-resealed": truncate_resealed,
    "extension": extend,
    "garbage": garbage,
    "splices": splice,
}


TRUNCATIONS = sum(len(frame) for frame in BASE_FRAMES)
MUTATIONS_PER_KIND = {
    "bit-flips": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "bit-flips-resealed": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "byte-overwrites": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "byte-overwrites-resealed": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "truncation": TRUNCATIONS,
    "truncation-resealed": TRUNCATIONS - 4 * len(BASE_FRAMES),
    "extension": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "garbage": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
    "splices": RANDOM_MUTATIONS_PER_FRAME * len(BASE_FRAMES),
}


def survives(frame: bytes, acc: fc.Accumulator | None) -> str:
    """The one acceptable outcome for any bytes: a finite array of the frame's shape, or a CodecError."""
    try:
        y = fc.decode(frame)
    except fc.ChecksumError:
        return "checksum"
    except fc.CodecError:
        return "refused"
    info = fc.inspect(frame)
    assert y.shape == info.shape
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y)), f"decoded non-finite values from {info.spec} frame {frame.hex()}"
    if acc is not None and y.size == len(acc):
        before = acc.result().copy()
        acc.add(frame, weight=0.5)
        np.testing.assert_allclose(acc.result(), before + 0.5 * y.ravel(), rtol=1e-5, atol=1e-5)
    return "decoded"


@pytest.mark.parametrize("kind", MUTATORS)
def test_mutated_frames_decode_or_raise_codec_error(kind: str) -> None:
    rng = np.random.default_rng(list(MUTATORS).index(kind))
    outcomes = {"checksum": 0, "refused": 0, "decoded": 0}
    accumulators = {n: fc.Accumulator(n) for n in (50, 97, 200)}
    for frame in BASE_FRAMES:
        n = fc.inspect(frame).n
        for i, mutated in enumerate(MUTATORS[kind](frame, rng)):
            outcomes[survives(mutated, accumulators[n] if i % 16 == 0 else None)] += 1
    assert sum(outcomes.values()) == MUTATIONS_PER_KIND[kind]
    if kind.endswith("resealed") or kind == "splices":
        # A valid checksum hands the damage to the parser, which must catch it by itself.
        assert outcomes["checksum"] == 0
        assert outcomes["refused"] > 0
    if kind in ("bit-flips-resealed", "byte-overwrites-resealed"):
        assert outcomes["decoded"] > 0  # damaged payload bytes are still codes: they decode


def test_the_default_run_mutates_at_least_100000_frames() -> None:
    assert sum(MUTATIONS_PER_KIND.values()) >= 100_000


def test_a_bad_frame_added_to_an_accumulator_leaves_the_sum_alone() -> None:
    acc = fc.Accumulator(97)
    acc.add_array(np.ones(97, dtype=np.float32))
    rng = np.random.default_rng(5)
    refused = 0
    for frame in BASE_FRAMES[1::3]:
        for mutated in overwrite_bytes_resealed(frame, rng):
            before = acc.result().copy()
            try:
                acc.add(mutated)
            except fc.CodecError:
                refused += 1
                np.testing.assert_array_equal(acc.result(), before)
    assert refused > 100


def test_a_forged_frame_decoded_over_an_array_leaves_it_whole_or_zeroed() -> None:
    rng = np.random.default_rng(6)
    refused = 0
    for frame in BASE_FRAMES[::3]:
        shape = fc.inspect(frame).shape
        for mutated in overwrite_bytes_resealed(frame, rng):
            out = np.full(shape, 5.0, dtype=np.float32)
            try:
                fc.decode(mutated, out=out)
            except fc.CodecError:
                refused += 1
                assert np.all(out == 5.0) or not out.any(), "a refused frame left values behind"
            else:
                np.testing.assert_array_equal(out, fc.decode(mutated))
    assert refused > 100


# --- forged headers with valid checksums ---------------------------------------------------------


def header(n: int, shape: tuple[int, ...], codec_id: int, version: int = 1, flags: int = 0) -> bytes:
    """The fixed header of wire frame v1 (DESIGN.md), little-endian."""
    dims = b"".join(struct.pack("<Q", d) for d in shape)
    return b"FCDC" + struct.pack("<BBHQB", version, codec_id, flags, n, len(shape)) + dims


def split(frame: bytes) -> tuple[bytes, bytes]:
    """A frame's fixed header and what follows it (stages, payloads), checksum dropped."""
    ndim = frame[16]
    end = 17 + 8 * ndim
    return frame[:end], body_of(frame)[end:]


def quant_frame(n: int = 100) -> bytes:
    return fc.Quantize(8).encode(np.linspace(-1, 1, n, dtype=np.float32))


def refused(
    frame: bytes, pattern: str, max_elements: int = fc.DEFAULT_MAX_ELEMENTS, header_only: bool = True
) -> None:
    """decode (and inspect, for header damage) refuse with a FrameError, not a ChecksumError, saying why."""
    for read in (fc.decode, fc.inspect) if header_only else (fc.decode,):
        with pytest.raises(fc.FrameError, match=pattern) as caught:
            read(frame, max_elements=max_elements)
        assert not isinstance(caught.value, fc.ChecksumError)


def test_forged_frame_with_valid_checksum_is_accepted_when_unchanged() -> None:
    head, rest = split(quant_frame())
    assert reseal(head + rest) == quant_frame()
    assert reseal(header(100, (100,), codec_id=head[5]) + rest) == quant_frame()


@pytest.mark.parametrize("max_elements", [fc.DEFAULT_MAX_ELEMENTS, 2**63])
def test_huge_element_count_is_refused_before_allocating(max_elements: int) -> None:
    head, rest = split(quant_frame())
    frame = reseal(header(2**60, (2**60,), codec_id=head[5]) + rest)
    # Refused above the caller's limit, or above the hard ceiling of 2^48 elements whatever it allows.
    refused(frame, "limit", max_elements=max_elements)


DECODE_EACH_LINE = """
import sys
import fedcodec as fc
for line in sys.stdin:
    try:
        fc.decode(bytes.fromhex(line), max_elements=2**64 - 1)
        print("decoded")
    except fc.FrameError as err:
        print(type(err).__name__, err)
"""


def test_huge_count_with_no_limit_fails_on_the_payload_not_the_allocator() -> None:
    # A child process: if a decoder tried to allocate and aborted, this test must fail, not the run.
    forged = []
    for spec in ["none", "bf16", "quant:16", "qsgd:8", "eden:1", "sign", "topk:0.1", "randk:0.5+f16"]:
        head, rest = split(fc.from_spec(spec).encode(np.ones(64, dtype=np.float32)))
        # Sparse frames may honestly declare a huge n, so only counts no machine can hold apply to them.
        counts = [2**62, 2**64 - 1] if "k:" in spec else [2**40, 2**62, 2**64 - 1]
        forged += [reseal(header(n, (n,), codec_id=head[5]) + rest).hex() for n in counts]
    child = subprocess.run(
        [sys.executable, "-c", DECODE_EACH_LINE],
        input="\n".join(forged),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    outcomes = child.stdout.splitlines()
    assert len(outcomes) == len(forged)
    assert all(line.startswith("FrameError ") for line in outcomes), outcomes


def test_max_elements_refuses_an_honest_frame_that_is_too_big() -> None:
    refused(quant_frame(100), "exceeds the decoder's limit of 99", max_elements=99)


def test_two_hundred_dimensions_are_refused() -> None:
    head, rest = split(quant_frame())
    shape = (100,) + (1,) * 199
    refused(reseal(header(100, shape, codec_id=head[5]) + rest), "200 dimensions")


def test_shape_product_must_equal_the_element_count() -> None:
    head, rest = split(quant_frame())
    refused(reseal(header(100, (10, 11), codec_id=head[5]) + rest), r"holds 110 elements .* says 100")


def test_shape_product_overflow_is_refused() -> None:
    head, rest = split(quant_frame())
    refused(reseal(header(100, (2**40, 2**40), codec_id=head[5]) + rest), "overflow")


def test_unknown_codec_id_is_refused() -> None:
    _, rest = split(quant_frame())
    refused(reseal(header(100, (100,), codec_id=99) + rest), "codec id 99")
    stage_id_at = 1  # the stage count comes first, then the first stage's id
    forged = bytearray(rest)
    forged[stage_id_at] = 99
    refused(reseal(header(100, (100,), codec_id=99) + bytes(forged)), "stage id 99")


def test_unknown_flags_are_refused() -> None:
    head, rest = split(quant_frame())
    refused(reseal(header(100, (100,), codec_id=head[5], flags=0x0004) + rest), "flags 0x0004")


def test_a_future_version_is_refused() -> None:
    head, rest = split(quant_frame())
    refused(reseal(header(100, (100,), codec_id=head[5], version=2) + rest), "version 2")


def test_bad_magic_is_refused() -> None:
    refused(reseal(b"FCDX" + body_of(quant_frame())[4:]), "magic")


def test_a_zero_element_count_is_refused() -> None:
    head, rest = split(quant_frame())
    refused(reseal(header(0, (0,), codec_id=head[5]) + rest), "element count is 0")


@pytest.mark.parametrize("count", [0, 9])
def test_stage_count_outside_its_range_is_refused(count: int) -> None:
    head, rest = split(quant_frame())
    refused(reseal(head + bytes([count]) + rest[1:]), f"stage count {count}")


def topk_parts(n: int = 100) -> tuple[bytes, bytes, bytes]:
    """A topk:0.1 frame cut into header, stage section and (sparse length, index bytes, values)."""
    frame = fc.TopK(0.1).encode(np.arange(1, n + 1, dtype=np.float32))
    head, rest = split(frame)
    stages_len = 1 + (1 + 1 + 8 + 8) + 1  # count, topk stage, float32 stage
    return head, rest[:stages_len], rest[stages_len:]


def test_topk_count_larger_than_n_is_refused() -> None:
    head, stages, payloads = topk_parts()
    forged = stages[:11] + struct.pack("<Q", 101) + stages[19:]
    refused(reseal(head + forged + payloads), "101 of 100")


@pytest.mark.parametrize(
    "indices",
    [
        b"\xff" * 40,  # a varint that never ends
        b"\x80" * 39 + b"\x7f",  # one varint far beyond n
    ],
    ids=["unterminated", "overlong"],
)
def test_bad_index_bytes_are_refused(indices: bytes) -> None:
    head, stages, payloads = topk_parts()
    (length,) = struct.unpack("<Q", payloads[:8])
    original, values = payloads[8 : 8 + length], payloads[8 + length :]
    forged = original[:1] + indices
    sparse = struct.pack("<Q", len(forged)) + forged
    # inspect reads headers only; the indices are checked when decoded.
    refused(reseal(head + stages + sparse + values), "(?i)index|indices|varint", header_only=False)


def test_sparse_payload_longer_than_the_frame_is_refused() -> None:
    head, stages, payloads = topk_parts()
    forged = struct.pack("<Q", 2**63) + payloads[8:]
    refused(reseal(head + stages + forged), "sparse payload")


@pytest.mark.parametrize("delta", [-1, 1])
def test_payload_length_off_by_one_is_refused(delta: int) -> None:
    body = body_of(quant_frame())
    forged = body[:-1] if delta < 0 else body + b"\x00"
    refused(reseal(forged), r"payload is \d+ bytes.*needs \d+")


def test_sparsifier_in_last_position_is_refused() -> None:
    head, stages, payloads = topk_parts()
    # Declare one stage only: the topk stage then ends the pipeline, which no encoder writes.
    refused(reseal(head + b"\x01" + stages[1:-1] + payloads), "stage order")


def test_stage_parameters_out_of_range_are_refused() -> None:
    head, rest = split(quant_frame())
    assert rest[1] == head[5]  # quant stage: id, bits, stochastic flag, chunk
    refused(reseal(head + rest[:2] + b"\x00" + rest[3:]), "out of range")
    refused(reseal(head + rest[:3] + b"\x02" + rest[4:]), "stochastic flag is 2")
