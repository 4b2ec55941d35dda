//! Wire frame v1: a fixed header, stage headers, payload and a crc32c, read with every length checked.

use crate::error::{CodecError, Result};

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"FCDC";
/// The frame version this build writes and reads.
pub const VERSION: u8 = 1;
/// Most dimensions a frame's shape may have.
pub const MAX_NDIM: usize = 32;
/// Default cap on elements a decoder accepts before allocating (2^31 float32 = 8 GiB).
pub const DEFAULT_MAX_ELEMENTS: u64 = 1 << 31;
/// Hard ceiling on elements whatever the caller allows: keeps every size computation far from overflow.
pub const HARD_MAX_ELEMENTS: u64 = 1 << 48;
/// Elements a decoder may produce or hold, output and intermediate buffers together, per byte
/// of the frame: dense codecs spend at least one bit per element, so only sparsifiers (a seeded
/// random-k of a small fraction, a top-k of few indices) come near it, and a 100-byte frame can
/// cost at most 6.5M elements (26 MB) of work and memory, never the gigabytes its counts claim.
pub const MAX_ELEMENTS_PER_BYTE: u64 = 1 << 16;
/// Bytes of the fixed part: magic, version, codec id, flags, n, ndim.
pub const FIXED_HEADER_LEN: usize = 4 + 1 + 1 + 2 + 8 + 1;
/// Bytes of the trailing checksum.
pub const CHECKSUM_LEN: usize = 4;

/// Appends little-endian fields to a growing frame.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }

    /// The bytes written so far, unsealed (the caller appends payload and checksum).
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Appends the crc32c of `body`, making it a frame (tests and tools build frames by hand this way).
#[must_use]
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Reads little-endian fields from untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        if len > self.remaining() {
            return Err(CodecError::frame(format!(
                "truncated: {what} needs {len} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            )));
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A byte that must be 0 (false) or 1 (true).
    pub fn flag(&mut self, what: &str) -> Result<bool> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(CodecError::frame(format!("{what} is {other}, not 0 or 1"))),
        }
    }

    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn f64(&mut self, what: &str) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }
}

/// Splits a frame into its body and verifies the trailing crc32c.
pub fn verified_body(frame: &[u8]) -> Result<&[u8]> {
    let body = unverified_body(frame)?;
    verify_checksum(frame)?;
    Ok(body)
}

/// Splits a frame into its body, checking the magic and the smallest length but not the crc32c:
/// for a caller that verifies it with [`verify_checksum`] while it decodes.
pub fn unverified_body(frame: &[u8]) -> Result<&[u8]> {
    if frame.len() < 4 || frame[..4] != MAGIC {
        return Err(CodecError::frame(
            "not a fedcodec frame: it does not start with the magic bytes 'FCDC'",
        ));
    }
    if frame.len() < FIXED_HEADER_LEN + CHECKSUM_LEN {
        return Err(CodecError::frame(format!(
            "truncated: {} bytes is shorter than the smallest possible frame ({} bytes)",
            frame.len(),
            FIXED_HEADER_LEN + CHECKSUM_LEN
        )));
    }
    Ok(&frame[..frame.len() - CHECKSUM_LEN])
}

/// Checks a frame's trailing crc32c against its body (of at least [`CHECKSUM_LEN`] bytes).
pub fn verify_checksum(frame: &[u8]) -> Result<()> {
    let split = frame
        .len()
        .checked_sub(CHECKSUM_LEN)
        .ok_or_else(|| CodecError::frame("truncated: a frame is longer than its checksum"))?;
    let (body, tail) = frame.split_at(split);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(tail);
    let expected = u32::from_le_bytes(crc);
    let actual = crate::wire::checksum::crc32c(body);
    if expected != actual {
        return Err(CodecError::Checksum { expected, actual });
    }
    Ok(())
}

/// The fixed header of a frame: what was encoded and in which shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub codec_id: u8,
    pub n: u64,
    pub shape: Vec<u64>,
}

impl Header {
    pub fn write(&self, w: &mut Writer) {
        w.bytes(&MAGIC);
        w.u8(VERSION);
        w.u8(self.codec_id);
        w.u16(0);
        w.u64(self.n);
        w.u8(self.shape.len() as u8);
        for &d in &self.shape {
            w.u64(d);
        }
    }

    /// Reads and checks the fixed header; `n` is checked against `max_elements` before anyone allocates.
    pub fn read(r: &mut Reader<'_>, max_elements: u64) -> Result<Self> {
        if r.take(4, "magic")? != MAGIC {
            return Err(CodecError::frame("bad magic: expected 'FCDC'"));
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(CodecError::frame(format!(
                "unsupported frame version {version}: this build reads version {VERSION}"
            )));
        }
        let codec_id = r.u8("codec id")?;
        let flags = r.u16("flags")?;
        if flags != 0 {
            return Err(CodecError::frame(format!(
                "unknown flags {flags:#06x}: no flags are defined in version {VERSION}"
            )));
        }
        let n = r.u64("element count")?;
        if n == 0 {
            return Err(CodecError::frame("element count is 0"));
        }
        let limit = max_elements.min(HARD_MAX_ELEMENTS);
        if n > limit {
            return Err(CodecError::frame(format!(
                "element count {n} exceeds the decoder's limit of {limit}"
            )));
        }
        let ndim = usize::from(r.u8("ndim")?);
        if ndim > MAX_NDIM {
            return Err(CodecError::frame(format!(
                "{ndim} dimensions exceed the limit of {MAX_NDIM}"
            )));
        }
        let mut shape = Vec::with_capacity(ndim);
        let mut product: u64 = 1;
        for _ in 0..ndim {
            let d = r.u64("shape")?;
            product = product
                .checked_mul(d)
                .ok_or_else(|| CodecError::frame("shape product overflows"))?;
            shape.push(d);
        }
        if product != n {
            return Err(CodecError::frame(format!(
                "shape {shape:?} holds {product} elements but the frame says {n}"
            )));
        }
        Ok(Self { codec_id, n, shape })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::default();
        Header {
            codec_id: 1,
            n: 6,
            shape: vec![2, 3],
        }
        .write(&mut w);
        w.bytes(&[9; 5]);
        seal(w.into_bytes())
    }

    #[test]
    fn header_round_trips() {
        let frame = sample();
        let body = verified_body(&frame).unwrap();
        let mut r = Reader::new(body);
        let h = Header::read(&mut r, DEFAULT_MAX_ELEMENTS).unwrap();
        assert_eq!(h.shape, vec![2, 3]);
        assert_eq!(r.rest(), &[9; 5]);
    }

    #[test]
    fn flipped_bit_fails_checksum() {
        let mut frame = sample();
        frame[10] ^= 1;
        assert!(matches!(
            verified_body(&frame),
            Err(CodecError::Checksum { .. })
        ));
    }

    #[test]
    fn oversized_count_is_refused_before_allocation() {
        let frame = sample();
        let body = verified_body(&frame).unwrap();
        let err = Header::read(&mut Reader::new(body), 5).unwrap_err();
        assert!(err.to_string().contains("exceeds"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let frame = sample();
        for cut in 0..frame.len() {
            assert!(verified_body(&frame[..cut]).is_err());
        }
    }
}
