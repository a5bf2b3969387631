//! Portable random numbers and `sin` for the series generator and the training runs.
//!
//! Synthetic data must be bit-identical on every machine, and a training run must repeat
//! from its seed on one machine whatever other threads do with libtorch's global generator.
//! So every draw comes from a local splitmix64 stream, and the generator uses only IEEE-754
//! `+ − × ÷`, `round` and `sqrt`, which are correctly rounded everywhere; `sin` is a Taylor
//! polynomial after an exact range reduction instead of the platform's math library.

use doin_core::hash::Hash32;

/// splitmix64: tiny, fast and identical on every machine. Not cryptographic; the seeds it
/// expands already are (blake3 digests) or are the optimizer's own.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SplitMix64 {
    /// A stream for `tag` seeded by every word of `words`, in order.
    pub(crate) fn derive(tag: u64, words: &[u64]) -> Self {
        let state = words
            .iter()
            .fold(mix(tag), |state, &w| mix(state ^ mix(w.wrapping_add(tag))));
        SplitMix64 { state }
    }

    /// The four little-endian words of a 32-byte seed.
    pub(crate) fn words(seed: &Hash32) -> [u64; 4] {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(seed.0.chunks_exact(8)) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(chunk);
            *word = u64::from_le_bytes(bytes);
        }
        words
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`, with 53 random bits (exact: no rounding).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high]`.
    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        (low + (high - low) * self.unit()).clamp(low, high)
    }

    /// Uniform in `0..n` (`0` when `n` is 0). The modulo bias is below 2⁻⁴⁰ for the small
    /// `n` used here.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if n64 == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    /// Approximately standard normal: the Irwin–Hall sum of 12 uniforms minus 6 (mean 0,
    /// variance 1, bounded by ±6).
    pub(crate) fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }

    /// Fisher–Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// `sin(x)` from `+ − ×` only, accurate to a few ulps for the arguments the generator uses
/// (|x| up to about 10⁶): reduce to `[−π, π]` by whole turns, fold into `[−π/2, π/2]`, then
/// a Taylor polynomial to degree 21 (truncation error below 3·10⁻¹⁶).
pub(crate) fn portable_sin(x: f64) -> f64 {
    use std::f64::consts::{FRAC_PI_2, PI, TAU};
    if !x.is_finite() {
        return f64::NAN;
    }
    let turns = (x / TAU).round();
    let mut r = x - turns * TAU;
    if r > FRAC_PI_2 {
        r = PI - r;
    } else if r < -FRAC_PI_2 {
        r = -PI - r;
    }
    let r2 = r * r;
    // Horner over the odd Taylor terms: r − r³/3! + r⁵/5! − … ± r²¹/21!.
    let mut sum = 0.0;
    let mut k = 21.0_f64;
    while k >= 3.0 {
        sum = r2 / (k * (k - 1.0)) * (1.0 - sum);
        k -= 2.0;
    }
    r * (1.0 - sum)
}
