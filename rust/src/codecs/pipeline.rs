//! Encoding an array through a spec into one frame, and decoding any frame back (added, weighted, into a buffer).

use std::borrow::Cow;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::codecs::codec::fill_zeros;
pub use crate::codecs::input::check_input;
use crate::codecs::input::{check_finite, check_shape, SCAN_BLOCK};
use crate::codecs::spec::{Spec, Stage, MAX_STAGES};
use crate::codecs::stages::{payload_len, read_stage, stage_id, write_stage};
pub use crate::codecs::stages::{topk_count, WireStage};
use crate::error::{CodecError, Result};
use crate::kernels::prefetch::{prefetch, CACHED_LINES};
use crate::kernels::rng::derive;
use crate::kernels::seeded_mask::{mask_extract, mask_scatter_add};
use crate::kernels::topk::{gather, scatter_add_sorted, topk_exact, topk_sampled};
use crate::kernels::uninit::{self, as_uninit, copied};
use crate::wire::frame::{
    unverified_body, verified_body, verify_checksum, Header, Reader, Writer, DEFAULT_MAX_ELEMENTS,
    MAX_ELEMENTS_PER_BYTE,
};
use crate::wire::index_coding::{decode_indices_touching, encode_indices};

/// A buffer of `len` copies of `fill`, a large one written by all cores (so fresh pages fault
/// in parallel, once each); allocation failure is [`CodecError::Alloc`], not an abort.
fn filled(len: usize, fill: f32) -> Result<Vec<f32>> {
    filled_reusing(Vec::new(), len, fill)
}

/// [`filled`] in `v`'s allocation: a caller that decodes frame after frame reuses its pages
/// instead of faulting fresh ones in every time.
fn filled_reusing(mut v: Vec<f32>, len: usize, fill: f32) -> Result<Vec<f32>> {
    v.clear();
    v.try_reserve_exact(len)
        .map_err(|_| CodecError::alloc(len, "float32 values for decoding"))?;
    if len <= 1 << 18 {
        v.resize(len, fill);
    } else {
        v.par_extend(rayon::iter::repeat_n(fill, len));
    }
    Ok(v)
}

/// A zeroed buffer (see [`filled`]).
fn zeroed(len: usize) -> Result<Vec<f32>> {
    filled(len, 0.0)
}

/// A frame ready to be written: header, stages and index payloads done, the value payload still to encode.
pub struct EncodePlan<'a> {
    head: Vec<u8>,
    values: Cow<'a, [f32]>,
    terminal: WireStage,
    terminal_len: usize,
}

impl EncodePlan<'_> {
    /// Exact byte length of the finished frame.
    #[must_use]
    pub fn frame_len(&self) -> usize {
        self.head.len() + self.terminal_len + crate::wire::frame::CHECKSUM_LEN
    }

    /// Writes the whole frame into `out` (exactly `frame_len()` bytes).
    pub fn write_into(&self, out: &mut [u8]) -> Result<()> {
        // SAFETY: `write_uninit` writes only initialized bytes (copies, zeros, packed codes).
        #[allow(unsafe_code)]
        let out = unsafe { as_uninit(out) };
        self.write_uninit(out)
    }

    /// Writes the whole frame into `out`, which may start uninitialized (a fresh Python `bytes`):
    /// every byte is written once, chunked codecs' payloads by the kernel itself.
    pub fn write_uninit(&self, out: &mut [MaybeUninit<u8>]) -> Result<()> {
        if out.len() != self.frame_len() {
            return Err(CodecError::param(format!(
                "frame buffer is {} bytes, the frame needs {}",
                out.len(),
                self.frame_len()
            )));
        }
        let (head, rest) = out.split_at_mut(self.head.len());
        let head = copied(head, &self.head);
        let (payload, crc) = rest.split_at_mut(self.terminal_len);
        let payload_len = payload.len();
        let payload_crc = if self.values.is_empty() {
            crate::wire::checksum::crc32c(uninit::zeroed(payload))
        } else {
            encode_terminal(&self.terminal, &self.values, payload)?
        };
        let sum = crate::wire::checksum::combine(crc32c::crc32c(head), payload_crc, payload_len);
        copied(crc, &sum.to_le_bytes());
        Ok(())
    }
}

/// Encodes `x` (of the given shape) through `spec`; the same seed gives the same bytes.
pub fn encode(spec: &Spec, x: &[f32], shape: &[u64], seed: u64) -> Result<Vec<u8>> {
    let plan = plan(spec, x, shape, seed)?;
    let mut frame = vec![0u8; plan.frame_len()];
    plan.write_into(&mut frame)?;
    Ok(frame)
}

/// Runs the sparsifiers and lays out everything but the value payload, so the caller can choose where
/// the frame's bytes live (a Python `bytes` object, say) before the heavy kernel writes them.
pub fn plan<'a>(spec: &Spec, x: &'a [f32], shape: &[u64], seed: u64) -> Result<EncodePlan<'a>> {
    check_shape(x, shape)?;
    let stages = spec.stages();
    // The quantizer refuses NaN/Inf, with the same error, from the min/max pass it makes anyway,
    // so a quantize-only spec reads the input once; every other first stage needs the scan.
    if !matches!(stages, [Stage::Terminal(codec)] if codec.checks_finite()) {
        check_finite(x)?;
    }
    let mut values: Cow<'_, [f32]> = Cow::Borrowed(x);
    let mut wire = Vec::with_capacity(stages.len());
    let mut sparse_payloads = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let stage_seed = derive(seed, i as u64);
        let m = values.len();
        match stage {
            Stage::TopK { fraction, sampled } => {
                if u32::try_from(m).is_err() {
                    return Err(CodecError::input(format!(
                        "topk handles at most {} elements, got {m}",
                        u32::MAX
                    )));
                }
                let k = topk_count(*fraction, m);
                let idx = if k == 0 {
                    Vec::new()
                } else if *sampled {
                    topk_sampled(&values, k, stage_seed)
                } else {
                    topk_exact(&values, k)
                };
                sparse_payloads.push(if idx.is_empty() {
                    Vec::new()
                } else {
                    encode_indices(&idx, m)
                });
                values = Cow::Owned(gather(&values, &idx));
                wire.push(WireStage {
                    stage: stage.clone(),
                    count: idx.len() as u64,
                    seed: 0,
                });
            }
            Stage::RandK { fraction } => {
                values = Cow::Owned(mask_extract(&values, *fraction, stage_seed));
                sparse_payloads.push(Vec::new());
                wire.push(WireStage {
                    stage: stage.clone(),
                    count: values.len() as u64,
                    seed: stage_seed,
                });
            }
            Stage::Terminal(_) => wire.push(WireStage {
                stage: stage.clone(),
                count: m as u64,
                seed: stage_seed,
            }),
        }
    }
    let terminal = wire.last().expect("a Spec always ends in a terminal stage");
    check_randk_rescaling(stages, x)?;
    let terminal_len = payload_len(&terminal.stage, values.len())?;
    let mut w = Writer::with_capacity(64 + sparse_payloads.iter().map(Vec::len).sum::<usize>());
    Header {
        codec_id: stage_id(&wire[0].stage),
        n: x.len() as u64,
        shape: shape.to_vec(),
    }
    .write(&mut w);
    w.u8(wire.len() as u8);
    for ws in &wire {
        write_stage(&mut w, ws);
    }
    for payload in &sparse_payloads {
        w.u64(payload.len() as u64);
        w.bytes(payload);
    }
    Ok(EncodePlan {
        head: w.into_bytes(),
        terminal: terminal.clone(),
        values,
        terminal_len,
    })
}

/// Refuses input whose random-k stages' unbiased rescaling (by `1 / fraction` each, on decode)
/// could take a decoded value past float32's range, which the decoder would refuse: the bound is
/// the largest `|x|`, times the rescaling, times how far the terminal codec can exceed its
/// input's largest magnitude (a QSGD norm by `sqrt(bucket)`, an EDEN piece by `sqrt(65536)`
/// times its largest centroid). Only values within a few orders of float32's largest are refused.
fn check_randk_rescaling(stages: &[Stage], x: &[f32]) -> Result<()> {
    let rescale: f64 = stages
        .iter()
        .map(|s| match s {
            Stage::RandK { fraction } => 1.0 / fraction,
            _ => 1.0,
        })
        .product();
    if rescale <= 1.0 {
        return Ok(());
    }
    let growth = match stages.last() {
        Some(Stage::Terminal(codec)) => codec.growth(),
        _ => 1.01,
    };
    let largest = x
        .par_chunks(SCAN_BLOCK)
        .map(|c| c.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .reduce(|| 0.0, f32::max);
    if f64::from(largest) * rescale * growth > f64::from(f32::MAX) * 0.5 {
        return Err(CodecError::input(format!(
            "random-k rescales kept values by {rescale:.3}: the largest |x| ({largest:e}) could decode past float32's range"
        )));
    }
    Ok(())
}

/// Writes the terminal stage's payload into `out` (initialized or not) and returns its crc32c:
/// chunked codecs hash it on the way, the others after.
fn encode_terminal(ws: &WireStage, values: &[f32], out: &mut [MaybeUninit<u8>]) -> Result<u32> {
    match &ws.stage {
        Stage::Terminal(codec) => codec.encode(values, ws.seed, out),
        Stage::TopK { .. } | Stage::RandK { .. } => {
            Err(CodecError::param("a sparsifier cannot end a pipeline"))
        }
    }
}

fn decode_terminal_add(ws: &WireStage, bytes: &[u8], weight: f32, out: &mut [f32]) -> Result<()> {
    let m = out.len();
    if m == 0 {
        return Ok(());
    }
    match &ws.stage {
        Stage::Terminal(codec) => codec.decode_add(bytes, ws.seed, weight, out),
        Stage::TopK { .. } | Stage::RandK { .. } => {
            Err(CodecError::frame("a sparsifier cannot end a pipeline"))
        }
    }
}

/// A frame whose header, stages and lengths have all been checked; decoding it cannot overrun.
#[derive(Debug)]
pub struct ParsedFrame<'a> {
    pub header: Header,
    pub stages: Vec<WireStage>,
    sparse_payloads: Vec<&'a [u8]>,
    terminal_payload: &'a [u8],
    pub frame_len: usize,
}

impl<'a> ParsedFrame<'a> {
    /// Checks magic, version, checksum, every count and every length, allocating nothing payload-sized.
    pub fn parse(frame: &'a [u8], max_elements: u64) -> Result<Self> {
        verified_body(frame)?;
        Self::parse_headers(frame, max_elements)
    }

    /// [`Self::parse`] without the checksum, which the caller verifies alongside the decode (see
    /// [`Self::decode_verified_into`]); a frame whose headers do not parse is checked first, so
    /// damage still reads as a checksum error, as [`Self::parse`] reports it.
    pub fn parse_deferring_checksum(frame: &'a [u8], max_elements: u64) -> Result<Self> {
        Self::parse_headers(frame, max_elements).map_err(|err| match verify_checksum(frame) {
            Err(checksum) => checksum,
            Ok(()) => err,
        })
    }

    /// Verifies `frame`'s checksum (the one this was parsed from) while decoding into `out`, in
    /// one pass of the thread pool: a caller off the pool pays one hand-off, not two. The
    /// decoders treat every byte as hostile, so decoding before the checksum is known is safe;
    /// a checksum error wins over a decode error, and `out` is then the caller's to discard.
    pub fn decode_verified_into(&self, frame: &[u8], out: &mut [f32]) -> Result<()> {
        let (checksum, decoded) = rayon::join(|| verify_checksum(frame), || self.decode_into(out));
        checksum.and(decoded)
    }

    fn parse_headers(frame: &'a [u8], max_elements: u64) -> Result<Self> {
        let body = unverified_body(frame)?;
        let mut r = Reader::new(body);
        let header = Header::read(&mut r, max_elements)?;
        if usize::try_from(header.n).is_err() {
            return Err(CodecError::frame("element count does not fit this machine"));
        }
        let count = usize::from(r.u8("stage count")?);
        if count == 0 || count > MAX_STAGES {
            return Err(CodecError::frame(format!(
                "stage count {count} is outside 1..={MAX_STAGES}"
            )));
        }
        let mut stages = Vec::with_capacity(count);
        let mut m = header.n;
        for i in 0..count {
            let ws = read_stage(&mut r, m)?;
            let last = i + 1 == count;
            if ws.stage.is_sparsifier() == last {
                return Err(CodecError::frame(
                    "stage order is wrong: sparsifiers first, exactly one terminal stage last",
                ));
            }
            m = ws.count;
            stages.push(ws);
        }
        // Work and memory: the output, the terminal values and each intermediate buffer.
        let work = stages[..count - 1]
            .iter()
            .fold(header.n, |w, ws| w.saturating_add(ws.count));
        let budget = MAX_ELEMENTS_PER_BYTE.saturating_mul(frame.len() as u64);
        if work > budget {
            return Err(CodecError::frame(format!(
                "a {}-byte frame may decode to at most {budget} elements (output and buffers), this one claims {work}",
                frame.len()
            )));
        }
        let first = stage_id(&stages[0].stage);
        if first != header.codec_id {
            return Err(CodecError::frame(format!(
                "codec id {} does not match the first stage ({first})",
                header.codec_id
            )));
        }
        let mut sparse_payloads = Vec::with_capacity(count - 1);
        for _ in 1..count {
            let len = r.u64("sparse payload length")?;
            let len = usize::try_from(len)
                .map_err(|_| CodecError::frame("sparse payload length overflows"))?;
            sparse_payloads.push(r.take(len, "sparse payload")?);
        }
        let terminal = stages.last().expect("count >= 1");
        let expected = payload_len(&terminal.stage, terminal.count as usize)?;
        let terminal_payload = r.rest();
        if terminal_payload.len() != expected {
            return Err(CodecError::frame(format!(
                "payload is {} bytes, {} needs {expected} for {} values",
                terminal_payload.len(),
                SpecText(&stages),
                terminal.count
            )));
        }
        Ok(Self {
            header,
            stages,
            sparse_payloads,
            terminal_payload,
            frame_len: frame.len(),
        })
    }

    /// Element count of the decoded array.
    #[must_use]
    pub fn len(&self) -> usize {
        self.header.n as usize
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.header.n == 0
    }

    /// The canonical spec string of the codec that wrote this frame.
    #[must_use]
    pub fn spec_string(&self) -> String {
        SpecText(&self.stages).to_string()
    }

    /// Adds `weight` times the decoded array into `out` (len n): decode and aggregation in one pass.
    pub fn add_into(&self, weight: f32, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(CodecError::input(format!(
                "frame holds {} elements, buffer has {}",
                self.len(),
                out.len()
            )));
        }
        if self.stages.len() == 1 {
            return decode_terminal_add(&self.stages[0], self.terminal_payload, weight, out);
        }
        let (values, first) = self.sparse_values()?;
        first.add(&values, weight, out)
    }

    /// For a frame with sparsifiers: the values its first sparsifier kept, decoded through
    /// every later stage, and that sparsifier, which adds them back at their coordinates.
    /// Decoding checks indices and values before anything is scattered.
    pub fn sparse_values(&self) -> Result<(Vec<f32>, Sparsifier<'_>)> {
        self.sparse_values_reusing(Vec::new())
    }

    /// [`Self::sparse_values`], decoded into `buffer`'s allocation (the values of an earlier
    /// frame, handed back).
    pub fn sparse_values_reusing(&self, buffer: Vec<f32>) -> Result<(Vec<f32>, Sparsifier<'_>)> {
        let count = self.stages.len();
        if count < 2 {
            return Err(CodecError::input(
                "a frame without sparsifiers has no sparse values",
            ));
        }
        let terminal = &self.stages[count - 1];
        let mut values = filled_reusing(buffer, terminal.count as usize, 0.0)?;
        decode_terminal_add(terminal, self.terminal_payload, 1.0, &mut values)?;
        for j in (1..count - 1).rev() {
            let mut wider = zeroed(self.stages[j - 1].count as usize)?;
            expand(
                &self.stages[j],
                self.sparse_payloads[j],
                &values,
                1.0,
                &mut wider,
            )?;
            values = wider;
        }
        Ok((
            values,
            Sparsifier {
                stage: &self.stages[0],
                payload: self.sparse_payloads[0],
                n: self.len(),
            },
        ))
    }

    /// For a frame without sparsifiers whose codec has one: an upper bound on every `|value|`
    /// it decodes to, from its headers alone (see [`crate::codecs::codec::Codec::decoded_bound`]).
    #[must_use]
    pub fn decoded_bound(&self) -> Option<f64> {
        match self.stages.as_slice() {
            [WireStage {
                stage: Stage::Terminal(codec),
                ..
            }] => codec.decoded_bound(self.terminal_payload, self.len()),
            _ => None,
        }
    }

    /// Decodes into a fresh float32 vector; allocation failure is [`CodecError::Alloc`].
    pub fn decode(&self) -> Result<Vec<f32>> {
        let mut out = zeroed(self.len())?;
        self.decode_into(&mut out)?;
        Ok(out)
    }

    /// Writes the decoded frame over `out`, whatever it held (a caller's array, reused). A sparse
    /// frame's values are checked before `out` is touched; a payload refused after that leaves
    /// `out` zeroed, never half-decoded.
    pub fn overwrite(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.len() {
            return Err(CodecError::input(format!(
                "frame holds {} elements, buffer has {}",
                self.len(),
                out.len()
            )));
        }
        let written = match self.stages.as_slice() {
            [WireStage {
                stage: Stage::Terminal(codec),
                seed,
                ..
            }] => codec.decode_into(self.terminal_payload, *seed, out),
            _ => self.sparse_values().and_then(|(values, first)| {
                fill_zeros(out);
                first.add(&values, 1.0, out)
            }),
        };
        written.inspect_err(|_| fill_zeros(out))
    }

    /// Decodes into `out`, which must hold zeros: a frame without sparsifiers is written by its
    /// codec's [`crate::codecs::codec::Codec::decode_into`] (raw floats are copied, so `-0.0`
    /// stays `-0.0`, which adding to `+0.0` would lose), everything else is added.
    pub fn decode_into(&self, out: &mut [f32]) -> Result<()> {
        match self.stages.as_slice() {
            [WireStage {
                stage: Stage::Terminal(codec),
                seed,
                ..
            }] if out.len() == self.len() => codec.decode_into(self.terminal_payload, *seed, out),
            _ => self.add_into(1.0, out),
        }
    }
}

/// The first sparsifier of a frame, ready to add its kept values back.
#[derive(Debug)]
pub struct Sparsifier<'a> {
    stage: &'a WireStage,
    payload: &'a [u8],
    n: usize,
}

impl Sparsifier<'_> {
    /// Adds `weight * values[j]` at the `j`-th kept coordinate of `out` (`out.len() == n`).
    pub fn add(&self, values: &[f32], weight: f32, out: &mut [f32]) -> Result<()> {
        if out.len() != self.n {
            return Err(CodecError::input(format!(
                "frame holds {} elements, buffer has {}",
                self.n,
                out.len()
            )));
        }
        expand(self.stage, self.payload, values, weight, out)
    }
}

/// Undoes one sparsifier: adds `weight` times its kept values back at their coordinates in `out`.
fn expand(
    ws: &WireStage,
    payload: &[u8],
    values: &[f32],
    weight: f32,
    out: &mut [f32],
) -> Result<()> {
    let m_in = out.len();
    if ws.count == 0 {
        return if payload.is_empty() {
            Ok(())
        } else {
            Err(CodecError::frame(
                "an empty selection carries a non-empty index payload",
            ))
        };
    }
    match &ws.stage {
        Stage::TopK { .. } => {
            // Prefetching each target as its index decodes pays while the lines it brings in
            // stay in cache until the scatter; past that, it only evicts them again.
            let cached = ws.count <= CACHED_LINES as u64;
            let idx = decode_indices_touching(payload, m_in, ws.count as usize, |i| {
                if let Some(target) = usize::try_from(i).ok().and_then(|i| out.get(i)) {
                    if cached {
                        prefetch(std::slice::from_ref(target));
                    }
                }
            })?;
            scatter_add_sorted(values, &idx, weight, out);
            Ok(())
        }
        Stage::RandK { fraction } => {
            let unbiased = weight / *fraction as f32;
            if !values.iter().all(|v| (v * unbiased).is_finite()) {
                return Err(CodecError::frame(format!(
                    "randk fraction {fraction} scales the values past float32's range"
                )));
            }
            mask_scatter_add(values, m_in, *fraction, ws.seed, unbiased, out)
        }
        Stage::Terminal(_) => Err(CodecError::frame("terminal stage in sparsifier position")),
    }
}

/// Formats parsed stages back into spec text.
struct SpecText<'a>(&'a [WireStage]);

impl std::fmt::Display for SpecText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match Spec::new(self.0.iter().map(|ws| ws.stage.clone()).collect()) {
            Ok(spec) => write!(f, "{spec}"),
            Err(_) => f.write_str("<invalid>"),
        }
    }
}

/// Decodes a frame with the default element limit.
pub fn decode(frame: &[u8]) -> Result<(Vec<f32>, Vec<u64>)> {
    let parsed = ParsedFrame::parse(frame, DEFAULT_MAX_ELEMENTS)?;
    Ok((parsed.decode()?, parsed.header.shape.clone()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::accumulator::Accumulator;
    // Resealing gives a mutated body a valid checksum, so the mutation reaches the parser.
    use crate::kernels::rng::SplitMix64;
    use crate::wire::frame::seal;

    const SPECS: [&str; 14] = [
        "none",
        "f16",
        "bf16",
        "quant:8",
        "quant:3:stochastic",
        "qsgd:4",
        "eden:1",
        "eden:4",
        "sign",
        "topk:0.1",
        "topk:0.05:sampled+quant:8",
        "randk:0.3",
        "randk:0.5+eden:2",
        "topk:0.5+randk:0.5+quant:4",
    ];

    fn data(n: usize, seed: u64) -> Vec<f32> {
        let mut g = SplitMix64::new(seed);
        (0..n)
            .map(|_| (g.next_f64() * 2.0 - 1.0) as f32 * 3.0)
            .collect()
    }

    #[test]
    fn a_deferred_checksum_still_catches_every_damaged_byte() {
        let x = data(3000, 11);
        for spec in SPECS {
            let good = frame(spec, &x);
            let parsed = ParsedFrame::parse_deferring_checksum(&good, u64::MAX).unwrap();
            let mut y = vec![0.0f32; x.len()];
            parsed.decode_verified_into(&good, &mut y).unwrap();
            assert_eq!(y, decode(&good).unwrap().0, "{spec}");
            // A flipped bit anywhere (header, stage headers, payload) is a checksum error, as
            // `parse` reports it, whether the headers still parse or not.
            for at in (0..good.len() - 4).step_by(good.len() / 37 + 1) {
                let mut bad = good.clone();
                bad[at] ^= 0x10;
                let outcome = ParsedFrame::parse_deferring_checksum(&bad, u64::MAX)
                    .and_then(|p| p.decode_verified_into(&bad, &mut y));
                assert!(
                    matches!(outcome, Err(CodecError::Checksum { .. })),
                    "{spec}, byte {at}: {outcome:?}"
                );
            }
        }
    }

    fn frame(spec: &str, x: &[f32]) -> Vec<u8> {
        encode(&Spec::parse(spec).unwrap(), x, &[x.len() as u64], 5).unwrap()
    }

    #[test]
    fn a_frame_written_over_garbage_matches_one_written_over_zeros() {
        // Garbage stands in for uninitialized memory: any byte the writer skips stays 0xAB.
        // Big enough for several parallel tasks and a partial last chunk; one element; a few.
        for n in [1, 7, 100_003] {
            let x = data(n, 11);
            for spec in SPECS {
                let plan = plan(&Spec::parse(spec).unwrap(), &x, &[n as u64], 5).unwrap();
                let mut dirty = vec![0xABu8; plan.frame_len()];
                // SAFETY: the writer writes only initialized bytes.
                #[allow(unsafe_code)]
                let out = unsafe { crate::kernels::uninit::as_uninit(&mut dirty) };
                plan.write_uninit(out).unwrap();
                assert_eq!(dirty, frame(spec, &x), "{spec}, {n} elements");
            }
        }
    }

    #[test]
    fn every_spec_round_trips_shape_and_size() {
        let x = data(1000, 1);
        for text in SPECS {
            let spec = Spec::parse(text).unwrap();
            let f = encode(&spec, &x, &[10, 100], 9).unwrap();
            let parsed = ParsedFrame::parse(&f, DEFAULT_MAX_ELEMENTS).unwrap();
            assert_eq!(parsed.header.shape, vec![10, 100], "{text}");
            assert_eq!(parsed.spec_string(), text);
            let y = parsed.decode().unwrap();
            assert_eq!(y.len(), x.len());
            assert!(y.iter().all(|v| v.is_finite()), "{text}");
        }
    }

    #[test]
    fn float32_is_exact_and_topk_keeps_the_largest() {
        let x = data(5000, 2);
        let (y, _) = decode(&frame("none", &x)).unwrap();
        assert_eq!(x, y);
        let (y, _) = decode(&frame("topk:0.01", &x)).unwrap();
        let kept: Vec<usize> = (0..x.len()).filter(|&i| y[i] != 0.0).collect();
        assert_eq!(kept.len(), 50);
        let smallest_kept = kept
            .iter()
            .map(|&i| x[i].abs())
            .fold(f32::INFINITY, f32::min);
        let dropped_max = (0..x.len())
            .filter(|i| !kept.contains(i))
            .map(|i| x[i].abs())
            .fold(0.0, f32::max);
        assert!(smallest_kept >= dropped_max);
        for &i in &kept {
            assert_eq!(y[i].to_bits(), x[i].to_bits());
        }
    }

    #[test]
    fn a_sparsifier_fed_nothing_encodes_nothing() {
        let x = [1.0f32, 2.0, 3.0];
        let mut empty = 0;
        for text in [
            "randk:0.01+topk:0.1",
            "randk:0.01+topk:0.5+quant:8",
            "randk:0.01+eden:1",
        ] {
            for seed in 0..20 {
                let f = encode(&Spec::parse(text).unwrap(), &x, &[3], seed).unwrap();
                let parsed = ParsedFrame::parse(&f, 3).unwrap();
                let y = parsed.decode().unwrap();
                if parsed.stages[0].count == 0 {
                    empty += 1;
                    assert_eq!(y, vec![0.0; 3], "{text}");
                }
            }
        }
        assert!(empty > 0, "no seed made randk keep nothing");
    }

    #[test]
    fn huge_counts_fail_cleanly_even_without_a_limit() {
        let f = frame("topk:0.5", &data(64, 8));
        let mut body = f[..f.len() - 4].to_vec();
        body[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes());
        body[17..25].copy_from_slice(&(1u64 << 62).to_le_bytes());
        let err = ParsedFrame::parse(&seal(body), u64::MAX).unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn same_seed_same_bytes() {
        let x = data(3000, 3);
        for text in SPECS {
            let spec = Spec::parse(text).unwrap();
            let a = encode(&spec, &x, &[3000], 11).unwrap();
            let b = encode(&spec, &x, &[3000], 11).unwrap();
            assert_eq!(a, b, "{text}");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        let spec = Spec::parse("quant:8").unwrap();
        assert!(encode(&spec, &[], &[0], 0).is_err());
        assert!(encode(&spec, &[1.0, f32::NAN], &[2], 0)
            .unwrap_err()
            .to_string()
            .contains("index 1"));
        assert!(encode(&spec, &[1.0, f32::INFINITY], &[2], 0).is_err());
        assert!(encode(&spec, &[1.0, 2.0], &[3], 0).is_err());
        let half = Spec::parse("f16").unwrap();
        assert!(encode(&half, &[1e6], &[1], 0)
            .unwrap_err()
            .to_string()
            .contains("float16"));
    }

    #[test]
    fn every_spec_refuses_non_finite_input_alike() {
        let mut x = data(100_000, 7);
        x[77_777] = f32::NAN;
        x[90_000] = f32::INFINITY;
        let expected = CodecError::non_finite(77_777, f32::NAN);
        for text in SPECS {
            let err = encode(&Spec::parse(text).unwrap(), &x, &[100_000], 1).unwrap_err();
            assert_eq!(err, expected, "{text}");
        }
    }

    #[test]
    fn every_truncation_and_bit_flip_is_an_error() {
        let x = data(300, 4);
        for text in SPECS {
            let f = frame(text, &x);
            for cut in 0..f.len() {
                assert!(decode(&f[..cut]).is_err(), "{text} cut at {cut}");
            }
            for bit in (0..f.len() * 8).step_by(7) {
                let mut g = f.clone();
                g[bit / 8] ^= 1 << (bit % 8);
                assert!(decode(&g).is_err(), "{text} bit {bit}");
            }
        }
    }

    #[test]
    fn forged_headers_are_refused_before_allocating() {
        let x = data(64, 5);
        let f = frame("quant:8", &x);
        let body = &f[..f.len() - 4];
        // n = 2^60 with a matching shape: refused by the element limit, not by an allocation failure.
        let mut forged = body.to_vec();
        forged[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
        forged[17..25].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let err = decode(&seal(forged)).unwrap_err().to_string();
        assert!(err.contains("exceeds"), "{err}");
        // Flags and version.
        let mut forged = body.to_vec();
        forged[6] = 1;
        assert!(decode(&seal(forged))
            .unwrap_err()
            .to_string()
            .contains("flags"));
        let mut forged = body.to_vec();
        forged[4] = 2;
        assert!(decode(&seal(forged))
            .unwrap_err()
            .to_string()
            .contains("version"));
        // Payload one byte short or long.
        let short = body[..body.len() - 1].to_vec();
        assert!(decode(&seal(short))
            .unwrap_err()
            .to_string()
            .contains("payload"));
        let mut long = body.to_vec();
        long.push(0);
        assert!(decode(&seal(long))
            .unwrap_err()
            .to_string()
            .contains("payload"));
    }

    #[test]
    fn failed_add_leaves_the_accumulator_unchanged() {
        let x = data(500, 6);
        let mut acc = Accumulator::new(500).unwrap();
        acc.add(&frame("quant:8", &x), 2.0).unwrap();
        let before = acc.sum().to_vec();
        let mut bad = frame("quant:8", &x);
        let last = bad.len() - 6;
        bad[last] ^= 0xFF;
        assert!(acc.add(&bad, 1.0).is_err());
        assert!(acc.add(&frame("quant:8", &data(400, 1)), 1.0).is_err());
        assert_eq!(acc.sum(), &before[..]);
        assert_eq!(acc.count(), 1);
    }

    #[test]
    fn accumulator_matches_weighted_sum_of_decodes() {
        let n = 2000;
        let mut acc = Accumulator::new(n).unwrap();
        let mut expected = vec![0.0f32; n];
        for (i, text) in ["quant:8", "topk:0.1+quant:8", "eden:2", "randk:0.2"]
            .iter()
            .enumerate()
        {
            let f = frame(text, &data(n, i as u64));
            let (y, _) = decode(&f).unwrap();
            let w = 1.0 + i as f32;
            for (e, v) in expected.iter_mut().zip(&y) {
                *e += w * v;
            }
            acc.add(&f, w).unwrap();
        }
        for (a, e) in acc.sum().iter().zip(&expected) {
            assert!((a - e).abs() <= 1e-4 * (1.0 + e.abs()));
        }
        assert!((acc.total_weight() - 10.0).abs() < 1e-12);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn prop_round_trip(
            x in proptest::collection::vec(-1.0e4f32..1.0e4, 1..2500),
            which in 0..SPECS.len(),
            seed in any::<u64>(),
        ) {
            let spec = Spec::parse(SPECS[which]).unwrap();
            let f = encode(&spec, &x, &[x.len() as u64], seed).unwrap();
            let (y, shape) = decode(&f).unwrap();
            prop_assert_eq!(shape, vec![x.len() as u64]);
            prop_assert_eq!(y.len(), x.len());
            prop_assert!(y.iter().all(|v| v.is_finite()));
        }

        #[test]
        fn prop_resealed_garbage_never_panics(
            x in proptest::collection::vec(-10.0f32..10.0, 1..400),
            which in 0..SPECS.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let f = frame(SPECS[which], &x);
            let mut body = f[..f.len() - 4].to_vec();
            for (pos, byte) in edits {
                let i = pos % body.len();
                body[i] = byte;
            }
            body.truncate(cut % (body.len() + 1));
            let _ = decode(&seal(body));
        }
    }
}
