//! LSB-first packing of 1..=16-bit codes and the "chunk headers, then one code stream" layout.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::kernels::shared::run_shared;
use crate::kernels::uninit::{assume_written, zeroed};
use crate::wire::checksum::combine;

/// Widest code the packers handle.
pub const MAX_BITS: u32 = 16;

/// Codes per parallel task in [`pack`] and [`unpack`]; a multiple of 8 so tasks start on a byte.
const TASK_CODES: usize = 1 << 16;

/// Elements per parallel task in the chunked layout (rounded to whole chunks).
const TASK_ELEMS: usize = 1 << 15;

/// Calls `$func::<B>($args)` with `B` the const twin of `$bits`, so every width gets its own
/// monomorphised, unrolled kernel; callers check `1..=16` first.
macro_rules! dispatch_bits {
    ($bits:expr, $func:ident ( $($arg:expr),* $(,)? )) => {
        match $bits {
            1 => $func::<1>($($arg),*),
            2 => $func::<2>($($arg),*),
            3 => $func::<3>($($arg),*),
            4 => $func::<4>($($arg),*),
            5 => $func::<5>($($arg),*),
            6 => $func::<6>($($arg),*),
            7 => $func::<7>($($arg),*),
            8 => $func::<8>($($arg),*),
            9 => $func::<9>($($arg),*),
            10 => $func::<10>($($arg),*),
            11 => $func::<11>($($arg),*),
            12 => $func::<12>($($arg),*),
            13 => $func::<13>($($arg),*),
            14 => $func::<14>($($arg),*),
            15 => $func::<15>($($arg),*),
            16 => $func::<16>($($arg),*),
            other => unreachable!("code width {other} was checked to lie in 1..=16"),
        }
    };
}
pub(crate) use dispatch_bits;

/// Bytes that `count` codes of `bits` bits occupy: `ceil(count * bits / 8)`, saturating.
///
/// Eight codes fill exactly `bits` bytes, so every multiple-of-8 run of codes starts on a byte:
/// that is what lets chunks and parallel tasks write disjoint byte ranges of one stream.
#[must_use]
pub fn packed_len(count: usize, bits: u32) -> usize {
    let b = bits as usize;
    (count / 8)
        .saturating_mul(b)
        .saturating_add((count % 8 * b).div_ceil(8))
}

/// Packs `codes` (each `< 2^bits`) LSB-first into `out`; code `i` takes bits `[i*bits, (i+1)*bits)`.
///
/// Panics if `bits` is outside `1..=16` or `out.len() != packed_len(codes.len(), bits)`.
pub fn pack(codes: &[u16], bits: u32, out: &mut [u8]) {
    assert!(
        (1..=MAX_BITS).contains(&bits),
        "code width {bits} outside 1..=16"
    );
    assert_eq!(
        out.len(),
        packed_len(codes.len(), bits),
        "packed buffer length"
    );
    dispatch_bits!(bits, pack_par(codes, out));
}

/// Unpacks `out.len()` codes of `bits` bits from the front of `bytes`.
///
/// Panics if `bits` is outside `1..=16` or `bytes.len() < packed_len(out.len(), bits)`.
pub fn unpack(bytes: &[u8], bits: u32, out: &mut [u16]) {
    assert!(
        (1..=MAX_BITS).contains(&bits),
        "code width {bits} outside 1..=16"
    );
    let need = packed_len(out.len(), bits);
    assert!(
        bytes.len() >= need,
        "packed buffer holds {} bytes, needs {need}",
        bytes.len()
    );
    dispatch_bits!(bits, unpack_par(&bytes[..need], out));
}

fn pack_par<const B: u32>(codes: &[u16], out: &mut [u8]) {
    out.par_chunks_mut(TASK_CODES / 8 * B as usize)
        .zip(codes.par_chunks(TASK_CODES))
        .for_each(|(o, c)| pack_seq::<B, u16>(c, o));
}

fn unpack_par<const B: u32>(bytes: &[u8], out: &mut [u16]) {
    out.par_chunks_mut(TASK_CODES)
        .zip(bytes.par_chunks(TASK_CODES / 8 * B as usize))
        .for_each(|(o, b)| unpack_seq::<B, u16>(b, o));
}

/// Packs `codes` into `out` (`out.len() == packed_len(codes.len(), B)`) on the calling thread;
/// the unused high bits of the last byte are zero.
pub(crate) fn pack_seq<const B: u32, C: Code>(codes: &[C], out: &mut [u8]) {
    match B {
        8 => {
            for (o, &c) in out.iter_mut().zip(codes) {
                *o = c.to_u32() as u8;
            }
        }
        16 => {
            for (o, &c) in out.chunks_exact_mut(2).zip(codes) {
                o.copy_from_slice(&(c.to_u32() as u16).to_le_bytes());
            }
        }
        1 | 2 | 4 => {
            let per_byte = (8 / B) as usize;
            let full = codes.len() / per_byte;
            let (body, tail) = codes.split_at(full * per_byte);
            let (out_body, out_tail) = out.split_at_mut(full);
            for (i, o) in out_body.iter_mut().enumerate() {
                let mut byte = 0u32;
                for k in 0..per_byte {
                    byte |= body[per_byte * i + k].to_u32() << (k as u32 * B);
                }
                *o = byte as u8;
            }
            if let Some(last) = out_tail.first_mut() {
                *last = pack_byte::<B, C>(tail);
            }
        }
        _ => {
            let full = codes.len() / 8;
            let (body, tail) = codes.split_at(full * 8);
            let (out_body, out_tail) = out.split_at_mut(full * B as usize);
            for (block, o) in body
                .chunks_exact(8)
                .zip(out_body.chunks_exact_mut(B as usize))
            {
                let word = pack_block::<B, C>(block);
                o.copy_from_slice(&word.to_le_bytes()[..B as usize]);
            }
            if !tail.is_empty() {
                let word = pack_block::<B, C>(tail);
                out_tail.copy_from_slice(&word.to_le_bytes()[..out_tail.len()]);
            }
        }
    }
}

/// Unpacks `out.len()` codes from `bytes` (`bytes.len() == packed_len(out.len(), B)`) on the
/// calling thread.
pub(crate) fn unpack_seq<const B: u32, C: Code>(bytes: &[u8], out: &mut [C]) {
    match B {
        8 => {
            for (o, &b) in out.iter_mut().zip(bytes) {
                *o = C::from_u32(u32::from(b));
            }
        }
        16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = C::from_u32(u32::from(u16::from_le_bytes([b[0], b[1]])));
            }
        }
        1 | 2 | 4 => {
            let per_byte = (8 / B) as usize;
            let mask = (1u32 << B) - 1;
            let full = out.len() / per_byte;
            let (out_body, out_tail) = out.split_at_mut(full * per_byte);
            let (body, tail) = bytes.split_at(full);
            for (i, &b) in body.iter().enumerate() {
                for k in 0..per_byte {
                    out_body[per_byte * i + k] =
                        C::from_u32((u32::from(b) >> (k as u32 * B)) & mask);
                }
            }
            if let (false, Some(&b)) = (out_tail.is_empty(), tail.first()) {
                unpack_byte::<B, C>(b, out_tail);
            }
        }
        _ => {
            let full = out.len() / 8;
            let (out_body, out_tail) = out.split_at_mut(full * 8);
            let (body, tail) = bytes.split_at(full * B as usize);
            for (o, b) in out_body
                .chunks_exact_mut(8)
                .zip(body.chunks_exact(B as usize))
            {
                unpack_block::<B, C>(b, o);
            }
            if !out_tail.is_empty() {
                unpack_block::<B, C>(tail, out_tail);
            }
        }
    }
}

/// Packs up to `8 / B` codes into one byte (`B` in 1, 2, 4).
#[inline]
fn pack_byte<const B: u32, C: Code>(codes: &[C]) -> u8 {
    let mut byte = 0u32;
    for (k, &c) in codes.iter().enumerate() {
        byte |= c.to_u32() << (k as u32 * B);
    }
    byte as u8
}

/// Unpacks `out.len()` (at most `8 / B`) codes from one byte (`B` in 1, 2, 4).
#[inline]
fn unpack_byte<const B: u32, C: Code>(byte: u8, out: &mut [C]) {
    let mask = (1u32 << B) - 1;
    for (k, o) in out.iter_mut().enumerate() {
        *o = C::from_u32((u32::from(byte) >> (k as u32 * B)) & mask);
    }
}

/// Packs up to eight codes into the low `8 * B` bits of one word (`B` < 16).
#[inline]
fn pack_block<const B: u32, C: Code>(codes: &[C]) -> u128 {
    if B <= 8 {
        let mut word = 0u64;
        for (j, &c) in codes.iter().enumerate() {
            word |= u64::from(c.to_u32()) << (j as u32 * B);
        }
        u128::from(word)
    } else {
        let mut word = 0u128;
        for (j, &c) in codes.iter().enumerate() {
            word |= u128::from(c.to_u32()) << (j as u32 * B);
        }
        word
    }
}

/// Unpacks `out.len()` (at most 8) codes from the first `bytes.len()` (at most `B`) bytes.
#[inline]
fn unpack_block<const B: u32, C: Code>(bytes: &[u8], out: &mut [C]) {
    if B <= 8 {
        let mut le = [0u8; 8];
        le[..bytes.len()].copy_from_slice(bytes);
        let word = u64::from_le_bytes(le);
        let mask = (1u64 << B) - 1;
        for (j, o) in out.iter_mut().enumerate() {
            *o = C::from_u32(((word >> (j as u32 * B)) & mask) as u32);
        }
    } else {
        let mut le = [0u8; 16];
        le[..bytes.len()].copy_from_slice(bytes);
        let word = u128::from_le_bytes(le);
        let mask = (1u128 << B) - 1;
        for (j, o) in out.iter_mut().enumerate() {
            *o = C::from_u32(((word >> (j as u32 * B)) & mask) as u32);
        }
    }
}

/// Codes per stack buffer when a codec packs or unpacks through 16-bit codes; a multiple of 8.
const RUN: usize = 512;

/// Where an encoder puts a code: a fresh frame's byte at 8 bits, a `u8` or `u16` in a stack
/// buffer otherwise.
pub(crate) trait CodeSlot: Copy {
    /// The code `c` (already `< 2^bits`), narrowed.
    fn from_u32(c: u32) -> Self;
}

impl CodeSlot for MaybeUninit<u8> {
    #[inline]
    fn from_u32(c: u32) -> Self {
        MaybeUninit::new(c as u8)
    }
}

impl CodeSlot for u8 {
    #[inline]
    fn from_u32(c: u32) -> Self {
        c as u8
    }
}

impl CodeSlot for u16 {
    #[inline]
    fn from_u32(c: u32) -> Self {
        c as u16
    }
}

/// An unsigned code word a kernel reads or writes: `u8` straight in the byte stream at 8 bits,
/// `u16` in a stack buffer otherwise.
pub(crate) trait Code: CodeSlot {
    /// The code, widened.
    fn to_u32(self) -> u32;
    /// The code as a signed integer, for exact and vectorisable conversion to `f32`.
    fn to_i32(self) -> i32;
}

impl Code for u8 {
    #[inline]
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
}

impl Code for u16 {
    #[inline]
    fn to_u32(self) -> u32 {
        u32::from(self)
    }
    #[inline]
    fn to_i32(self) -> i32 {
        i32::from(self)
    }
}

/// A codec's element-wise encoder for one chunk, written as a plain loop over slices so the
/// compiler vectorises it.
///
/// # Safety
/// `encode_run` writes every element of `codes` (`codes.len() == input.len()`): at 8 bits they
/// are a fresh frame's uninitialized bytes, which [`encode_runs`] then hands out as `&mut [u8]`.
#[allow(unsafe_code)]
pub(crate) unsafe trait RunEncoder {
    /// Writes the code of each `input[i]`, which is element `offset + i` of the chunk.
    fn encode_run<C: CodeSlot>(&self, offset: usize, input: &[f32], codes: &mut [C]);
}

/// A codec's element-wise decoder for one chunk: adds each code's weighted value into `out`.
pub(crate) trait RunDecoder {
    fn decode_run<C: Code>(&self, codes: &[C], out: &mut [f32]);
}

/// Encodes one chunk into its packed codes (`out.len() == packed_len(input.len(), B)`): 8-bit
/// codes go straight into `out`, narrower ones through a `u8` buffer, wider through `u16`.
#[inline(always)]
pub(crate) fn encode_runs<'a, const B: u32>(
    enc: &impl RunEncoder,
    input: &[f32],
    out: &'a mut [MaybeUninit<u8>],
) -> &'a mut [u8] {
    match B {
        8 => {
            assert_eq!(out.len(), input.len(), "8-bit codes: one byte per element");
            enc.encode_run::<MaybeUninit<u8>>(0, input, out);
            // SAFETY: RunEncoder's contract: encode_run wrote all `input.len() == out.len()` codes.
            #[allow(unsafe_code)]
            unsafe {
                assume_written(out)
            }
        }
        1..=7 => {
            let out = zeroed(out);
            encode_buffered::<B, u8>(enc, input, out, &mut [0u8; RUN]);
            out
        }
        _ => {
            let out = zeroed(out);
            encode_buffered::<B, u16>(enc, input, out, &mut [0u16; RUN]);
            out
        }
    }
}

#[inline(always)]
fn encode_buffered<const B: u32, C: Code>(
    enc: &impl RunEncoder,
    input: &[f32],
    out: &mut [u8],
    buf: &mut [C; RUN],
) {
    for (k, (xs, o)) in input
        .chunks(RUN)
        .zip(out.chunks_mut(RUN / 8 * B as usize))
        .enumerate()
    {
        let codes = &mut buf[..xs.len()];
        enc.encode_run(k * RUN, xs, codes);
        pack_seq::<B, C>(codes, o);
    }
}

/// Decodes one chunk's packed codes into `out` (`bytes.len() == packed_len(out.len(), B)`).
pub(crate) fn decode_runs<const B: u32>(dec: &impl RunDecoder, bytes: &[u8], out: &mut [f32]) {
    match B {
        8 => dec.decode_run::<u8>(bytes, out),
        1..=7 => decode_buffered::<B, u8>(dec, bytes, out, &mut [0u8; RUN]),
        _ => decode_buffered::<B, u16>(dec, bytes, out, &mut [0u16; RUN]),
    }
}

fn decode_buffered<const B: u32, C: Code>(
    dec: &impl RunDecoder,
    bytes: &[u8],
    out: &mut [f32],
    buf: &mut [C; RUN],
) {
    for (b, o) in bytes.chunks(RUN / 8 * B as usize).zip(out.chunks_mut(RUN)) {
        let codes = &mut buf[..o.len()];
        unpack_seq::<B, C>(b, codes);
        dec.decode_run(codes, o);
    }
}

/// Byte layout shared by the chunked codecs: a fixed-size header for every chunk, then the codes
/// of all elements as one packed stream. Chunks hold a multiple of 8 elements, so each chunk's
/// codes start on a byte and chunks encode and decode in parallel into disjoint ranges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkedLayout {
    /// Elements per chunk (>= 8, multiple of 8); the last chunk may be shorter.
    pub chunk: usize,
    /// Header bytes per chunk (> 0).
    pub head: usize,
    /// Code width in bits (1..=16).
    pub bits: u32,
}

impl ChunkedLayout {
    /// Total payload bytes for `n` elements (saturating, so hostile `n` cannot overflow).
    pub fn len(&self, n: usize) -> usize {
        n.div_ceil(self.chunk)
            .saturating_mul(self.head)
            .saturating_add(packed_len(n, self.bits))
    }

    /// The checks every chunked decoder makes before touching `out`: params, output size, exact payload size.
    pub fn check_decode(
        &self,
        problem: Option<String>,
        what: &str,
        bytes: &[u8],
        n: usize,
        out_len: usize,
    ) -> crate::error::Result<()> {
        use crate::error::CodecError;
        if let Some(m) = problem {
            return Err(CodecError::frame(m));
        }
        if out_len != n {
            return Err(CodecError::frame(format!(
                "output holds {out_len} elements, frame has {n}"
            )));
        }
        let need = self.len(n);
        if bytes.len() != need {
            return Err(CodecError::frame(format!(
                "{what} payload is {} bytes, {n} elements at {} bits need {need}",
                bytes.len(),
                self.bits
            )));
        }
        Ok(())
    }

    /// The header bytes of every chunk, in order; `bytes` must hold the whole payload for `n`.
    pub fn heads<'a>(&self, bytes: &'a [u8], n: usize) -> std::slice::ChunksExact<'a, u8> {
        bytes[..n.div_ceil(self.chunk) * self.head].chunks_exact(self.head)
    }

    /// Runs `encode(first_index, chunk_input, head_out, codes_out)` for every chunk, in parallel,
    /// and returns the crc32c of `out`, each task hashing its bytes while they are in cache.
    /// `out` may start uninitialized: `encode` hands back `head_out` and `codes_out` written
    /// whole (through [`crate::kernels::uninit`] or [`encode_runs`]), so each byte is written once.
    /// Refuses an `out` that is not exactly `self.len(x.len())` bytes: every byte of it must be
    /// written for the caller to read it as initialized.
    pub(crate) fn par_encode<F>(
        &self,
        x: &[f32],
        out: &mut [MaybeUninit<u8>],
        encode: F,
    ) -> crate::error::Result<u32>
    where
        F: for<'h, 'c> Fn(
                usize,
                &[f32],
                &'h mut [MaybeUninit<u8>],
                &'c mut [MaybeUninit<u8>],
            ) -> (&'h mut [u8], &'c mut [u8])
            + Sync,
    {
        if out.len() != self.len(x.len()) {
            return Err(crate::error::CodecError::param(format!(
                "payload buffer is {} bytes, {} elements need {}",
                out.len(),
                x.len(),
                self.len(x.len())
            )));
        }
        let Self { chunk, head, bits } = *self;
        let (heads, codes) = out.split_at_mut(x.len().div_ceil(chunk) * head);
        let per_task = (TASK_ELEMS / chunk).max(1);
        let task_elems = per_task * chunk;
        let chunk_bytes = chunk / 8 * bits as usize;
        let (heads_crc, _, codes_crc, codes_len) = heads
            .par_chunks_mut(per_task * head)
            .zip(codes.par_chunks_mut(per_task * chunk_bytes))
            .zip(x.par_chunks(task_elems))
            .enumerate()
            .map(|(t, ((h, c), xs))| {
                let mut whole = true;
                for (k, ((h, c), xs)) in h
                    .chunks_mut(head)
                    .zip(c.chunks_mut(chunk_bytes))
                    .zip(xs.chunks(chunk))
                    .enumerate()
                {
                    let given = (
                        h.as_ptr().cast::<u8>(),
                        h.len(),
                        c.as_ptr().cast::<u8>(),
                        c.len(),
                    );
                    let (h, c) = encode(t * task_elems + k * chunk, xs, h, c);
                    whole &= given == (h.as_ptr(), h.len(), c.as_ptr(), c.len());
                }
                let (h, c) = if whole {
                    // SAFETY: `encode` handed back every chunk's head and codes as `&mut [u8]`
                    // over exactly the memory it was given (checked above), and safe code can
                    // only make such a slice from these buffers by writing them.
                    #[allow(unsafe_code)]
                    unsafe {
                        (assume_written(h), assume_written(c))
                    }
                } else {
                    debug_assert!(false, "a chunk encoder handed back other memory");
                    (zeroed(h), zeroed(c))
                };
                (crc32c::crc32c(h), h.len(), crc32c::crc32c(c), c.len())
            })
            .reduce(
                || (0, 0, 0, 0),
                |(h_a, h_a_len, c_a, c_a_len), (h_b, h_b_len, c_b, c_b_len)| {
                    (
                        combine(h_a, h_b, h_b_len),
                        h_a_len + h_b_len,
                        combine(c_a, c_b, c_b_len),
                        c_a_len + c_b_len,
                    )
                },
            );
        Ok(combine(heads_crc, codes_crc, codes_len))
    }

    /// Runs `decode(head, codes, chunk_out)` for every chunk, in parallel.
    /// `bytes.len()` must equal `self.len(out.len())`.
    pub fn par_decode<F>(&self, bytes: &[u8], out: &mut [f32], decode: F)
    where
        F: Fn(&[u8], &[u8], &mut [f32]) + Sync,
    {
        let Self { chunk, head, bits } = *self;
        let (heads, codes) = bytes.split_at(out.len().div_ceil(chunk) * head);
        let per_task = (TASK_ELEMS / chunk).max(1);
        let chunk_bytes = chunk / 8 * bits as usize;
        // A small payload (the values a sparse frame kept) decodes on this thread (see
        // `run_shared`).
        let elements = out.len();
        let tasks: Vec<_> = heads
            .chunks(per_task * head)
            .zip(codes.chunks(per_task * chunk_bytes))
            .zip(out.chunks_mut(per_task * chunk))
            .collect();
        run_shared(tasks, elements, |((h, c), o)| {
            for ((h, c), o) in h
                .chunks(head)
                .zip(c.chunks(chunk_bytes))
                .zip(o.chunks_mut(chunk))
            {
                decode(h, c, o);
            }
        });
    }
}

/// Reads the little-endian `f32` at byte `at` of a header that is known to be long enough.
pub(crate) fn f32_at(head: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::rng::SplitMix64;
    use proptest::prelude::*;

    fn random_codes(count: usize, bits: u32, seed: u64) -> Vec<u16> {
        let mut g = SplitMix64::new(seed);
        (0..count).map(|_| g.below(1 << bits) as u16).collect()
    }

    /// Bit-by-bit reference packer the fast paths must agree with.
    fn pack_reference(codes: &[u16], bits: u32) -> Vec<u8> {
        let mut out = vec![0u8; packed_len(codes.len(), bits)];
        for (i, &c) in codes.iter().enumerate() {
            for k in 0..bits as usize {
                if c >> k & 1 == 1 {
                    let pos = i * bits as usize + k;
                    out[pos / 8] |= 1 << (pos % 8);
                }
            }
        }
        out
    }

    #[test]
    fn packed_len_is_ceil_of_bits_over_eight() {
        for bits in 1..=16u32 {
            for count in 0..50usize {
                assert_eq!(packed_len(count, bits), (count * bits as usize).div_ceil(8));
            }
        }
        assert_eq!(packed_len(usize::MAX, 16), usize::MAX);
    }

    #[test]
    fn round_trip_every_width_and_odd_counts() {
        for bits in 1..=16u32 {
            for count in [0usize, 1, 3, 7, 8, 9, 15, 17, 63, 1001] {
                let codes = random_codes(count, bits, u64::from(bits) * 1000 + count as u64);
                let mut packed = vec![0u8; packed_len(count, bits)];
                pack(&codes, bits, &mut packed);
                assert_eq!(
                    packed,
                    pack_reference(&codes, bits),
                    "bits {bits} count {count}"
                );
                let mut back = vec![0u16; count];
                unpack(&packed, bits, &mut back);
                assert_eq!(back, codes, "bits {bits} count {count}");
            }
        }
    }

    #[test]
    fn round_trip_across_parallel_tasks() {
        let count = 3 * TASK_CODES + 5;
        for bits in [1u32, 3, 8, 12, 16] {
            let codes = random_codes(count, bits, u64::from(bits));
            let mut packed = vec![0u8; packed_len(count, bits)];
            pack(&codes, bits, &mut packed);
            assert_eq!(packed, pack_reference(&codes, bits));
            let mut back = vec![0u16; count];
            unpack(&packed, bits, &mut back);
            assert_eq!(back, codes);
        }
    }

    #[test]
    fn unpack_ignores_bytes_past_the_stream() {
        let codes = random_codes(13, 5, 9);
        let mut packed = vec![0u8; packed_len(13, 5)];
        pack(&codes, 5, &mut packed);
        packed.extend_from_slice(&[0xFF; 7]);
        let mut back = vec![0u16; 13];
        unpack(&packed, 5, &mut back);
        assert_eq!(back, codes);
    }

    #[test]
    #[should_panic(expected = "needs")]
    fn unpack_refuses_a_short_buffer() {
        let mut back = vec![0u16; 9];
        unpack(&[0u8; 8], 8, &mut back);
    }

    proptest! {
        #[test]
        fn pack_unpack_round_trip(bits in 1u32..=16, raw in prop::collection::vec(any::<u16>(), 0..300)) {
            let codes: Vec<u16> = raw.iter().map(|&c| c & ((1u32 << bits) - 1) as u16).collect();
            let mut packed = vec![0u8; packed_len(codes.len(), bits)];
            pack(&codes, bits, &mut packed);
            prop_assert_eq!(&packed, &pack_reference(&codes, bits));
            let mut back = vec![0u16; codes.len()];
            unpack(&packed, bits, &mut back);
            prop_assert_eq!(back, codes);
        }
    }
}
