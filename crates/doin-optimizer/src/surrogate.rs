//! L3: a surrogate model of the domain, learned from (hyperparameters → performance) records.
//!
//! A Gaussian-process regression over the search space's unit cube (squared-exponential
//! kernel, one length scale, the targets standardized). Why a GP: the records are few (tens
//! to a few hundred: each costs one training run), a GP is exact at that size (an `O(n³)`
//! Cholesky of a 128×128 matrix takes well under a millisecond), it needs no training loop or
//! libtorch, and it gives an uncertainty with every prediction, which the GA uses to favour
//! promising *and* unexplored candidates (upper confidence bound).
//!
//! # Mean function
//!
//! The GP's mean is either a constant (the records' mean: the kernel models everything) or a
//! **second-order trend** without cross terms, `m(u) = c + Σ bᵢzᵢ + Σ aᵢzᵢ²` over
//! `z = 2u − 1` (`2d + 1` coefficients), fitted jointly with the GP by generalized least
//! squares, the GP modelling the residuals (universal kriging; Rasmussen & Williams, *GPML*,
//! §2.7, "explicit basis functions"). The coefficients have a weak Gaussian prior: a tiny
//! ridge on all of them, and a penalty `λ Σ (aᵢ − ā)²` that shrinks the curvatures toward
//! their common mean (partial pooling), so the trend is usable with fewer records than
//! coefficients and learns separate curvatures as records accumulate. Most smooth objectives
//! look like a bowl near their optimum, which a trend extrapolates and a stationary kernel
//! with a constant mean does not. The trend's own uncertainty is part of the predictive
//! variance (*GPML* eq. 2.42), and the signal variance of a trend model is the one that
//! maximizes the leave-one-out likelihood (so a trend that predicts well claims little
//! uncertainty); a constant-mean model keeps the records' variance.
//!
//! # Model selection
//!
//! Neither the length scale nor the mean function is fitted by maximum likelihood: both are
//! picked from a small grid (6 length scales × the constant mean and the trend at 3 pooling
//! strengths) by leave-one-out error, which the Cholesky factor gives in closed form (*GPML*
//! §5.4.2; with a trend, through the Woodbury identity, which refits the trend without each
//! record): cheap, deterministic and robust. The trend must halve the constant mean's error
//! to be chosen, so a domain it does not fit keeps the constant mean, the model of old. All
//! trend fits at one length scale share the kernel's factorization.
//!
//! # The model's own optimum
//!
//! [`Gp::ascend`] climbs the predicted mean from a starting point (projected gradient ascent
//! inside the unit cube, analytic gradient), so the GA can put the model's optimum among the
//! offspring it screens ([`crate::ga`]).
//!
//! Records come from the run's own history, from results this node verified itself (the
//! reveals its evaluator measured, through [`crate::Engine::observe_record`]), and from other
//! islands' trial reports ([`crate::reports`], through [`crate::Engine::observe_trials`]).

use std::fmt;

/// Most records kept: the best ones by performance once over the limit (the surrogate should
/// be accurate where the search is, near the best), which bounds one fit at `O(128³)`.
pub const MAX_RECORDS: usize = 128;
/// Length scales tried (in unit-cube distance, scaled by `√dims`).
const LENGTH_SCALES: [f64; 6] = [0.08, 0.15, 0.25, 0.4, 0.6, 1.0];
/// Noise-to-signal ratio added to the kernel's diagonal: keeps the factorization stable and
/// lets the GP smooth over noisy claims.
const NUGGET: f64 = 1e-6;
/// Prior precision of every trend coefficient (relative to the kernel's unit variance): only
/// there to keep the least-squares system definite, e.g. for a frozen gene whose column
/// repeats the constant.
const TREND_RIDGE: f64 = 1e-6;
/// The mean functions model selection tries: the constant, and the trend with a weak, a
/// moderate and a strong pooling `λ` of the curvatures (`λ Σ (aᵢ − ā)²`; one record carries
/// information of about 1 on each coefficient).
const MEANS: [MeanKind; 4] = [
    MeanKind::Constant,
    MeanKind::Quadratic { pooling: 0.01 },
    MeanKind::Quadratic { pooling: 1.0 },
    MeanKind::Quadratic { pooling: 100.0 },
];
/// The trend replaces the constant mean only when it cuts the leave-one-out error by this
/// factor: it adds `2d + 1` coefficients, and on functions it does not describe (sums of
/// sines, 40 to 100 records in 2 to 4 dimensions) its error was mostly 0.6 to 1.5 times the
/// constant mean's, by chance, while where it does describe the function it cuts the error
/// a hundredfold or more.
const TREND_EVIDENCE: f64 = 0.5;
/// Smallest signal variance (standardized units) a model claims.
const SIGNAL_FLOOR: f64 = 1e-12;
/// Steps of one [`Gp::ascend`] and its first, largest and smallest step (unit-cube distance).
const ASCENT_STEPS: usize = 60;
const ASCENT_STEP: (f64, f64, f64) = (0.05, 0.5, 1e-6);

/// One observation: a point of the unit cube and its performance (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub unit: Vec<f64>,
    pub performance: f64,
}

/// The GP's mean function (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MeanKind {
    /// The records' mean: the kernel models everything.
    Constant,
    /// `c + Σ bᵢzᵢ + Σ aᵢzᵢ²` over `z = 2u − 1`, the kernel models the residuals; `pooling`
    /// is the `λ` of the curvatures' prior `λ Σ (aᵢ − ā)²`.
    Quadratic { pooling: f64 },
}

/// What model selection picks: a length scale (unit-cube distance) and a mean function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpChoice {
    pub length: f64,
    pub mean: MeanKind,
}

/// A fitted Gaussian process.
pub struct Gp {
    dims: usize,
    /// The records' points, `n × dims` row-major.
    points: Vec<f64>,
    /// `C⁻¹ (y − Hβ)` (standardized targets, `C` the kernel's correlation matrix).
    alpha: Vec<f64>,
    /// Lower Cholesky factor of `C`, row-major.
    chol: Vec<f64>,
    choice: GpChoice,
    trend: Option<Trend>,
    /// Signal variance in standardized units.
    signal: f64,
    /// Mean squared leave-one-out error in standardized units.
    loo: f64,
    mean: f64,
    scale: f64,
}

/// The fitted trend of a [`MeanKind::Quadratic`] model.
struct Trend {
    /// `β`: `[c, b₁…b_d, a₁…a_d]`.
    beta: Vec<f64>,
    /// `C⁻¹H`, `n × p` row-major.
    kinv_h: Vec<f64>,
    /// Lower Cholesky factor of `A = HᵀC⁻¹H + P` (`P` the prior precision), `p × p`.
    a_chol: Vec<f64>,
}

impl fmt::Debug for Gp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gp")
            .field("records", &self.records())
            .field("choice", &self.choice)
            .field("loo", &self.loo)
            .finish_non_exhaustive()
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// `Σ aᵢbᵢ` with four accumulators (the compiler cannot reorder a float sum by itself, and a
/// single accumulator leaves the factorization's inner loops latency-bound).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0; 4];
    let (a4, b4) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = a4
        .remainder()
        .iter()
        .zip(b4.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a4.zip(b4) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// In-place lower Cholesky factorization of the `n×n` row-major `a`; `None` if not positive
/// definite.
fn cholesky(a: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let (head, tail) = a.split_at_mut((j + 1) * n);
        let row_j = &mut head[j * n..];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        row_j[j] = d;
        row_j[j + 1..].iter_mut().for_each(|v| *v = 0.0);
        let row_j = &row_j[..j];
        for row_i in tail.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / d;
        }
    }
    Some(())
}

/// Solves `L x = b` (forward substitution).
fn solve_lower(l: &[f64], n: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = b[i] - dot(&l[i * n..i * n + i], &b[..i]);
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

/// Solves `L Lᵀ X = B` for the `m` columns of the `n × m` row-major `b`, row by row (each
/// step an update of one contiguous row: cache-friendly, unlike column-by-column solves).
fn solve_chol_rows(l: &[f64], n: usize, b: &mut [f64], m: usize) {
    for i in 0..n {
        let (done, rest) = b.split_at_mut(i * m);
        let row = &mut rest[..m];
        for k in 0..i {
            let f = l[i * n + k];
            for (x, y) in row.iter_mut().zip(&done[k * m..(k + 1) * m]) {
                *x -= f * y;
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|x| *x /= d);
    }
    for i in (0..n).rev() {
        let (head, later) = b.split_at_mut((i + 1) * m);
        let row = &mut head[i * m..];
        for k in i + 1..n {
            let f = l[k * n + i];
            for (x, y) in row.iter_mut().zip(&later[(k - i - 1) * m..(k - i) * m]) {
                *x -= f * y;
            }
        }
        let d = l[i * n + i];
        row.iter_mut().for_each(|x| *x /= d);
    }
}

/// Solves `L Lᵀ x = b`.
fn solve_chol(l: &[f64], n: usize, b: &mut [f64]) {
    solve_lower(l, n, b);
    solve_upper_t(l, n, b);
}

/// The diagonal of `(L Lᵀ)⁻¹`: `[C⁻¹]ᵢᵢ = ‖L⁻¹ eᵢ‖²`, where `L⁻¹ eᵢ` is zero above `i`
/// (`n³/6` operations). `work` holds `n` values.
fn inverse_diagonal(l: &[f64], n: usize, work: &mut [f64], out: &mut Vec<f64>) {
    out.clear();
    for i in 0..n {
        let mut total = 0.0;
        for r in i..n {
            let s = if r == i { 1.0 } else { 0.0 } - dot(&l[r * n + i..r * n + r], &work[i..r]);
            let v = s / l[r * n + r];
            work[r] = v;
            total += v * v;
        }
        out.push(total);
    }
}

/// Number of trend coefficients in `dims` dimensions.
fn trend_len(dims: usize) -> usize {
    2 * dims + 1
}

/// The trend's basis at `unit`: `[1, z₁…z_d, z₁²…z_d²]`, `z = 2u − 1`.
fn basis(unit: &[f64], out: &mut [f64]) {
    let d = unit.len();
    out[0] = 1.0;
    for (i, &u) in unit.iter().enumerate() {
        let z = 2.0 * u - 1.0;
        out[1 + i] = z;
        out[1 + d + i] = z * z;
    }
}

/// The records as the fit uses them: flat points and standardized targets.
struct Data {
    n: usize,
    dims: usize,
    points: Vec<f64>,
    y: Vec<f64>,
    mean: f64,
    scale: f64,
}

impl Data {
    /// `None` when there is nothing to learn: fewer than 2 records, mixed dimensions,
    /// non-finite or constant targets.
    fn new(records: &[Record]) -> Option<Data> {
        let n = records.len();
        let dims = records.first()?.unit.len();
        if n < 2 || dims == 0 || records.iter().any(|r| r.unit.len() != dims) {
            return None;
        }
        if records
            .iter()
            .any(|r| !r.performance.is_finite() || r.unit.iter().any(|u| !u.is_finite()))
        {
            return None;
        }
        let mean = records.iter().map(|r| r.performance).sum::<f64>() / n as f64;
        let var = records
            .iter()
            .map(|r| (r.performance - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        if var <= 0.0 || !var.is_finite() {
            return None;
        }
        let scale = var.sqrt();
        Some(Data {
            n,
            dims,
            points: records
                .iter()
                .flat_map(|r| r.unit.iter().copied())
                .collect(),
            y: records
                .iter()
                .map(|r| (r.performance - mean) / scale)
                .collect(),
            mean,
            scale,
        })
    }

    fn point(&self, i: usize) -> &[f64] {
        &self.points[i * self.dims..(i + 1) * self.dims]
    }
}

/// The kernel at one length scale, factored, with the diagonal of its inverse (for the
/// leave-one-out errors).
#[derive(Clone)]
struct Factor {
    length: f64,
    chol: Vec<f64>,
    inv_diag: Vec<f64>,
}

impl Factor {
    fn new(data: &Data, length: f64, work: &mut [f64]) -> Option<Factor> {
        let n = data.n;
        let mut k = vec![0.0; n * n];
        let inv = 1.0 / (2.0 * length * length);
        for i in 0..n {
            for j in 0..i {
                let v = (-sq_dist(data.point(i), data.point(j)) * inv).exp();
                k[i * n + j] = v;
                k[j * n + i] = v;
            }
            k[i * n + i] = 1.0 + NUGGET;
        }
        cholesky(&mut k, n)?;
        let mut inv_diag = Vec::with_capacity(n);
        inverse_diagonal(&k, n, work, &mut inv_diag);
        Some(Factor {
            length,
            chol: k,
            inv_diag,
        })
    }
}

/// A mean function fitted over a [`Factor`], with its leave-one-out error.
struct Fitted {
    mean: MeanKind,
    alpha: Vec<f64>,
    trend: Option<Trend>,
    signal: f64,
    loo: f64,
}

impl Fitted {
    /// The fits of every mean function of `means`.
    fn all(data: &Data, factor: &Factor, means: &[MeanKind]) -> Vec<Fitted> {
        let poolings: Vec<f64> = means
            .iter()
            .filter_map(|m| match m {
                MeanKind::Quadratic { pooling } => Some(*pooling),
                MeanKind::Constant => None,
            })
            .collect();
        let mut out = Vec::with_capacity(means.len());
        if means.contains(&MeanKind::Constant) {
            out.extend(Self::constant(data, factor));
        }
        if !poolings.is_empty() {
            out.extend(Self::quadratic(data, factor, &poolings));
        }
        out
    }

    /// Zero mean on the standardized targets, the records' variance as the signal's.
    fn constant(data: &Data, factor: &Factor) -> Option<Fitted> {
        let n = data.n;
        let mut alpha = data.y.clone();
        solve_chol(&factor.chol, n, &mut alpha);
        // GPML eq. 5.12: the leave-one-out residual is αᵢ / [C⁻¹]ᵢᵢ.
        let loo = alpha
            .iter()
            .zip(&factor.inv_diag)
            .map(|(a, d)| (a / d).powi(2))
            .sum::<f64>()
            / n as f64;
        loo.is_finite().then_some(Fitted {
            mean: MeanKind::Constant,
            alpha,
            trend: None,
            signal: 1.0,
            loo,
        })
    }

    /// Generalized least squares for the trend under its prior, GP on the residuals, for
    /// each pooling strength in `poolings`.
    fn quadratic(data: &Data, factor: &Factor, poolings: &[f64]) -> Vec<Fitted> {
        let (n, d) = (data.n, data.dims);
        let p = trend_len(d);
        let mut h = vec![0.0; n * p];
        for i in 0..n {
            basis(data.point(i), &mut h[i * p..(i + 1) * p]);
        }
        // G = C⁻¹H.
        let mut g = h.clone();
        solve_chol_rows(&factor.chol, n, &mut g, p);
        let mut hg = vec![0.0; p * p];
        for j in 0..p {
            for k in 0..=j {
                let v: f64 = (0..n).map(|i| h[i * p + j] * g[i * p + k]).sum();
                hg[j * p + k] = v;
                hg[k * p + j] = v;
            }
        }
        let gy: Vec<f64> = (0..p)
            .map(|j| (0..n).map(|i| g[i * p + j] * data.y[i]).sum())
            .collect();
        let mut out = Vec::with_capacity(poolings.len());
        let mut row = vec![0.0; p];
        for &pooling in poolings {
            // A = HᵀG + P: the ridge on everything, the pooling on the curvature block
            // (λ (I − 11ᵀ/d) is the Hessian of λ Σ (aᵢ − ā)²).
            let mut a = hg.clone();
            for j in 0..p {
                a[j * p + j] += TREND_RIDGE;
            }
            for j in 0..d {
                for k in 0..d {
                    let pool = if j == k { 1.0 } else { 0.0 } - 1.0 / d as f64;
                    a[(1 + d + j) * p + 1 + d + k] += pooling * pool;
                }
            }
            if cholesky(&mut a, p).is_none() {
                continue;
            }
            // β = A⁻¹ Gᵀy.
            let mut beta = gy.clone();
            solve_chol(&a, p, &mut beta);
            // α = C⁻¹(y − Hβ) = K_tot⁻¹ y, K_tot = C + H P⁻¹ Hᵀ (the trend marginalized).
            let mut alpha: Vec<f64> = (0..n)
                .map(|i| {
                    let fit: f64 = (0..p).map(|j| h[i * p + j] * beta[j]).sum();
                    data.y[i] - fit
                })
                .collect();
            solve_chol(&factor.chol, n, &mut alpha);
            // Woodbury: [K_tot⁻¹]ᵢᵢ = [C⁻¹]ᵢᵢ − gᵢᵀ A⁻¹ gᵢ, gᵢ the i-th row of G.
            let mut loo = 0.0;
            let mut signal = 0.0;
            let mut ok = true;
            for i in 0..n {
                row.copy_from_slice(&g[i * p..(i + 1) * p]);
                solve_lower(&a, p, &mut row);
                let diag = factor.inv_diag[i] - row.iter().map(|v| v * v).sum::<f64>();
                if diag <= 0.0 || !diag.is_finite() {
                    ok = false;
                    break;
                }
                let e = alpha[i] / diag;
                loo += e * e;
                // The leave-one-out predictive variance is σ²/diag: the σ² that maximizes
                // the leave-one-out likelihood is the mean of e²·diag (GPML §5.4.2).
                signal += e * e * diag;
            }
            let loo = loo / n as f64;
            let signal = (signal / n as f64).max(SIGNAL_FLOOR);
            if ok && loo.is_finite() && signal.is_finite() {
                out.push(Fitted {
                    mean: MeanKind::Quadratic { pooling },
                    alpha,
                    trend: Some(Trend {
                        beta,
                        kinv_h: g.clone(),
                        a_chol: a,
                    }),
                    signal,
                    loo,
                });
            }
        }
        out
    }
}

impl Gp {
    /// Fits the records (at least 2, all of one dimension, finite), picking the length scale
    /// and the mean function by leave-one-out error; `None` when there is nothing to learn
    /// (too few records, constant targets, or a failed factorization).
    pub fn fit(records: &[Record]) -> Option<Gp> {
        let data = Data::new(records)?;
        let dim_scale = (data.dims as f64).sqrt();
        let mut work = vec![0.0; data.n];
        // The best constant-mean and the best trend model.
        let mut best: [Option<(Factor, Fitted)>; 2] = [None, None];
        for &l in &LENGTH_SCALES {
            let Some(factor) = Factor::new(&data, l * dim_scale, &mut work) else {
                continue;
            };
            let mut winners: [Option<Fitted>; 2] = [None, None];
            for fitted in Fitted::all(&data, &factor, &MEANS) {
                let slot = usize::from(fitted.mean != MeanKind::Constant);
                let bar = winners[slot]
                    .as_ref()
                    .or(best[slot].as_ref().map(|(_, f)| f));
                if bar.is_none_or(|b: &Fitted| fitted.loo < b.loo) {
                    winners[slot] = Some(fitted);
                }
            }
            for (slot, winner) in winners.into_iter().enumerate() {
                if let Some(fitted) = winner {
                    best[slot] = Some((factor.clone(), fitted));
                }
            }
        }
        let [constant, trend] = best;
        let pick = match (constant, trend) {
            (Some(c), Some(t)) if t.1.loo >= TREND_EVIDENCE * c.1.loo => c,
            (_, Some(t)) => t,
            (c, None) => c?,
        };
        Some(Self::assemble(data, pick.0, pick.1))
    }

    /// Fits with a given choice (one factorization, no selection).
    pub fn fit_with(records: &[Record], choice: GpChoice) -> Option<Gp> {
        let data = Data::new(records)?;
        let mut work = vec![0.0; data.n];
        let factor = Factor::new(&data, choice.length, &mut work)?;
        let fitted = Fitted::all(&data, &factor, &[choice.mean]).pop()?;
        Some(Self::assemble(data, factor, fitted))
    }

    fn assemble(data: Data, factor: Factor, fitted: Fitted) -> Gp {
        Gp {
            dims: data.dims,
            points: data.points,
            alpha: fitted.alpha,
            chol: factor.chol,
            choice: GpChoice {
                length: factor.length,
                mean: fitted.mean,
            },
            trend: fitted.trend,
            signal: fitted.signal,
            loo: fitted.loo,
            mean: data.mean,
            scale: data.scale,
        }
    }

    fn records(&self) -> usize {
        self.points.len() / self.dims
    }

    fn point(&self, i: usize) -> &[f64] {
        &self.points[i * self.dims..(i + 1) * self.dims]
    }

    /// Predicted performance and its standard deviation at `unit`.
    pub fn predict(&self, unit: &[f64]) -> (f64, f64) {
        let n = self.records();
        let inv = 1.0 / (2.0 * self.choice.length * self.choice.length);
        let mut k: Vec<f64> = (0..n)
            .map(|j| (-sq_dist(self.point(j), unit) * inv).exp())
            .collect();
        let mut mean: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let mut trend_var = 0.0;
        if let Some(t) = &self.trend {
            let p = t.beta.len();
            let mut r = vec![0.0; p];
            basis(unit, &mut r);
            mean += r.iter().zip(&t.beta).map(|(a, b)| a * b).sum::<f64>();
            // R = h − HᵀC⁻¹k, the trend's share of the variance RᵀA⁻¹R (GPML eq. 2.42).
            for (j, kj) in k.iter().enumerate() {
                for (rv, g) in r.iter_mut().zip(&t.kinv_h[j * p..(j + 1) * p]) {
                    *rv -= g * kj;
                }
            }
            solve_lower(&t.a_chol, p, &mut r);
            trend_var = r.iter().map(|v| v * v).sum();
        }
        solve_lower(&self.chol, n, &mut k);
        let var = (1.0 + NUGGET - k.iter().map(|v| v * v).sum::<f64>()).max(0.0) + trend_var;
        (
            self.mean + mean * self.scale,
            (self.signal * var).sqrt() * self.scale,
        )
    }

    /// The predicted mean (standardized) at `unit`, and its gradient in `grad`.
    fn mean_gradient(&self, unit: &[f64], grad: &mut [f64]) -> f64 {
        let d = self.dims;
        let inv_l2 = 1.0 / (self.choice.length * self.choice.length);
        grad.iter_mut().for_each(|g| *g = 0.0);
        let mut mean = 0.0;
        for (j, &a) in self.alpha.iter().enumerate() {
            let p = self.point(j);
            let w = a * (-sq_dist(p, unit) * 0.5 * inv_l2).exp();
            mean += w;
            for ((g, &pi), &ui) in grad.iter_mut().zip(p).zip(unit) {
                *g += w * (pi - ui) * inv_l2;
            }
        }
        if let Some(t) = &self.trend {
            mean += t.beta[0];
            for (i, &u) in unit.iter().enumerate() {
                let z = 2.0 * u - 1.0;
                let (b, a) = (t.beta[1 + i], t.beta[1 + d + i]);
                mean += b * z + a * z * z;
                grad[i] += 2.0 * b + 4.0 * a * z;
            }
        }
        mean
    }

    /// A local maximum of the predicted mean near `start`: projected gradient ascent inside
    /// the unit cube that moves only the `movable` coordinates (a normalized step that
    /// doubles after a gain and halves after a loss). The mean at the result is never below
    /// the mean at `start` (clamped into the cube).
    pub fn ascend(&self, start: &[f64], movable: &[bool]) -> Vec<f64> {
        let d = self.dims;
        let mut u: Vec<f64> = start.iter().map(|v| v.clamp(0.0, 1.0)).collect();
        if u.len() != d || movable.len() != d {
            return u;
        }
        let mut grad = vec![0.0; d];
        let mut next_grad = vec![0.0; d];
        let mut next = vec![0.0; d];
        let mut value = self.mean_gradient(&u, &mut grad);
        let (mut step, max_step, min_step) = ASCENT_STEP;
        for _ in 0..ASCENT_STEPS {
            // Projected direction: frozen coordinates and faces pushed against stay put.
            for i in 0..d {
                let g = grad[i];
                let blocked = !movable[i] || (u[i] <= 0.0 && g < 0.0) || (u[i] >= 1.0 && g > 0.0);
                next_grad[i] = if blocked || !g.is_finite() { 0.0 } else { g };
            }
            let norm = next_grad.iter().map(|g| g * g).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            for i in 0..d {
                next[i] = (u[i] + step * next_grad[i] / norm).clamp(0.0, 1.0);
            }
            let v = self.mean_gradient(&next, &mut next_grad);
            if v > value {
                value = v;
                std::mem::swap(&mut u, &mut next);
                std::mem::swap(&mut grad, &mut next_grad);
                step = (step * 2.0).min(max_step);
            } else {
                step *= 0.5;
                if step < min_step {
                    break;
                }
            }
        }
        u
    }

    /// The length scale and mean function picked.
    pub fn choice(&self) -> GpChoice {
        self.choice
    }

    /// Mean squared leave-one-out error of the fit, in units of the records' variance.
    pub fn loo_error(&self) -> f64 {
        self.loo
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

    fn records(seed: u64, n: usize, dims: usize, f: impl Fn(&[f64]) -> f64) -> Vec<Record> {
        let mut rng = Rng::derive(seed, &[n as u64, dims as u64]);
        (0..n)
            .map(|_| {
                let unit: Vec<f64> = (0..dims).map(|_| rng.unit()).collect();
                Record {
                    performance: f(&unit),
                    unit,
                }
            })
            .collect()
    }

    /// A separable quadratic with a different curvature per coordinate, its optimum partly
    /// outside the cube (coordinate 0).
    fn bowl(u: &[f64]) -> f64 {
        7.0 - u
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let t = if i == 0 { -0.2 } else { 0.1 + 0.08 * i as f64 };
                (1.0 + 0.4 * i as f64) * (x - t) * (x - t)
            })
            .sum::<f64>()
    }

    #[test]
    fn the_gp_interpolates_and_ranks_unseen_points() {
        let records = records(2, 60, 4, sphere);
        let gp = Gp::fit(&records).unwrap();
        let (m, s) = gp.predict(&records[0].unit);
        // Close to the observation (the nugget smooths a little).
        let y = records[0].performance;
        assert!((m - y).abs() < 0.05 && s < 0.05, "{m} vs {y}, sd {s}");
        // Ranking of fresh points: the predicted order mostly agrees with the truth.
        let mut rng = Rng::derive(1, &[3]);
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
    fn the_trend_recovers_a_separable_quadratic_from_few_records() {
        let dims = 10;
        let records = records(4, 2 * dims + 2, dims, bowl);
        let gp = Gp::fit(&records).unwrap();
        assert!(
            matches!(gp.choice().mean, MeanKind::Quadratic { .. }),
            "{gp:?}"
        );
        let spread = {
            let ys: Vec<f64> = records.iter().map(|r| r.performance).collect();
            let mean = ys.iter().sum::<f64>() / ys.len() as f64;
            (ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / ys.len() as f64).sqrt()
        };
        let mut rng = Rng::derive(5, &[]);
        let mut worst: f64 = 0.0;
        for _ in 0..200 {
            let u: Vec<f64> = (0..dims).map(|_| rng.unit()).collect();
            worst = worst.max((gp.predict(&u).0 - bowl(&u)).abs());
        }
        assert!(worst < 1e-3 * spread, "error {worst}, spread {spread}");
        // A model that fits this well claims little uncertainty.
        let (_, sd) = gp.predict(&[0.5; 10]);
        assert!(sd < 1e-2 * spread, "sd {sd}");
        // Without the trend, the same records predict far worse.
        let constant = Gp::fit_with(
            &records,
            GpChoice {
                mean: MeanKind::Constant,
                ..gp.choice()
            },
        )
        .unwrap();
        assert!(constant.loo_error() > 100.0 * gp.loo_error());
    }

    #[test]
    fn the_constant_mean_is_kept_where_the_trend_does_not_fit() {
        // A sum of sines, two periods per coordinate: no bowl to extrapolate, yet smooth
        // enough for the kernel to learn from 100 records.
        let waves = |u: &[f64]| {
            u.iter()
                .map(|x| (4.0 * std::f64::consts::PI * x).sin())
                .sum::<f64>()
        };
        for seed in 0..6 {
            let records = records(20 + seed, 100, 3, waves);
            let gp = Gp::fit(&records).unwrap();
            assert_eq!(gp.choice().mean, MeanKind::Constant, "seed {seed}: {gp:?}");
            // The kernel learns it: far better than predicting the mean (error 1).
            assert!(gp.loo_error() < 0.5, "seed {seed}: {gp:?}");
        }
    }

    #[test]
    fn fitting_with_a_choice_reproduces_the_selection() {
        let records = records(7, 30, 5, bowl);
        let gp = Gp::fit(&records).unwrap();
        let again = Gp::fit_with(&records, gp.choice()).unwrap();
        for r in records.iter().take(5) {
            assert_eq!(gp.predict(&r.unit), again.predict(&r.unit));
        }
        assert_eq!(gp.loo_error(), again.loo_error());
    }

    #[test]
    fn the_mean_gradient_matches_finite_differences() {
        for (records, mean) in [
            (
                records(8, 25, 4, bowl),
                MeanKind::Quadratic { pooling: 1.0 },
            ),
            (records(9, 25, 4, sphere), MeanKind::Constant),
        ] {
            let gp = Gp::fit_with(&records, GpChoice { length: 0.5, mean }).unwrap();
            let u = [0.3, 0.6, 0.1, 0.9];
            let mut grad = [0.0; 4];
            let m = gp.mean_gradient(&u, &mut grad);
            assert!((gp.mean + m * gp.scale - gp.predict(&u).0).abs() < 1e-9);
            for i in 0..4 {
                let h = 1e-6;
                let mut a = u;
                let mut b = u;
                a[i] += h;
                b[i] -= h;
                let mut scratch = [0.0; 4];
                let numeric = (gp.mean_gradient(&a, &mut scratch)
                    - gp.mean_gradient(&b, &mut scratch))
                    / (2.0 * h);
                assert!(
                    (numeric - grad[i]).abs() < 1e-5 * (1.0 + numeric.abs()),
                    "{mean:?} coordinate {i}: {numeric} vs {}",
                    grad[i]
                );
            }
        }
    }

    #[test]
    fn the_ascent_stays_in_the_cube_and_climbs_the_model() {
        let dims = 6;
        let records = records(10, 40, dims, bowl);
        let gp = Gp::fit(&records).unwrap();
        let mut movable = vec![true; dims];
        movable[3] = false;
        let mut rng = Rng::derive(11, &[]);
        for _ in 0..10 {
            let start: Vec<f64> = (0..dims).map(|_| rng.unit()).collect();
            let top = gp.ascend(&start, &movable);
            assert!(top.iter().all(|u| (0.0..=1.0).contains(u)), "{top:?}");
            assert_eq!(top[3], start[3], "a frozen coordinate moved");
            assert!(gp.predict(&top).0 > gp.predict(&start).0 + 0.1);
            // It finds the bowl's optimum: the face u₀ = 0 (the optimum is outside) and
            // tᵢ elsewhere, up to the frozen coordinate.
            assert!(top[0] < 1e-3, "{top:?}");
            for (i, &u) in top.iter().enumerate().skip(1).filter(|&(i, _)| i != 3) {
                let t = 0.1 + 0.08 * i as f64;
                assert!((u - t).abs() < 0.02, "coordinate {i}: {u} vs {t}");
            }
        }
        // Outside the cube or of the wrong length: clamped, not moved.
        assert_eq!(gp.ascend(&[2.0, -1.0], &[true, true]), vec![1.0, 0.0]);
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

    /// Fit and predict times at the record limit; run with
    /// `cargo test --release -p doin-optimizer fit_timing -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, not a check"]
    fn fit_timing() {
        for dims in [7, 10] {
            let records = records(12, MAX_RECORDS, dims, bowl);
            let reps = 20;
            let start = std::time::Instant::now();
            let mut gp = None;
            for _ in 0..reps {
                gp = Gp::fit(&records);
            }
            let select = start.elapsed().as_secs_f64() / reps as f64;
            let gp = gp.unwrap();
            let start = std::time::Instant::now();
            for _ in 0..reps {
                Gp::fit_with(&records, gp.choice()).unwrap();
            }
            let one = start.elapsed().as_secs_f64() / reps as f64;
            let start = std::time::Instant::now();
            for r in &records {
                std::hint::black_box(gp.predict(&r.unit));
            }
            let predict = start.elapsed().as_secs_f64() / records.len() as f64;
            let start = std::time::Instant::now();
            let movable = vec![true; dims];
            for r in records.iter().take(10) {
                std::hint::black_box(gp.ascend(&r.unit, &movable));
            }
            let ascend = start.elapsed().as_secs_f64() / 10.0;
            let data = Data::new(&records).unwrap();
            let mut work = vec![0.0; data.n];
            let start = std::time::Instant::now();
            for _ in 0..reps {
                std::hint::black_box(Factor::new(&data, 1.0, &mut work));
            }
            let factor_t = start.elapsed().as_secs_f64() / reps as f64;
            let factor = Factor::new(&data, 1.0, &mut work).unwrap();
            let start = std::time::Instant::now();
            for _ in 0..reps {
                std::hint::black_box(Fitted::all(&data, &factor, &MEANS));
            }
            let fits_t = start.elapsed().as_secs_f64() / reps as f64;
            eprintln!(
                "  per length scale: factorization {:.3} ms, the 4 mean functions {:.3} ms",
                factor_t * 1e3,
                fits_t * 1e3
            );
            eprintln!(
                "{MAX_RECORDS} records, {dims} dims, {:?}: selection {:.2} ms, one fit {:.2} ms, \
                 predict {:.1} µs, ascent {:.1} µs",
                gp.choice(),
                select * 1e3,
                one * 1e3,
                predict * 1e6,
                ascend * 1e6
            );
        }
    }
}
