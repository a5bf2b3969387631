//! The plugin traits: what a domain provides (DESIGN.md §4).
//!
//! # Bird's eye view
//!
//! A domain is one crate implementing [`DomainPlugin`], which hands out one object per
//! capability, so each engine depends only on what it uses:
//!
//! | capability | trait | used by |
//! |---|---|---|
//! | synthetic data from a 32-byte seed | [`SyntheticData`] | evaluator |
//! | score parameters on data | [`Evaluate`] | evaluator (and optimizers, for their claims) |
//! | answer a query | [`Infer`] (optional) | inference server |
//! | train one candidate from hyperparameters | [`Train`] (optional) | generic engines (GA, random step) in `doin-optimizer` |
//! | the domain's own search | [`Optimize`] (optional) | optimizer |
//!
//! A domain either brings its own search ([`DomainPlugin::new_optimizer`]) or exposes a
//! [`Train`] capability over a declared hyperparameter space, which lets `doin-optimizer`'s
//! engines drive it (the core owns the loop, patience and migration; the plugin owns decoding
//! and training). An external-process bridge implements the same traits by speaking JSON lines
//! to a child process.
//!
//! Domains are registered by name at compile time into a [`PluginRegistry`] that the node
//! binary builds (built-ins plus any crate the user links), then instantiated per configured
//! domain from a [`PluginSetup`].
//!
//! # Conventions
//!
//! * **Higher is better**, always. A domain whose natural metric is a loss reports its
//!   negation (`−MSE`), so every comparison in the protocol has one direction.
//! * **Parameters are opaque bytes** (model weights can be megabytes), in an encoding the
//!   domain defines and content-addressed by [`params_hash`].
//! * **Determinism**: [`SyntheticData::generate`] is a pure function of the domain setup and
//!   the seed, on every machine (evaluators are checked against each other). Evaluation is
//!   deterministic for the same inputs on the same machine; scores from different hardware
//!   are compared within the domain's tolerance.
//! * **No panics on peer input**: parameters and datasets may come from anyone; a plugin
//!   returns [`PluginError::InvalidParams`] or [`PluginError::InvalidData`] instead.
//!
//! Thread-safety: a node shares one domain instance between its evaluator, inference server
//! and optimizer threads, so [`DomainPlugin`] and its capability objects are `Send + Sync`
//! (keep per-call state such as a `tch` model local to the call, or behind a lock).
//! An optimizer is owned by one thread and only needs `Send`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hash::{Hash32, HashKind};
use crate::limits::{LimitError, ParamBounds, ResourceLimits};
use crate::params::DomainId;

/// Longest plugin name, in bytes.
pub const MAX_PLUGIN_NAME_LEN: usize = 64;

/// Content address of a parameter blob (model weights and hyperparameters).
pub fn params_hash(params: &[u8]) -> Hash32 {
    HashKind::Model.hash(params)
}

// === errors ===

/// What went wrong inside or around a plugin.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PluginError {
    /// The parameter blob is malformed for this domain (the optimizer is at fault).
    #[error("invalid parameters: {reason}")]
    InvalidParams { reason: String },
    /// A dataset blob is malformed for this domain.
    #[error("invalid dataset: {reason}")]
    InvalidData { reason: String },
    /// An inference query or training request the domain cannot answer.
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// The plugin's configuration is wrong; `field` names the key.
    #[error("invalid plugin configuration: {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    /// A resource limit of the domain would be exceeded.
    #[error("resource limit: {0}")]
    Limit(#[from] LimitError),
    /// Evaluation produced NaN or an infinity, which no consensus object may carry.
    #[error("score is not a finite number ({value})")]
    NonFiniteScore { value: f64 },
    /// The domain does not offer this capability.
    #[error("this domain has no {capability}")]
    Unsupported { capability: &'static str },
    /// No plugin is registered under `name`.
    #[error("unknown plugin {name:?} (registered: {registered})")]
    NotFound { name: String, registered: String },
    /// A second plugin tried to register under an existing name.
    #[error("plugin {name:?} is already registered")]
    Duplicate { name: String },
    #[error("invalid plugin name {name:?}: must be 1-{MAX_PLUGIN_NAME_LEN} characters of a-z, A-Z, 0-9, '_', '.', '-'")]
    InvalidName { name: String },
    /// Anything else (training diverged, the external process died, ...).
    #[error("plugin failed: {0}")]
    Failed(String),
}

/// Result alias of plugin calls.
pub type PluginResult<T> = Result<T, PluginError>;

impl PluginError {
    /// True when the parameters themselves are at fault (malformed, or over a domain limit):
    /// any honest evaluator would fail the same way, so the optimae can be judged bad.
    /// Every other error is local to this node, which then must not vote.
    pub fn blames_params(&self) -> bool {
        matches!(
            self,
            PluginError::InvalidParams { .. } | PluginError::Limit(_)
        )
    }
}

/// Passes a finite score through; NaN and infinities become [`PluginError::NonFiniteScore`].
pub fn checked_score(value: f64) -> PluginResult<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(PluginError::NonFiniteScore { value })
    }
}

// === data types ===

/// What a domain is, as shown to users and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DomainInfo {
    pub id: DomainId,
    pub description: String,
    /// Name of the performance metric, e.g. `"neg_mse"` or `"forecast_skill"`.
    ///
    /// Higher is **always** better: a loss is reported negated, so there is no direction flag
    /// (see [`DomainInfo::higher_is_better`]).
    pub performance_metric: String,
    /// Version of the domain's data generation and evaluation semantics. Nodes of one domain
    /// must run the same version, or their measurements disagree; bump it on any change.
    pub version: u32,
    /// Performance at which optimization of this domain is considered converged.
    pub target_performance: Option<f64>,
    /// The performance the domain starts from before any champion (e.g. the quadratic's
    /// performance at the centre of its bounds). Must be finite; the node uses it for the
    /// chain's domain parameters.
    pub baseline_performance: f64,
}

impl DomainInfo {
    /// Always `true`: the protocol's one direction. Provided for APIs that report it.
    pub fn higher_is_better(&self) -> bool {
        true
    }

    /// Whether `performance` reaches the domain's target (never, without a target).
    pub fn reached_target(&self, performance: f64) -> bool {
        self.target_performance
            .is_some_and(|target| performance >= target)
    }
}

/// A synthetic dataset in the domain's own canonical serialization.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Dataset {
    /// Plugin-defined canonical bytes: the same seed gives the same bytes on every machine.
    pub bytes: Vec<u8>,
}

impl Dataset {
    pub fn new(bytes: Vec<u8>) -> Self {
        Dataset { bytes }
    }

    /// The digest an evaluator puts in its vote, so anyone can check which data it used.
    pub fn hash(&self) -> Hash32 {
        HashKind::Dataset.hash(&self.bytes)
    }
}

impl fmt::Debug for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dataset")
            .field("bytes", &self.bytes.len())
            .field("hash", &self.hash())
            .finish()
    }
}

/// A parameter blob shown by size and hash in logs, never byte by byte.
struct ParamsSummary<'a>(&'a [u8]);

impl fmt::Debug for ParamsSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes, {}>", self.0.len(), params_hash(self.0))
    }
}

/// A verified (or optimistically adopted) solution from another island, or the champion.
#[derive(Clone, PartialEq, Default)]
pub struct Migrant {
    pub params: Vec<u8>,
    pub performance: f64,
    /// The hyperparameters that produced it, when known (from its reveal). Engines that
    /// search hyperparameters ([`Train`]) inject these into their population.
    pub hyperparameters: BTreeMap<String, f64>,
}

impl fmt::Debug for Migrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrant")
            .field("params", &ParamsSummary(&self.params))
            .field("performance", &self.performance)
            .field("hyperparameters", &self.hyperparameters)
            .finish()
    }
}

/// A candidate produced by an optimizer or a training run.
#[derive(Clone, PartialEq, Default)]
pub struct Proposal {
    pub params: Vec<u8>,
    /// What the optimizer measured itself; evaluators check it within the domain tolerance.
    pub claimed_performance: f64,
    /// Hyperparameters that produced the candidate (recorded in the analytics store).
    pub hyperparameters: BTreeMap<String, f64>,
    /// Experiment metrics (training loss, epochs run, seconds, ...), for the analytics store.
    pub metrics: BTreeMap<String, f64>,
}

impl Proposal {
    pub fn params_hash(&self) -> Hash32 {
        params_hash(&self.params)
    }

    /// This proposal as a migrant for other islands.
    pub fn to_migrant(&self) -> Migrant {
        Migrant {
            params: self.params.clone(),
            performance: self.claimed_performance,
            hyperparameters: self.hyperparameters.clone(),
        }
    }
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proposal")
            .field("params", &ParamsSummary(&self.params))
            .field("claimed_performance", &self.claimed_performance)
            .field("hyperparameters", &self.hyperparameters)
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// What an optimizer knows when asked for its next candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProposeContext<'a> {
    /// The domain's current verified champion, if any.
    pub champion: Option<&'a Migrant>,
    /// Randomness for this round, derived by the engine from the node's optimizer seed, so a
    /// run reproduces from its seed.
    pub seed: u64,
    /// Rounds proposed so far by this optimizer (0 for the first).
    pub round: u64,
}

/// Everything an optimizer is built from.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerSetup {
    /// The domain's `optimization_config` (a free JSON object, plugin-private).
    pub config: serde_json::Value,
    /// Seed of the whole optimizer run.
    pub seed: u64,
    /// Limits every candidate's training must respect.
    pub limits: ResourceLimits,
    /// Bounds of named parameters or hyperparameters (the config's `param_bounds`).
    pub bounds: ParamBounds,
}

/// One training run requested by an engine.
#[derive(Debug, Clone, Copy)]
pub struct TrainRequest<'a> {
    /// Values for the names in [`Train::search_space`].
    pub hyperparameters: &'a BTreeMap<String, f64>,
    /// Seed of this run: the same request trains the same candidate.
    pub seed: u64,
    /// The domain's limits; exceeding one is [`PluginError::Limit`].
    pub limits: &'a ResourceLimits,
}

/// Everything a domain instance is built from.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSetup {
    pub domain: DomainId,
    /// Configuration of data generation and evaluation (`synthetic_data_config`). Every node
    /// of the domain must use the same, or their measurements differ.
    pub data_config: serde_json::Value,
    /// Configuration of inference (`inference_config`); local to this node.
    pub inference_config: serde_json::Value,
    pub target_performance: Option<f64>,
}

impl PluginSetup {
    /// A setup with empty configurations.
    pub fn new(domain: DomainId) -> Self {
        PluginSetup {
            domain,
            data_config: serde_json::Value::Object(Default::default()),
            inference_config: serde_json::Value::Object(Default::default()),
            target_performance: None,
        }
    }
}

// === capability traits ===

/// Deterministic synthetic data.
pub trait SyntheticData: Send + Sync {
    /// The dataset for `seed`: a pure function of the domain setup and the seed.
    fn generate(&self, seed: &Hash32) -> PluginResult<Dataset>;
}

/// The domain's single definition of performance, shared by optimizers' claims and
/// evaluators' measurements.
pub trait Evaluate: Send + Sync {
    /// Performance of `params` on `data`; higher is better. Deterministic for the same inputs
    /// on the same machine. Malformed `params` is [`PluginError::InvalidParams`].
    fn evaluate(&self, params: &[u8], data: &Dataset) -> PluginResult<f64>;
}

/// Serving: answers a query with given parameters.
///
/// A server answers many queries with one champion, so it calls [`Infer::prepare`] once per
/// new champion (decode the weights, build the network) and [`Infer::infer_prepared`] per
/// query. The defaults keep the raw bytes and decode per query through [`Infer::infer`]; a
/// domain with costly decoding overrides both.
pub trait Infer: Send + Sync {
    fn infer(&self, params: &[u8], input: &serde_json::Value) -> PluginResult<serde_json::Value>;

    /// Decodes `params` for serving. Malformed parameters are [`PluginError::InvalidParams`].
    fn prepare(&self, params: &[u8]) -> PluginResult<PreparedModel> {
        Ok(PreparedModel::new(params.to_vec()))
    }

    /// Answers a query with a model from [`Infer::prepare`] of this same domain instance.
    fn infer_prepared(
        &self,
        model: &PreparedModel,
        input: &serde_json::Value,
    ) -> PluginResult<serde_json::Value> {
        let params = model.downcast_ref::<Vec<u8>>().ok_or_else(|| {
            PluginError::Failed("prepared model of another domain (expected raw bytes)".into())
        })?;
        self.infer(params, input)
    }

    /// What a query to `model` looks like, for clients (e.g. `{"features": 10}` or
    /// `{"window": 48, "horizon": 8}`); `null` when the domain does not say.
    fn describe_input(&self, model: &PreparedModel) -> serde_json::Value {
        let _ = model;
        serde_json::Value::Null
    }
}

/// A model decoded by [`Infer::prepare`]: whatever the domain needs to answer queries fast,
/// shared by the server's threads.
pub struct PreparedModel(Box<dyn std::any::Any + Send + Sync>);

impl PreparedModel {
    pub fn new<T: std::any::Any + Send + Sync>(model: T) -> Self {
        PreparedModel(Box::new(model))
    }

    /// The domain's own model type, or `None` for another type.
    pub fn downcast_ref<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for PreparedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedModel(..)")
    }
}

/// Trains one candidate from hyperparameters, so that generic engines can search the space.
pub trait Train: Send + Sync {
    /// Named hyperparameters and their inclusive bounds.
    fn search_space(&self) -> ParamBounds;

    /// Trains a candidate. Deterministic for the same request on the same machine; must stay
    /// within `request.limits`. The returned claim uses the domain's [`Evaluate`] definition.
    fn train(&self, request: &TrainRequest<'_>) -> PluginResult<Proposal>;
}

/// A domain's own search (one island). Owned and driven by one thread.
pub trait Optimize: Send {
    /// The next candidate: one bounded unit of search work. The engine decides whether it is
    /// good enough to commit (by its claim against the champion).
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal>;

    /// Adds a solution from another island (a revealed or accepted champion) to the search.
    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()>;
}

/// How a domain's measurements should be compared: the domain's own suggestion for
/// development chains. A network's genesis file decides for real.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerificationHints {
    /// Absolute tolerance between a claim and a measurement (evaluator data noise).
    pub tolerance_abs: f64,
    /// Least verified improvement over the champion that counts: above the spread of one
    /// model's score across evaluator datasets, so a copy of the champion never earns.
    pub min_improvement: f64,
}

/// A domain: one instance per configured domain, shared by the node's engines.
pub trait DomainPlugin: Send + Sync {
    fn info(&self) -> DomainInfo;

    /// Tolerances suited to this domain's scale and noise, for development chains; `None`
    /// keeps the chain defaults (tuned for the quadratic reference domain).
    fn verification_hints(&self) -> Option<VerificationHints> {
        None
    }
    fn synthetic(&self) -> &dyn SyntheticData;
    fn evaluator(&self) -> &dyn Evaluate;

    /// Serving, when the domain offers it.
    fn inference(&self) -> Option<&dyn Infer> {
        None
    }

    /// Training over a hyperparameter space, when generic engines may drive the domain.
    fn trainer(&self) -> Option<&dyn Train> {
        None
    }

    /// The domain's own optimizer, when it has one.
    fn new_optimizer(&self, setup: &OptimizerSetup) -> PluginResult<Box<dyn Optimize>> {
        let _ = setup;
        Err(PluginError::Unsupported {
            capability: "optimizer",
        })
    }
}

// === evaluation pipeline ===

/// An evaluator's measurement and the hash of the data it was taken on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    pub measured: f64,
    pub data_hash: Hash32,
}

/// The evaluator's pipeline: check the blob's size against the domain limit, generate the
/// data for `data_seed`, score, and require a finite result.
pub fn measure(
    domain: &dyn DomainPlugin,
    params: &[u8],
    data_seed: &Hash32,
    limits: &ResourceLimits,
) -> PluginResult<Measurement> {
    let size = u64::try_from(params.len()).unwrap_or(u64::MAX);
    limits.check_params_size(size)?;
    let data = domain.synthetic().generate(data_seed)?;
    let measured = checked_score(domain.evaluator().evaluate(params, &data)?)?;
    Ok(Measurement {
        measured,
        data_hash: data.hash(),
    })
}

// === registry ===

/// Builds a domain instance from its setup.
pub type PluginFactory =
    Arc<dyn Fn(&PluginSetup) -> PluginResult<Arc<dyn DomainPlugin>> + Send + Sync>;

/// Plugins by name, registered at compile time by the binary that links them.
#[derive(Clone, Default)]
pub struct PluginRegistry {
    factories: BTreeMap<String, PluginFactory>,
}

impl fmt::Debug for PluginRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl PluginRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `factory` under `name`. A name registered twice is an error, so that two
    /// linked crates cannot silently shadow each other.
    pub fn register<F>(&mut self, name: &str, factory: F) -> PluginResult<()>
    where
        F: Fn(&PluginSetup) -> PluginResult<Arc<dyn DomainPlugin>> + Send + Sync + 'static,
    {
        validate_plugin_name(name)?;
        if self.factories.contains_key(name) {
            return Err(PluginError::Duplicate {
                name: name.to_string(),
            });
        }
        self.factories.insert(name.to_string(), Arc::new(factory));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&PluginFactory> {
        self.factories.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// Builds the domain registered as `name`; an unknown name lists the registered ones.
    pub fn instantiate(
        &self,
        name: &str,
        setup: &PluginSetup,
    ) -> PluginResult<Arc<dyn DomainPlugin>> {
        let factory = self.get(name).ok_or_else(|| PluginError::NotFound {
            name: name.to_string(),
            registered: self.names().join(", "),
        })?;
        factory(setup)
    }
}

fn validate_plugin_name(name: &str) -> PluginResult<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PLUGIN_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PluginError::InvalidName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    // --- a tiny domain: maximize −(x − 3)² ---

    const OPTIMUM: f64 = 3.0;

    fn decode_f64(bytes: &[u8]) -> Option<f64> {
        let array: [u8; 8] = bytes.try_into().ok()?;
        Some(f64::from_le_bytes(array)).filter(|v| v.is_finite())
    }

    fn decode_x(params: &[u8]) -> PluginResult<f64> {
        decode_f64(params).ok_or_else(|| PluginError::InvalidParams {
            reason: format!(
                "expected one finite little-endian f64, got {} bytes",
                params.len()
            ),
        })
    }

    fn objective(x: f64, target: f64) -> f64 {
        -(x - target).powi(2)
    }

    /// splitmix64: a tiny deterministic generator for the test optimizer.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(state: &mut u64) -> f64 {
        (splitmix(state) >> 11) as f64 / (1u64 << 53) as f64
    }

    struct Parabola {
        info: DomainInfo,
        /// Half-width of the evaluator's noise on the target.
        noise: f64,
    }

    impl SyntheticData for Parabola {
        fn generate(&self, seed: &Hash32) -> PluginResult<Dataset> {
            let mut state = u64::from_le_bytes(seed.0[..8].try_into().unwrap());
            let target = OPTIMUM + (unit(&mut state) * 2.0 - 1.0) * self.noise;
            Ok(Dataset::new(target.to_le_bytes().to_vec()))
        }
    }

    impl Evaluate for Parabola {
        fn evaluate(&self, params: &[u8], data: &Dataset) -> PluginResult<f64> {
            let x = decode_x(params)?;
            let target = decode_f64(&data.bytes).ok_or_else(|| PluginError::InvalidData {
                reason: "expected one f64 target".into(),
            })?;
            Ok(objective(x, target))
        }
    }

    impl Infer for Parabola {
        fn infer(
            &self,
            params: &[u8],
            input: &serde_json::Value,
        ) -> PluginResult<serde_json::Value> {
            let x = decode_x(params)?;
            let at = input["at"]
                .as_f64()
                .ok_or_else(|| PluginError::InvalidInput {
                    reason: "expected {\"at\": number}".into(),
                })?;
            Ok(json!({ "value": objective(at, x) }))
        }
    }

    impl Train for Parabola {
        fn search_space(&self) -> ParamBounds {
            ParamBounds([("x".to_string(), (-10.0, 10.0))].into())
        }

        fn train(&self, request: &TrainRequest<'_>) -> PluginResult<Proposal> {
            self.search_space().check(
                request
                    .hyperparameters
                    .iter()
                    .map(|(k, v)| (k.as_str(), *v)),
            )?;
            let x = *request
                .hyperparameters
                .get("x")
                .ok_or_else(|| PluginError::InvalidInput {
                    reason: "missing hyperparameter x".into(),
                })?;
            request.limits.check_params_size(8)?;
            Ok(Proposal {
                params: x.to_le_bytes().to_vec(),
                claimed_performance: objective(x, OPTIMUM),
                hyperparameters: request.hyperparameters.clone(),
                metrics: BTreeMap::new(),
            })
        }
    }

    /// A hill climber on x.
    struct Climber {
        state: u64,
        step: f64,
        best: Option<(f64, f64)>,
    }

    impl Optimize for Climber {
        fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal> {
            if let Some(champion) = ctx.champion {
                self.inject(champion)?;
            }
            let mut state = self.state ^ ctx.seed ^ ctx.round;
            let start = self.best.map_or(0.0, |(x, _)| x);
            let candidate = start + (unit(&mut state) * 2.0 - 1.0) * self.step;
            let performance = objective(candidate, OPTIMUM);
            if self.best.is_none_or(|(_, p)| performance > p) {
                self.best = Some((candidate, performance));
            }
            self.state = splitmix(&mut state);
            let (x, p) = self.best.unwrap_or((candidate, performance));
            Ok(Proposal {
                params: x.to_le_bytes().to_vec(),
                claimed_performance: p,
                hyperparameters: [("step".to_string(), self.step)].into(),
                metrics: [("round".to_string(), ctx.round as f64)].into(),
            })
        }

        fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
            let x = decode_x(&migrant.params)?;
            let performance = objective(x, OPTIMUM);
            if self.best.is_none_or(|(_, p)| performance > p) {
                self.best = Some((x, performance));
            }
            Ok(())
        }
    }

    impl DomainPlugin for Parabola {
        fn info(&self) -> DomainInfo {
            self.info.clone()
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
            let step =
                match setup.config.get("step_size") {
                    None => 0.5,
                    Some(v) => v.as_f64().filter(|s| *s > 0.0).ok_or_else(|| {
                        PluginError::InvalidConfig {
                            field: "step_size".into(),
                            reason: "must be a positive number".into(),
                        }
                    })?,
                };
            Ok(Box::new(Climber {
                state: setup.seed,
                step,
                best: None,
            }))
        }
    }

    fn parabola(setup: &PluginSetup) -> Parabola {
        let noise = setup
            .data_config
            .get("noise")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.01);
        Parabola {
            info: DomainInfo {
                id: setup.domain.clone(),
                description: "maximize −(x − 3)²".into(),
                performance_metric: "neg_squared_error".into(),
                version: 1,
                target_performance: setup.target_performance,
                baseline_performance: objective(0.0, OPTIMUM),
            },
            noise,
        }
    }

    fn parabola_factory(setup: &PluginSetup) -> PluginResult<Arc<dyn DomainPlugin>> {
        Ok(Arc::new(parabola(setup)))
    }

    /// A domain offering only the required capabilities, with a broken evaluator.
    struct Minimal {
        data: Parabola,
        evaluator: NanEvaluator,
    }

    impl DomainPlugin for Minimal {
        fn info(&self) -> DomainInfo {
            self.data.info.clone()
        }
        fn synthetic(&self) -> &dyn SyntheticData {
            &self.data
        }
        fn evaluator(&self) -> &dyn Evaluate {
            &self.evaluator
        }
    }

    /// Evaluates everything as NaN (a broken plugin).
    struct NanEvaluator;

    impl Evaluate for NanEvaluator {
        fn evaluate(&self, _: &[u8], _: &Dataset) -> PluginResult<f64> {
            Ok(f64::NAN)
        }
    }

    fn registry() -> PluginRegistry {
        let mut r = PluginRegistry::new();
        r.register("parabola", parabola_factory).unwrap();
        r.register("minimal", |setup: &PluginSetup| {
            let minimal = Minimal {
                data: parabola(setup),
                evaluator: NanEvaluator,
            };
            Ok(Arc::new(minimal) as Arc<dyn DomainPlugin>)
        })
        .unwrap();
        r
    }

    fn setup() -> PluginSetup {
        PluginSetup {
            target_performance: Some(-0.01),
            ..PluginSetup::new(DomainId::new("parabola-1").unwrap())
        }
    }

    fn seed(n: u8) -> Hash32 {
        HashKind::DataSeed.hash(&[n])
    }

    fn params(x: f64) -> Vec<u8> {
        x.to_le_bytes().to_vec()
    }

    // --- tests ---

    #[test]
    fn traits_are_object_safe_and_shareable() {
        fn shareable<T: Send + Sync + ?Sized>() {}
        fn sendable<T: Send + ?Sized>() {}
        shareable::<dyn DomainPlugin>();
        shareable::<dyn SyntheticData>();
        shareable::<dyn Evaluate>();
        shareable::<dyn Infer>();
        shareable::<dyn Train>();
        sendable::<dyn Optimize>();
        shareable::<PluginRegistry>();
        shareable::<PluginFactory>();
    }

    #[test]
    fn registry_registers_lists_and_rejects_duplicates() {
        let mut r = registry();
        assert_eq!(r.names(), vec!["minimal", "parabola"]);
        assert!(r.contains("parabola") && r.get("parabola").is_some());
        assert_eq!(
            r.register("parabola", parabola_factory),
            Err(PluginError::Duplicate {
                name: "parabola".into()
            })
        );
        for bad in ["", "has space", "ünï", &"x".repeat(65)] {
            assert!(matches!(
                r.register(bad, parabola_factory),
                Err(PluginError::InvalidName { .. })
            ));
        }
        assert!(format!("{r:?}").contains("parabola"));
    }

    #[test]
    fn unknown_plugin_names_the_registered_ones() {
        let err = registry().instantiate("nope", &setup()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "unknown plugin \"nope\" (registered: minimal, parabola)"
        );
    }

    #[test]
    fn end_to_end_generate_evaluate_infer_through_the_registry() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let info = domain.info();
        assert_eq!(info.id.as_str(), "parabola-1");
        assert!(info.higher_is_better());
        assert!(info.reached_target(-0.001) && !info.reached_target(-1.0));

        let data = domain.synthetic().generate(&seed(1)).unwrap();
        assert_eq!(data, domain.synthetic().generate(&seed(1)).unwrap());
        assert_ne!(
            data.hash(),
            domain.synthetic().generate(&seed(2)).unwrap().hash()
        );

        let good = domain.evaluator().evaluate(&params(3.0), &data).unwrap();
        let bad = domain.evaluator().evaluate(&params(0.0), &data).unwrap();
        assert!(good > bad);
        assert!(good > -0.001 && good <= 0.0);

        let answer = domain
            .inference()
            .unwrap()
            .infer(&params(3.0), &json!({"at": 1.0}))
            .unwrap();
        assert_eq!(answer, json!({"value": -4.0}));
        let err = domain
            .inference()
            .unwrap()
            .infer(&params(3.0), &json!("hi"));
        assert!(matches!(err, Err(PluginError::InvalidInput { .. })));
    }

    #[test]
    fn measure_is_deterministic_by_seed_and_hashes_the_data() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let limits = ResourceLimits::default();
        let a = measure(domain.as_ref(), &params(2.0), &seed(7), &limits).unwrap();
        assert_eq!(
            a,
            measure(domain.as_ref(), &params(2.0), &seed(7), &limits).unwrap()
        );
        let data = domain.synthetic().generate(&seed(7)).unwrap();
        assert_eq!(a.data_hash, data.hash());
        let b = measure(domain.as_ref(), &params(2.0), &seed(8), &limits).unwrap();
        assert_ne!(a.data_hash, b.data_hash);
    }

    #[test]
    fn measure_enforces_the_params_size_limit() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let limits = ResourceLimits {
            max_params_bytes: 4,
            ..ResourceLimits::default()
        };
        let err = measure(domain.as_ref(), &params(2.0), &seed(1), &limits).unwrap_err();
        assert!(matches!(err, PluginError::Limit(_)));
        assert!(err.blames_params());
    }

    #[test]
    fn malformed_params_blame_the_params() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let limits = ResourceLimits::default();
        for blob in [vec![], vec![1, 2, 3], f64::NAN.to_le_bytes().to_vec()] {
            let err = measure(domain.as_ref(), &blob, &seed(1), &limits).unwrap_err();
            assert!(matches!(err, PluginError::InvalidParams { .. }), "{err}");
            assert!(err.blames_params());
        }
        assert!(!PluginError::Failed("gpu fell off".into()).blames_params());
    }

    #[test]
    fn non_finite_scores_are_refused() {
        let domain = registry()
            .instantiate("minimal", &PluginSetup::new(DomainId::new("m").unwrap()))
            .unwrap();
        let err = measure(
            domain.as_ref(),
            &params(1.0),
            &seed(1),
            &ResourceLimits::default(),
        );
        assert!(matches!(err, Err(PluginError::NonFiniteScore { .. })));
        assert!(!err.unwrap_err().blames_params());
        assert_eq!(checked_score(-1.5), Ok(-1.5));
        assert!(checked_score(f64::NEG_INFINITY).is_err());
    }

    #[test]
    fn optional_capabilities_default_to_absent() {
        let domain = registry()
            .instantiate("minimal", &PluginSetup::new(DomainId::new("m").unwrap()))
            .unwrap();
        assert!(domain.inference().is_none());
        assert!(domain.trainer().is_none());
        assert_eq!(
            domain.new_optimizer(&OptimizerSetup::default()).err(),
            Some(PluginError::Unsupported {
                capability: "optimizer"
            })
        );
    }

    #[test]
    fn optimizer_improves_deterministically_and_adopts_better_migrants() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let run = |seed: u64| {
            let setup = OptimizerSetup {
                seed,
                ..OptimizerSetup::default()
            };
            let mut opt = domain.new_optimizer(&setup).unwrap();
            (0..200)
                .map(|round| {
                    let ctx = ProposeContext {
                        champion: None,
                        seed: 11,
                        round,
                    };
                    opt.propose(&ctx).unwrap()
                })
                .collect::<Vec<_>>()
        };
        let first = run(42);
        assert_eq!(first, run(42));
        let claims: Vec<f64> = first.iter().map(|p| p.claimed_performance).collect();
        assert!(claims.windows(2).all(|w| w[1] >= w[0]));
        assert!(claims[199] > -0.1, "{}", claims[199]);

        let mut opt = domain.new_optimizer(&OptimizerSetup::default()).unwrap();
        let champion = Migrant {
            params: params(3.0),
            performance: 0.0,
            hyperparameters: BTreeMap::new(),
        };
        opt.inject(&champion).unwrap();
        let p = opt.propose(&ProposeContext::default()).unwrap();
        assert_eq!(p.claimed_performance, 0.0);
        assert_eq!(p.to_migrant().params, params(3.0));
        let bad = Migrant {
            params: vec![0],
            ..champion
        };
        assert!(opt.inject(&bad).unwrap_err().blames_params());
    }

    #[test]
    fn optimizer_config_errors_name_the_field() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let setup = OptimizerSetup {
            config: json!({"step_size": -1}),
            ..OptimizerSetup::default()
        };
        let err = domain.new_optimizer(&setup).err().unwrap();
        assert!(err.to_string().contains("step_size"), "{err}");
    }

    #[test]
    fn trainer_respects_its_search_space_and_limits() {
        let domain = registry().instantiate("parabola", &setup()).unwrap();
        let trainer = domain.trainer().unwrap();
        assert!(trainer.search_space().0.contains_key("x"));
        let limits = ResourceLimits::default();
        let hyper: BTreeMap<String, f64> = [("x".to_string(), 2.5)].into();
        let request = TrainRequest {
            hyperparameters: &hyper,
            seed: 1,
            limits: &limits,
        };
        let proposal = trainer.train(&request).unwrap();
        assert_eq!(proposal.claimed_performance, -0.25);
        assert_eq!(proposal.hyperparameters, hyper);

        let outside: BTreeMap<String, f64> = [("x".to_string(), 11.0)].into();
        let err = trainer
            .train(&TrainRequest {
                hyperparameters: &outside,
                ..request
            })
            .unwrap_err();
        assert!(
            matches!(err, PluginError::Limit(ref e) if e.field == "x"),
            "{err}"
        );
    }

    #[test]
    fn dataset_and_params_hashes_are_separated() {
        let bytes = vec![1, 2, 3];
        assert_ne!(Dataset::new(bytes.clone()).hash(), params_hash(&bytes));
        assert_eq!(params_hash(&bytes), HashKind::Model.hash(&bytes));
        let debug = format!(
            "{:?}",
            Proposal {
                params: vec![0; 1 << 20],
                ..Proposal::default()
            }
        );
        assert!(
            debug.contains("1048576 bytes") && debug.len() < 300,
            "{debug}"
        );
    }

    proptest! {
        #[test]
        fn generation_and_measurement_are_pure_functions_of_the_seed(
            seed_bytes in any::<[u8; 32]>(),
            x in -10.0f64..10.0,
        ) {
            let domain = registry().instantiate("parabola", &setup()).unwrap();
            let seed = Hash32(seed_bytes);
            let limits = ResourceLimits::default();
            let a = measure(domain.as_ref(), &params(x), &seed, &limits).unwrap();
            let b = measure(domain.as_ref(), &params(x), &seed, &limits).unwrap();
            prop_assert_eq!(a, b);
            prop_assert!(a.measured <= 0.0);
        }

        #[test]
        fn arbitrary_param_bytes_never_panic(blob in prop::collection::vec(any::<u8>(), 0..32)) {
            let domain = registry().instantiate("parabola", &setup()).unwrap();
            match measure(domain.as_ref(), &blob, &seed(0), &ResourceLimits::default()) {
                Ok(m) => prop_assert!(m.measured.is_finite()),
                Err(e) => {
                    let expected = e.blames_params() || matches!(e, PluginError::NonFiniteScore { .. });
                    prop_assert!(expected, "{}", e);
                }
            }
        }
    }
}
