//! Compact coding of ascending sparse indices: LEB128 gaps, Golomb–Rice gaps or a bitmap, whichever is smallest.

// Layout: one tag byte, then
// - tag 0: `k` LEB128 varints (at most 5 bytes each); the first is `idx[0]`, each later one is
//   `idx[i] - idx[i-1] - 1`, so strictly increasing indices give non-negative gaps and dense runs
//   cost one byte per index;
// - tag 1: a bitmap of `ceil(n / 8)` bytes, bit `i % 8` of byte `i / 8` set iff `i` is selected;
// - tag 2: the same gaps Golomb–Rice coded (`crate::wire::rice`), within a few percent of their entropy;
// - tag 3: the Rice gaps in blocks of 2^shift indices, each block's first index stored whole and
//   its stream byte-aligned, so threads decode blocks in parallel (`rice::encode_chunked`).
//
// Ties in size go to the varints, then to Rice. Selections of at least `CHUNKED_MIN` indices are
// written with tag 3 instead of tag 2 (0.1 % larger at 1 % of 10M, decoded on every core);
// smaller ones keep tag 2, so their frames are byte for byte what earlier builds wrote.

use crate::error::{CodecError, Result};
use crate::wire::rice;

const TAG_VARINT: u8 = 0;
const TAG_BITMAP: u8 = 1;
const TAG_RICE: u8 = 2;
const TAG_CHUNKED_RICE: u8 = 3;
/// Selections this large are Rice-coded in independent blocks (tag 3).
const CHUNKED_MIN: usize = 1 << 16;
/// `log2` of the indices per tag-3 block: 8192 indices, 8 table bytes per about 8 KiB of code.
const BLOCK_SHIFT: u32 = 13;
/// A u32 needs at most 5 LEB128 bytes.
const MAX_VARINT_BYTES: usize = 5;

/// LEB128 length of `v`.
#[inline]
fn varint_len(v: u32) -> usize {
    1 + (v | 1).ilog2() as usize / 7
}

/// The gaps the varint form writes: `idx[0]`, then `idx[i] - idx[i-1] - 1`.
fn gaps(idx: &[u32]) -> impl Iterator<Item = u32> + '_ {
    idx.iter().scan(None, |prev: &mut Option<u32>, &i| {
        let gap = prev.map_or(i, |p| i - p - 1);
        *prev = Some(i);
        Some(gap)
    })
}

fn varint_payload_len(idx: &[u32]) -> usize {
    gaps(idx).map(varint_len).sum()
}

/// Encoded size of `idx` (ascending, `< n`), tag byte included, without encoding.
#[must_use]
pub fn encoded_indices_len(idx: &[u32], n: usize) -> usize {
    1 + varint_payload_len(idx)
        .min(n.div_ceil(8))
        .min(rice_len(idx, rice::best_param(idx, n)))
}

/// Bytes of the Rice form this size of selection gets (tag 2, or tag 3 from `CHUNKED_MIN`).
fn rice_len(idx: &[u32], param: u32) -> usize {
    if idx.len() >= CHUNKED_MIN {
        rice::chunked_len(idx, param, BLOCK_SHIFT)
    } else {
        rice::encoded_len(idx, param)
    }
}

/// Encodes strictly increasing indices, all `< n`, in the smallest of the three forms.
///
/// Precondition: `idx` strictly increasing and `< n` (what the top-k selectors return).
#[must_use]
pub fn encode_indices(idx: &[u32], n: usize) -> Vec<u8> {
    debug_assert!(idx.windows(2).all(|w| w[0] < w[1]));
    debug_assert!(idx.last().is_none_or(|&i| (i as usize) < n));
    let varint_bytes = varint_payload_len(idx);
    let bitmap_bytes = n.div_ceil(8);
    let rice_param = rice::best_param(idx, n);
    let rice_bytes = rice_len(idx, rice_param);
    if rice_bytes < varint_bytes && rice_bytes < bitmap_bytes {
        let mut out = Vec::with_capacity(1 + rice_bytes);
        if idx.len() >= CHUNKED_MIN {
            out.push(TAG_CHUNKED_RICE);
            out.extend_from_slice(&rice::encode_chunked(idx, rice_param, BLOCK_SHIFT));
        } else {
            out.push(TAG_RICE);
            out.extend_from_slice(&rice::encode(idx, rice_param));
        }
        out
    } else if varint_bytes <= bitmap_bytes {
        let mut out = Vec::with_capacity(1 + varint_bytes);
        out.push(TAG_VARINT);
        for mut g in gaps(idx) {
            while g >= 0x80 {
                out.push((g as u8) | 0x80);
                g >>= 7;
            }
            out.push(g as u8);
        }
        out
    } else {
        let mut out = vec![0u8; 1 + bitmap_bytes];
        out[0] = TAG_BITMAP;
        for &i in idx {
            out[1 + i as usize / 8] |= 1 << (i % 8);
        }
        out
    }
}

/// Decodes exactly `k` strictly increasing indices `< n` from untrusted bytes.
///
/// Every byte must be consumed; varints may not exceed 5 bytes or overflow u32; a bitmap must be
/// exactly `ceil(n / 8)` bytes with no bits set at or past `n` and exactly `k` bits set.
pub fn decode_indices(bytes: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    decode_indices_touching(bytes, n, k, |_| {})
}

/// [`decode_indices`], calling `touch` with each Rice-coded index as it is decoded: a scatter
/// prefetches its target there, so the cache misses overlap the decoding instead of following
/// it (the dense varint and bitmap codings are not touched).
pub(crate) fn decode_indices_touching(
    bytes: &[u8],
    n: usize,
    k: usize,
    touch: impl Fn(u64) + Sync,
) -> Result<Vec<u32>> {
    let (&tag, body) = bytes
        .split_first()
        .ok_or_else(|| CodecError::frame("index block is empty"))?;
    match tag {
        TAG_VARINT => decode_varints(body, n, k),
        TAG_BITMAP => decode_bitmap(body, n, k),
        TAG_RICE => rice::decode_touching(body, n, k, touch),
        TAG_CHUNKED_RICE => rice::decode_chunked_touching(body, n, k, touch),
        other => Err(CodecError::frame(format!(
            "unknown index coding tag {other}"
        ))),
    }
}

fn decode_varints(body: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    if k > body.len() {
        return Err(CodecError::frame(format!(
            "{k} indices cannot fit in {} bytes",
            body.len()
        )));
    }
    let mut out = Vec::with_capacity(k);
    let mut pos = 0usize;
    let mut next = 0u64; // smallest value the next index may take
    for _ in 0..k {
        let mut gap = 0u64;
        let mut shift = 0;
        loop {
            let byte = *body
                .get(pos)
                .ok_or_else(|| CodecError::frame("index varints are truncated"))?;
            pos += 1;
            gap |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift >= 7 * MAX_VARINT_BYTES as u32 {
                return Err(CodecError::frame("index varint is longer than 5 bytes"));
            }
        }
        if gap > u64::from(u32::MAX) {
            return Err(CodecError::frame("index varint overflows u32"));
        }
        let index = next + gap;
        if index >= n as u64 || index > u64::from(u32::MAX) {
            return Err(CodecError::frame(format!(
                "index {index} is out of range for {n} elements"
            )));
        }
        out.push(index as u32);
        next = index + 1;
    }
    if pos != body.len() {
        return Err(CodecError::frame(format!(
            "{} trailing bytes after the index varints",
            body.len() - pos
        )));
    }
    Ok(out)
}

fn decode_bitmap(body: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    if body.len() != n.div_ceil(8) {
        return Err(CodecError::frame(format!(
            "index bitmap is {} bytes, expected {}",
            body.len(),
            n.div_ceil(8)
        )));
    }
    if !n.is_multiple_of(8) && body.last().is_some_and(|&b| b >> (n % 8) != 0) {
        return Err(CodecError::frame("index bitmap has bits set past the end"));
    }
    let ones: usize = body.iter().map(|b| b.count_ones() as usize).sum();
    if ones != k {
        return Err(CodecError::frame(format!(
            "index bitmap holds {ones} indices, expected {k}"
        )));
    }
    let mut out = Vec::with_capacity(k);
    for (byte_index, &b) in body.iter().enumerate() {
        let mut bits = b;
        while bits != 0 {
            out.push((byte_index * 8) as u32 + bits.trailing_zeros());
            bits &= bits - 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_smaller_form() {
        let sparse = [3u32, 1000, 70_000];
        let enc = encode_indices(&sparse, 1 << 20);
        assert_eq!(enc[0], TAG_VARINT);
        assert_eq!(enc.len(), encoded_indices_len(&sparse, 1 << 20));
        assert_eq!(enc, vec![0, 3, 0xE4, 0x07, 0x87, 0x9B, 0x04]);
        let dense: Vec<u32> = (0..100).step_by(2).collect();
        let enc = encode_indices(&dense, 100);
        assert_eq!(enc[0], TAG_BITMAP);
        assert_eq!(enc.len(), 1 + 13);
        assert_eq!(decode_indices(&enc, 100, 50).unwrap(), dense);
    }

    #[test]
    fn top_one_percent_goes_to_rice() {
        let mut g = crate::kernels::rng::SplitMix64::new(3);
        let idx: Vec<u32> = (0..200_000u32).filter(|_| g.next_f64() < 0.01).collect();
        let enc = encode_indices(&idx, 200_000);
        assert_eq!(enc[0], TAG_RICE);
        assert_eq!(enc.len(), encoded_indices_len(&idx, 200_000));
        assert!(enc.len() < varint_payload_len(&idx));
        assert_eq!(decode_indices(&enc, 200_000, idx.len()).unwrap(), idx);
    }

    #[test]
    fn large_selections_go_to_chunked_rice() {
        let mut g = crate::kernels::rng::SplitMix64::new(6);
        let n = 8_000_000;
        let idx: Vec<u32> = (0..n as u32).filter(|_| g.next_f64() < 0.01).collect();
        assert!(idx.len() >= CHUNKED_MIN);
        let enc = encode_indices(&idx, n);
        assert_eq!(enc[0], TAG_CHUNKED_RICE);
        assert_eq!(enc.len(), encoded_indices_len(&idx, n));
        assert_eq!(decode_indices(&enc, n, idx.len()).unwrap(), idx);
        // One index fewer than the threshold keeps the single stream earlier builds wrote.
        let below = &idx[..CHUNKED_MIN - 1];
        let enc = encode_indices(below, n);
        assert_eq!(enc[0], TAG_RICE);
        assert_eq!(decode_indices(&enc, n, below.len()).unwrap(), below);
    }

    #[test]
    fn rejects_malformed_varints() {
        let n = 1000;
        assert!(decode_indices(&[], n, 0).is_err());
        assert!(decode_indices(&[7], n, 0).is_err());
        assert_eq!(decode_indices(&[0], n, 0).unwrap(), Vec::<u32>::new());
        assert!(decode_indices(&[0, 5], n, 0).is_err(), "trailing byte");
        assert!(decode_indices(&[0, 5, 5], n, 1).is_err(), "trailing byte");
        assert!(decode_indices(&[0, 0x80], n, 1).is_err(), "truncated");
        assert!(
            decode_indices(&[0, 0xE8, 0x07], n, 1).is_err(),
            "1000 is out of range"
        );
        assert_eq!(decode_indices(&[0, 0xE7, 0x07], n, 1).unwrap(), vec![999]);
        assert!(
            decode_indices(&[0, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F], usize::MAX, 1).is_err(),
            "overflow"
        );
        assert!(
            decode_indices(&[0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00], usize::MAX, 1).is_err(),
            "6 bytes"
        );
        assert!(
            decode_indices(&[0, 1, 2], n, 3).is_err(),
            "k larger than bytes"
        );
        let near_max = [0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0];
        assert!(
            decode_indices(&near_max, usize::MAX, 2).is_err(),
            "second index passes u32::MAX"
        );
    }

    #[test]
    fn rejects_malformed_bitmaps() {
        assert!(decode_indices(&[1, 0b0000_0101], 3, 2).is_ok());
        assert!(
            decode_indices(&[1, 0b0000_1101], 3, 3).is_err(),
            "bit past n"
        );
        assert!(decode_indices(&[1, 0b0000_0101], 3, 1).is_err(), "popcount");
        assert!(
            decode_indices(&[1, 0b0000_0101, 0], 3, 2).is_err(),
            "length"
        );
    }

    proptest! {
        #[test]
        fn round_trips(set in proptest::collection::btree_set(0u32..5000, 0..600), extra in 0usize..100) {
            let idx: Vec<u32> = set.into_iter().collect();
            let n = idx.last().map_or(0, |&i| i as usize + 1) + extra;
            let enc = encode_indices(&idx, n);
            prop_assert_eq!(enc.len(), encoded_indices_len(&idx, n));
            prop_assert_eq!(decode_indices(&enc, n, idx.len()).unwrap(), idx.clone());
            if !enc.is_empty() {
                prop_assert!(decode_indices(&enc[..enc.len() - 1], n, idx.len()).is_err());
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), n in 0usize..3000, k in 0usize..400) {
            if let Ok(idx) = decode_indices(&bytes, n, k) {
                prop_assert_eq!(idx.len(), k);
                prop_assert!(idx.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(idx.iter().all(|&i| (i as usize) < n));
            }
        }
    }
}
