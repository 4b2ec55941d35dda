//! Criterion medians of the sparse, mask and EDEN kernels on the sizes the design targets name.

use criterion::{criterion_group, criterion_main, Criterion};
use fedcodec::eden::{eden_decode_add, eden_encode, eden_len, EdenParams};
use fedcodec::hadamard::fwht;
use fedcodec::index_coding::{decode_indices, encode_indices};
use fedcodec::rice;
use fedcodec::rng::uniform_pair;
use fedcodec::seeded_mask::mask_extract;
use fedcodec::topk::{scatter_add_sorted, topk_exact, topk_sampled};
use fedcodec::{encode, Accumulator, Spec};
use std::hint::black_box;

const N: usize = 10_000_000;
const EDEN_N: usize = 1 << 20;

/// Standard normal values by Box-Muller over the crate's stateless uniforms.
fn normals(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let (u, v) = uniform_pair(seed, i as u64);
            let r = (-2.0 * (1.0 - f64::from(u)).ln()).sqrt();
            (r * (std::f64::consts::TAU * f64::from(v)).cos()) as f32
        })
        .collect()
}

fn sparse(c: &mut Criterion) {
    let x = normals(N, 1);
    let k = N / 100;
    c.bench_function("topk_exact 1% of 10M", |b| {
        b.iter(|| topk_exact(black_box(&x), k));
    });
    c.bench_function("topk_sampled 1% of 10M", |b| {
        b.iter(|| topk_sampled(black_box(&x), k, 7));
    });
    let idx = topk_exact(&x, k);
    c.bench_function("encode_indices 1% of 10M", |b| {
        b.iter(|| encode_indices(black_box(&idx), N));
    });
    c.bench_function("mask_extract 10% of 10M", |b| {
        b.iter(|| mask_extract(black_box(&x), 0.1, 3));
    });
}

fn eden(c: &mut Criterion) {
    let x = normals(EDEN_N, 2);
    let mut y = x.clone();
    c.bench_function("fwht 2^20", |b| b.iter(|| fwht(black_box(&mut y))));
    let p = &EdenParams::new(1).unwrap();
    let mut buf = vec![0u8; eden_len(EDEN_N, p)];
    c.bench_function("eden 1-bit encode 2^20", |b| {
        b.iter(|| eden_encode(black_box(&x), p, 5, &mut buf).expect("encodes"));
    });
    let mut out = vec![0.0f32; EDEN_N];
    c.bench_function("eden 1-bit decode 2^20", |b| {
        b.iter(|| eden_decode_add(black_box(&buf), EDEN_N, p, 5, 1.0, &mut out).unwrap());
    });
}

/// The server's sparse path at 1 % of 10M: the index decoders (one Rice stream, tag 2, against
/// the blocks of tag 3 that threads decode in parallel), the scatter, and the whole add.
fn server_sparse(c: &mut Criterion) {
    let x = normals(N, 3);
    let idx = topk_exact(&x, N / 100);
    let b = rice::best_param(&idx, N);
    let single = rice::encode(&idx, b);
    c.bench_function("rice::decode (tag 2) 1% of 10M", |bench| {
        bench.iter(|| rice::decode(black_box(&single), N, idx.len()).unwrap());
    });
    let blocks = encode_indices(&idx, N);
    c.bench_function("decode_indices (tag 3, blocks) 1% of 10M", |bench| {
        bench.iter(|| decode_indices(black_box(&blocks), N, idx.len()).unwrap());
    });
    let values: Vec<f32> = idx.iter().map(|&i| x[i as usize]).collect();
    let mut sum = vec![0.0f32; N];
    c.bench_function("scatter_add_sorted 1% into 10M", |bench| {
        bench.iter(|| scatter_add_sorted(black_box(&values), &idx, 0.5, &mut sum));
    });
    let frame = encode(
        &Spec::parse("topk:0.01+quant:8").unwrap(),
        &x,
        &[N as u64],
        1,
    )
    .unwrap();
    let mut acc = Accumulator::new(N).unwrap();
    c.bench_function("Accumulator::add topk:0.01+quant:8 of 10M", |bench| {
        bench.iter(|| acc.add(black_box(&frame), 0.5).unwrap());
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = sparse, eden, server_sparse
}
criterion_main!(benches);
