//! The frame checksum, crc32c, on all cores for large buffers: pieces are hashed in parallel and
//! joined with zlib's crc-combine arithmetic (a shift of the left crc by the right piece's length).

use crate::kernels::shared::run_shared;

/// Bytes hashed per parallel task; shorter buffers are hashed on the calling thread.
const PIECE: usize = 1 << 20;

/// CRC-32C's polynomial, bit-reflected as the crc32c crate computes it.
const POLY: u32 = 0x82F6_3B78;

/// Entries of [`X2N`]: a shift by `8 * len` bits uses entries `3..3 + usize::BITS`.
const SHIFTS: usize = usize::BITS as usize + 3;

/// `x^(2^k) mod POLY` for every `k < SHIFTS`.
const X2N: [u32; SHIFTS] = x2n_table();

/// crc32c of `data`.
#[must_use]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// crc32c of the bytes `crc` covers followed by `data`.
#[must_use]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() <= PIECE {
        return crc32c::crc32c_append(crc, data);
    }
    let mut crcs = vec![0u32; data.len().div_ceil(PIECE)];
    // Past one piece (1 MiB, far more bytes than `SERIAL_BELOW`), the pieces are shared.
    run_shared(
        crcs.iter_mut().zip(data.chunks(PIECE)).collect(),
        data.len(),
        |(crc, piece)| *crc = crc32c::crc32c(piece),
    );
    crcs.iter()
        .zip(data.chunks(PIECE))
        .fold(crc, |acc, (&piece_crc, piece)| {
            combine(acc, piece_crc, piece.len())
        })
}

/// crc32c of `A` then `B` from `crc32c(A)`, `crc32c(B)` and `B`'s length: kernels that hash
/// their output piece by piece while it is still in cache join the pieces with this.
#[must_use]
pub fn combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    let mut shift = 1 << 31; // x^0
    let mut bits = len_b;
    let mut k = 3; // a byte is 2^3 bits
    while bits != 0 {
        if bits & 1 == 1 {
            shift = mul_mod(X2N[k], shift);
        }
        bits >>= 1;
        k += 1;
    }
    mul_mod(shift, crc_a) ^ crc_b
}

/// `a * b mod POLY` in the bit-reflected representation (bit 31 is `x^0`).
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut i = 0;
    while i < 32 {
        if a & (1 << (31 - i)) != 0 {
            product ^= b;
        }
        b = if b & 1 == 1 { (b >> 1) ^ POLY } else { b >> 1 };
        i += 1;
    }
    product
}

const fn x2n_table() -> [u32; SHIFTS] {
    let mut table = [0; SHIFTS];
    let mut p = 1 << 30; // x^1
    let mut k = 0;
    while k < SHIFTS {
        table[k] = p;
        p = mul_mod(p, p);
        k += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;

    fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut g = SplitMix64::new(seed);
        (0..len).map(|_| g.below(256) as u8).collect()
    }

    #[test]
    fn parallel_crc_matches_the_sequential_one() {
        let data = random_bytes(3 * PIECE + 12_345, 1);
        for len in [0, 1, PIECE, PIECE + 1, 2 * PIECE, data.len()] {
            let d = &data[..len];
            assert_eq!(crc32c(d), crc32c::crc32c(d), "len {len}");
            assert_eq!(
                crc32c_append(0xDEAD_BEEF, d),
                crc32c::crc32c_append(0xDEAD_BEEF, d),
                "len {len}"
            );
        }
    }

    #[test]
    fn combine_joins_any_split() {
        let data = random_bytes(5000, 2);
        for cut in [0, 1, 7, 8, 2500, 4999, 5000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                combine(crc32c::crc32c(a), crc32c::crc32c(b), b.len()),
                crc32c::crc32c(&data),
                "cut {cut}"
            );
        }
    }
}
