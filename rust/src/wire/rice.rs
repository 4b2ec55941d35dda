//! Golomb–Rice coding of the gaps between ascending indices: within a few percent of the entropy of
//! the near-geometric gaps that top-k leaves, where LEB128 varints waste a quarter.

use crate::error::{CodecError, Result};

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

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

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

/// Decodes exactly `k` strictly ascending indices below `n`; every bit is accounted for.
pub fn decode(bytes: &[u8], n: usize, k: usize) -> Result<Vec<u32>> {
    let (&b, stream) = bytes
        .split_first()
        .ok_or_else(|| CodecError::frame("rice index stream has no parameter byte"))?;
    let b = u32::from(b);
    if b > MAX_PARAM {
        return Err(CodecError::frame(format!(
            "rice index parameter {b} exceeds {MAX_PARAM}"
        )));
    }
    // Each index costs at least b + 1 bits: a count that cannot fit is refused before allocating.
    if (k as u64).saturating_mul(u64::from(b) + 1) > stream.len() as u64 * 8 {
        return Err(CodecError::frame(format!(
            "{k} indices cannot fit in {} bytes of rice index code",
            stream.len()
        )));
    }
    let mut r = BitReader::new(stream);
    let mut out = Vec::with_capacity(k);
    let mut next: u64 = 0;
    for _ in 0..k {
        let g = r.rice(b, n as u64 >> b)?;
        let i = next + g;
        if i >= n as u64 {
            return Err(CodecError::frame(format!(
                "index {i} is out of range for {n} elements"
            )));
        }
        out.push(i as u32);
        next = i + 1;
    }
    let used_bytes = r.pos.div_ceil(8);
    if used_bytes != stream.len() {
        return Err(CodecError::frame(format!(
            "rice index stream has {} trailing bytes",
            stream.len() - used_bytes
        )));
    }
    if r.pos % 8 != 0 && stream[used_bytes - 1] >> (r.pos % 8) != 0 {
        return Err(CodecError::frame("rice index stream has non-zero padding"));
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

    proptest! {
        #[test]
        fn prop_round_trip(mut idx in proptest::collection::btree_set(0u32..50_000, 1..500), b in 0u32..12) {
            let idx: Vec<u32> = std::mem::take(&mut idx).into_iter().collect();
            let bytes = encode(&idx, b);
            prop_assert_eq!(bytes.len(), encoded_len(&idx, b));
            prop_assert_eq!(decode(&bytes, 50_000, idx.len()).unwrap(), idx);
        }

        #[test]
        fn prop_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 1usize..1000, k in 0usize..100) {
            let _ = decode(&bytes, n, k);
        }
    }
}
