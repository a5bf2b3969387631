//! L3: a surrogate model of the domain, learned from (hyperparameters → performance) records.
//!
//! A Gaussian-process regression over the search space's unit cube (squared-exponential
//! kernel, one length scale, the targets standardized). Why a GP: the records are few (tens
//! to a few hundred: each costs one training run), a GP is exact at that size (an `O(n³)`
//! Cholesky of a 128×128 matrix takes well under a millisecond), it needs no training loop or
//! libtorch, and it gives an uncertainty with every prediction, which the GA uses to favour
//! promising *and* unexplored candidates (upper confidence bound).
//!
//! The length scale is not fitted by maximum likelihood: it is picked from a small grid by
//! leave-one-out error, which the Cholesky factor gives in closed form
//! (Rasmussen & Williams, *GPML*, §5.4.2): cheap, deterministic and robust.
//!
//! Records come from the run's own history (standalone) and from other participants'
//! verified results (the node's analytics: accepted and rejected verdicts), through
//! [`crate::Engine::observe_record`].

use std::fmt;

/// Most records kept: the best ones by performance once over the limit (the surrogate should
/// be accurate where the search is, near the best), which bounds one fit at `O(128³)`.
pub const MAX_RECORDS: usize = 128;
/// Length scales tried (in unit-cube distance, scaled by `√dims`).
const LENGTH_SCALES: [f64; 6] = [0.08, 0.15, 0.25, 0.4, 0.6, 1.0];
/// Noise-to-signal ratio added to the kernel's diagonal: keeps the factorization stable and
/// lets the GP smooth over noisy claims.
const NUGGET: f64 = 1e-6;

/// One observation: a point of the unit cube and its performance (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub unit: Vec<f64>,
    pub performance: f64,
}

/// A fitted Gaussian process.
pub struct Gp {
    points: Vec<Vec<f64>>,
    /// `K⁻¹ y` (standardized targets).
    alpha: Vec<f64>,
    /// Lower Cholesky factor of `K`, row-major.
    chol: Vec<f64>,
    length: f64,
    mean: f64,
    scale: f64,
}

impl fmt::Debug for Gp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gp")
            .field("records", &self.points.len())
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// In-place lower Cholesky factorization of the `n×n` row-major `a`; `None` if not positive
/// definite.
fn cholesky(a: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for k in j + 1..n {
            a[j * n + k] = 0.0;
        }
    }
    Some(())
}

/// Solves `L x = b` (forward substitution).
fn solve_lower(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

/// Solves `Lᵀ x = b` (back substitution).
fn solve_upper_t(l: &[f64], n: usize, b: &mut [f64]) {
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= l[k * n + i] * b[k];
        }
        b[i] = s / l[i * n + i];
    }
}

impl Gp {
    /// Fits the records (at least 2, all of one dimension, finite); `None` when there is
    /// nothing to learn (too few records, constant targets, or a failed factorization).
    pub fn fit(records: &[Record]) -> Option<Gp> {
        let (points, y, mean, scale) = Self::prepare(records)?;
        let dim_scale = (points.first()?.len() as f64).sqrt();
        let mut best: Option<(f64, Gp)> = None;
        for &l in &LENGTH_SCALES {
            let Some(gp) = Self::fit_with(&points, &y, l * dim_scale, mean, scale) else {
                continue;
            };
            let loo = gp.loo_error();
            if best.as_ref().is_none_or(|(e, _)| loo < *e) {
                best = Some((loo, gp));
            }
        }
        best.map(|(_, gp)| gp)
    }

    /// Fits with a given length scale (one factorization, no selection).
    pub fn fit_with_length(records: &[Record], length: f64) -> Option<Gp> {
        let (points, y, mean, scale) = Self::prepare(records)?;
        Self::fit_with(&points, &y, length, mean, scale)
    }

    /// Points and standardized targets, or `None` when there is nothing to learn.
    #[allow(clippy::type_complexity)]
    fn prepare(records: &[Record]) -> Option<(Vec<Vec<f64>>, Vec<f64>, f64, f64)> {
        let n = records.len();
        let dims = records.first()?.unit.len();
        if n < 2 || dims == 0 || records.iter().any(|r| r.unit.len() != dims) {
            return None;
        }
        let ys: Vec<f64> = records.iter().map(|r| r.performance).collect();
        if ys.iter().any(|y| !y.is_finite()) {
            return None;
        }
        let mean = ys.iter().sum::<f64>() / n as f64;
        let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n as f64;
        if var <= 0.0 || !var.is_finite() {
            return None;
        }
        let scale = var.sqrt();
        let y: Vec<f64> = ys.iter().map(|v| (v - mean) / scale).collect();
        let points: Vec<Vec<f64>> = records.iter().map(|r| r.unit.clone()).collect();
        Some((points, y, mean, scale))
    }

    fn fit_with(points: &[Vec<f64>], y: &[f64], length: f64, mean: f64, scale: f64) -> Option<Gp> {
        let n = points.len();
        let mut k = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = (-sq_dist(&points[i], &points[j]) / (2.0 * length * length)).exp();
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] += NUGGET;
        }
        cholesky(&mut k, n)?;
        let mut alpha = y.to_vec();
        solve_lower(&k, n, &mut alpha);
        solve_upper_t(&k, n, &mut alpha);
        Some(Gp {
            points: points.to_vec(),
            alpha,
            chol: k,
            length,
            mean,
            scale,
        })
    }

    /// Mean squared leave-one-out error: `αᵢ / [K⁻¹]ᵢᵢ` (GPML eq. 5.12).
    fn loo_error(&self) -> f64 {
        let n = self.points.len();
        let mut total = 0.0;
        let mut e = vec![0.0; n];
        for i in 0..n {
            e.iter_mut().for_each(|v| *v = 0.0);
            e[i] = 1.0;
            solve_lower(&self.chol, n, &mut e);
            // [K⁻¹]ᵢᵢ = ‖L⁻¹ eᵢ‖².
            let kinv_ii: f64 = e.iter().map(|v| v * v).sum();
            let r = self.alpha[i] / kinv_ii;
            total += r * r;
        }
        total / n as f64
    }

    /// Predicted performance and its standard deviation at `unit`.
    pub fn predict(&self, unit: &[f64]) -> (f64, f64) {
        let n = self.points.len();
        let mut k: Vec<f64> = self
            .points
            .iter()
            .map(|p| (-sq_dist(p, unit) / (2.0 * self.length * self.length)).exp())
            .collect();
        let mean: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        solve_lower(&self.chol, n, &mut k);
        let var = (1.0 + NUGGET - k.iter().map(|v| v * v).sum::<f64>()).max(0.0);
        (self.mean + mean * self.scale, var.sqrt() * self.scale)
    }

    /// The length scale picked (unit-cube distance).
    pub fn length_scale(&self) -> f64 {
        self.length
    }
}

/// Keeps at most [`MAX_RECORDS`]: the best by performance, ties by age (oldest dropped).
pub(crate) fn trim(records: &mut Vec<Record>) {
    if records.len() > MAX_RECORDS {
        // Stable sort: among equals, earlier records stay first and survive.
        records.sort_by(|a, b| b.performance.total_cmp(&a.performance));
        records.truncate(MAX_RECORDS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn sphere(u: &[f64]) -> f64 {
        -u.iter().map(|x| (x - 0.3) * (x - 0.3)).sum::<f64>()
    }

    #[test]
    fn the_gp_interpolates_and_ranks_unseen_points() {
        let mut rng = Rng::derive(1, &[2]);
        let records: Vec<Record> = (0..60)
            .map(|_| {
                let unit: Vec<f64> = (0..4).map(|_| rng.unit()).collect();
                Record {
                    performance: sphere(&unit),
                    unit,
                }
            })
            .collect();
        let gp = Gp::fit(&records).unwrap();
        let (m, s) = gp.predict(&records[0].unit);
        // Close to the observation (the nugget smooths a little).
        let y = records[0].performance;
        assert!((m - y).abs() < 0.05 && s < 0.05, "{m} vs {y}, sd {s}");
        // Ranking of fresh points: the predicted order mostly agrees with the truth.
        let fresh: Vec<Vec<f64>> = (0..40)
            .map(|_| (0..4).map(|_| rng.unit()).collect())
            .collect();
        let mut agree = 0;
        let mut pairs = 0;
        for a in &fresh {
            for b in &fresh {
                let truth = sphere(a) > sphere(b);
                let predicted = gp.predict(a).0 > gp.predict(b).0;
                pairs += 1;
                agree += usize::from(truth == predicted);
            }
        }
        assert!(agree as f64 / pairs as f64 > 0.85, "{agree}/{pairs}");
    }

    #[test]
    fn degenerate_records_fit_nothing() {
        assert!(Gp::fit(&[]).is_none());
        let flat = vec![
            Record {
                unit: vec![0.1],
                performance: 1.0
            };
            3
        ];
        assert!(Gp::fit(&flat).is_none());
        let nan = vec![
            Record {
                unit: vec![0.1],
                performance: f64::NAN,
            },
            Record {
                unit: vec![0.2],
                performance: 1.0,
            },
        ];
        assert!(Gp::fit(&nan).is_none());
    }

    #[test]
    fn trimming_keeps_the_best() {
        let mut records: Vec<Record> = (0..MAX_RECORDS + 10)
            .map(|i| Record {
                unit: vec![0.0],
                performance: i as f64,
            })
            .collect();
        trim(&mut records);
        assert_eq!(records.len(), MAX_RECORDS);
        assert!(records.iter().all(|r| r.performance >= 10.0));
    }
}
