//! Golomb–Rice coding of the gaps between ascending indices: within a few percent of the entropy of
//! the near-geometric gaps that top-k leaves, where LEB128 varints waste a quarter.

use rayon::prelude::*;

use crate::error::{CodecError, Result};
use crate::kernels::shared::try_run_shared;

/// Largest Rice parameter tried; gaps never need more than 32 bits.
const MAX_PARAM: u32 = 31;

/// Appends bits LSB-first.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    filled: u32,
}

impl BitWriter {
    fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            acc: 0,
            filled: 0,
        }
    }

    /// Writes the low `count` (<= 32) bits of `value`.
    fn bits(&mut self, value: u64, count: u32) {
        self.acc |= (value & ((1u64 << count) - 1)) << self.filled;
        self.filled += count;
        while self.filled >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.filled -= 8;
        }
    }

    /// Writes `q` one-bits and a terminating zero.
    fn unary(&mut self, mut q: u64) {
        while q >= 32 {
            self.bits(u64::from(u32::MAX), 32);
            q -= 32;
        }
        self.bits((1u64 << q) - 1, q as u32 + 1);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.bytes.push(self.acc as u8);
        }
        self.bytes
    }
}

/// Reads bits LSB-first from untrusted bytes, a 64-bit window at a time.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bits_left(&self) -> usize {
        self.bytes.len() * 8 - self.pos
    }

    /// The next bits from `pos` (at least 57 valid when available), zero past the end.
    #[inline]
    fn window(&self) -> u64 {
        let byte = self.pos / 8;
        let word = if let Some(eight) = self.bytes.get(byte..byte + 8) {
            u64::from_le_bytes(eight.try_into().unwrap_or_default())
        } else {
            // Only the last 7 bytes pay for a variable-length copy (a memmove call).
            let mut buf = [0u8; 8];
            let tail = self.bytes.get(byte..).unwrap_or_default();
            buf[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(buf)
        };
        word >> (self.pos % 8)
    }

    /// Reads `count` (<= 32) bits.
    fn bits(&mut self, count: u32) -> Result<u64> {
        if count as usize > self.bits_left() {
            return Err(CodecError::frame("rice index stream ends early"));
        }
        let v = self.window() & ((1u64 << count) - 1);
        self.pos += count as usize;
        Ok(v)
    }

    /// One rice code, `q` one-bits, a zero, then `b` bits: `(q << b) | bits`, refusing a `q`
    /// above `limit`. A code that fits one 57-bit window (nearly all) costs one window read.
    #[inline]
    fn rice(&mut self, b: u32, limit: u64) -> Result<u64> {
        if self.bits_left() >= 64 {
            let w = self.window();
            let ones = w.trailing_ones();
            if ones as u64 <= limit && ones + 1 + b <= 57 {
                let low = (w >> (ones + 1)) & ((1u64 << b) - 1);
                self.pos += (ones + 1 + b) as usize;
                return Ok((u64::from(ones) << b) | low);
            }
        }
        let q = self.unary(limit)?;
        Ok((q << b) | self.bits(b)?)
    }

    /// Counts one-bits up to the next zero, refusing runs longer than `limit`.
    fn unary(&mut self, limit: u64) -> Result<u64> {
        let mut q = 0u64;
        loop {
            let avail = self.bits_left().min(57);
            if avail == 0 {
                return Err(CodecError::frame("rice index stream ends early"));
            }
            let ones = (self.window().trailing_ones() as usize).min(avail);
            q += ones as u64;
            if q > limit {
                return Err(CodecError::frame("rice index quotient runs past the array"));
            }
            if ones < avail {
                self.pos += ones + 1;
                return Ok(q);
            }
            self.pos += ones;
        }
    }
}

/// Gaps between consecutive indices (the first from -1), each >= 0.
fn gaps(idx: &[u32]) -> impl Iterator<Item = u64> + '_ {
    let mut prev: i64 = -1;
    idx.iter().map(move |&i| {
        let g = (i64::from(i) - prev - 1) as u64;
        prev = i64::from(i);
        g
    })
}

/// Exact payload bits for parameter `b`.
fn coded_bits(idx: &[u32], b: u32) -> u64 {
    gaps(idx).map(|g| (g >> b) + 1 + u64::from(b)).sum()
}

/// The Rice parameter with the fewest bits, searched around the geometric estimate.
#[must_use]
pub fn best_param(idx: &[u32], n: usize) -> u32 {
    let k = idx.len().max(1) as f64;
    let mean_gap = (n as f64 - k) / k;
    let guess = (mean_gap * std::f64::consts::LN_2).max(1.0).log2().floor() as u32;
    let lo = guess.saturating_sub(1);
    let hi = (guess + 1).min(MAX_PARAM);
    (lo..=hi).min_by_key(|&b| coded_bits(idx, b)).unwrap_or(0)
}

/// Bytes `encode` will produce for parameter `b` (parameter byte included).
#[must_use]
pub fn encoded_len(idx: &[u32], b: u32) -> usize {
    1 + coded_bits(idx, b).div_ceil(8) as usize
}

/// Encodes ascending indices as one parameter byte and the Rice-coded gaps.
#[must_use]
pub fn encode(idx: &[u32], b: u32) -> Vec<u8> {
    let mut w = BitWriter::with_capacity(encoded_len(idx, b));
    w.bytes.push(b as u8);
    for g in gaps(idx) {
        w.unary(g >> b);
        w.bits(g, b);
    }
    w.finish()
}

/// Reads the Rice parameter byte that starts a stream, refusing one above [`MAX_PARAM`].
pub(crate) fn param(b: u8) -> Result<u32> {
    let b = u32::from(b);
    if b > MAX_PARAM {
        return Err(CodecError::frame(format!(
            "rice index parameter {b} exceeds {MAX_PARAM}"
        )));
    }
    Ok(b)
}

/// Decodes exactly `k` strictly ascending indices below `n`; every bit is accounted for.
pub fn decode(bytes: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    decode_touching(bytes, n, k, |_| {})
}

/// [`decode`], calling `touch` with each index as it is decoded (see
/// [`crate::wire::index_coding::decode_indices_touching`]).
pub(crate) fn decode_touching(
    bytes: &[u8],
    n: usize,
    k: usize,
    touch: impl Fn(u64),
) -> Result<Vec<u32>> {
    let (&b, stream) = bytes
        .split_first()
        .ok_or_else(|| CodecError::frame("rice index stream has no parameter byte"))?;
    let b = param(b)?;
    check_fits(k, b, stream.len())?;
    let mut out = crate::error::try_filled(k, 0u32, "rice indices")?;
    decode_run(stream, b, n, 0, &mut out, &touch)?;
    Ok(out)
}

/// Refuses `k` codes that cannot fit in `len` bytes (each costs at least `b + 1` bits), before
/// anything is allocated for them.
pub(crate) fn check_fits(k: usize, b: u32, len: usize) -> Result<()> {
    if (k as u64).saturating_mul(u64::from(b) + 1) > len as u64 * 8 {
        return Err(CodecError::frame(format!(
            "{k} indices cannot fit in {len} bytes of rice index code"
        )));
    }
    Ok(())
}

/// Decodes `out.len()` Rice codes of parameter `b` from `stream` into indices: the first is
/// `start + gap`, each later one the previous plus one plus its gap. Every index must be below
/// `n`, and the codes must end in the stream's last byte, padded with zero bits.
///
/// Most codes are read from a 64-bit register refilled eight bytes at a time (one unaligned
/// load per seven or eight bytes, no bounds arithmetic per code); a code whose unary part runs
/// past the register, and the last few bytes, take the checked [`BitReader`] path.
pub(crate) fn decode_run(
    stream: &[u8],
    b: u32,
    n: usize,
    start: u64,
    out: &mut [u32],
    touch: &impl Fn(u64),
) -> Result<()> {
    let n = n as u64;
    let low_mask = (1u64 << b) - 1;
    let mut next = start;
    let mut done = 0usize;
    // The register holds `avail` unread bits from bit `8 * byte - avail` of the stream; bits
    // above `avail` may hold the stream's next bits too (refills OR the same bits in again).
    let mut buf = 0u64;
    let mut avail = 0u32;
    let mut byte = 0usize;
    for o in out.iter_mut() {
        if avail < 56 {
            let Some(eight) = stream.get(byte..byte + 8) else {
                break;
            };
            let mut word = [0u8; 8];
            word.copy_from_slice(eight);
            buf |= u64::from_le_bytes(word) << avail;
            let loaded = (63 - avail) / 8;
            byte += loaded as usize;
            avail += 8 * loaded;
        }
        let ones = buf.trailing_ones();
        let len = ones + 1 + b;
        if len > avail {
            break;
        }
        let gap = (u64::from(ones) << b) | ((buf >> (ones + 1)) & low_mask);
        // `len` <= 63 here, so the shift is in range.
        buf >>= len;
        avail -= len;
        let i = next + gap;
        if i >= n {
            return Err(out_of_range(i, n));
        }
        touch(i);
        *o = i as u32;
        next = i + 1;
        done += 1;
    }
    let mut r = BitReader {
        bytes: stream,
        pos: byte * 8 - avail as usize,
    };
    for o in &mut out[done..] {
        let i = next + r.rice(b, n >> b)?;
        if i >= n {
            return Err(out_of_range(i, n));
        }
        touch(i);
        *o = i as u32;
        next = i + 1;
    }
    let used_bytes = r.pos.div_ceil(8);
    if used_bytes != stream.len() {
        return Err(CodecError::frame(format!(
            "rice index stream has {} trailing bytes",
            stream.len() - used_bytes
        )));
    }
    if !r.pos.is_multiple_of(8) && stream[used_bytes - 1] >> (r.pos % 8) != 0 {
        return Err(CodecError::frame("rice index stream has non-zero padding"));
    }
    Ok(())
}

fn out_of_range(i: u64, n: u64) -> CodecError {
    CodecError::frame(format!("index {i} is out of range for {n} elements"))
}

/// Smallest and largest `log2` of the indices per block a chunked stream may declare.
pub const MIN_BLOCK_SHIFT: u32 = 4;
pub const MAX_BLOCK_SHIFT: u32 = 24;

/// Bytes of one block's table entry: its first index and its stream's length, both u32.
const BLOCK_ENTRY: usize = 8;

/// Rice-coded bits of the gaps inside one block (its first index is stored whole).
fn block_bits(block: &[u32], b: u32) -> u64 {
    block
        .windows(2)
        .map(|w| (u64::from(w[1] - w[0] - 1) >> b) + 1 + u64::from(b))
        .sum()
}

/// Bytes [`encode_chunked`] will produce: parameter and shift bytes, the block table, and each
/// block's stream padded to a whole byte.
#[must_use]
pub fn chunked_len(idx: &[u32], b: u32, shift: u32) -> usize {
    2 + idx
        .chunks(1 << shift)
        .map(|block| BLOCK_ENTRY + block_bits(block, b).div_ceil(8) as usize)
        .sum::<usize>()
}

/// Encodes ascending indices as Rice gaps in blocks of `2^shift` indices that decode
/// independently: parameter byte, shift byte, then per block its first index and stream length
/// (u32 LE each), then the streams. Blocks are encoded in parallel.
#[must_use]
pub fn encode_chunked(idx: &[u32], b: u32, shift: u32) -> Vec<u8> {
    debug_assert!((MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&shift));
    let streams: Vec<Vec<u8>> = idx
        .par_chunks(1 << shift)
        .map(|block| {
            let mut w = BitWriter::with_capacity(block_bits(block, b).div_ceil(8) as usize);
            for pair in block.windows(2) {
                let g = u64::from(pair[1] - pair[0] - 1);
                w.unary(g >> b);
                w.bits(g, b);
            }
            w.finish()
        })
        .collect();
    let mut out = Vec::with_capacity(chunked_len(idx, b, shift));
    out.extend_from_slice(&[b as u8, shift as u8]);
    for (block, stream) in idx.chunks(1 << shift).zip(&streams) {
        out.extend_from_slice(&block[0].to_le_bytes());
        out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
    }
    for stream in &streams {
        out.extend_from_slice(stream);
    }
    out
}

/// Decodes exactly `k` strictly ascending indices below `n` from [`encode_chunked`]'s layout,
/// the blocks in parallel. The table is checked whole (lengths summing to the bytes present, a
/// count that fits them) before the output is allocated; every block must end exactly at its
/// stream's end, and each block's first index must follow the previous block's last.
pub fn decode_chunked(bytes: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    decode_chunked_touching(bytes, n, k, |_| {})
}

/// [`decode_chunked`], calling `touch` with each index as it is decoded (see
/// [`crate::wire::index_coding::decode_indices_touching`]).
pub(crate) fn decode_chunked_touching(
    bytes: &[u8],
    n: usize,
    k: usize,
    touch: impl Fn(u64) + Sync,
) -> Result<Vec<u32>> {
    let [b, shift, rest @ ..] = bytes else {
        return Err(CodecError::frame(
            "chunked rice index stream has no parameter and block bytes",
        ));
    };
    let b = param(*b)?;
    let shift = u32::from(*shift);
    if !(MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT).contains(&shift) {
        return Err(CodecError::frame(format!(
            "chunked rice block shift {shift} is outside {MIN_BLOCK_SHIFT}..={MAX_BLOCK_SHIFT}"
        )));
    }
    let block = 1usize << shift;
    let blocks = k.div_ceil(block);
    let table_len = blocks
        .checked_mul(BLOCK_ENTRY)
        .filter(|&len| len <= rest.len())
        .ok_or_else(|| {
            CodecError::frame(format!(
                "chunked rice index table for {k} indices does not fit in {} bytes",
                rest.len()
            ))
        })?;
    let (table, streams) = rest.split_at(table_len);
    let mut parts = Vec::with_capacity(blocks);
    let mut offset = 0usize;
    for entry in table.chunks_exact(BLOCK_ENTRY) {
        let first = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        let len = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) as usize;
        let stream = offset
            .checked_add(len)
            .and_then(|end| streams.get(offset..end))
            .ok_or_else(|| CodecError::frame("chunked rice block runs past the index bytes"))?;
        offset += len;
        parts.push((u64::from(first), stream));
    }
    if offset != streams.len() {
        return Err(CodecError::frame(format!(
            "chunked rice index stream has {} trailing bytes",
            streams.len() - offset
        )));
    }
    // Every index after a block's first costs at least `b + 1` bits.
    check_fits(k - blocks, b, streams.len())?;
    let mut out = crate::error::try_filled(k, 0u32, "rice indices")?;
    let decode_block = |(o, &(first, stream)): (&mut [u32], &(u64, &[u8]))| {
        if first >= n as u64 {
            return Err(out_of_range(first, n as u64));
        }
        touch(first);
        o[0] = first as u32;
        decode_run(stream, b, n, first + 1, &mut o[1..], &touch)
    };
    try_run_shared(out.chunks_mut(block).zip(&parts).collect(), k, decode_block)?;
    for (j, &(first, _)) in parts.iter().enumerate().skip(1) {
        if first <= u64::from(out[j * block - 1]) {
            return Err(CodecError::frame(format!(
                "chunked rice block {j} starts at {first}, not after the block before it"
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::kernels::rng::SplitMix64;

    fn sparse(n: usize, p: f64, seed: u64) -> Vec<u32> {
        let mut g = SplitMix64::new(seed);
        (0..n as u32).filter(|_| g.next_f64() < p).collect()
    }

    #[test]
    fn near_entropy_for_one_percent() {
        let n = 1_000_000;
        let idx = sparse(n, 0.01, 1);
        let b = best_param(&idx, n);
        let bytes = encode(&idx, b).len() as f64;
        // Entropy of a Bernoulli(0.01) mask: n * H(0.01) bits.
        let p = idx.len() as f64 / n as f64;
        let entropy = n as f64 * (-(p * p.log2()) - (1.0 - p) * (1.0 - p).log2()) / 8.0;
        assert!(bytes / entropy < 1.03, "{bytes} vs {entropy}");
        assert_eq!(decode(&encode(&idx, b), n, idx.len()).unwrap(), idx);
    }

    #[test]
    fn hostile_streams_are_errors() {
        let idx = sparse(10_000, 0.05, 2);
        let b = best_param(&idx, 10_000);
        let good = encode(&idx, b);
        for cut in 0..good.len() {
            assert!(decode(&good[..cut], 10_000, idx.len()).is_err());
        }
        assert!(decode(&good, 10_000, idx.len() + 1).is_err());
        assert!(decode(&good, 100, idx.len()).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(decode(&long, 10_000, idx.len()).is_err());
        assert!(decode(&[40, 0xFF], 10, 1).is_err());
        assert!(decode(&[0, 0xFF, 0xFF, 0xFF, 0xFF], 1 << 30, 1).is_err());
    }

    #[test]
    fn chunked_blocks_decode_to_the_same_indices() {
        let n = 1_000_000;
        let idx = sparse(n, 0.01, 4);
        let b = best_param(&idx, n);
        let chunked = encode_chunked(&idx, b, 10);
        assert_eq!(chunked.len(), chunked_len(&idx, b, 10));
        // 10 blocks of 1024 indices: 8 table bytes and at most one padding byte each.
        let plain = encode(&idx, b).len();
        assert!(
            chunked.len() <= plain + 1 + 10 * 9,
            "{} vs {plain}",
            chunked.len()
        );
        assert_eq!(decode_chunked(&chunked, n, idx.len()).unwrap(), idx);
    }

    #[test]
    fn a_large_selection_decodes_its_blocks_on_the_pool() {
        let n = 3_000_000;
        let idx = sparse(n, 0.1, 7);
        assert!(idx.len() >= crate::kernels::shared::SERIAL_BELOW);
        let b = best_param(&idx, n);
        let mut bytes = encode_chunked(&idx, b, 13);
        assert_eq!(decode_chunked(&bytes, n, idx.len()).unwrap(), idx);
        // Block 5 claims block 4's first index: refused on the parallel path too.
        let (at4, at5) = (2 + 4 * BLOCK_ENTRY, 2 + 5 * BLOCK_ENTRY);
        bytes.copy_within(at4..at4 + 4, at5);
        assert!(decode_chunked(&bytes, n, idx.len()).is_err());
    }

    #[test]
    fn hostile_chunked_streams_are_errors() {
        let n = 20_000;
        let idx = sparse(n, 0.05, 5);
        let b = best_param(&idx, n);
        let good = encode_chunked(&idx, b, 6);
        assert_eq!(decode_chunked(&good, n, idx.len()).unwrap(), idx);
        for cut in 0..good.len() {
            assert!(
                decode_chunked(&good[..cut], n, idx.len()).is_err(),
                "cut {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(
            decode_chunked(&long, n, idx.len()).is_err(),
            "trailing byte"
        );
        assert!(
            decode_chunked(&good, n, idx.len() + 1).is_err(),
            "one index more"
        );
        assert!(decode_chunked(&good, idx[idx.len() - 1] as usize, idx.len()).is_err());
        for shift in [0, 3, 25, 255] {
            let mut bad = good.clone();
            bad[1] = shift;
            assert!(decode_chunked(&bad, n, idx.len()).is_err(), "shift {shift}");
        }
        // Block 1 claims to start where block 0 started: the order across blocks is checked.
        let mut swapped = good.clone();
        swapped.copy_within(2..6, 10);
        assert!(decode_chunked(&swapped, n, idx.len()).is_err());
        // A table claiming 2^24 indices per block from a few bytes is refused before allocating.
        assert!(decode_chunked(&[0, 24, 0, 0, 0, 0, 0, 0, 0, 0], n, 1 << 24).is_err());
        // A length that runs past the bytes present.
        let mut runs_over = good.clone();
        runs_over[6..10].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_chunked(&runs_over, n, idx.len()).is_err());
    }

    proptest! {
        #[test]
        fn prop_round_trip(mut idx in proptest::collection::btree_set(0u32..50_000, 1..500), b in 0u32..12) {
            let idx: Vec<u32> = std::mem::take(&mut idx).into_iter().collect();
            let bytes = encode(&idx, b);
            prop_assert_eq!(bytes.len(), encoded_len(&idx, b));
            prop_assert_eq!(decode(&bytes, 50_000, idx.len()).unwrap(), idx);
        }

        #[test]
        fn prop_chunked_round_trip(set in proptest::collection::btree_set(0u32..50_000, 1..700), b in 0u32..12, shift in MIN_BLOCK_SHIFT..8) {
            let idx: Vec<u32> = set.into_iter().collect();
            let bytes = encode_chunked(&idx, b, shift);
            prop_assert_eq!(bytes.len(), chunked_len(&idx, b, shift));
            prop_assert_eq!(decode_chunked(&bytes, 50_000, idx.len()).unwrap(), idx);
        }

        #[test]
        fn prop_chunked_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..96), n in 1usize..1000, k in 0usize..100) {
            if let Ok(idx) = decode_chunked(&bytes, n, k) {
                prop_assert_eq!(idx.len(), k);
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(idx.iter().all(|&i| (i as usize) < n));
            }
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 1usize..1000, k in 0usize..100) {
            let _ = decode(&bytes, n, k);
        }
    }
}
