//! Regression tests for hostile and extreme frames: each reproduces a class of failure an
//! attacker-style fuzz found (cost set by claimed sizes, non-finite output, aborting allocation,
//! frames the encoder wrote but the decoder refused) and pins the fixed behaviour.

use std::time::{Duration, Instant};

use fedcodec::frame::{seal, Header, Writer};
use fedcodec::seeded_mask::mask_bitmap;
use fedcodec::{decode, encode, Accumulator, CodecError, ParsedFrame, Spec};

const RANDK: u8 = 7;
const F32: u8 = 1;
const SIGN: u8 = 9;

/// A frame of seeded random-k stages `(fraction, count)` ending in float32 or sign, built by
/// hand (a forger's view of the format) and sealed with a valid checksum.
fn randk_frame(n: u64, stages: &[(f64, u64)], terminal: u8, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64 + payload.len());
    Header {
        codec_id: RANDK,
        n,
        shape: vec![n],
    }
    .write(&mut w);
    w.u8(stages.len() as u8 + 1);
    for (i, &(fraction, count)) in stages.iter().enumerate() {
        w.u8(RANDK);
        w.f64(fraction);
        w.u64(i as u64 + 1);
        w.u64(count);
    }
    w.u8(terminal);
    if terminal == SIGN {
        w.u32(4096);
    }
    for _ in stages {
        w.u64(0);
    }
    w.bytes(payload);
    seal(w.into_bytes())
}

fn quickly<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{what} took {:?}",
        start.elapsed()
    );
    out
}

#[test]
fn a_short_chain_of_randk_stages_cannot_claim_gigabytes() {
    // Every count is what its fraction predicts, so only the size budget can refuse it.
    let n = 1u64 << 31;
    let stages = [(0.5, 1 << 30), (0.5, 1 << 29), (0.5, 1 << 28), (1e-9, 0)];
    let frame = randk_frame(n, &stages, F32, &[]);
    assert!(frame.len() < 200);
    let err = quickly("parse", || ParsedFrame::parse(&frame, n).unwrap_err());
    assert!(err.to_string().contains("may decode to at most"), "{err}");
}

#[test]
fn a_randk_count_its_fraction_cannot_produce_is_refused_before_the_mask_is_built() {
    let n = 1u64 << 31;
    let frame = randk_frame(n, &[(0.5, (1 << 30) + 1_000_000)], F32, &[]);
    let err = quickly("parse", || ParsedFrame::parse(&frame, n).unwrap_err());
    assert!(err.to_string().contains("implausible"), "{err}");
}

#[test]
fn a_randk_count_one_off_is_refused_at_the_cost_of_the_bytes_sent() {
    let x: Vec<f32> = (0..1_000_000).map(|i| (i % 17) as f32).collect();
    let honest = encode(&Spec::parse("randk:0.01").unwrap(), &x, &[1_000_000], 3).unwrap();
    let mut body = honest[..honest.len() - 4].to_vec();
    // The randk count sits after header (17 + 8 shape + 1 stage count), id, fraction and seed.
    let at = 26 + 1 + 8 + 8;
    let count = u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
    body[at..at + 8].copy_from_slice(&(count + 1).to_le_bytes());
    body.extend_from_slice(&[0; 4]);
    let err = quickly("decode", || decode(&seal(body)).unwrap_err());
    assert!(err.to_string().contains("mask selects"), "{err}");
}

#[test]
fn a_failed_allocation_is_an_error_not_an_abort() {
    // An honest-looking frame for 2^40 elements (4 TiB of float32): a 2^-12 random-k kept 2^28
    // of them and sign coded those in 32 MiB, so the size budget lets it through.
    let n = 1u64 << 40;
    let kept = 1u64 << 28;
    let payload = vec![0u8; (kept as usize / 4096) * 4 + kept as usize / 8];
    let frame = randk_frame(n, &[(1.0 / 4096.0, kept)], SIGN, &payload);
    let parsed = ParsedFrame::parse(&frame, u64::MAX).unwrap();
    let err = parsed.decode().unwrap_err();
    assert!(matches!(err, CodecError::Alloc(_)), "{err}");
    let err = mask_bitmap(1 << 50, 0.5, 0).unwrap_err();
    assert!(matches!(err, CodecError::Alloc(_)), "{err}");
}

/// An EDEN 1-bit frame of one 65536-element piece whose codes are all 1 and whose scale is
/// `scale`: the inverse transform piles every coordinate onto one, the largest growth there is.
fn forged_eden(scale: f32) -> Vec<u8> {
    let x = vec![1.0f32; 1 << 16];
    let f = encode(&Spec::parse("eden:1").unwrap(), &x, &[1 << 16], 0).unwrap();
    let mut body = f[..f.len() - 4].to_vec();
    let payload = body.len() - (4 + (1 << 13));
    body[payload..payload + 4].copy_from_slice(&scale.to_le_bytes());
    body[payload + 4..].fill(0xFF);
    seal(body)
}

#[test]
fn forged_eden_scales_decode_finite_or_are_refused() {
    for scale in [1e30f32, 5e35, 1.5e36, 1e37, 1e38, f32::MAX] {
        match decode(&forged_eden(scale)) {
            Ok((y, _)) => assert!(y.iter().all(|v| v.is_finite()), "scale {scale}"),
            Err(e) => assert!(matches!(e, CodecError::Frame(_)), "scale {scale}: {e}"),
        }
    }
    // The one that overflowed the old check's assumption of growth by sqrt(len) decodes now.
    let (y, _) = decode(&forged_eden(5e35)).unwrap();
    assert!(y.iter().all(|v| v.is_finite()));
}

/// Encodes and, if the encoder accepts, decodes: the decoder must accept and return finite values.
fn encode_then_decode(spec: &str, x: &[f32]) -> Result<Vec<f32>, CodecError> {
    let frame = encode(&Spec::parse(spec).unwrap(), x, &[x.len() as u64], 7)?;
    let (y, _) = decode(&frame).unwrap_or_else(|e| panic!("{spec} wrote a frame it refuses: {e}"));
    assert!(
        y.iter().all(|v| v.is_finite()),
        "{spec} decoded a non-finite value"
    );
    Ok(y)
}

#[test]
fn extreme_inputs_are_refused_by_the_encoder_or_decoded_finite() {
    let max = f32::MAX;
    let cases: [(&str, Vec<f32>); 8] = [
        ("quant:8", vec![-max, max]),
        ("bf16", vec![max, -max, 1.0]),
        ("sign", vec![max; 8]),
        ("qsgd:127", vec![max, 0.0, 0.0]),
        ("qsgd:4", vec![max; 16]),
        ("eden:1", vec![1e36; 1000]),
        ("eden:8", vec![3e38; 64]),
        ("topk:0.5+quant:8", vec![max, -max, 1.0, 2.0]),
    ];
    for (spec, x) in cases {
        if let Err(e) = encode_then_decode(spec, &x) {
            assert!(matches!(e, CodecError::InvalidInput(_)), "{spec}: {e}");
        }
    }
    // The saturating and exact ones must not refuse.
    let y = encode_then_decode("bf16", &[max]).unwrap();
    assert_eq!(y[0].to_bits(), f32::from(half::bf16::MAX).to_bits());
    assert_eq!(encode_then_decode("sign", &[max; 8]).unwrap(), vec![max; 8]);
    assert!(encode_then_decode("quant:8", &[-max, max]).is_err());
    assert!(encode_then_decode("qsgd:127", &[max, 0.0, 0.0]).is_err());
}

#[test]
fn float32_keeps_negative_zero() {
    let y = encode_then_decode("none", &[-0.0, 0.0, -1.0]).unwrap();
    assert_eq!(
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        [(-0.0f32).to_bits(), 0, (-1.0f32).to_bits()]
    );
}

#[test]
fn an_add_that_would_overflow_the_sum_is_refused_whole() {
    let spec = Spec::parse("none").unwrap();
    let big = encode(&spec, &[3e38, 1.0, -3e38], &[3], 0).unwrap();
    let mut acc = Accumulator::new(3).unwrap();
    acc.add(&big, 1.0).unwrap();
    let err = acc.add(&big, 1.0).unwrap_err();
    assert!(err.to_string().contains("past float32's range"), "{err}");
    assert_eq!(acc.sum(), &[3e38, 1.0, -3e38]);
    assert_eq!(acc.count(), 1);
    assert!(acc.add_dense(&[3e38, 0.0, 0.0], 1.0).is_err());
    let sparse = encode(
        &Spec::parse("topk:0.34").unwrap(),
        &[3e38, 1.0, 0.0],
        &[3],
        0,
    )
    .unwrap();
    assert!(acc.add(&sparse, 1.0).is_err());
    assert_eq!(acc.sum(), &[3e38, 1.0, -3e38]);
    acc.add(&big, -1.0).unwrap();
    assert_eq!(acc.sum(), &[0.0, 0.0, 0.0]);
}

mod agreement {
    use proptest::prelude::*;

    use super::encode_then_decode;
    use fedcodec::CodecError;

    const SPECS: [&str; 16] = [
        "none",
        "f16",
        "bf16",
        "quant:1",
        "quant:8",
        "quant:16",
        "quant:4:stochastic:chunk=16",
        "qsgd:1",
        "qsgd:127:bucket=16",
        "eden:1",
        "eden:8",
        "sign:chunk=8",
        "topk:0.3+quant:8",
        "topk:0.5:sampled+bf16",
        "randk:0.5+qsgd:4",
        "randk:0.05+eden:2",
    ];

    /// Finite float32 values across the whole range: zeros of both signs, subnormals, ordinary
    /// values, and magnitudes up to float32's largest, in runs so chunks and pieces share them.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            Just(0.0f32),
            Just(-0.0f32),
            Just(f32::MAX),
            Just(-f32::MAX),
            Just(f32::MIN_POSITIVE),
            any::<u32>()
                .prop_map(f32::from_bits)
                .prop_filter("finite", |v| v.is_finite()),
            (-1.0f32..1.0, -45i32..39).prop_map(|(m, e)| m * 10f32.powi(e)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_decoder_accepts_what_the_encoder_wrote(
            spec in prop::sample::select(SPECS.to_vec()),
            x in prop::collection::vec(value(), 1..300),
        ) {
            match encode_then_decode(spec, &x) {
                Ok(y) => prop_assert_eq!(y.len(), x.len()),
                Err(e) => prop_assert!(matches!(e, CodecError::InvalidInput(_)), "{}: {}", spec, e),
            }
        }
    }
}
