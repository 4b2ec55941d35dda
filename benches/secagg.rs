//! Criterion throughput of the secure-aggregation kernels: mask streams, masking, packing, quantizing.
//!
//! Run with `RAYON_NUM_THREADS=1` for per-core numbers (benches/bench_secagg.py does, beside numpy).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedcodec::secagg::{
    add_packed, apply_masks, derive_scalar, mask_stream, pack, quantize, Mask, Prg,
};
use std::hint::black_box;

const N: usize = 1 << 20;

fn masks(c: &mut Criterion) {
    let seed = derive_scalar(b"bench", b"mask");
    let mut g = c.benchmark_group("secagg");
    g.throughput(Throughput::Bytes((N * 4) as u64));
    for prg in Prg::ALL {
        g.bench_function(format!("mask_stream 1M u32 ({})", prg.name()), |b| {
            b.iter(|| mask_stream(black_box(&seed), N, 32, prg).unwrap());
        });
    }
    let seeds: Vec<[u8; 32]> = (0u8..11).map(|i| derive_scalar(&[i], b"pair")).collect();
    let list: Vec<Mask<'_>> = seeds
        .iter()
        .enumerate()
        .map(|(i, seed)| Mask {
            seed,
            negate: i % 2 == 1,
        })
        .collect();
    let mut x = vec![0u32; N];
    g.throughput(Throughput::Bytes((N * 4 * list.len()) as u64));
    for prg in Prg::ALL {
        g.bench_function(format!("apply 11 masks to 1M u32 ({})", prg.name()), |b| {
            b.iter(|| apply_masks(black_box(&mut x), &list, 26, prg).unwrap());
        });
    }
    g.throughput(Throughput::Bytes((N * 4) as u64));
    g.bench_function("pack 1M elements at 23 bits", |b| {
        b.iter(|| pack(black_box(&x), 23).unwrap());
    });
    let packed = pack(&x, 23).unwrap();
    let mut acc = vec![0u32; N];
    g.bench_function("add_packed 1M elements at 23 bits", |b| {
        b.iter(|| add_packed(black_box(&mut acc), &packed, 23).unwrap());
    });
    let floats: Vec<f32> = (0..N)
        .map(|i| ((i % 2001) as f32 - 1000.0) * 1e-3)
        .collect();
    g.bench_function("quantize 1M f32 to 16 bits", |b| {
        b.iter(|| quantize(black_box(&floats), 1.0, 16, &seed).unwrap());
    });
    g.finish();
}

criterion_group!(benches, masks);
criterion_main!(benches);
