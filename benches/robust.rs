//! Criterion medians of the robust-aggregation kernels on 100 updates x 64K coordinates, with a
//! per-column quickselect (the obvious way) beside the sorting network the median uses.

use criterion::{criterion_group, criterion_main, Criterion};
use fedcodec::rng::uniform_pair;
use fedcodec::robust::network::{Network, Row, W};
use fedcodec::robust::{
    coordinate_median, geometric_median, pairwise_sq_dists, trimmed_mean, Updates,
};
use std::hint::black_box;

const K: usize = 100;
const D: usize = 1 << 16;

fn uniforms(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| uniform_pair(seed, i as u64).0 - 0.5)
        .collect()
}

/// The baseline: gather each coordinate's K values and quickselect the middle.
fn median_by_select(data: &[f32], k: usize, d: usize) -> Vec<f32> {
    let mut col = vec![0.0f32; k];
    (0..d)
        .map(|c| {
            for (r, v) in col.iter_mut().enumerate() {
                *v = data[r * d + c];
            }
            let (lo, hi) = ((k - 1) / 2, k / 2);
            let (_, &mut a, upper) = col.select_nth_unstable_by(lo, f32::total_cmp);
            let b = if hi == lo {
                a
            } else {
                *upper.iter().min_by(|x, y| x.total_cmp(y)).unwrap()
            };
            ((f64::from(a) + f64::from(b)) * 0.5) as f32
        })
        .collect()
}

fn network(c: &mut Criterion) {
    let values = uniforms(K * W, 1);
    let block: Vec<Row> = values.chunks(W).map(|r| r.try_into().unwrap()).collect();
    let net = Network::selecting(K, |r| r == (K - 1) / 2 || r == K / 2);
    c.bench_function("median network, one 100 x 64 block, build target", |b| {
        b.iter(|| {
            let mut rows = block.clone();
            net.apply_portable(black_box(&mut rows));
            rows
        });
    });
    c.bench_function("median network, one 100 x 64 block, run-time AVX2", |b| {
        b.iter(|| {
            let mut rows = block.clone();
            net.apply(black_box(&mut rows));
            rows
        });
    });
}

fn kernels(c: &mut Criterion) {
    let data = uniforms(K * D, 2);
    let u = Updates::new(&data, K, D).unwrap();
    assert_eq!(coordinate_median(&u), median_by_select(&data, K, D));
    c.bench_function("coordinate_median 100 x 64K", |b| {
        b.iter(|| coordinate_median(black_box(&u)));
    });
    c.bench_function("per-column quickselect median 100 x 64K (baseline)", |b| {
        b.iter(|| median_by_select(black_box(&data), K, D));
    });
    c.bench_function("trimmed_mean 100 x 64K, trim 20", |b| {
        b.iter(|| trimmed_mean(black_box(&u), 20).unwrap());
    });
    c.bench_function("pairwise_sq_dists 100 x 64K", |b| {
        b.iter(|| pairwise_sq_dists(black_box(&u)));
    });
    let w = vec![1.0; K];
    c.bench_function("geometric_median 100 x 64K", |b| {
        b.iter(|| geometric_median(black_box(&u), &w, 1e-6, 100, 1e-6).unwrap());
    });
}

criterion_group!(benches, network, kernels);
criterion_main!(benches);
