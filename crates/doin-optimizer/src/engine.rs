//! The engine around one domain's optimizer: rounds, seeds, the commit decision, patience,
//! convergence and champion migration.

use std::fmt;
use std::sync::Arc;

use doin_core::config::DomainConfig;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::limits::ResourceLimits;
use doin_core::plugin::{
    DomainInfo, DomainPlugin, Migrant, Optimize, OptimizerSetup, PluginError, Proposal,
    ProposeContext,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use std::collections::BTreeMap;

use doin_core::trials::Trial;

use crate::ga::{GaConfig, GaStats, Genetic};
use crate::reports::TrialsOutcome;
use crate::OptimizerRole;

/// L2 patience when `optimization_patience` is absent (the original's node config value).
pub const DEFAULT_OPTIMIZATION_PATIENCE: u64 = 5;
/// ε when none is given: the dev chain's `min_improvement`. Pass the chain's own value with
/// [`StopSettings::with_min_improvement`], so the engine never commits what the verdict would
/// reject as no improvement.
pub const DEFAULT_MIN_IMPROVEMENT: f64 = 1e-3;

// === errors ===

/// What went wrong building or driving an [`Engine`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EngineError {
    /// A stop setting is out of range; `field` names the config key.
    #[error("invalid optimizer setting {field}: {reason}")]
    InvalidSetting { field: String, reason: String },
    /// The plugin failed: building its optimizer, proposing, or injecting a migrant. Check
    /// [`PluginError::blames_params`] to tell a bad migrant from a local failure.
    #[error("optimizer plugin: {0}")]
    Plugin(#[from] PluginError),
    /// The plugin claimed NaN or an infinity, which no commitment may carry.
    #[error("the optimizer claimed a non-finite performance ({value})")]
    NonFiniteClaim { value: f64 },
    /// A champion or migrant was handed over with a non-finite performance.
    #[error("the champion's performance is not a finite number ({value})")]
    NonFiniteChampion { value: f64 },
}

/// Result alias of engine calls.
pub type EngineResult<T> = Result<T, EngineError>;

pub(crate) fn invalid(field: &str, reason: impl Into<String>) -> EngineError {
    EngineError::InvalidSetting {
        field: field.to_string(),
        reason: reason.into(),
    }
}

// === settings ===

/// When the engine commits, reports a stall, and stops.
///
/// ```
/// use doin_optimizer::{StopSettings, DEFAULT_OPTIMIZATION_PATIENCE};
///
/// let stop = StopSettings::default().with_target_performance(Some(-100.0));
/// assert_eq!(stop.optimization_patience(), DEFAULT_OPTIMIZATION_PATIENCE);
/// assert_eq!(stop.target_performance(), Some(-100.0));
/// assert!(stop.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StopSettings {
    target_performance: Option<f64>,
    optimization_patience: u64,
    min_improvement: f64,
    baseline_performance: Option<f64>,
}

impl Default for StopSettings {
    fn default() -> Self {
        StopSettings {
            target_performance: None,
            optimization_patience: DEFAULT_OPTIMIZATION_PATIENCE,
            min_improvement: DEFAULT_MIN_IMPROVEMENT,
            baseline_performance: None,
        }
    }
}

impl StopSettings {
    /// The settings of a configured domain: its `target_performance`, and
    /// `optimization_patience` from its (effective) `optimization_config`. ε stays at its
    /// default: set the chain's with [`StopSettings::with_min_improvement`].
    pub fn from_domain_config(domain: &DomainConfig) -> EngineResult<Self> {
        let config = domain.effective_optimization_config();
        let mut settings =
            StopSettings::default().with_target_performance(domain.target_performance);
        if let Some(v) = config.get("optimization_patience") {
            settings.optimization_patience = positive_integer("optimization_patience", v)?;
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Performance at which the domain is converged (default: none here, in which case the
    /// engine uses the plugin's [`DomainInfo::target_performance`]).
    pub fn with_target_performance(mut self, target: Option<f64>) -> Self {
        self.target_performance = target;
        self
    }

    /// Rounds without progress of the local best before the engine reports a stall
    /// (L2 patience; default [`DEFAULT_OPTIMIZATION_PATIENCE`]).
    pub fn with_optimization_patience(mut self, rounds: u64) -> Self {
        self.optimization_patience = rounds;
        self
    }

    /// ε: the least improvement over the champion (and over the engine's last commit) that is
    /// worth committing (default [`DEFAULT_MIN_IMPROVEMENT`]).
    pub fn with_min_improvement(mut self, epsilon: f64) -> Self {
        self.min_improvement = epsilon;
        self
    }

    /// The champion's performance before any champion is observed: the chain's
    /// `baseline_performance` of the domain (default: the plugin's
    /// [`DomainInfo::baseline_performance`]).
    pub fn with_baseline_performance(mut self, baseline: Option<f64>) -> Self {
        self.baseline_performance = baseline;
        self
    }

    pub fn target_performance(&self) -> Option<f64> {
        self.target_performance
    }

    pub fn optimization_patience(&self) -> u64 {
        self.optimization_patience
    }

    pub fn min_improvement(&self) -> f64 {
        self.min_improvement
    }

    pub fn baseline_performance(&self) -> Option<f64> {
        self.baseline_performance
    }

    /// Patience at least 1, ε finite and ≥ 0, target and baseline finite when set.
    pub fn validate(&self) -> EngineResult<()> {
        if self.optimization_patience == 0 {
            return Err(invalid("optimization_patience", "must be at least 1"));
        }
        if !self.min_improvement.is_finite() || self.min_improvement < 0.0 {
            return Err(invalid(
                "min_improvement",
                format!("must be a finite number >= 0, got {}", self.min_improvement),
            ));
        }
        for (field, value) in [
            ("target_performance", self.target_performance),
            ("baseline_performance", self.baseline_performance),
        ] {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                return Err(invalid(field, format!("must be a finite number, got {v}")));
            }
        }
        Ok(())
    }
}

fn positive_integer(field: &str, v: &Value) -> EngineResult<u64> {
    v.as_u64()
        .filter(|n| *n >= 1)
        .ok_or_else(|| invalid(field, format!("must be an integer >= 1, got {v}")))
}

/// Longest `round_interval_ms` accepted (one minute).
pub const MAX_ROUND_INTERVAL_MS: u64 = 60_000;

/// `round_interval_ms` of a domain's optimization config: the least wall time one round takes
/// in a node (0, the default, means as fast as the optimizer goes). A round of a real domain
/// trains a model for seconds; the quadratic's takes microseconds, so an experiment that
/// compares node counts paces it to give the network's latency its real weight. It also
/// throttles how much compute an operator gives a domain.
pub fn round_interval(domain: &DomainConfig) -> EngineResult<std::time::Duration> {
    let config = domain.effective_optimization_config();
    let ms = match config.get("round_interval_ms") {
        None => 0,
        Some(v) => v
            .as_u64()
            .filter(|ms| *ms <= MAX_ROUND_INTERVAL_MS)
            .ok_or_else(|| {
                invalid(
                    "round_interval_ms",
                    format!("must be an integer 0..={MAX_ROUND_INTERVAL_MS}, got {v}"),
                )
            })?,
    };
    Ok(std::time::Duration::from_millis(ms))
}

/// The seed of round `round` of a run seeded with `run_seed` (splitmix64 of both), so a run
/// reproduces from its seed and no two rounds share one.
pub fn round_seed(run_seed: u64, round: u64) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    mix(mix(run_seed) ^ round)
}

// === optimizer choice and migration ===

/// Which search an engine runs: `optimization_config.optimizer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// The domain's own optimizer ([`DomainPlugin::new_optimizer`]; the quadratic's and
    /// ts-forecast's random-step climbers). The default, so existing configs keep their
    /// behaviour; `"random_step"` and `"plugin"` both name it.
    #[serde(alias = "plugin")]
    RandomStep,
    /// The GA island over the domain's [`doin_core::plugin::Train`] capability ([`Genetic`]).
    Ga,
}

/// What the engine does with other islands' champions: `optimization_config.migration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPolicy {
    /// Inject them into the search, replacing the worst member (default).
    ReplaceWorst,
    /// Keep the search isolated: champions only raise the commit bar (and can converge the
    /// engine), which is what a control island in an experiment needs.
    None,
}

/// `optimizer` and `migration` of an optimization config; `optimizer` is `None` when absent.
fn choice(config: &Value) -> EngineResult<(Option<OptimizerKind>, MigrationPolicy)> {
    let kind = match config.get("optimizer") {
        None => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|_| {
            invalid(
                "optimizer",
                format!("must be \"ga\" or \"random_step\", got {v}"),
            )
        })?),
    };
    let migration = match config.get("migration") {
        None => MigrationPolicy::ReplaceWorst,
        Some(v) => serde_json::from_value(v.clone()).map_err(|_| {
            invalid(
                "migration",
                format!("must be \"replace_worst\" or \"none\", got {v}"),
            )
        })?,
    };
    Ok((kind, migration))
}

/// The search behind an engine.
enum Search {
    Plugin(Box<dyn Optimize>),
    Genetic(Box<Genetic>),
}

impl Search {
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> Result<Proposal, PluginError> {
        match self {
            Search::Plugin(o) => o.propose(ctx),
            Search::Genetic(g) => g.propose(ctx),
        }
    }

    fn inject(&mut self, migrant: &Migrant) -> Result<(), PluginError> {
        match self {
            Search::Plugin(o) => o.inject(migrant),
            Search::Genetic(g) => g.inject(migrant),
        }
    }
}

// === steps and stats ===

/// The outcome of one [`Engine::step`].
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A candidate that beats both the engine's last commit and the champion by at least ε:
    /// worth committing.
    Improved(Proposal),
    /// The round's candidate is not worth committing.
    NoImprovement,
    /// The domain reached its target: the engine proposes nothing more.
    Converged,
}

/// Counters and levels of an engine, for logs, the API and the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Rounds proposed (a failed proposal counts too).
    pub rounds: u64,
    /// Rounds that returned [`Step::Improved`].
    pub improvements: u64,
    /// Best claim the optimizer has made, committed or not (`None` before the first round).
    pub best_performance: Option<f64>,
    /// The bar a commit must beat: the best champion observed, or the baseline.
    pub champion_performance: f64,
    /// Consecutive rounds in which the local best did not improve by ε.
    pub stalled_rounds: u64,
    /// `stalled_rounds` reached the patience (L2): the search is stuck.
    pub stalled: bool,
    /// The local best or the champion reached the target; `step` no longer proposes.
    pub converged: bool,
    /// The GA's generations, stage, mutation scale and surrogate use (`None` for a plugin's
    /// own optimizer).
    pub ga: Option<GaStats>,
}

// === the engine ===

/// Drives one domain's optimizer (an island) round by round.
///
/// Each [`step`](Engine::step) runs one `propose` of the plugin's optimizer with a round seed
/// derived from the setup seed, then decides:
///
/// * **commit?** The claim must be finite, fit the domain's `max_params_bytes`, and beat both
///   the engine's last commit and the champion by at least ε: the chain rejects anything less
///   as no improvement, and re-committing the same candidate only burns stake.
/// * **stalled?** The local best (the best claim so far) must improve by ε within
///   `optimization_patience` rounds; otherwise [`EngineStats::stalled`] is set until it does.
///   The engine keeps searching; the node decides what a stall means (log it, slow down).
/// * **converged?** Once the local best or the champion reaches the target, `step` returns
///   [`Step::Converged`] without proposing again (after returning the candidate that reached
///   it as [`Step::Improved`], so it still gets committed). Convergence is final: build a new
///   engine to search again.
///
/// Champions of other islands arrive through [`observe_champion`](Engine::observe_champion)
/// and are injected into the plugin's optimizer (the island model).
///
/// The search is the domain's own optimizer or the GA over its `Train` capability, chosen by
/// `optimization_config.optimizer` (`"random_step"`, the default, or `"ga"`; a domain without
/// an optimizer of its own but with `Train` gets the GA).
pub struct Engine {
    info: DomainInfo,
    optimizer: Search,
    kind: OptimizerKind,
    migration: MigrationPolicy,
    limits: ResourceLimits,
    seed: u64,
    stop: StopSettings,
    target: Option<f64>,
    /// The champion handed to the optimizer in every round (the best one it accepted).
    champion: Option<Migrant>,
    champion_performance: f64,
    best_performance: Option<f64>,
    committed_performance: Option<f64>,
    rounds: u64,
    improvements: u64,
    stalled_rounds: u64,
    converged: bool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("domain", &self.info.id)
            .field("seed", &self.seed)
            .field("stop", &self.stop)
            .field("target", &self.target)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Builds the plugin's optimizer from `setup` and checks the stop settings. The target is
    /// the settings' or else the plugin's; the initial champion is the settings' baseline or
    /// else the plugin's. A baseline already at the target starts the engine converged.
    pub fn new(
        plugin: Arc<dyn DomainPlugin>,
        setup: OptimizerSetup,
        stop: StopSettings,
    ) -> EngineResult<Self> {
        stop.validate()?;
        let info = plugin.info();
        let target = stop.target_performance.or(info.target_performance);
        let baseline = stop
            .baseline_performance
            .unwrap_or(info.baseline_performance);
        if let Some(t) = target.filter(|t| !t.is_finite()) {
            return Err(invalid(
                "target_performance",
                format!("the plugin's target must be a finite number, got {t}"),
            ));
        }
        if !baseline.is_finite() {
            return Err(invalid(
                "baseline_performance",
                format!("the plugin's baseline must be a finite number, got {baseline}"),
            ));
        }
        let (kind, migration) = choice(&setup.config)?;
        let (optimizer, kind) = match kind {
            Some(OptimizerKind::Ga) => (
                Search::Genetic(genetic(plugin, &setup, &stop)?),
                OptimizerKind::Ga,
            ),
            Some(OptimizerKind::RandomStep) => (
                Search::Plugin(plugin.new_optimizer(&setup)?),
                OptimizerKind::RandomStep,
            ),
            None => match plugin.new_optimizer(&setup) {
                Ok(o) => (Search::Plugin(o), OptimizerKind::RandomStep),
                Err(PluginError::Unsupported { .. }) if plugin.trainer().is_some() => (
                    Search::Genetic(genetic(plugin, &setup, &stop)?),
                    OptimizerKind::Ga,
                ),
                Err(e) => return Err(e.into()),
            },
        };
        let converged = target.is_some_and(|t| baseline >= t);
        Ok(Engine {
            info,
            optimizer,
            kind,
            migration,
            limits: setup.limits,
            seed: setup.seed,
            stop,
            target,
            champion: None,
            champion_performance: baseline,
            best_performance: None,
            committed_performance: None,
            rounds: 0,
            improvements: 0,
            stalled_rounds: 0,
            converged,
        })
    }

    /// The domain this engine optimizes.
    pub fn domain(&self) -> &DomainInfo {
        &self.info
    }

    /// The target in force (the settings' or the plugin's).
    pub fn target_performance(&self) -> Option<f64> {
        self.target
    }

    /// The search this engine runs.
    pub fn optimizer_kind(&self) -> OptimizerKind {
        self.kind
    }

    /// How champions of other islands are used.
    pub fn migration(&self) -> MigrationPolicy {
        self.migration
    }

    /// Runs one round; CPU-bound (call it from a blocking thread).
    pub fn step(&mut self) -> EngineResult<Step> {
        if self.converged {
            return Ok(Step::Converged);
        }
        let round = self.rounds;
        self.rounds += 1;
        let ctx = ProposeContext {
            champion: self.champion.as_ref(),
            seed: round_seed(self.seed, round),
            round,
        };
        let proposal = self.optimizer.propose(&ctx)?;
        let claim = proposal.claimed_performance;
        if !claim.is_finite() {
            return Err(EngineError::NonFiniteClaim { value: claim });
        }
        let size = u64::try_from(proposal.params.len()).unwrap_or(u64::MAX);
        self.limits
            .check_params_size(size)
            .map_err(PluginError::from)?;

        let epsilon = self.stop.min_improvement;
        if beats(claim, self.best_performance, epsilon) {
            self.stalled_rounds = 0;
        } else {
            self.stalled_rounds = self.stalled_rounds.saturating_add(1);
        }
        self.best_performance = Some(self.best_performance.map_or(claim, |b| b.max(claim)));

        let bar = self
            .committed_performance
            .map_or(self.champion_performance, |c| {
                c.max(self.champion_performance)
            });
        let worth_committing = beats(claim, Some(bar), epsilon);
        // Converged on a candidate that still goes to the chain: one at the target that does
        // not beat the bar (after `resume`) cannot become champion, so the search goes on.
        if worth_committing && self.target.is_some_and(|t| claim >= t) {
            self.converged = true;
        }
        if worth_committing {
            self.committed_performance = Some(claim);
            self.improvements += 1;
            Ok(Step::Improved(proposal))
        } else if self.converged {
            Ok(Step::Converged)
        } else {
            Ok(Step::NoImprovement)
        }
    }

    /// Lets an engine that converged on its own candidate search again, when that candidate
    /// did not take the chain's champion to the target: it was rejected, expired, or fell
    /// short of `min_improvement` over a champion verified a little above its own claim. The
    /// commit bar drops back to the champion's (verified) performance, so the next candidate
    /// worth committing beats it. Nothing changes when the champion reached the target or
    /// the engine has not converged.
    pub fn resume(&mut self) {
        if !self.converged || self.target.is_some_and(|t| self.champion_performance >= t) {
            return;
        }
        self.converged = false;
        self.committed_performance = None;
    }

    /// Takes in a champion: accepted on chain, or seen revealed (optimistically). Raises the
    /// bar a commit must beat to its performance (never lowers it), converges the engine when
    /// it reaches the target, and injects it into the plugin's optimizer.
    ///
    /// The performance is trusted as given: pass an accepted champion's verified (median)
    /// performance, since a fake high claim would keep this engine from committing. When the
    /// optimizer rejects the migrant's parameters the bar is still raised (it is the chain's
    /// champion either way), and the error is returned.
    pub fn observe_champion(&mut self, migrant: Migrant) -> EngineResult<()> {
        let performance = migrant.performance;
        if !performance.is_finite() {
            return Err(EngineError::NonFiniteChampion { value: performance });
        }
        self.champion_performance = self.champion_performance.max(performance);
        if self.target.is_some_and(|t| performance >= t) {
            self.converged = true;
        }
        if self.migration == MigrationPolicy::ReplaceWorst {
            self.optimizer.inject(&migrant)?;
        }
        if self
            .champion
            .as_ref()
            .is_none_or(|c| performance >= c.performance)
        {
            self.champion = Some(migrant);
        }
        Ok(())
    }

    /// Takes in another island's revealed, not yet verified candidate (optimistic
    /// migration). Unlike [`Engine::observe_champion`] it does not raise the commit bar or
    /// converge the engine (a claim is not a verdict): the GA adds it with a provisional
    /// fitness until [`Engine::observe_champion`] confirms it or [`Engine::observe_rejected`]
    /// discards it; a plugin's own optimizer gets it through `inject` (which judges migrants
    /// by their recomputed performance, never by the claim).
    pub fn observe_revealed(&mut self, migrant: Migrant) -> EngineResult<()> {
        if !migrant.performance.is_finite() {
            return Err(EngineError::NonFiniteChampion {
                value: migrant.performance,
            });
        }
        if self.migration == MigrationPolicy::None {
            return Ok(());
        }
        match &mut self.optimizer {
            Search::Genetic(g) => g.inject_provisional(&migrant)?,
            Search::Plugin(o) => o.inject(&migrant)?,
        }
        Ok(())
    }

    /// The chain rejected the optimae with parameters `params_hash`: a provisional migrant of
    /// it leaves the population. Returns whether one was found.
    pub fn observe_rejected(&mut self, params_hash: &Hash32) -> bool {
        match &mut self.optimizer {
            Search::Genetic(g) => g.reject(params_hash),
            Search::Plugin(_) => false,
        }
    }

    /// A (hyperparameters → verified performance) record of any participant (in a node: a
    /// reveal its evaluator measured), for the GA's L3 surrogate. Ignored by a
    /// plugin's own optimizer and for non-finite performances.
    pub fn observe_record(&mut self, hyperparameters: &BTreeMap<String, f64>, performance: f64) {
        if let Search::Genetic(g) = &mut self.optimizer {
            g.add_record(hyperparameters, performance);
        }
    }

    /// Another island's report of its trainings (see [`crate::reports`]): the GA
    /// spot-checks it and adds it to its surrogate's records. Ignored under the `none`
    /// migration policy (an island that takes nothing from others) and by a plugin's own
    /// optimizer.
    pub fn observe_trials(
        &mut self,
        reporter: &AccountId,
        sequence: u64,
        trials: &[Trial],
    ) -> EngineResult<TrialsOutcome> {
        if self.migration == MigrationPolicy::None {
            return Ok(TrialsOutcome::Ignored {
                reason: "migration policy none".into(),
            });
        }
        match &mut self.optimizer {
            Search::Genetic(g) => Ok(g.observe_trials(reporter, sequence, trials)?),
            Search::Plugin(_) => Ok(TrialsOutcome::Ignored {
                reason: "the domain's own optimizer has no surrogate".into(),
            }),
        }
    }

    /// This island's trainings since the last call, to report to the others (the GA's only;
    /// none under the `none` migration policy: an island that takes nothing gives nothing).
    pub fn take_trials(&mut self) -> Vec<Trial> {
        if self.migration == MigrationPolicy::None {
            return Vec::new();
        }
        match &mut self.optimizer {
            Search::Genetic(g) => g.take_trials(),
            Search::Plugin(_) => Vec::new(),
        }
    }

    pub fn stats(&self) -> EngineStats {
        let ga = match &self.optimizer {
            Search::Genetic(g) => Some(g.stats()),
            Search::Plugin(_) => None,
        };
        EngineStats {
            ga,
            rounds: self.rounds,
            improvements: self.improvements,
            best_performance: self.best_performance,
            champion_performance: self.champion_performance,
            stalled_rounds: self.stalled_rounds,
            // The GA counts L2 patience in generations (and advances stages with it).
            stalled: ga.map_or(
                self.stalled_rounds >= self.stop.optimization_patience,
                |g| g.stalled,
            ),
            converged: self.converged,
        }
    }
}

/// The GA of `plugin`, its L2 patience (in generations) taken from the stop settings.
fn genetic(
    plugin: Arc<dyn DomainPlugin>,
    setup: &OptimizerSetup,
    stop: &StopSettings,
) -> EngineResult<Box<Genetic>> {
    let config = GaConfig::from_json(&setup.config, stop.optimization_patience)?;
    Ok(Box::new(Genetic::new(plugin, setup, config)?))
}

/// `value` improves on `bar` by at least `epsilon` (and strictly); anything beats no bar.
fn beats(value: f64, bar: Option<f64>, epsilon: f64) -> bool {
    bar.is_none_or(|bar| value > bar && value >= bar + epsilon)
}

impl OptimizerRole for Engine {
    fn step(&mut self) -> EngineResult<Step> {
        Engine::step(self)
    }

    fn observe_champion(&mut self, migrant: Migrant) -> EngineResult<()> {
        Engine::observe_champion(self, migrant)
    }

    fn observe_revealed(&mut self, migrant: Migrant) -> EngineResult<()> {
        Engine::observe_revealed(self, migrant)
    }

    fn observe_rejected(&mut self, params_hash: &Hash32) -> bool {
        Engine::observe_rejected(self, params_hash)
    }

    fn observe_record(&mut self, hyperparameters: &BTreeMap<String, f64>, performance: f64) {
        Engine::observe_record(self, hyperparameters, performance)
    }

    fn observe_trials(
        &mut self,
        reporter: &AccountId,
        sequence: u64,
        trials: &[Trial],
    ) -> EngineResult<TrialsOutcome> {
        Engine::observe_trials(self, reporter, sequence, trials)
    }

    fn take_trials(&mut self) -> Vec<Trial> {
        Engine::take_trials(self)
    }

    fn resume(&mut self) {
        Engine::resume(self)
    }

    fn stats(&self) -> EngineStats {
        Engine::stats(self)
    }
}
