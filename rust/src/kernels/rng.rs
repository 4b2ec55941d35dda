//! Stateless, seeded randomness: any element's random draw is a pure function of (seed, index),
//! so kernels split across threads give the same bytes as a single thread.

/// SplitMix64 finaliser: a bijective 64-bit mixer with full avalanche.
#[inline]
#[must_use]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit random word for element `index` of the stream named by `seed`.
#[inline]
#[must_use]
pub fn hash_u64(seed: u64, index: u64) -> u64 {
    mix64(mix64(seed) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Two independent uniforms in [0, 1) with 24-bit resolution from one hash.
#[inline]
#[must_use]
pub fn uniform_pair(seed: u64, index: u64) -> (f32, f32) {
    let h = hash_u64(seed, index);
    let scale = 1.0 / (1u32 << 24) as f32;
    (
        ((h >> 40) as u32) as f32 * scale,
        (((h >> 8) as u32) & 0xFF_FFFF) as f32 * scale,
    )
}

/// A derived seed for a sub-stream (a pipeline stage, a chunk), so streams never overlap.
#[inline]
#[must_use]
pub fn derive(seed: u64, stream: u64) -> u64 {
    mix64(seed ^ mix64(stream.wrapping_add(0x5851_F42D_4C95_7F2D)))
}

/// SplitMix64's state increment (the golden ratio in 64 bits).
const SPLITMIX_STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output for one state.
#[inline(always)]
fn splitmix_output(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Sequential generator for code that walks elements in order (samplers, tests).
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(SPLITMIX_STEP);
        splitmix_output(self.state)
    }

    /// The next `N` outputs at once, each from its own state (so the lanes vectorize), the same
    /// values `N` calls of [`Self::next_u64`] give.
    #[inline(always)]
    pub fn next_batch<const N: usize>(&mut self, out: &mut [u64; N]) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = splitmix_output(
                self.state
                    .wrapping_add((i as u64 + 1).wrapping_mul(SPLITMIX_STEP)),
            );
        }
        self.state = self
            .state
            .wrapping_add((N as u64).wrapping_mul(SPLITMIX_STEP));
    }

    /// Uniform in [0, 1) with 53-bit resolution.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, bound) by Lemire's multiply-shift (bias below 2^-32 for our sizes).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_the_same_outputs_as_one_call_each() {
        let (mut one, mut batch) = (SplitMix64::new(9), SplitMix64::new(9));
        let mut out = [0u64; 16];
        for _ in 0..3 {
            batch.next_batch(&mut out);
            assert!(out.iter().all(|&v| v == one.next_u64()));
        }
        assert_eq!(batch.next_u64(), one.next_u64());
    }

    #[test]
    fn hash_is_deterministic_and_seed_dependent() {
        assert_eq!(hash_u64(7, 3), hash_u64(7, 3));
        assert_ne!(hash_u64(7, 3), hash_u64(8, 3));
        assert_ne!(hash_u64(7, 3), hash_u64(7, 4));
    }

    #[test]
    fn uniform_pair_mean_is_one_half() {
        let n = 200_000u64;
        let (mut a, mut b) = (0.0f64, 0.0f64);
        for i in 0..n {
            let (u, v) = uniform_pair(11, i);
            assert!((0.0..1.0).contains(&u) && (0.0..1.0).contains(&v));
            a += f64::from(u);
            b += f64::from(v);
        }
        assert!((a / n as f64 - 0.5).abs() < 0.005);
        assert!((b / n as f64 - 0.5).abs() < 0.005);
    }

    #[test]
    fn below_stays_in_range() {
        let mut g = SplitMix64::new(1);
        for _ in 0..10_000 {
            assert!(g.below(17) < 17);
        }
    }
}
