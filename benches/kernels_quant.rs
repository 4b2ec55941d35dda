//! Medians of the quantizing kernels on 10M float32, with memcpy as the bandwidth yardstick.

use criterion::{criterion_group, criterion_main, Criterion};
use fedcodec::bitpack::{pack, packed_len};
use fedcodec::qsgd::{qsgd_decode_add, qsgd_encode, qsgd_len, QsgdParams};
use fedcodec::quantize::{dequantize_add, quantize, quantize_len, QuantParams};
use fedcodec::rng::SplitMix64;
use fedcodec::sign::{sign_decode_add, sign_encode, sign_len, SignParams};
use std::hint::black_box;

const N: usize = 10_000_000;
/// The crate's default quantization and sign chunk (`spec::DEFAULT_QUANT_CHUNK`).
const CHUNK: usize = 4096;
/// The crate's default QSGD bucket.
const BUCKET: usize = 1024;

fn input() -> Vec<f32> {
    let mut g = SplitMix64::new(1);
    (0..N).map(|_| (g.next_f64() * 2.0 - 1.0) as f32).collect()
}

fn memcpy(c: &mut Criterion, x: &[f32]) {
    let mut copy = vec![0f32; N];
    c.bench_function("memcpy 10M f32", |b| {
        b.iter(|| copy.copy_from_slice(black_box(x)));
    });
}

fn quant(c: &mut Criterion, x: &[f32]) {
    for (name, bits, stochastic) in [
        ("quantize 8-bit det", 8, false),
        ("quantize 4-bit det", 4, false),
        ("quantize 8-bit stochastic", 8, true),
    ] {
        let p = QuantParams {
            bits,
            stochastic,
            chunk: CHUNK,
        };
        let mut out = vec![0u8; quantize_len(N, &p)];
        c.bench_function(name, |b| {
            b.iter(|| quantize(black_box(x), &p, 7, &mut out).unwrap());
        });
    }
    for bits in [8, 4] {
        let p = QuantParams {
            bits,
            stochastic: false,
            chunk: CHUNK,
        };
        let mut bytes = vec![0u8; quantize_len(N, &p)];
        quantize(x, &p, 7, &mut bytes).unwrap();
        let mut y = vec![0f32; N];
        c.bench_function(&format!("dequantize {bits}-bit"), |b| {
            b.iter(|| dequantize_add(black_box(&bytes), N, &p, 1.0, &mut y).unwrap());
        });
    }
}

fn qsgd(c: &mut Criterion, x: &[f32]) {
    let p = QsgdParams {
        levels: 127,
        bucket: BUCKET,
    };
    let mut bytes = vec![0u8; qsgd_len(N, &p)];
    c.bench_function("qsgd s=127 encode", |b| {
        b.iter(|| qsgd_encode(black_box(x), &p, 7, &mut bytes).expect("encodes"));
    });
    let mut y = vec![0f32; N];
    c.bench_function("qsgd s=127 decode", |b| {
        b.iter(|| qsgd_decode_add(black_box(&bytes), N, &p, 1.0, &mut y).unwrap());
    });
}

fn sign(c: &mut Criterion, x: &[f32]) {
    let p = SignParams { chunk: CHUNK };
    let mut bytes = vec![0u8; sign_len(N, &p)];
    c.bench_function("sign encode", |b| {
        b.iter(|| sign_encode(black_box(x), &p, &mut bytes).expect("encodes"));
    });
    let mut y = vec![0f32; N];
    c.bench_function("sign decode", |b| {
        b.iter(|| sign_decode_add(black_box(&bytes), N, &p, 1.0, &mut y).unwrap());
    });
}

fn bitpack(c: &mut Criterion) {
    let mut g = SplitMix64::new(2);
    let codes: Vec<u16> = (0..N).map(|_| g.below(16) as u16).collect();
    let mut out = vec![0u8; packed_len(N, 4)];
    c.bench_function("pack 4-bit", |b| {
        b.iter(|| pack(black_box(&codes), 4, &mut out));
    });
}

fn kernels(c: &mut Criterion) {
    let x = input();
    memcpy(c, &x);
    quant(c, &x);
    qsgd(c, &x);
    sign(c, &x);
    bitpack(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = kernels
}
criterion_main!(benches);
