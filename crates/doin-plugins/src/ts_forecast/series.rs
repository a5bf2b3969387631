//! The data-generating process and the canonical dataset encoding.
//!
//! Every series is a pure function of the process parameters (from the domain's data
//! configuration, shared by every node), a stream tag and a seed: evaluators draw theirs from
//! their 32-byte data seed, optimizers train on series drawn from their own `u64` seed under
//! another tag, so no optimizer ever trains on an evaluator's series.
//!
//! One series is the sum of
//!
//! * a **level** that starts at `U(−5, 5)`, follows a drift per **regime** (each regime
//!   draws its own drift in `[−trend, trend]`) and jumps by `±level_shift_size` with
//!   probability `level_shift_prob` per step (**level shifts**);
//! * 1 to `seasonalities` **sinusoids** with periods drawn from `periods`, amplitudes from
//!   `amplitude` and uniform phases;
//! * an **AR(2)** component `aₜ = φ₁aₜ₋₁ + φ₂aₜ₋₂ + σ·vₜ·εₜ` whose shock scale `vₜ` is 1 in the
//!   calm regime and `volatile_ratio` in the volatile one; the two-state regime switches with
//!   probability `regime_switch_prob` per step.
//!
//! Every step draws the same count of random numbers whichever branch it takes, so changing
//! one probability does not shift every later draw.

use serde_json::{Map, Value};

use doin_core::plugin::{PluginError, PluginResult};

use super::rng::{portable_sin, SplitMix64};
use super::{config_error, get_range, get_u64};

/// Most series one dataset may hold.
pub const MAX_SERIES: usize = 4_096;
/// Longest series.
pub const MAX_SERIES_LENGTH: usize = 1 << 16;
/// Most values (series × length) in one dataset: 32 MiB of `f64`s.
pub const MAX_DATASET_VALUES: usize = 1 << 22;
/// Most sinusoids per series.
pub const MAX_SEASONALITIES: usize = 8;
/// Most candidate periods.
pub const MAX_PERIODS: usize = 64;

/// Magic bytes at the start of an encoded dataset.
const DATASET_MAGIC: &[u8; 8] = b"DOIN-TSD";
/// Version of the dataset encoding.
const DATASET_VERSION: u16 = 1;
/// Magic (8) + version (2) + series count (4) + length (4).
const DATASET_HEADER_BYTES: usize = 18;
/// AR steps run before a series starts, so its AR part starts near stationarity.
const AR_BURN_IN: usize = 64;
/// Range of a series' initial level.
const LEVEL_RANGE: (f64, f64) = (-5.0, 5.0);

/// Parameters of the generating process (see the module docs). Every node of a domain must
/// use the same values.
#[derive(Debug, Clone, PartialEq)]
pub struct Process {
    /// Largest absolute drift per step of either regime.
    pub trend: f64,
    /// Most sinusoids per series (at least 1 is always drawn).
    pub seasonalities: usize,
    /// Periods the sinusoids draw from, in steps.
    pub periods: Vec<f64>,
    /// Range of each sinusoid's amplitude.
    pub amplitude: (f64, f64),
    /// Range of the AR(2) coefficient φ₁.
    pub ar_phi1: (f64, f64),
    /// Range of the AR(2) coefficient φ₂.
    pub ar_phi2: (f64, f64),
    /// Range of the AR shock's standard deviation σ (calm regime).
    pub noise_std: (f64, f64),
    /// Probability per step of switching between the calm and volatile regimes.
    pub regime_switch_prob: f64,
    /// How much larger the AR shocks are in the volatile regime.
    pub volatile_ratio: f64,
    /// Probability per step of a level shift.
    pub level_shift_prob: f64,
    /// Range of a level shift's size (its sign is drawn separately).
    pub level_shift_size: (f64, f64),
}

impl Default for Process {
    /// Strong, learnable structure (seasons of up to 48 steps, persistent AR noise) with
    /// enough disturbances (regimes, shifts) that a forecaster has to generalise rather than
    /// recognise one pattern.
    fn default() -> Self {
        Process {
            trend: 0.01,
            seasonalities: 3,
            periods: vec![7.0, 12.0, 24.0, 48.0],
            amplitude: (0.3, 1.5),
            ar_phi1: (0.3, 0.9),
            ar_phi2: (-0.3, 0.0),
            noise_std: (0.1, 0.3),
            regime_switch_prob: 0.02,
            volatile_ratio: 3.0,
            level_shift_prob: 0.005,
            level_shift_size: (0.5, 2.0),
        }
    }
}

impl Process {
    /// Reads the process keys of a data configuration; absent keys keep their defaults and
    /// unknown keys are ignored (the configuration also carries other sections' keys).
    pub fn from_map(map: &Map<String, Value>) -> PluginResult<Self> {
        let d = Process::default();
        let probability = |key: &str, default: f64| -> PluginResult<f64> {
            match map.get(key) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|p| (0.0..=1.0).contains(p))
                    .ok_or_else(|| {
                        config_error(key, format!("must be a number in [0, 1], got {v}"))
                    }),
            }
        };
        let process = Process {
            trend: match map.get("trend") {
                None => d.trend,
                Some(v) => v
                    .as_f64()
                    .filter(|t| (0.0..=1.0).contains(t))
                    .ok_or_else(|| {
                        config_error("trend", format!("must be a number in [0, 1], got {v}"))
                    })?,
            },
            seasonalities: usize::try_from(get_u64(
                map,
                "seasonalities",
                d.seasonalities as u64,
                1,
                MAX_SEASONALITIES as u64,
            )?)
            .unwrap_or(1),
            periods: match map.get("periods") {
                None => d.periods,
                Some(v) => parse_periods(v)?,
            },
            amplitude: get_range(map, "amplitude", d.amplitude, (0.0, 100.0))?,
            ar_phi1: get_range(map, "ar_phi1", d.ar_phi1, (-2.0, 2.0))?,
            ar_phi2: get_range(map, "ar_phi2", d.ar_phi2, (-1.0, 1.0))?,
            noise_std: get_range(map, "noise_std", d.noise_std, (0.0, 100.0))?,
            regime_switch_prob: probability("regime_switch_prob", d.regime_switch_prob)?,
            volatile_ratio: match map.get("volatile_ratio") {
                None => d.volatile_ratio,
                Some(v) => v
                    .as_f64()
                    .filter(|r| (1.0..=100.0).contains(r))
                    .ok_or_else(|| {
                        config_error(
                            "volatile_ratio",
                            format!("must be a number in [1, 100], got {v}"),
                        )
                    })?,
            },
            level_shift_prob: probability("level_shift_prob", d.level_shift_prob)?,
            level_shift_size: get_range(map, "level_shift_size", d.level_shift_size, (0.0, 100.0))?,
        };
        process.check_stationary()?;
        Ok(process)
    }

    /// The AR(2) part must be stationary for every (φ₁, φ₂) in the box, or series explode:
    /// the box's corners must lie strictly inside the triangle φ₁ + φ₂ < 1, φ₂ − φ₁ < 1,
    /// |φ₂| < 1 (which is convex, so the corners suffice).
    fn check_stationary(&self) -> PluginResult<()> {
        let (a_low, a_high) = self.ar_phi1;
        let (b_low, b_high) = self.ar_phi2;
        for phi1 in [a_low, a_high] {
            for phi2 in [b_low, b_high] {
                let inside = phi1 + phi2 < 1.0 && phi2 - phi1 < 1.0 && phi2.abs() < 1.0;
                if !inside {
                    return Err(config_error(
                        "ar_phi2",
                        format!(
                            "AR(2) with φ₁ = {phi1}, φ₂ = {phi2} is not stationary \
                             (need φ₁ + φ₂ < 1, φ₂ − φ₁ < 1, |φ₂| < 1 over the whole box)"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Series `index` of the stream `(tag, seed_words)`, `length` values long.
    pub fn series(&self, tag: u64, seed_words: &[u64], index: u64, length: usize) -> Vec<f64> {
        let mut words = seed_words.to_vec();
        words.push(index);
        let mut rng = SplitMix64::derive(tag, &words);

        let mut level = rng.uniform(LEVEL_RANGE.0, LEVEL_RANGE.1);
        let drift = [
            rng.uniform(-self.trend, self.trend),
            rng.uniform(-self.trend, self.trend),
        ];
        let count = 1 + rng.below(self.seasonalities);
        let seasons: Vec<(f64, f64, f64)> = (0..count)
            .map(|_| {
                let period = self.periods[rng.below(self.periods.len())];
                let amplitude = rng.uniform(self.amplitude.0, self.amplitude.1);
                let phase = rng.uniform(0.0, std::f64::consts::TAU);
                (period, amplitude, phase)
            })
            .collect();
        let phi1 = rng.uniform(self.ar_phi1.0, self.ar_phi1.1);
        let phi2 = rng.uniform(self.ar_phi2.0, self.ar_phi2.1);
        let sigma = rng.uniform(self.noise_std.0, self.noise_std.1);

        let (mut a1, mut a2) = (0.0, 0.0);
        for _ in 0..AR_BURN_IN {
            let a = phi1 * a1 + phi2 * a2 + sigma * rng.normal();
            a2 = a1;
            a1 = a;
        }
        let mut regime = 0usize;
        let mut out = Vec::with_capacity(length);
        for t in 0..length {
            let switch = rng.unit();
            let shift = rng.unit();
            let sign = rng.unit();
            let size = rng.uniform(self.level_shift_size.0, self.level_shift_size.1);
            let shock = rng.normal();
            if switch < self.regime_switch_prob {
                regime ^= 1;
            }
            if shift < self.level_shift_prob {
                level += if sign < 0.5 { -size } else { size };
            }
            level += drift[regime];
            let volatility = if regime == 1 {
                self.volatile_ratio
            } else {
                1.0
            };
            let a = phi1 * a1 + phi2 * a2 + sigma * volatility * shock;
            a2 = a1;
            a1 = a;
            let time = t as f64;
            let season: f64 = seasons
                .iter()
                .map(|&(period, amplitude, phase)| {
                    amplitude * portable_sin(std::f64::consts::TAU * time / period + phase)
                })
                .sum();
            // `+ 0.0` writes −0.0 as +0.0, so the encoding has one zero.
            out.push(level + season + a + 0.0);
        }
        out
    }
}

fn parse_periods(v: &Value) -> PluginResult<Vec<f64>> {
    let values = v
        .as_array()
        .filter(|a| (1..=MAX_PERIODS).contains(&a.len()))
        .ok_or_else(|| {
            config_error(
                "periods",
                format!("must be an array of 1 to {MAX_PERIODS} numbers"),
            )
        })?;
    values
        .iter()
        .map(|p| {
            p.as_f64()
                .filter(|p| (2.0..=1e4).contains(p))
                .ok_or_else(|| {
                    config_error("periods", format!("{p} is not a period in [2, 10000]"))
                })
        })
        .collect()
}

// === dataset encoding ===

/// Several series of one length: what an evaluator scores a model on.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSet {
    /// Values of series `i` at `i·length .. (i+1)·length`.
    values: Vec<f64>,
    length: usize,
}

impl SeriesSet {
    /// `count` series of `length` values from the stream `(tag, seed_words)`.
    pub fn generate(
        process: &Process,
        tag: u64,
        seed_words: &[u64],
        count: usize,
        length: usize,
    ) -> Self {
        let mut values = Vec::with_capacity(count.saturating_mul(length));
        for index in 0..count {
            values.extend(process.series(tag, seed_words, index as u64, length));
        }
        SeriesSet { values, length }
    }

    /// Number of series.
    pub fn count(&self) -> usize {
        self.values.len().checked_div(self.length).unwrap_or(0)
    }

    /// Values per series.
    pub fn length(&self) -> usize {
        self.length
    }

    /// The series, one slice each.
    pub fn iter(&self) -> impl Iterator<Item = &[f64]> {
        self.values.chunks_exact(self.length.max(1))
    }

    /// The first `n` series and the rest.
    pub fn split(&self, n: usize) -> (SeriesSet, SeriesSet) {
        let at = n.min(self.count()).saturating_mul(self.length);
        let (head, tail) = self.values.split_at(at);
        (
            SeriesSet {
                values: head.to_vec(),
                length: self.length,
            },
            SeriesSet {
                values: tail.to_vec(),
                length: self.length,
            },
        )
    }

    /// The canonical bytes: `"DOIN-TSD"`, version `u16`, series count `u32`, length `u32`
    /// (all little-endian), then every value as a little-endian `f64`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DATASET_HEADER_BYTES + 8 * self.values.len());
        out.extend_from_slice(DATASET_MAGIC);
        out.extend_from_slice(&DATASET_VERSION.to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(self.count())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&u32::try_from(self.length).unwrap_or(u32::MAX).to_le_bytes());
        for v in &self.values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s bytes, checking every size before allocating and
    /// every value for finiteness; `min_length` is the shortest series the caller can use.
    pub fn decode(bytes: &[u8], min_length: usize) -> PluginResult<Self> {
        let invalid = |reason: String| PluginError::InvalidData { reason };
        if bytes.len() < DATASET_HEADER_BYTES || &bytes[..8] != DATASET_MAGIC {
            return Err(invalid(
                "not a ts_forecast dataset (bad magic or too short)".into(),
            ));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != DATASET_VERSION {
            return Err(invalid(format!(
                "dataset version {version}, expected {DATASET_VERSION}"
            )));
        }
        let count = le_u32(&bytes[10..14]);
        let length = le_u32(&bytes[14..18]);
        if count == 0 || count > MAX_SERIES {
            return Err(invalid(format!(
                "{count} series, expected 1 to {MAX_SERIES}"
            )));
        }
        if length < min_length || length > MAX_SERIES_LENGTH {
            return Err(invalid(format!(
                "series of {length} values, expected {min_length} to {MAX_SERIES_LENGTH}"
            )));
        }
        let values = count.saturating_mul(length);
        if values > MAX_DATASET_VALUES {
            return Err(invalid(format!(
                "{values} values exceed the limit of {MAX_DATASET_VALUES}"
            )));
        }
        let body = &bytes[DATASET_HEADER_BYTES..];
        if body.len() != values * 8 {
            return Err(invalid(format!(
                "{} bytes of values, expected {} ({count} × {length} f64s)",
                body.len(),
                values * 8
            )));
        }
        let values = body
            .chunks_exact(8)
            .map(|chunk| {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                f64::from_le_bytes(b)
            })
            .collect::<Vec<f64>>();
        if let Some(i) = values.iter().position(|v| !v.is_finite() || v.abs() > 1e12) {
            return Err(invalid(format!(
                "value {i} is not finite or exceeds 1e12 in magnitude"
            )));
        }
        Ok(SeriesSet { values, length })
    }
}

fn le_u32(b: &[u8]) -> usize {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[..4]);
    usize::try_from(u32::from_le_bytes(word)).unwrap_or(usize::MAX)
}
