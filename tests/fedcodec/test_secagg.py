"""The Rust secure-aggregation kernels: keys agree, seals detect tampering, t shares rebuild, masks cancel."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from scipy import stats

from fedcodec import CodecError, FrameError, secagg


def test_both_sides_of_a_pair_derive_the_same_key_and_purposes_differ() -> None:
    a, b = secagg.derive_scalar(b"alice", b"k"), secagg.derive_scalar(b"bob", b"k")
    pa, pb = secagg.public_key(a), secagg.public_key(b)
    assert secagg.agree(a, pb, b"mask") == secagg.agree(b, pa, b"mask")
    assert secagg.agree(a, pb, b"mask") != secagg.agree(a, pb, b"share")


def test_small_order_public_key_is_refused() -> None:
    with pytest.raises(CodecError, match="small order"):
        secagg.agree(secagg.derive_scalar(b"a", b"k"), bytes(32), b"x")


def test_sealed_share_opens_only_unchanged() -> None:
    key, nonce = bytes(range(32)), bytes(12)
    sealed = secagg.seal(key, nonce, b"round", b"share")
    assert secagg.open_sealed(key, nonce, b"round", sealed) == b"share"
    with pytest.raises(CodecError, match="authentication"):
        secagg.open_sealed(key, nonce, b"round 2", sealed)
    with pytest.raises(CodecError, match="authentication"):
        secagg.open_sealed(key, nonce, b"round", bytes([sealed[0] ^ 1]) + sealed[1:])


def test_any_t_shares_rebuild_the_secrets_and_t_minus_one_do_not() -> None:
    secrets = [secagg.derive_scalar(b"s", b"1"), secagg.derive_scalar(b"s", b"2")]
    xs = [3, 5, 8, 13, 21]
    shares = secagg.share(secrets, xs, 3, b"coin")
    for pick in ([0, 1, 2], [4, 2, 0], [1, 3, 4]):
        (got,) = secagg.interpolate([xs[i] for i in pick], [shares[i] for i in pick], [0])
        assert got == secrets[0] + secrets[1]
    (two,) = secagg.interpolate(xs[:2], shares[:2], [0])
    assert two[:32] != secrets[0]
    assert two[32:] != secrets[1]


def test_many_agreements_in_one_call_match_one_by_one() -> None:
    me = secagg.derive_scalar(b"me", b"k")
    peers = [secagg.public_key(secagg.derive_scalar(bytes([i]), b"k")) for i in range(9)]
    assert secagg.agree_many(me, peers, b"mask") == [secagg.agree(me, p, b"mask") for p in peers]
    with pytest.raises(CodecError, match=r"peer key 2: .*small order"):
        secagg.agree_many(me, [*peers[:2], bytes(32)], b"mask")


@pytest.mark.parametrize("prg", secagg.prgs())
def test_pair_masks_cancel_and_the_ring_sum_is_exact(prg: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1 << 16, 100_000, dtype=np.uint32)
    y = rng.integers(0, 1 << 16, 100_000, dtype=np.uint32)
    s = secagg.derive_scalar(b"pair", b"seed")
    acc = np.zeros(x.size, dtype=np.uint32)
    secagg.add_packed(acc, secagg.mask(x, [s], [1], 17, prg), 17)
    secagg.add_packed(acc, secagg.mask(y, [s], [-1], 17, prg), 17)
    np.testing.assert_array_equal(acc, x + y)


def test_aes_mask_stream_is_the_aes_128_ctr_keystream_of_an_independent_implementation() -> None:
    # seed = AES-128 key || initial counter block; the counter starts at all-ones, so it wraps at once
    key = secagg.derive_scalar(b"u", b"v")[:16]
    seed = key + b"\xff" * 16
    n = 3 * (1 << 14) + 11  # several of the kernel's parallel chunks, and a ragged tail
    encryptor = Cipher(algorithms.AES(key), modes.CTR(b"\xff" * 16)).encryptor()
    keystream = encryptor.update(bytes(4 * n)) + encryptor.finalize()
    np.testing.assert_array_equal(
        secagg.mask_stream(seed, n, 32, "aes128-ctr"), np.frombuffer(keystream, dtype="<u4")
    )
    # a 20-bit ring keeps the low 20 bits of each 4-byte element; a 12-bit ring of 2-byte ones
    words = np.frombuffer(keystream, dtype="<u4")
    np.testing.assert_array_equal(secagg.mask_stream(seed, n, 20, "aes128-ctr"), words & 0xFFFFF)
    halves = np.frombuffer(keystream[: 2 * n], dtype="<u2").astype(np.uint32)
    np.testing.assert_array_equal(secagg.mask_stream(seed, n, 12, "aes128-ctr"), halves & 0xFFF)


def test_chacha_mask_stream_is_the_chacha20_keystream_of_an_independent_implementation() -> None:
    seed = secagg.derive_scalar(b"u", b"v")
    n = 3 * (1 << 14) + 11
    # cryptography's ChaCha20 takes the RFC 7539 block counter (4 bytes, little-endian) then the nonce
    encryptor = Cipher(algorithms.ChaCha20(seed, bytes(16)), mode=None).encryptor()
    keystream = encryptor.update(bytes(4 * n)) + encryptor.finalize()
    np.testing.assert_array_equal(
        secagg.mask_stream(seed, n, 32, "chacha20"), np.frombuffer(keystream, dtype="<u4")
    )


def test_the_prg_is_named_explicitly_and_an_unknown_one_is_refused() -> None:
    assert secagg.prgs() == ["aes128-ctr", "chacha20"]
    seed = secagg.derive_scalar(b"u", b"v")
    assert not np.array_equal(
        secagg.mask_stream(seed, 64, 32, "aes128-ctr"), secagg.mask_stream(seed, 64, 32, "chacha20")
    )
    with pytest.raises(CodecError, match="unknown mask PRG 'chacha8'"):
        secagg.mask_stream(seed, 64, 32, "chacha8")


def test_packed_upload_takes_ring_bits_per_element() -> None:
    x = np.arange(1000, dtype=np.uint32)
    packed = secagg.pack(x, 23)
    assert len(packed) == (1000 * 23 + 7) // 8
    np.testing.assert_array_equal(secagg.unpack(packed, 23, 1000), x)
    with pytest.raises(FrameError, match="take"):
        secagg.unpack(packed[:-1], 23, 1000)


@pytest.mark.parametrize("prg", secagg.prgs())
def test_mask_stream_is_uniform_over_the_ring(prg: str) -> None:
    stream = secagg.mask_stream(secagg.derive_scalar(b"u", b"v"), 1 << 20, 20, prg)
    counts = np.bincount(stream >> 12, minlength=256)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_stochastic_rounding_is_unbiased_clipped_and_seeded() -> None:
    x = np.full(200_000, 0.3, dtype=np.float32)
    seed = secagg.derive_scalar(b"r", b"s")
    codes = secagg.quantize(x, 1.0, 4, seed)
    assert codes.mean() == pytest.approx(1.3 * 15 / 2, abs=0.01)
    np.testing.assert_array_equal(codes, secagg.quantize(x, 1.0, 4, seed))
    edges = secagg.quantize(np.array([-9.0, 9.0], dtype=np.float32), 1.0, 4, seed)
    np.testing.assert_array_equal(edges, [0, 15])
    with pytest.raises(CodecError, match="non-finite"):
        secagg.quantize(np.array([np.nan], dtype=np.float32), 1.0, 4, seed)


@pytest.mark.parametrize("prg", secagg.prgs())
def test_rounding_and_masking_in_one_pass_uploads_the_same_bytes(prg: str) -> None:
    rng = np.random.default_rng(4)
    seed = secagg.derive_scalar(b"r", b"one pass")
    seeds = [secagg.derive_scalar(b"m", b"%d" % i) for i in range(4)]
    signs = [1, -1, 1, -1]
    for n in (0, 7, 70_001):  # the last spans several parallel chunks
        x = (rng.standard_normal(n) * 0.02).astype(np.float32)
        for bits, ring_bits in ((8, 12), (16, 23), (24, 32)):
            two_calls = secagg.mask(secagg.quantize(x, 0.05, bits, seed), seeds, signs, ring_bits, prg)
            assert secagg.quantize_mask(x, 0.05, bits, seed, seeds, signs, ring_bits, prg) == two_calls


def test_rounding_and_masking_in_one_pass_refuses_what_either_step_refuses() -> None:
    seed, masks = secagg.derive_scalar(b"r", b"s"), [secagg.derive_scalar(b"m", b"0")]
    x = np.zeros(50_000, dtype=np.float32)
    x[40_123] = np.inf
    with pytest.raises(CodecError, match="non-finite value \\(inf\\) at flat index 40123"):
        secagg.quantize_mask(x, 1.0, 8, seed, masks, [1], 16, "aes128-ctr")
    with pytest.raises(CodecError, match="do not fit a ring of 12 bits"):
        secagg.quantize_mask(x[:10], 1.0, 16, seed, masks, [1], 12, "aes128-ctr")
    with pytest.raises(CodecError, match="clip must be finite"):
        secagg.quantize_mask(x[:10], 0.0, 8, seed, masks, [1], 16, "aes128-ctr")
    with pytest.raises(CodecError, match="rounding seed"):
        secagg.quantize_mask(x[:10], 1.0, 8, b"short", masks, [1], 16, "aes128-ctr")


def test_a_key_off_the_curve_or_of_small_order_is_faulted_and_refused() -> None:
    me = secagg.derive_scalar(b"me", b"k")
    honest = secagg.public_key(secagg.derive_scalar(b"peer", b"k"))
    candidates = [secagg.derive_scalar(b"raw", bytes([i])) for i in range(32)]  # about half lie on the twist
    faults = secagg.key_faults([honest, bytes(32), *candidates])
    assert faults[:2] == [None, "it has small order (non-contributory X25519 agreement)"]
    twist = [k for k, fault in zip(candidates, faults[2:], strict=True) if fault is not None]
    assert 4 <= len(twist) <= 28
    for key in twist:
        with pytest.raises(CodecError, match="not on Curve25519"):
            secagg.agree(me, key, b"x")
    for key in (k for k in candidates if k not in twist):
        assert len(secagg.agree(me, key, b"x")) == 32
