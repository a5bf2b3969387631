//! A tiny seeded random number generator for the engines.
//!
//! splitmix64: fast, dependency-free and identical on every machine, which is all an
//! optimizer needs (its randomness is not consensus: a run only has to reproduce from its
//! seed on the machine that ran it). Not cryptographic.

/// The splitmix64 finalizer: a bijective 64-bit mix.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    state: u64,
}

impl Rng {
    /// A stream seeded by every word of `words`, in order, under a `tag` that keeps streams
    /// of different uses apart.
    pub(crate) fn derive(tag: u64, words: &[u64]) -> Self {
        let state = words
            .iter()
            .fold(mix(tag), |state, &w| mix(state ^ mix(w ^ tag)));
        Rng { state }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`, 53 random bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[low, high)`.
    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform index in `0..n` (`n > 0`; 0 when `n == 0`).
    pub(crate) fn index(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }

    /// `true` with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        // 1 − unit() is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_reproduce_and_differ_by_seed_and_tag() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::derive(1, &[7]), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::derive(1, &[7]), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(Rng::derive(1, &[8]).next_u64(), a[0]);
        assert_ne!(Rng::derive(2, &[7]).next_u64(), a[0]);
    }

    #[test]
    fn draws_stay_in_range_and_normals_are_standard() {
        let mut r = Rng::derive(3, &[1]);
        let normals: Vec<f64> = (0..20_000).map(|_| r.normal()).collect();
        let mean = normals.iter().sum::<f64>() / normals.len() as f64;
        let var = normals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / normals.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        for _ in 0..1000 {
            let u = r.uniform(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&u));
            assert!(r.index(5) < 5);
        }
        assert_eq!(r.index(0), 0);
    }
}
