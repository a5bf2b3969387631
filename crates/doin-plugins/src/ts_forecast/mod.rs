//! `ts_forecast`: multi-step forecasting of synthetic time series with an MLP trained by
//! libtorch (through tch). A real model whose work is checkable: its skill is measured on
//! series nobody trained on.
//!
//! # Bird's eye view
//!
//! | capability | what it does here |
//! |---|---|
//! | [`SyntheticData`] | `eval_series` fresh series from the evaluator's 32-byte seed ([`series`]) |
//! | [`Evaluate`] | forecast skill `1 − MAE_model / MAE_naive` on those series ([`model::skill`]); inference only |
//! | [`Train`] | trains one MLP from named hyperparameters on series drawn from the request seed |
//! | [`Optimize`] | [`Climber`]: random-step climber / random search over the hyperparameters |
//! | [`Infer`] | `{"window": [w numbers]}` → `{"forecast": [h numbers], "horizon": h}` |
//!
//! Parameters are the hyperparameters plus the weights in one versioned blob ([`params`]),
//! content-addressed by [`doin_core::plugin::params_hash`]. The naive forecast repeats a
//! window's last value for every horizon step, so skill 0 is "as good as naive", 1 is perfect
//! and a negative skill is worse than doing nothing.
//!
//! # One metric, claims and measurements alike
//!
//! An optimizer's claim is [`Evaluate::evaluate`] on a dataset produced by
//! [`SyntheticData::generate`] from a seed derived from its own run seed ([`claim_seed`]):
//! the same function on fresh series of the same process, which is what evaluators compute
//! on theirs. Training uses other series again (another stream tag), so a claim is an honest
//! out-of-sample estimate, and a model that memorised its training series is found out.
//!
//! # Configuration
//!
//! `synthetic_data_config` (falls back to `optimization_config` when empty): shared by every
//! node of the domain. Unknown keys are ignored.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `horizon` | 8 | steps forecast, 1 to [`MAX_HORIZON`] |
//! | `max_window` | 96 | largest window a model may use; scoring starts at this index so every window length is scored on the same targets |
//! | `series_length` | 384 | values per series |
//! | `eval_series` | 64 | series per evaluator dataset (and per claim) |
//! | `trend`, `seasonalities`, `periods`, `amplitude`, `ar_phi1`, `ar_phi2`, `noise_std`, `regime_switch_prob`, `volatile_ratio`, `level_shift_prob`, `level_shift_size` | see [`series::Process`] | the generating process |
//! | `train_series`, `val_fraction`, `early_patience` | 32, 0.25, 5 | training defaults of [`Train`] (see below) |
//!
//! `inference_config` (local to the node): `device` (`"cpu"` default, `"cuda"`, `"auto"`) and
//! `threads` (intra-op CPU threads, default 1: tiny matrices gain nothing from more, and a
//! fixed count keeps scores bitwise repeatable).
//!
//! `optimization_config` (the optimizer): `train_series` (series the optimizer trains on,
//! default 32), `val_fraction` (share of them held out for early stopping, 0.25),
//! `early_patience` (L1 patience in epochs, default 5), `hyperparameters` (the first
//! candidate, e.g. `{"window": 48, "width": 64}`), `param_bounds` (narrows the search space by
//! hyperparameter name), `explore_prob` (chance of a fresh random candidate instead of a
//! mutation of the best, 0.2), `mutation_scale` (step size in the unit cube, 0.25), `device`
//! and `threads`. L2 patience (`optimization_patience`) belongs to the engine that drives
//! [`Optimize`], not to this plugin.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use doin_core::hash::{Hash32, HashKind};
use doin_core::limits::{ParamBounds, TrainingRequest};
use doin_core::plugin::{
    checked_score, Dataset, DomainInfo, DomainPlugin, Evaluate, Infer, Migrant, Optimize,
    OptimizerSetup, PluginError, PluginRegistry, PluginResult, PluginSetup, PreparedModel,
    Proposal, ProposeContext, SyntheticData, Train, TrainRequest, VerificationHints,
};
use serde_json::{json, Map, Value};

use crate::device::{select_device, DevicePreference};

pub mod model;
pub mod params;
mod rng;
pub mod series;

use model::{Compute, TrainSettings};
use params::{search_space, Hyperparameters, ModelParams, MIN_WINDOW};
use rng::SplitMix64;
use series::{Process, SeriesSet, MAX_DATASET_VALUES, MAX_SERIES, MAX_SERIES_LENGTH};

/// The name this domain is registered under.
pub const NAME: &str = "ts_forecast";
/// The same domain under the name DESIGN.md uses.
pub const ALIAS: &str = "ts-forecast";
/// Version of the data generation and evaluation semantics ([`DomainInfo::version`]).
pub const VERSION: u32 = 1;
/// Name of the performance metric.
pub const PERFORMANCE_METRIC: &str = "forecast_skill";

/// Horizon when `horizon` is absent.
pub const DEFAULT_HORIZON: usize = 8;
/// Longest horizon.
pub const MAX_HORIZON: usize = 64;
/// Largest window when `max_window` is absent: two periods of the longest default season.
pub const DEFAULT_MAX_WINDOW: usize = 96;
/// Upper limit of `max_window`.
pub const MAX_MAX_WINDOW: usize = 512;
/// Series length when `series_length` is absent: about 280 scored windows per series.
pub const DEFAULT_SERIES_LENGTH: usize = 384;
/// Series per evaluator dataset when `eval_series` is absent: about 18k scored windows.
/// Series differ a lot (a volatile regime or a level shift dominates one series' MAE), so
/// fewer series make two evaluators' skills of one model disagree visibly; scoring 64 series
/// is still only milliseconds of inference.
pub const DEFAULT_EVAL_SERIES: usize = 64;
/// Series an optimizer trains on when `train_series` is absent.
pub const DEFAULT_TRAIN_SERIES: usize = 32;
/// Share of the training series held out for early stopping when `val_fraction` is absent.
pub const DEFAULT_VAL_FRACTION: f64 = 0.25;
/// L1 patience (epochs without a better validation MAE) when `early_patience` is absent.
pub const DEFAULT_EARLY_PATIENCE: usize = 5;
/// Chance of a random candidate instead of a mutation, when `explore_prob` is absent.
pub const DEFAULT_EXPLORE_PROB: f64 = 0.2;
/// Mutation step (standard deviation in the unit cube) when `mutation_scale` is absent.
pub const DEFAULT_MUTATION_SCALE: f64 = 0.25;

// Stream tags, so that no two uses of one seed draw the same numbers.
const TAG_EVAL_SERIES: u64 = 0x7473_665f_6576_616c; // "tsf_eval"
const TAG_TRAIN_SERIES: u64 = 0x7473_665f_7472_6e73; // "tsf_trns"
const TAG_ROUND: u64 = 0x7473_665f_726f_756e; // "tsf_roun"

/// Registers this domain under [`NAME`] and [`ALIAS`].
pub fn register(registry: &mut PluginRegistry) -> PluginResult<()> {
    registry.register(NAME, factory)?;
    registry.register(ALIAS, factory)
}

/// Builds a ts_forecast domain instance (a [`doin_core::plugin::PluginFactory`]).
pub fn factory(setup: &PluginSetup) -> PluginResult<Arc<dyn DomainPlugin>> {
    Ok(Arc::new(TsForecast::new(setup)?))
}

/// The data seed an optimizer's claims are measured on: a pure function of its run seed,
/// so anyone can recompute a claim from the optimizer seed and the parameters.
pub fn claim_seed(seed: u64) -> Hash32 {
    let mut preimage = b"doin-plugins/ts_forecast/claim\0".to_vec();
    preimage.extend_from_slice(&seed.to_le_bytes());
    HashKind::DataSeed.hash(&preimage)
}

// === config ===

pub(crate) fn config_error(field: &str, reason: impl Into<String>) -> PluginError {
    PluginError::InvalidConfig {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn invalid_input(reason: impl Into<String>) -> PluginError {
    PluginError::InvalidInput {
        reason: reason.into(),
    }
}

/// An unsigned integer key in `[low, high]`, or `default` when absent.
pub(crate) fn get_u64(
    map: &Map<String, Value>,
    key: &str,
    default: u64,
    low: u64,
    high: u64,
) -> PluginResult<u64> {
    match map.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| {
                config_error(
                    key,
                    format!("must be an integer from {low} to {high}, got {v}"),
                )
            }),
    }
}

fn get_usize(
    map: &Map<String, Value>,
    key: &str,
    default: usize,
    low: usize,
    high: usize,
) -> PluginResult<usize> {
    let as64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let v = get_u64(map, key, as64(default), as64(low), as64(high))?;
    Ok(usize::try_from(v).unwrap_or(high))
}

/// A number key in `[low, high]`, or `default` when absent.
fn get_f64(
    map: &Map<String, Value>,
    key: &str,
    default: f64,
    low: f64,
    high: f64,
) -> PluginResult<f64> {
    match map.get(key) {
        None => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| (low..=high).contains(x))
            .ok_or_else(|| {
                config_error(key, format!("must be a number in [{low}, {high}], got {v}"))
            }),
    }
}

/// A `[low, high]` key inside `limits`, or `default` when absent.
pub(crate) fn get_range(
    map: &Map<String, Value>,
    key: &str,
    default: (f64, f64),
    limits: (f64, f64),
) -> PluginResult<(f64, f64)> {
    let Some(v) = map.get(key) else {
        return Ok(default);
    };
    let pair = v
        .as_array()
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
    match pair {
        Some((low, high)) if limits.0 <= low && low <= high && high <= limits.1 => Ok((low, high)),
        _ => Err(config_error(
            key,
            format!(
                "must be [low, high] with {} <= low <= high <= {}, got {v}",
                limits.0, limits.1
            ),
        )),
    }
}

fn as_object<'a>(
    config: &'a Value,
    empty: &'a Map<String, Value>,
    field: &str,
) -> PluginResult<&'a Map<String, Value>> {
    match config {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(empty),
        _ => Err(config_error(field, "must be a JSON object")),
    }
}

/// The domain's shared definition: the process, the task and the dataset sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct TsConfig {
    process: Process,
    horizon: usize,
    max_window: usize,
    series_length: usize,
    eval_series: usize,
    training: TrainingDefaults,
}

/// Training data and early stopping of one candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingDefaults {
    /// Series drawn for training (including the validation hold-out).
    pub train_series: usize,
    /// Share of them held out for early stopping.
    pub val_fraction: f64,
    /// L1 patience in epochs.
    pub early_patience: usize,
}

impl Default for TrainingDefaults {
    fn default() -> Self {
        TrainingDefaults {
            train_series: DEFAULT_TRAIN_SERIES,
            val_fraction: DEFAULT_VAL_FRACTION,
            early_patience: DEFAULT_EARLY_PATIENCE,
        }
    }
}

impl TrainingDefaults {
    fn from_map(map: &Map<String, Value>, base: &TrainingDefaults) -> PluginResult<Self> {
        Ok(TrainingDefaults {
            train_series: get_usize(map, "train_series", base.train_series, 1, MAX_SERIES)?,
            val_fraction: get_f64(map, "val_fraction", base.val_fraction, 0.0, 0.9)?,
            early_patience: get_usize(map, "early_patience", base.early_patience, 1, 1_000)?,
        })
    }

    /// How many of the training series are held out: at least one whenever there are two.
    fn val_count(&self) -> usize {
        if self.train_series < 2 || self.val_fraction <= 0.0 {
            return 0;
        }
        let share = (self.train_series as f64 * self.val_fraction).round() as usize;
        share.clamp(1, self.train_series - 1)
    }
}

impl TsConfig {
    /// Reads a data configuration (see the module docs for the keys).
    pub fn from_json(config: &Value) -> PluginResult<Self> {
        let empty = Map::new();
        let map = as_object(config, &empty, "synthetic_data_config")?;
        let horizon = get_usize(map, "horizon", DEFAULT_HORIZON, 1, MAX_HORIZON)?;
        let max_window = get_usize(
            map,
            "max_window",
            DEFAULT_MAX_WINDOW,
            MIN_WINDOW,
            MAX_MAX_WINDOW,
        )?;
        let series_length = get_usize(
            map,
            "series_length",
            DEFAULT_SERIES_LENGTH,
            max_window + horizon,
            MAX_SERIES_LENGTH,
        )?;
        let max_series = (MAX_DATASET_VALUES / series_length).min(MAX_SERIES);
        let eval_series = get_usize(map, "eval_series", DEFAULT_EVAL_SERIES, 1, max_series)?;
        let training = TrainingDefaults::from_map(map, &TrainingDefaults::default())?;
        if training.train_series > max_series {
            return Err(config_error(
                "train_series",
                format!("at most {max_series} series of {series_length} values"),
            ));
        }
        Ok(TsConfig {
            process: Process::from_map(map)?,
            horizon,
            max_window,
            series_length,
            eval_series,
            training,
        })
    }

    /// Steps forecast.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Largest window; scoring starts at this index of every series.
    pub fn max_window(&self) -> usize {
        self.max_window
    }

    /// Values per series.
    pub fn series_length(&self) -> usize {
        self.series_length
    }

    /// Series per evaluator dataset.
    pub fn eval_series(&self) -> usize {
        self.eval_series
    }

    /// The generating process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The training defaults of [`Train`].
    pub fn training(&self) -> &TrainingDefaults {
        &self.training
    }

    /// The hyperparameter search space.
    pub fn search_space(&self) -> ParamBounds {
        search_space(self.max_window)
    }

    /// The evaluator dataset for `seed`.
    pub fn eval_set(&self, seed: &Hash32) -> SeriesSet {
        SeriesSet::generate(
            &self.process,
            TAG_EVAL_SERIES,
            &SplitMix64::words(seed),
            self.eval_series,
            self.series_length,
        )
    }

    /// `(training, validation)` series drawn from a training seed.
    pub fn training_sets(&self, seed: u64, training: &TrainingDefaults) -> (SeriesSet, SeriesSet) {
        let all = SeriesSet::generate(
            &self.process,
            TAG_TRAIN_SERIES,
            &[seed],
            training.train_series,
            self.series_length,
        );
        all.split(training.train_series - training.val_count())
    }

    /// Decodes and checks a parameter blob against this domain.
    pub fn decode_params(&self, params: &[u8]) -> PluginResult<ModelParams> {
        ModelParams::decode(params, self.horizon, &self.search_space())
    }
}

/// Reads `device` and `threads` (local compute settings) over `base`.
fn compute_from(map: &Map<String, Value>, base: Compute) -> PluginResult<Compute> {
    let device = match map.get("device") {
        None => base.device,
        Some(v) => {
            let prefer: DevicePreference = v
                .as_str()
                .ok_or_else(|| config_error("device", "must be \"cpu\", \"cuda\" or \"auto\""))?
                .parse()
                .map_err(|e: crate::device::DeviceError| config_error("device", e.to_string()))?;
            select_device(prefer)
        }
    };
    let threads = get_usize(map, "threads", base.threads, 1, 256)?;
    Ok(Compute { device, threads })
}

// === the domain ===

/// The ts_forecast domain (see the module docs).
#[derive(Debug, Clone)]
pub struct TsForecast {
    info: DomainInfo,
    config: Arc<TsConfig>,
    compute: Compute,
}

impl TsForecast {
    /// Builds the domain from its setup.
    pub fn new(setup: &PluginSetup) -> PluginResult<Self> {
        let config = TsConfig::from_json(&setup.data_config)?;
        let empty = Map::new();
        let local = as_object(&setup.inference_config, &empty, "inference_config")?;
        let compute = compute_from(local, Compute::default())?;
        if let Some(target) = setup.target_performance {
            checked_score(target)
                .map_err(|_| config_error("target_performance", "must be a finite number"))?;
        }
        let info = DomainInfo {
            id: setup.domain.clone(),
            description: format!(
                "forecast {} steps of synthetic series (trend, seasons, AR noise, regimes, \
                 level shifts) with an MLP; skill against the naive last-value forecast",
                config.horizon
            ),
            performance_metric: PERFORMANCE_METRIC.to_string(),
            version: VERSION,
            target_performance: setup.target_performance,
            // The naive forecast's skill: where every search starts from.
            baseline_performance: 0.0,
        };
        Ok(TsForecast {
            info,
            config: Arc::new(config),
            compute,
        })
    }

    /// The domain's shared definition.
    pub fn config(&self) -> &TsConfig {
        &self.config
    }

    /// Where this instance computes.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Skill of decoded parameters on a series set (the metric behind [`Evaluate`]).
    pub fn skill_on(&self, params: &ModelParams, set: &SeriesSet) -> PluginResult<f64> {
        checked_score(model::evaluate(
            params,
            set,
            self.config.max_window,
            &self.compute,
        )?)
    }

    /// The climber, concretely typed (what [`DomainPlugin::new_optimizer`] boxes).
    pub fn climber(&self, setup: &OptimizerSetup) -> PluginResult<Climber> {
        Climber::new(self.clone(), setup)
    }

    fn train_with(
        &self,
        hyper: &Hyperparameters,
        training: &TrainingDefaults,
        data: &(SeriesSet, SeriesSet),
        seed: u64,
        max_seconds: u64,
        compute: &Compute,
    ) -> PluginResult<model::Trained> {
        let settings = TrainSettings {
            early_patience: Some(training.early_patience),
            max_seconds,
        };
        model::train(
            hyper,
            self.config.horizon,
            &data.0,
            &data.1,
            &settings,
            seed,
            compute,
        )
    }
}

impl SyntheticData for TsForecast {
    /// `eval_series` series of `series_length` values from the seed (see [`series`]).
    fn generate(&self, seed: &Hash32) -> PluginResult<Dataset> {
        Ok(Dataset::new(self.config.eval_set(seed).encode()))
    }
}

impl Evaluate for TsForecast {
    /// Forecast skill of the model on the dataset's series, scoring every horizon from index
    /// `max_window` on. Inference only: nothing is trained.
    fn evaluate(&self, params: &[u8], data: &Dataset) -> PluginResult<f64> {
        let params = self.config.decode_params(params)?;
        let set = SeriesSet::decode(&data.bytes, self.config.max_window + self.config.horizon)?;
        self.skill_on(&params, &set)
    }
}

/// Largest magnitude of an inference input value: far beyond any series of the process, and
/// small enough that normalising cannot overflow.
const MAX_INPUT_MAGNITUDE: f64 = 1e12;

impl Infer for TsForecast {
    /// Input `{"window": [w numbers]}` (the model's window length, oldest first); output
    /// `{"forecast": [h numbers], "horizon": h}`. Any other key, a wrong length or a value that
    /// is not a finite number is [`PluginError::InvalidInput`].
    fn infer(&self, params: &[u8], input: &Value) -> PluginResult<Value> {
        self.infer_prepared(&self.prepare(params)?, input)
    }

    /// Decodes and validates the blob once per champion. The network's tensors are built per
    /// query from the decoded weights (microseconds for these sizes): a `tch::Tensor` is not
    /// `Sync`, so one shared network would serialize the server's threads.
    fn prepare(&self, params: &[u8]) -> PluginResult<PreparedModel> {
        Ok(PreparedModel::new(self.config.decode_params(params)?))
    }

    fn describe_input(&self, model: &PreparedModel) -> Value {
        model.downcast_ref::<ModelParams>().map_or(
            Value::Null,
            |p| json!({"window": p.hyper.window, "horizon": p.horizon}),
        )
    }

    fn infer_prepared(&self, model: &PreparedModel, input: &Value) -> PluginResult<Value> {
        let params = model.downcast_ref::<ModelParams>().ok_or_else(|| {
            PluginError::Failed("prepared model is not a ts-forecast network".into())
        })?;
        let window = parse_window(input, params.hyper.window)?;
        let forecast = forecast(params, &window, &self.compute)?;
        Ok(json!({ "forecast": forecast, "horizon": params.horizon }))
    }
}

fn parse_window(input: &Value, expected: usize) -> PluginResult<Vec<f64>> {
    let object = input
        .as_object()
        .ok_or_else(|| invalid_input(format!("expected {{\"window\": [{expected} numbers]}}")))?;
    if let Some(key) = object.keys().find(|k| k.as_str() != "window") {
        return Err(invalid_input(format!(
            "unknown key {key:?}: the only key is \"window\""
        )));
    }
    let values = object
        .get("window")
        .ok_or_else(|| invalid_input("missing key \"window\""))?
        .as_array()
        .ok_or_else(|| {
            invalid_input(format!("\"window\" must be an array of {expected} numbers"))
        })?;
    if values.len() != expected {
        return Err(invalid_input(format!(
            "\"window\" has {} values, but this model reads {expected}",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_f64()
                .filter(|x| x.is_finite() && x.abs() <= MAX_INPUT_MAGNITUDE)
                .ok_or_else(|| {
                    invalid_input(format!(
                        "window[{i}] = {v} is not a finite number of magnitude <= {MAX_INPUT_MAGNITUDE}"
                    ))
                })
        })
        .collect()
}

/// The model's forecast for one window, in the window's units.
pub fn forecast(params: &ModelParams, window: &[f64], compute: &Compute) -> PluginResult<Vec<f64>> {
    let (last, scale) = model::normaliser(window);
    let windows = model::Windows {
        window: window.len(),
        horizon: params.horizon,
        inputs: window.iter().map(|v| ((v - last) / scale) as f32).collect(),
        targets: Vec::new(),
        raw_targets: Vec::new(),
        last: vec![last],
        scale: vec![scale],
    };
    let mlp = model::Mlp::from_params(params, compute.device)?;
    let normalised = model::predict(&mlp, &windows, compute)?;
    if normalised.iter().any(|f| !f.is_finite()) {
        return Err(PluginError::InvalidParams {
            reason: "the model's forecast is not a finite number (weights overflow)".into(),
        });
    }
    let forecast: Vec<f64> = normalised
        .iter()
        .map(|&f| last + f64::from(f) * scale)
        .collect();
    if forecast.iter().any(|f| !f.is_finite()) {
        return Err(invalid_input("the forecast overflows for this window"));
    }
    Ok(forecast)
}

impl Train for TsForecast {
    /// `window`, `depth`, `width`, `activation` (0 relu, 1 tanh, 2 gelu, 3 leaky_relu),
    /// `learning_rate`, `batch_size` and `epochs`; integers are rounded.
    fn search_space(&self) -> ParamBounds {
        self.config.search_space()
    }

    /// Trains on `train_series` series drawn from `request.seed` (the domain's training
    /// defaults), early-stopping on the held-out share, and claims the skill on the claim
    /// dataset of the same seed ([`claim_seed`]). Absent hyperparameters take the defaults of
    /// [`Hyperparameters::default`].
    fn train(&self, request: &TrainRequest<'_>) -> PluginResult<Proposal> {
        let hyper = Hyperparameters::from_map(
            request.hyperparameters,
            &default_hyper(&self.config),
            &self.search_space(),
        )?;
        check_limits(&hyper, self.config.horizon, request.limits)?;
        let training = *self.config.training();
        let data = self.config.training_sets(request.seed, &training);
        let trained = self.train_with(
            &hyper,
            &training,
            &data,
            request.seed,
            request.limits.max_training_seconds,
            &self.compute,
        )?;
        let params = trained.params.encode();
        let claim = self.evaluate(&params, &self.generate(&claim_seed(request.seed))?)?;
        Ok(Proposal {
            params,
            claimed_performance: claim,
            hyperparameters: hyper.to_map(),
            metrics: trained_metrics(&trained),
        })
    }
}

fn default_hyper(config: &TsConfig) -> Hyperparameters {
    let d = Hyperparameters::default();
    Hyperparameters {
        window: d.window.min(config.max_window),
        ..d
    }
}

fn check_limits(
    hyper: &Hyperparameters,
    horizon: usize,
    limits: &doin_core::limits::ResourceLimits,
) -> PluginResult<()> {
    let as64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    limits.check_training(&TrainingRequest {
        epochs: as64(hyper.epochs),
        batch_size: as64(hyper.batch_size),
        params_bytes: as64(hyper.params_bytes(horizon)),
    })?;
    Ok(())
}

fn trained_metrics(trained: &model::Trained) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    metrics.insert("epochs_run".to_string(), trained.params.epochs_run as f64);
    metrics.insert("train_seconds".to_string(), trained.seconds);
    if trained.train_loss.is_finite() {
        metrics.insert("train_loss".to_string(), trained.train_loss);
    }
    if trained.val_mae.is_finite() {
        metrics.insert("val_mae".to_string(), trained.val_mae);
    }
    metrics
}

impl DomainPlugin for TsForecast {
    fn info(&self) -> DomainInfo {
        self.info.clone()
    }

    /// Skill is a small number (about 0.5 for a good model) whose value for one model moves
    /// by about ±0.035 between evaluator datasets: the quadratic's tolerances (0.5, 0.25)
    /// would accept anything and reward nothing.
    fn verification_hints(&self) -> Option<VerificationHints> {
        Some(VerificationHints {
            tolerance_abs: 0.1,
            min_improvement: 0.05,
        })
    }

    fn synthetic(&self) -> &dyn SyntheticData {
        self
    }

    fn evaluator(&self) -> &dyn Evaluate {
        self
    }

    fn inference(&self) -> Option<&dyn Infer> {
        Some(self)
    }

    fn trainer(&self) -> Option<&dyn Train> {
        Some(self)
    }

    fn new_optimizer(&self, setup: &OptimizerSetup) -> PluginResult<Box<dyn Optimize>> {
        Ok(Box::new(self.climber(setup)?))
    }
}

// === the optimizer ===

/// A candidate the climber holds: its recipe, blob and claim.
#[derive(Debug, Clone)]
struct Held {
    hyper: Hyperparameters,
    params: Vec<u8>,
    claim: f64,
}

/// A random-step climber with random restarts over the hyperparameters (one island).
///
/// Each [`propose`](Optimize::propose) trains one candidate: the first is the configured
/// start (`hyperparameters`, else [`Hyperparameters::default`]); afterwards, with
/// probability `explore_prob` a uniform draw from the search space, otherwise the best
/// recipe mutated in the unit cube (log scale for width, learning rate and batch size; the
/// activation is redrawn). Candidates train on the optimizer's own series (from its run
/// seed) and are claimed on its claim dataset ([`claim_seed`]); a better claim replaces the
/// best. The proposal is always the best so far, so claims never decrease; the engine decides
/// what is worth committing.
///
/// Migrants (injected, or the champion in the context) are re-measured on the claim dataset
/// and adopted when better, with their recipe, so mutation continues from them.
pub struct Climber {
    domain: TsForecast,
    space: ParamBounds,
    start: Hyperparameters,
    training: TrainingDefaults,
    data: (SeriesSet, SeriesSet),
    claim_data: Dataset,
    explore_prob: f64,
    mutation_scale: f64,
    max_seconds: u64,
    limits: doin_core::limits::ResourceLimits,
    compute: Compute,
    seed: u64,
    best: Option<Held>,
    /// Hash of the last migrant judged, so a champion repeated every round is scored once.
    last_migrant: Option<Hash32>,
}

impl fmt::Debug for Climber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Climber")
            .field("seed", &self.seed)
            .field("start", &self.start)
            .field("best", &self.best.as_ref().map(|b| (b.hyper, b.claim)))
            .finish_non_exhaustive()
    }
}

impl Climber {
    fn new(domain: TsForecast, setup: &OptimizerSetup) -> PluginResult<Self> {
        let empty = Map::new();
        let map = as_object(&setup.config, &empty, "optimization_config")?;
        let config = Arc::clone(&domain.config);
        let training = TrainingDefaults::from_map(map, config.training())?;
        let max_series = MAX_DATASET_VALUES / config.series_length;
        if training.train_series > max_series {
            return Err(config_error(
                "train_series",
                format!("at most {max_series}"),
            ));
        }
        let mut space = config.search_space();
        narrow(&mut space, &setup.bounds)?;
        for key in ["param_bounds", "hyperparameter_bounds"] {
            if let Some(v) = map.get(key) {
                let bounds: ParamBounds = serde_json::from_value(v.clone())
                    .map_err(|e| config_error(key, e.to_string()))?;
                narrow(&mut space, &bounds)?;
            }
        }
        let start = match map.get("hyperparameters") {
            None => default_hyper(&config),
            Some(v) => {
                let values: BTreeMap<String, f64> = serde_json::from_value(v.clone())
                    .map_err(|e| config_error("hyperparameters", e.to_string()))?;
                Hyperparameters::from_map(&values, &default_hyper(&config), &space)
                    .map_err(|e| config_error("hyperparameters", e.to_string()))?
            }
        };
        let start = clamp_into(start, &space);
        let compute = compute_from(map, domain.compute)?;
        let data = config.training_sets(setup.seed, &training);
        let claim_data = domain.generate(&claim_seed(setup.seed))?;
        Ok(Climber {
            space,
            start,
            training,
            data,
            claim_data,
            explore_prob: get_f64(map, "explore_prob", DEFAULT_EXPLORE_PROB, 0.0, 1.0)?,
            mutation_scale: get_f64(map, "mutation_scale", DEFAULT_MUTATION_SCALE, 0.0, 1.0)?,
            max_seconds: setup.limits.max_training_seconds,
            limits: setup.limits.clone(),
            compute,
            seed: setup.seed,
            best: None,
            last_migrant: None,
            domain,
        })
    }

    /// The search space after narrowing.
    pub fn space(&self) -> &ParamBounds {
        &self.space
    }

    /// The best claim so far.
    pub fn best_performance(&self) -> Option<f64> {
        self.best.as_ref().map(|b| b.claim)
    }

    /// The claim of a blob: the domain's metric on this climber's claim dataset.
    pub fn claim_of(&self, params: &[u8]) -> PluginResult<f64> {
        self.domain.evaluate(params, &self.claim_data)
    }

    fn next_candidate(&self, rng: &mut SplitMix64) -> Hyperparameters {
        let Some(best) = &self.best else {
            return self.start;
        };
        if rng.unit() < self.explore_prob {
            return decode_unit(&self.space, |_, _| rng.unit(), &best.hyper);
        }
        let genes = HYPER_GENES.len();
        let forced = rng.below(genes);
        let mut chosen = [false; HYPER_GENES.len()];
        for (i, slot) in chosen.iter_mut().enumerate() {
            *slot = i == forced || rng.unit() < 1.0 / 3.0;
        }
        let current = encode_unit(&self.space, &best.hyper);
        let scale = self.mutation_scale;
        decode_unit(
            &self.space,
            |i, name| {
                let u = current.get(i).copied().unwrap_or(0.5);
                if !chosen[i] {
                    u
                } else if name == "activation" {
                    rng.unit()
                } else {
                    (u + scale * rng.normal()).clamp(0.0, 1.0)
                }
            },
            &best.hyper,
        )
    }

    fn adopt_if_better(&mut self, held: Held) -> bool {
        let better = self.best.as_ref().is_none_or(|b| held.claim > b.claim);
        if better {
            self.best = Some(held);
        }
        better
    }
}

/// Intersects the space with bounds of the same names (other names are ignored).
fn narrow(space: &mut ParamBounds, bounds: &ParamBounds) -> PluginResult<()> {
    for (name, &(low, high)) in &bounds.0 {
        let Some(b) = space.0.get_mut(name) else {
            continue;
        };
        let narrowed = (b.0.max(low), b.1.min(high));
        if narrowed.0.is_nan() || narrowed.1.is_nan() || narrowed.0 > narrowed.1 {
            return Err(config_error(
                &format!("param_bounds.{name}"),
                format!(
                    "[{low}, {high}] does not overlap the search space [{}, {}]",
                    b.0, b.1
                ),
            ));
        }
        *b = narrowed;
    }
    Ok(())
}

/// Hyperparameter genes and whether each is searched on a log scale.
const HYPER_GENES: [(&str, bool); 7] = [
    ("window", false),
    ("depth", false),
    ("width", true),
    ("activation", false),
    ("learning_rate", true),
    ("batch_size", true),
    ("epochs", false),
];

fn bound_of(space: &ParamBounds, name: &str) -> (f64, f64) {
    space.0.get(name).copied().unwrap_or((0.0, 0.0))
}

/// A recipe as a point of the unit cube, gene by gene.
fn encode_unit(space: &ParamBounds, hyper: &Hyperparameters) -> Vec<f64> {
    let values = hyper.to_map();
    HYPER_GENES
        .iter()
        .map(|&(name, log)| {
            let (low, high) = bound_of(space, name);
            let v = values.get(name).copied().unwrap_or(low).clamp(low, high);
            let (v, low, high) = if log && low > 0.0 {
                (v.ln(), low.ln(), high.ln())
            } else {
                (v, low, high)
            };
            if high > low {
                (v - low) / (high - low)
            } else {
                0.5
            }
        })
        .collect()
}

/// The recipe at the unit-cube point `gene(i, name)` gives; a gene that cannot be read keeps
/// `fallback`'s value.
fn decode_unit(
    space: &ParamBounds,
    mut gene: impl FnMut(usize, &str) -> f64,
    fallback: &Hyperparameters,
) -> Hyperparameters {
    let mut values = BTreeMap::new();
    for (i, &(name, log)) in HYPER_GENES.iter().enumerate() {
        let (low, high) = bound_of(space, name);
        let u = gene(i, name).clamp(0.0, 1.0);
        let v = if log && low > 0.0 {
            (low.ln() + u * (high.ln() - low.ln())).exp()
        } else {
            low + u * (high - low)
        };
        let v = if name == "learning_rate" {
            v
        } else {
            v.round()
        };
        values.insert(name.to_string(), v.clamp(low, high));
    }
    Hyperparameters::from_map(&values, fallback, space)
        .map(|h| clamp_into(h, space))
        .unwrap_or(*fallback)
}

/// Moves every hyperparameter into the space (integers rounded inward).
fn clamp_into(hyper: Hyperparameters, space: &ParamBounds) -> Hyperparameters {
    let int = |name: &str, v: usize| -> usize {
        let (low, high) = bound_of(space, name);
        (v as f64).clamp(low.ceil(), high.floor().max(low.ceil())) as usize
    };
    let (lr_low, lr_high) = bound_of(space, "learning_rate");
    let (a_low, a_high) = bound_of(space, "activation");
    let code =
        f64::from(hyper.activation.code()).clamp(a_low.ceil(), a_high.floor().max(a_low.ceil()));
    Hyperparameters {
        window: int("window", hyper.window),
        depth: int("depth", hyper.depth),
        width: int("width", hyper.width),
        activation: params::Activation::from_code(code as u8).unwrap_or(hyper.activation),
        learning_rate: hyper.learning_rate.clamp(lr_low, lr_high),
        batch_size: int("batch_size", hyper.batch_size),
        epochs: int("epochs", hyper.epochs),
    }
}

impl Optimize for Climber {
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal> {
        if let Some(champion) = ctx.champion {
            self.inject(champion)?;
        }
        let mut rng = SplitMix64::derive(TAG_ROUND, &[self.seed, ctx.seed, ctx.round]);
        let hyper = self.next_candidate(&mut rng);
        let train_seed = rng.next_u64();
        let mut metrics = BTreeMap::new();
        metrics.insert("round".to_string(), ctx.round as f64);
        let outcome =
            check_limits(&hyper, self.domain.config.horizon, &self.limits).and_then(|()| {
                self.domain.train_with(
                    &hyper,
                    &self.training,
                    &self.data,
                    train_seed,
                    self.max_seconds,
                    &self.compute,
                )
            });
        let accepted = match outcome {
            Ok(trained) => {
                let params = trained.params.encode();
                let claim = self.claim_of(&params)?;
                metrics.extend(trained_metrics(&trained));
                metrics.insert("candidate_performance".to_string(), claim);
                self.adopt_if_better(Held {
                    hyper,
                    params,
                    claim,
                })
            }
            // A diverged or over-budget candidate is a bad draw, not a broken optimizer, as
            // long as there is a best to fall back on.
            Err(e) if self.best.is_some() && !matches!(e, PluginError::InvalidConfig { .. }) => {
                metrics.insert("candidate_failed".to_string(), 1.0);
                false
            }
            Err(e) => return Err(e),
        };
        metrics.insert("accepted".to_string(), f64::from(u8::from(accepted)));
        let best = self
            .best
            .as_ref()
            .ok_or_else(|| PluginError::Failed("no candidate trained".into()))?;
        Ok(Proposal {
            params: best.params.clone(),
            claimed_performance: best.claim,
            hyperparameters: best.hyper.to_map(),
            metrics,
        })
    }

    /// Re-measures the migrant on the claim dataset (its own claim is not trusted) and adopts
    /// it, with its recipe, when better. A malformed blob blames the migrant's params.
    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
        let hash = doin_core::plugin::params_hash(&migrant.params);
        if self.last_migrant == Some(hash) {
            return Ok(());
        }
        let decoded = self.domain.config.decode_params(&migrant.params)?;
        let claim = self.claim_of(&migrant.params)?;
        self.last_migrant = Some(hash);
        self.adopt_if_better(Held {
            hyper: decoded.hyper,
            params: migrant.params.clone(),
            claim,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
