//! The forecasting MLP on libtorch: window building, training, scoring and inference.
//!
//! # Normalisation
//!
//! Each window is made scale- and level-free before it reaches the network: subtract its
//! last value, divide by its standard deviation (+ [`SCALE_EPSILON`]). Targets go through the
//! same map and forecasts come back through its inverse. So a forecast does not depend on the
//! series' level, the skill is unchanged by adding a constant to a series, and one network
//! serves series of any amplitude.
//!
//! # Determinism
//!
//! Weights are initialised and batches shuffled from a local splitmix64 stream (the training
//! seed), never from libtorch's process-wide generator, and every call fixes the calling
//! thread's intra-op thread count first. On the CPU a training run then repeats bit for bit,
//! and so does a score, whatever other threads do.

use std::time::Instant;

use tch::{COptimizer, Device, Kind, Tensor};

use doin_core::plugin::{PluginError, PluginResult};

use super::params::{Activation, Hyperparameters, ModelParams};
use super::rng::SplitMix64;
use super::series::SeriesSet;

/// Added to a window's standard deviation, so a flat window does not divide by zero.
pub const SCALE_EPSILON: f64 = 1e-6;
/// Windows per forward pass when scoring, bounding the activations' memory.
const EVAL_CHUNK: usize = 4_096;
/// Stream tag of weight initialisation.
const TAG_INIT: u64 = 0x7473_665f_696e_6974; // "tsf_init"
/// Stream tag of batch shuffling.
const TAG_SHUFFLE: u64 = 0x7473_665f_7368_7566; // "tsf_shuf"

fn torch(context: &str) -> impl Fn(tch::TchError) -> PluginError + '_ {
    move |e| PluginError::Failed(format!("libtorch ({context}): {e}"))
}

/// Where and with how many threads tensors are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compute {
    pub device: Device,
    /// Intra-op CPU threads, set on the calling thread before every call.
    pub threads: usize,
}

impl Default for Compute {
    fn default() -> Self {
        Compute {
            device: Device::Cpu,
            threads: 1,
        }
    }
}

impl Compute {
    fn enter(&self) {
        tch::set_num_threads(i32::try_from(self.threads.max(1)).unwrap_or(1));
    }
}

// === windows ===

/// Normalised input windows and their targets, built from series.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    pub window: usize,
    pub horizon: usize,
    /// `count × window` normalised inputs.
    pub inputs: Vec<f32>,
    /// `count × horizon` normalised targets.
    pub targets: Vec<f32>,
    /// `count × horizon` raw targets.
    pub raw_targets: Vec<f64>,
    /// Last value of each window.
    pub last: Vec<f64>,
    /// Scale of each window.
    pub scale: Vec<f64>,
}

impl Windows {
    /// Every window of `window` values followed by `horizon` targets whose first target index
    /// is at least `first_target` (so models with different windows are scored on the same
    /// targets when `first_target` is the domain's largest window).
    pub fn build(set: &SeriesSet, window: usize, horizon: usize, first_target: usize) -> Self {
        let first = first_target.max(window);
        let mut w = Windows {
            window,
            horizon,
            ..Windows::default()
        };
        for series in set.iter() {
            let Some(last_start) = series.len().checked_sub(horizon) else {
                continue;
            };
            for t in first..=last_start {
                let (input, target) = (&series[t - window..t], &series[t..t + horizon]);
                let (last, scale) = normaliser(input);
                w.inputs
                    .extend(input.iter().map(|v| ((v - last) / scale) as f32));
                w.targets
                    .extend(target.iter().map(|v| ((v - last) / scale) as f32));
                w.raw_targets.extend_from_slice(target);
                w.last.push(last);
                w.scale.push(scale);
            }
        }
        w
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether there are no windows.
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// `(last value, standard deviation + ε)` of a window.
pub fn normaliser(input: &[f64]) -> (f64, f64) {
    let n = input.len().max(1) as f64;
    let mean = input.iter().sum::<f64>() / n;
    let var = input.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    let last = input.last().copied().unwrap_or(0.0);
    (last, var.sqrt() + SCALE_EPSILON)
}

// === the network ===

/// The MLP's tensors on one device.
#[derive(Debug)]
pub struct Mlp {
    activation: Activation,
    /// `(weight out × in, bias out)` per layer.
    layers: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    /// The network of decoded parameters, on `device`.
    pub fn from_params(params: &ModelParams, device: Device) -> PluginResult<Self> {
        let shapes = params.hyper.layer_shapes(params.horizon);
        let mut layers = Vec::with_capacity(shapes.len());
        for ((out, inp), (weight, bias)) in shapes.into_iter().zip(&params.layers) {
            let w = Tensor::f_from_slice(weight)
                .and_then(|t| t.f_reshape([dim(out), dim(inp)]))
                .and_then(|t| t.f_to_device(device))
                .map_err(torch("load weights"))?;
            let b = Tensor::f_from_slice(bias)
                .and_then(|t| t.f_to_device(device))
                .map_err(torch("load biases"))?;
            layers.push((w, b));
        }
        Ok(Mlp {
            activation: params.hyper.activation,
            layers,
        })
    }

    /// A freshly initialised trainable network: PyTorch's `nn.Linear` default, weights and
    /// biases `U(−1/√in, 1/√in)`, drawn from the seed's own stream.
    fn init(
        hyper: &Hyperparameters,
        horizon: usize,
        seed: u64,
        device: Device,
    ) -> PluginResult<Self> {
        let mut rng = SplitMix64::derive(TAG_INIT, &[seed]);
        let mut layers = Vec::new();
        for (out, inp) in hyper.layer_shapes(horizon) {
            let bound = 1.0 / (inp as f64).sqrt();
            let weight: Vec<f32> = (0..out * inp)
                .map(|_| rng.uniform(-bound, bound) as f32)
                .collect();
            let bias: Vec<f32> = (0..out)
                .map(|_| rng.uniform(-bound, bound) as f32)
                .collect();
            let w = Tensor::f_from_slice(&weight)
                .and_then(|t| t.f_reshape([dim(out), dim(inp)]))
                .and_then(|t| t.f_to_device(device))
                .and_then(|t| t.f_set_requires_grad(true))
                .map_err(torch("init weights"))?;
            let b = Tensor::f_from_slice(&bias)
                .and_then(|t| t.f_to_device(device))
                .and_then(|t| t.f_set_requires_grad(true))
                .map_err(torch("init biases"))?;
            layers.push((w, b));
        }
        Ok(Mlp {
            activation: hyper.activation,
            layers,
        })
    }

    /// Forecasts (normalised) for a `batch × window` input.
    pub fn forward(&self, x: &Tensor) -> PluginResult<Tensor> {
        let mut h = x.shallow_clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, (w, b)) in self.layers.iter().enumerate() {
            h = h.f_linear(w, Some(b)).map_err(torch("linear"))?;
            if i < last {
                h = match self.activation {
                    Activation::Relu => h.f_relu(),
                    Activation::Tanh => h.f_tanh(),
                    Activation::Gelu => h.f_gelu("tanh"),
                    Activation::LeakyRelu => h.f_leaky_relu(),
                }
                .map_err(torch("activation"))?;
            }
        }
        Ok(h)
    }

    /// Every tensor, in layer order (weight, bias).
    fn tensors(&self) -> impl Iterator<Item = &Tensor> {
        self.layers.iter().flat_map(|(w, b)| [w, b])
    }

    /// The weights copied to host memory, in the parameter blob's order.
    fn to_host(&self) -> PluginResult<Vec<(Vec<f32>, Vec<f32>)>> {
        self.layers
            .iter()
            .map(|(w, b)| Ok((host(w)?, host(b)?)))
            .collect()
    }

    /// Detached copies of the current weights (the best-so-far snapshot of early stopping).
    fn snapshot(&self) -> PluginResult<Vec<Tensor>> {
        self.tensors()
            .map(|t| t.f_detach_copy().map_err(torch("snapshot")))
            .collect()
    }

    /// Restores a [`snapshot`](Self::snapshot).
    fn restore(&mut self, snapshot: &[Tensor]) -> PluginResult<()> {
        let _guard = tch::no_grad_guard();
        for ((w, b), pair) in self.layers.iter_mut().zip(snapshot.chunks_exact(2)) {
            w.f_copy_(&pair[0]).map_err(torch("restore"))?;
            b.f_copy_(&pair[1]).map_err(torch("restore"))?;
        }
        Ok(())
    }
}

fn dim(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A tensor's values as `f32`s on the host, flattened.
fn host(t: &Tensor) -> PluginResult<Vec<f32>> {
    let flat = t
        .f_detach()
        .and_then(|t| t.f_to_device(Device::Cpu))
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_flatten(0, -1))
        .map_err(torch("copy to host"))?;
    Vec::<f32>::try_from(&flat).map_err(torch("copy to host"))
}

fn tensor_2d(values: &[f32], rows: usize, cols: usize, device: Device) -> PluginResult<Tensor> {
    Tensor::f_from_slice(values)
        .and_then(|t| t.f_reshape([dim(rows), dim(cols)]))
        .and_then(|t| t.f_to_device(device))
        .map_err(torch("upload"))
}

// === scoring ===

/// Normalised forecasts of every window, on the host (`len × horizon`).
pub fn predict(mlp: &Mlp, windows: &Windows, compute: &Compute) -> PluginResult<Vec<f32>> {
    compute.enter();
    let _guard = tch::no_grad_guard();
    let mut out = Vec::with_capacity(windows.len() * windows.horizon);
    let step = EVAL_CHUNK * windows.window.max(1);
    for chunk in windows.inputs.chunks(step) {
        let rows = chunk.len() / windows.window.max(1);
        let x = tensor_2d(chunk, rows, windows.window, compute.device)?;
        out.extend(host(&mlp.forward(&x)?)?);
    }
    Ok(out)
}

/// The domain's metric: `1 − MAE_model / MAE_naive` over every window and horizon step
/// (pooled), where the naive forecast repeats the window's last value. Sums run in a fixed
/// order in `f64`, so the score repeats exactly for the same forecasts.
pub fn skill(windows: &Windows, forecasts: &[f32]) -> PluginResult<f64> {
    let h = windows.horizon;
    if windows.is_empty() || forecasts.len() != windows.len() * h {
        return Err(PluginError::InvalidData {
            reason: format!(
                "no forecastable windows ({} windows, {} forecasts)",
                windows.len(),
                forecasts.len()
            ),
        });
    }
    let (mut model, mut naive) = (0.0f64, 0.0f64);
    for (i, (&last, &scale)) in windows.last.iter().zip(&windows.scale).enumerate() {
        for k in 0..h {
            let y = windows.raw_targets[i * h + k];
            let f = last + f64::from(forecasts[i * h + k]) * scale;
            model += (f - y).abs();
            naive += (last - y).abs();
        }
    }
    if !model.is_finite() {
        // Weights so large that the forecasts overflow: any evaluator fails the same way.
        return Err(PluginError::InvalidParams {
            reason: "the model's forecasts are not finite numbers (weights overflow)".into(),
        });
    }
    if !naive.is_finite() || naive <= 0.0 {
        return Err(PluginError::InvalidData {
            reason: "the naive forecast is exact on every window: skill is undefined".into(),
        });
    }
    Ok(1.0 - model / naive)
}

/// Skill of decoded parameters on a series set, scoring targets from `first_target` on.
pub fn evaluate(
    params: &ModelParams,
    set: &SeriesSet,
    first_target: usize,
    compute: &Compute,
) -> PluginResult<f64> {
    let windows = Windows::build(set, params.hyper.window, params.horizon, first_target);
    let mlp = Mlp::from_params(params, compute.device)?;
    let forecasts = predict(&mlp, &windows, compute)?;
    skill(&windows, &forecasts)
}

// === training ===

/// How one candidate is trained, beyond its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    /// L1 patience: stop after this many epochs without a better validation MAE and keep the
    /// best epoch's weights. `None` trains every epoch and keeps the last weights.
    pub early_patience: Option<usize>,
    /// Wall-clock budget; exceeding it is an error (the domain's `max_training_seconds`).
    pub max_seconds: u64,
}

/// What a training run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub params: ModelParams,
    /// Validation MAE (raw scale) of the kept weights; `NaN` without validation data.
    pub val_mae: f64,
    /// Training loss of the last epoch (scale-weighted L1).
    pub train_loss: f64,
    /// Seconds spent.
    pub seconds: f64,
}

/// Trains an MLP with Adam over `train`, early-stopping on `val`.
///
/// The loss is the L1 error of the normalised forecast weighted by each window's scale, i.e.
/// the MAE in series units that the skill is built on (an unweighted loss in normalised
/// units over-weights flat windows, and its validation curve disagreed with the skill).
pub fn train(
    hyper: &Hyperparameters,
    horizon: usize,
    train: &SeriesSet,
    val: &SeriesSet,
    settings: &TrainSettings,
    seed: u64,
    compute: &Compute,
) -> PluginResult<Trained> {
    let started = Instant::now();
    compute.enter();
    let device = compute.device;
    let data = Windows::build(train, hyper.window, horizon, hyper.window);
    if data.is_empty() {
        return Err(PluginError::InvalidInput {
            reason: format!(
                "training series of {} values are too short for window {} and horizon {horizon}",
                train.length(),
                hyper.window
            ),
        });
    }
    let val_windows = Windows::build(val, hyper.window, horizon, hyper.window);
    let n = data.len();
    let x = tensor_2d(&data.inputs, n, hyper.window, device)?;
    let y = tensor_2d(&data.targets, n, horizon, device)?;
    // Each window's error counts in the series' units, as in the skill: weight the
    // normalised error by the window's scale (relative to the mean scale, so the learning
    // rate means the same for every process).
    let mean_scale = data.scale.iter().sum::<f64>() / n as f64;
    let weights: Vec<f32> = data.scale.iter().map(|s| (s / mean_scale) as f32).collect();
    let weight = tensor_2d(&weights, n, 1, device)?;
    let val_tensors = if val_windows.is_empty() {
        None
    } else {
        let m = val_windows.len();
        let to_f32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Some((
            tensor_2d(&val_windows.inputs, m, hyper.window, device)?,
            tensor_2d(&to_f32(&val_windows.raw_targets), m, horizon, device)?,
            tensor_2d(&to_f32(&val_windows.last), m, 1, device)?,
            tensor_2d(&to_f32(&val_windows.scale), m, 1, device)?,
        ))
    };

    let mut mlp = Mlp::init(hyper, horizon, seed, device)?;
    let mut opt = COptimizer::adam(hyper.learning_rate, 0.9, 0.999, 0.0, 1e-8, false)
        .map_err(torch("adam"))?;
    for t in mlp.tensors() {
        opt.add_parameters(t, 0).map_err(torch("adam"))?;
    }
    let mut shuffle = SplitMix64::derive(TAG_SHUFFLE, &[seed]);
    let mut order: Vec<i64> = (0..dim(n)).collect();
    let batch = hyper.batch_size.max(1);

    let mut best: Option<(f64, Vec<Tensor>, usize)> = None;
    let mut since_best = 0usize;
    let mut epochs_run = 0usize;
    let mut train_loss = f64::NAN;
    for epoch in 0..hyper.epochs {
        shuffle.shuffle(&mut order);
        let index = Tensor::f_from_slice(&order)
            .and_then(|t| t.f_to_device(device))
            .map_err(torch("shuffle"))?;
        let mut loss_sum = Tensor::f_zeros([], (Kind::Float, device)).map_err(torch("loss"))?;
        let mut batches = 0i64;
        for start in (0..n).step_by(batch) {
            let len = batch.min(n - start);
            let idx = index
                .f_narrow(0, dim(start), dim(len))
                .map_err(torch("batch"))?;
            let xb = x.f_index_select(0, &idx).map_err(torch("batch"))?;
            let yb = y.f_index_select(0, &idx).map_err(torch("batch"))?;
            let wb = weight.f_index_select(0, &idx).map_err(torch("batch"))?;
            let loss = mlp
                .forward(&xb)?
                .f_sub(&yb)
                .and_then(|e| e.f_abs())
                .and_then(|e| e.f_mul(&wb))
                .and_then(|e| e.f_mean(Kind::Float))
                .map_err(torch("loss"))?;
            opt.zero_grad().map_err(torch("zero_grad"))?;
            loss.f_backward().map_err(torch("backward"))?;
            opt.step().map_err(torch("step"))?;
            loss_sum = loss_sum
                .f_add(&loss.f_detach().map_err(torch("loss"))?)
                .map_err(torch("loss"))?;
            batches += 1;
        }
        epochs_run = epoch + 1;
        train_loss = loss_sum.f_double_value(&[]).map_err(torch("loss"))? / batches.max(1) as f64;
        if !train_loss.is_finite() {
            return Err(PluginError::Failed(format!(
                "training diverged at epoch {epochs_run} (learning rate {})",
                hyper.learning_rate
            )));
        }
        if started.elapsed().as_secs() > settings.max_seconds {
            return Err(PluginError::Limit(doin_core::limits::LimitError {
                field: "max_training_seconds".into(),
                reason: format!(
                    "training took more than {} s (epoch {epochs_run})",
                    settings.max_seconds
                ),
            }));
        }
        let (Some(patience), Some((vx, vy, vlast, vscale))) =
            (settings.early_patience, &val_tensors)
        else {
            continue;
        };
        let val_mae = {
            let _guard = tch::no_grad_guard();
            mlp.forward(vx)?
                .f_mul(vscale)
                .and_then(|f| f.f_add(vlast))
                .and_then(|f| f.f_sub(vy))
                .and_then(|e| e.f_abs())
                .and_then(|e| e.f_mean(Kind::Float))
                .and_then(|m| m.f_double_value(&[]))
                .map_err(torch("validation"))?
        };
        if best.as_ref().is_none_or(|(b, _, _)| val_mae < *b) {
            best = Some((val_mae, mlp.snapshot()?, epochs_run));
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= patience {
                break;
            }
        }
    }
    let val_mae = match best {
        Some((mae, snapshot, epoch)) => {
            mlp.restore(&snapshot)?;
            epochs_run = epoch;
            mae
        }
        None => f64::NAN,
    };
    let params = ModelParams {
        hyper: *hyper,
        horizon,
        epochs_run,
        train_seed: seed,
        layers: mlp.to_host()?,
    };
    Ok(Trained {
        params,
        val_mae,
        train_loss,
        seconds: started.elapsed().as_secs_f64(),
    })
}
