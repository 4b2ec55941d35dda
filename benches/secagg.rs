//! Criterion throughput of the secure-aggregation kernels: mask streams, masking, packing, quantizing,
//! a client's whole upload, and key agreement beside x25519-dalek's ladder.
//!
//! Run with `RAYON_NUM_THREADS=1` for per-core numbers (benches/bench_secagg.py does, beside numpy).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedcodec::secagg::{
    add_packed, agree, apply_masks, derive_scalar, mask_stream, pack, packed_len, public_key,
    quantize, quantize_mask_and_pack_into, Mask, Prg,
};
use std::hint::black_box;
use x25519_dalek::{PublicKey, StaticSecret};

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
    let mut upload = vec![0u8; packed_len(N, 23)];
    g.bench_function(
        "a client's upload: round 1M f32 to 16 bits, 11 masks, pack at 23 bits",
        |b| {
            b.iter(|| {
                quantize_mask_and_pack_into(
                    black_box(&floats),
                    1.0,
                    16,
                    &seed,
                    &list,
                    23,
                    Prg::Aes128Ctr,
                    &mut upload,
                )
                .unwrap();
            });
        },
    );
    g.finish();
}

fn agreements(c: &mut Criterion) {
    let me = derive_scalar(b"bench", b"me");
    let peer = public_key(&derive_scalar(b"bench", b"peer"));
    let mut g = c.benchmark_group("secagg key agreement");
    g.bench_function("agree (X25519 through Edwards + HKDF)", |b| {
        b.iter(|| agree(black_box(&me), &peer, b"pair").unwrap());
    });
    g.bench_function("x25519-dalek's Montgomery ladder (no HKDF)", |b| {
        let secret = StaticSecret::from(me);
        let public = PublicKey::from(peer);
        b.iter(|| black_box(&secret).diffie_hellman(&public));
    });
    g.finish();
}

criterion_group!(benches, masks, agreements);
criterion_main!(benches);
