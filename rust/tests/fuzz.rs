//! Mutation fuzz of the decoders: frames of every spec are damaged field by field, their
//! checksum recomputed so the damage reaches the parser and the kernels, and each is decoded
//! (and added to an Accumulator) under a time bound and a memory bound per frame.
//!
//! The default run mutates 20 000 frames; `make fuzz-million` sets `FEDCODEC_FUZZ_FRAMES=1000000`
//! and prints crashes, non-finite outputs, the slowest frame and the peak memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fedcodec::frame::{seal, MAX_ELEMENTS_PER_BYTE};
use fedcodec::rng::SplitMix64;
use fedcodec::{encode, Accumulator, CodecError, ParsedFrame, Spec};

/// The system allocator, counting live bytes and their peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; the counters only observe sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SPECS: [&str; 22] = [
    "none",
    "f16",
    "bf16",
    "quant:1",
    "quant:8",
    "quant:16",
    "quant:4:stochastic:chunk=16",
    "qsgd:2",
    "qsgd:127:bucket=32",
    "eden:1",
    "eden:2",
    "eden:4",
    "eden:8",
    "sign",
    "sign:chunk=16",
    "topk:0.05",
    "topk:0.2:sampled+quant:8",
    "randk:0.3",
    "randk:0.01+eden:1",
    "randk:0.5+topk:0.2+quant:4",
    "topk:0.5+randk:0.5+sign",
    "randk:0.5+randk:0.5+randk:0.5+f16",
];

/// Values a forger writes into a field: zeros, all ones, counts near limits, float specials.
fn special(g: &mut SplitMix64, width: usize) -> Vec<u8> {
    let u: u64 = match g.below(12) {
        0 => 0,
        1 => u64::MAX,
        2 => 1 << 31,
        3 => (1 << 40) + g.below(1000),
        4 => g.below(1 << 20),
        5 => u64::from(f32::NAN.to_bits()),
        6 => u64::from(f32::INFINITY.to_bits()),
        7 => u64::from(f32::MAX.to_bits()),
        8 => u64::from(1e36f32.to_bits()),
        9 => f64::NAN.to_bits(),
        10 => 1e-300f64.to_bits(),
        _ => g.next_u64(),
    };
    u.to_le_bytes()[..width].to_vec()
}

/// One mutation of `frame`'s body (checksum removed), resealed.
fn mutate(frame: &[u8], g: &mut SplitMix64) -> Vec<u8> {
    let mut body = frame[..frame.len() - 4].to_vec();
    match g.below(5) {
        0 | 1 => {
            // Overwrite one field-sized run, most often inside the headers.
            let width = [1, 2, 4, 8][g.below(4) as usize];
            let span = if g.below(3) == 0 {
                body.len()
            } else {
                body.len().min(96)
            };
            let at = g.below(span as u64) as usize;
            let v = special(g, width);
            for (i, b) in v.into_iter().enumerate() {
                if let Some(slot) = body.get_mut(at + i) {
                    *slot = b;
                }
            }
        }
        2 => {
            for _ in 0..=g.below(4) {
                let bit = g.below(body.len() as u64 * 8) as usize;
                body[bit / 8] ^= 1 << (bit % 8);
            }
        }
        3 => body.truncate(g.below(body.len() as u64) as usize),
        _ => {
            for _ in 0..=g.below(64) {
                body.push(g.next_u64() as u8);
            }
        }
    }
    seal(body)
}

#[derive(Default, Debug)]
struct Tally {
    frames: usize,
    decoded: usize,
    crashes: usize,
    non_finite: usize,
    wrong_error: usize,
    slowest: Duration,
    peak_bytes: usize,
    over_memory_bound: usize,
}

fn run(frames: usize, seed: u64) -> Tally {
    let mut g = SplitMix64::new(seed);
    let mut bases = Vec::new();
    for spec in SPECS {
        for n in [1usize, 9, 300, 5000] {
            let x: Vec<f32> = (0..n)
                .map(|_| (g.next_f64() as f32 - 0.5) * 10f32.powi(g.below(6) as i32 - 2))
                .collect();
            let frame = encode(&Spec::parse(spec).unwrap(), &x, &[n as u64], g.next_u64()).unwrap();
            bases.push((frame, n));
        }
    }
    // 66 000 kept indices: the encoder writes them as Rice blocks (index tag 3), whose table
    // and streams the mutations above then reach.
    let n = 330_000;
    let x: Vec<f32> = (0..n).map(|_| g.next_f64() as f32 - 0.5).collect();
    let kept = fedcodec::topk::topk_exact(&x, 66_000);
    assert_eq!(
        fedcodec::index_coding::encode_indices(&kept, n)[0],
        3,
        "tag 3"
    );
    let frame = encode(
        &Spec::parse("topk:0.2+quant:8").unwrap(),
        &x,
        &[n as u64],
        3,
    )
    .unwrap();
    bases.push((frame, n));
    let mut t = Tally::default();
    for _ in 0..frames {
        let (base, n) = &bases[g.below(bases.len() as u64) as usize];
        let frame = mutate(base, &mut g);
        let start = Instant::now();
        PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
        let before = LIVE.load(Ordering::Relaxed);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let decoded = ParsedFrame::parse(&frame, u64::MAX).and_then(|p| p.decode());
            let mut acc = Accumulator::new(*n).unwrap();
            let added = acc.add(&frame, 1.5);
            (
                decoded,
                added.map(|()| acc.sum().iter().all(|v| v.is_finite())),
            )
        }));
        let elapsed = start.elapsed();
        let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        t.frames += 1;
        t.slowest = t.slowest.max(elapsed);
        t.peak_bytes = t.peak_bytes.max(peak);
        if peak > memory_bound(frame.len()) {
            t.over_memory_bound += 1;
        }
        match outcome {
            Err(_) => t.crashes += 1,
            Ok((decoded, added)) => {
                match decoded {
                    Ok(y) => {
                        t.decoded += 1;
                        if !y.iter().all(|v| v.is_finite()) {
                            t.non_finite += 1;
                        }
                    }
                    Err(CodecError::InvalidParam(_)) => t.wrong_error += 1,
                    Err(_) => {}
                }
                if matches!(added, Ok(false)) {
                    t.non_finite += 1;
                }
            }
        }
    }
    t
}

/// Bytes a frame may cost: its element budget as float32 twice (decode, then the Accumulator's
/// scratch or trial buffers), plus 1 MiB for index lists, bitmaps and small vectors.
fn memory_bound(frame_len: usize) -> usize {
    2 * 4 * MAX_ELEMENTS_PER_BYTE as usize * frame_len + (1 << 20)
}

#[test]
fn mutated_frames_of_every_spec_decode_finite_or_fail_cleanly_within_bounds() {
    let frames = std::env::var("FEDCODEC_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let t = run(frames, 0xF022);
    println!("{t:?}");
    assert_eq!(t.frames, frames);
    assert_eq!(t.crashes, 0, "{t:?}");
    assert_eq!(t.non_finite, 0, "{t:?}");
    assert_eq!(t.wrong_error, 0, "{t:?}");
    assert!(t.decoded > frames / 50, "too few mutations decode: {t:?}");
    // The bound: a loaded box stalls a frame for hundreds of milliseconds now and then.
    assert!(t.slowest < Duration::from_secs(1), "{t:?}");
    assert_eq!(t.over_memory_bound, 0, "{t:?}");
}
