//! Criterion benches of whole frames: encode and decode through the spec pipeline, 10M float32.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fedcodec::rng::SplitMix64;
use fedcodec::{Accumulator, ParsedFrame, Spec};

const N: usize = 10_000_000;

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut g = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            // Box–Muller from two uniforms: enough for benchmark data.
            let u = g.next_f64().max(1e-300);
            let v = g.next_f64();
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect()
}

fn bench_frames(c: &mut Criterion) {
    let x = gaussian(N, 1);
    let shape = [N as u64];
    let mut group = c.benchmark_group("frame");
    group.sample_size(10);
    for text in [
        "none",
        "quant:8",
        "topk:0.01+quant:8",
        "topk:0.01:sampled+quant:8",
        "eden:1",
        "randk:0.1+quant:8",
    ] {
        let spec = Spec::parse(text).expect("valid spec");
        let frame = fedcodec::encode(&spec, &x, &shape, 7).expect("encodes");
        group.bench_with_input(BenchmarkId::new("encode", text), &spec, |b, spec| {
            b.iter(|| fedcodec::encode(spec, &x, &shape, 7).expect("encodes"));
        });
        group.bench_with_input(BenchmarkId::new("decode", text), &frame, |b, frame| {
            b.iter(|| {
                ParsedFrame::parse(frame, u64::MAX)
                    .and_then(|p| p.decode())
                    .expect("decodes")
            });
        });
    }
    let sparse = fedcodec::encode(
        &Spec::parse("topk:0.01+quant:8").expect("valid"),
        &x,
        &shape,
        7,
    )
    .expect("encodes");
    group.bench_function("accumulate 10 topk frames", |b| {
        let mut acc = Accumulator::new(N).expect("size ok");
        b.iter(|| {
            for _ in 0..10 {
                acc.add(&sparse, 2.0).expect("adds");
            }
        });
    });
    group.finish();
}

criterion_group!(benches, bench_frames);
criterion_main!(benches);
