//! A genetic algorithm over any domain's [`Train`] capability: one island of the island model.
//!
//! # How it searches
//!
//! Genes are the domain's hyperparameters ([`Train::search_space`]), searched in the unit
//! cube (a gene's value maps linearly, or logarithmically for `log_genes`, onto its bounds;
//! `integer_genes` are rounded, so an integer gene always decodes to an integer). The GA is
//! **steady state**: each [`propose`](Optimize::propose) trains exactly one candidate (one
//! bounded unit of work, so a round costs the same as a random-step round and the engine's
//! round counts compare at equal evaluations):
//!
//! 1. while the population is not full: a uniform random individual (unless the L3
//!    surrogate already has its records, from other islands' trial reports: then step 2's
//!    screening chooses among the offspring of the members so far);
//! 2. then an offspring: two parents by tournament, intermediate crossover (each real gene on
//!    the line through the parents, extended by 25% on both sides; integer genes from either
//!    parent), Gaussian mutation of each gene with probability `mutation_prob` and standard
//!    deviation `σ` (in unit-cube units), with `σ` adapted by the 1/5 success rule (grows
//!    after an offspring beats its better parent, shrinks otherwise: the search widens when
//!    it finds progress and narrows onto an optimum);
//! 3. the offspring replaces the worst member when it is better (so the best `elitism`
//!    members are never lost).
//!
//! With the L3 meta-optimizer on (`meta_optimizer: "gp"`), step 2 makes `meta_candidates`
//! offspring and trains only the one a Gaussian-process surrogate of (hyperparameters →
//! performance) rates best by upper confidence bound ([`crate::surrogate`]), unless the
//! surrogate's own optimum rates higher still: its predicted mean climbed from the best
//! records and the best-rated offspring (frozen genes kept, integer genes snapped, never a
//! point already trained). Where the surrogate is sure (a trend that fits), its optimum wins;
//! where it is not, the uncertainty of unexplored offspring does. A trained optimum does not
//! adapt `σ` (it has no parents). The surrogate learns from this island's trainings and from
//! other islands' ([`Genetic::observe_trials`], spot-checked: [`crate::reports`]);
//! [`Genetic::take_trials`] hands this island's to the node to report.
//!
//! # Levels of patience
//!
//! * **L1** lives inside one training run (e.g. ts-forecast's `early_patience`): the plugin's.
//! * **L2** `optimization_patience`: a *generation* is `population` evaluations; after that
//!   many generations without the population's best improving, the GA advances to its next
//!   **stage** (the original's incremental stages: `stages` lists groups of gene names; genes
//!   of later stages stay frozen at their `hyperparameters` value, or the middle of their
//!   bounds, until their stage starts). In the last stage it reports a stall and resets `σ` to
//!   its initial value to re-diversify. Unlike the original, fitnesses are not invalidated at
//!   a stage change: a newly active gene starts at the value it was frozen at, so every
//!   member's fitness is still exact and no evaluation is wasted.
//!
//! # Migration (the island model)
//!
//! A migrant's hyperparameters become a member that replaces the worst one (if it is better):
//! optimistically when another island reveals it ([`Genetic::inject_provisional`], with its
//! claim as a provisional fitness), for good when the chain accepts it ([`Optimize::inject`],
//! with the verified performance). A provisional member that is rejected
//! ([`Genetic::reject`]) or not confirmed within `provisional_rounds` drops to the bottom and
//! is the next to be replaced. A migrant is never proposed as this island's own work: the
//! proposal is always the best candidate this island trained itself.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::limits::ResourceLimits;
use doin_core::plugin::{
    params_hash, DomainPlugin, Migrant, Optimize, OptimizerSetup, PluginError, PluginResult,
    Proposal, ProposeContext, Train, TrainRequest,
};
use doin_core::trials::{Trial, MAX_TRIALS_PER_REPORT};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{invalid, EngineError, EngineResult};
use crate::reports::{self, Admission, ReportBook, TrialsOutcome, DEFAULT_TRIAL_SPOT_CHECKS};
use crate::rng::Rng;
use crate::surrogate::{self, Gp, GpChoice, Record};

/// Members of the population (default). Small, because every member costs one training run:
/// the population must fill before selection starts.
pub const DEFAULT_POPULATION: usize = 10;
/// Tournament size (the original's 3).
pub const DEFAULT_TOURNAMENT: usize = 3;
/// Probability that an offspring is a crossover of two parents rather than a copy of one.
pub const DEFAULT_CROSSOVER_PROB: f64 = 0.9;
/// Initial mutation standard deviation in unit-cube units (10% of a gene's range, the
/// original's float-gene σ).
pub const DEFAULT_MUTATION_SCALE: f64 = 0.1;
/// Best members that a migrant or an offspring never replaces.
pub const DEFAULT_ELITISM: usize = 1;
/// Rounds a revealed (unverified) migrant stays in the population without being accepted.
pub const DEFAULT_PROVISIONAL_ROUNDS: u64 = 100;
/// Offspring the surrogate chooses among, per round, when the meta-optimizer is on.
pub const DEFAULT_META_CANDIDATES: usize = 128;
/// Weight of the surrogate's uncertainty in its upper confidence bound.
pub const DEFAULT_META_KAPPA: f64 = 1.0;
/// Candidates tried within one round when training refuses one (over a limit, say).
const MAX_ATTEMPTS: usize = 8;
/// Rounds between two model selections of the surrogate (length scale and mean function: a
/// selection costs six factorizations and 24 fits, about 3.5 ms at 128 records) ...
const SELECTION_REFRESH: u64 = 8;
/// ... once it has this many records; below, a selection costs little and every round has
/// one (the choice changes fastest while records are few).
const SELECT_EVERY_ROUND_BELOW: usize = 48;
/// Starting points of the climbs to the surrogate's optimum: the best records and the
/// offspring the surrogate rates best.
const OPTIMUM_STARTS: (usize, usize) = (3, 2);
/// Bounds of the adapted mutation scale.
const SIGMA_RANGE: (f64, f64) = (1e-7, 0.5);
/// 1/5 success rule: σ grows by this factor on success and shrinks by its fourth root on
/// failure, so it is stable at a 20% success rate.
const SIGMA_UP: f64 = 1.5;

const TAG_ROUND: u64 = 0x6761_2d72_6f75_6e64; // "ga-round"
const TAG_TRAIN: u64 = 0x6761_2d74_7261_696e; // "ga-train"

/// Which L3 meta-optimizer screens offspring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetaOptimizer {
    /// No screening: every offspring is trained.
    None,
    /// A Gaussian-process surrogate (with a quadratic trend where it fits) picks the most
    /// promising of `meta_candidates` offspring and its own optimum.
    Gp,
}

/// The GA's settings, read from the domain's `optimization_config` (see `docs/optimizer.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct GaConfig {
    pub population: usize,
    pub tournament: usize,
    pub crossover_prob: f64,
    /// Per-gene mutation probability; `None`: every active gene mutates.
    pub mutation_prob: Option<f64>,
    pub mutation_scale: f64,
    /// Adapt `σ` by the 1/5 success rule (default true).
    pub adaptive: bool,
    pub elitism: usize,
    pub integer_genes: BTreeSet<String>,
    pub log_genes: BTreeSet<String>,
    /// Groups of gene names activated one after another (empty: one stage, every gene).
    pub stages: Vec<Vec<String>>,
    /// Generations a stage lasts at most (`None`: until L2 patience ends it).
    pub generations_per_stage: Option<u64>,
    /// L2 patience in generations.
    pub optimization_patience: u64,
    /// Values of frozen genes (the config's `hyperparameters`).
    pub fixed: BTreeMap<String, f64>,
    pub provisional_rounds: u64,
    pub meta: MetaOptimizer,
    pub meta_candidates: usize,
    pub meta_kappa: f64,
    /// Records before the surrogate is used (default: the population size).
    pub meta_min_records: usize,
    /// Probability of retraining one trial of another island's report (a reporter's first
    /// is always checked) before its trials join the surrogate's records.
    pub trial_spot_checks: f64,
}

impl GaConfig {
    /// The defaults, with L2 patience `patience` (generations).
    pub fn new(patience: u64) -> Self {
        GaConfig {
            population: DEFAULT_POPULATION,
            tournament: DEFAULT_TOURNAMENT,
            crossover_prob: DEFAULT_CROSSOVER_PROB,
            mutation_prob: None,
            mutation_scale: DEFAULT_MUTATION_SCALE,
            adaptive: true,
            elitism: DEFAULT_ELITISM,
            integer_genes: BTreeSet::new(),
            log_genes: BTreeSet::new(),
            stages: Vec::new(),
            generations_per_stage: None,
            optimization_patience: patience,
            fixed: BTreeMap::new(),
            provisional_rounds: DEFAULT_PROVISIONAL_ROUNDS,
            meta: MetaOptimizer::None,
            meta_candidates: DEFAULT_META_CANDIDATES,
            meta_kappa: DEFAULT_META_KAPPA,
            meta_min_records: DEFAULT_POPULATION,
            trial_spot_checks: DEFAULT_TRIAL_SPOT_CHECKS,
        }
    }

    /// Reads the GA keys of `optimization_config` over the defaults; other keys are ignored
    /// (they belong to the plugin or the engine).
    pub fn from_json(config: &Value, patience: u64) -> EngineResult<Self> {
        let empty = Map::new();
        let map = match config {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => return Err(invalid("optimization_config", "must be a JSON object")),
        };
        let mut c = GaConfig::new(patience);
        let mut min_records_given = false;
        for (key, v) in map {
            match key.as_str() {
                "population" => c.population = count(key, v, 2, 100_000)?,
                "tournament" => c.tournament = count(key, v, 1, 1_000)?,
                "crossover_prob" => c.crossover_prob = probability(key, v)?,
                "mutation_prob" => c.mutation_prob = Some(probability(key, v)?),
                "mutation_scale" => {
                    c.mutation_scale = v
                        .as_f64()
                        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 1.0)
                        .ok_or_else(|| invalid(key, format!("must be in (0, 1], got {v}")))?
                }
                "adaptive_mutation" => {
                    c.adaptive = v
                        .as_bool()
                        .ok_or_else(|| invalid(key, format!("must be true or false, got {v}")))?
                }
                "elitism" => c.elitism = count(key, v, 0, 100_000)?,
                "integer_genes" => c.integer_genes = names(key, v)?.into_iter().collect(),
                "log_genes" => c.log_genes = names(key, v)?.into_iter().collect(),
                "stages" => {
                    let groups = v.as_array().ok_or_else(|| {
                        invalid(key, "must be a list of lists of hyperparameter names")
                    })?;
                    c.stages = groups
                        .iter()
                        .map(|g| names(key, g))
                        .collect::<EngineResult<_>>()?;
                }
                "generations_per_stage" => {
                    c.generations_per_stage = Some(count(key, v, 1, usize::MAX)? as u64)
                }
                "hyperparameters" => {
                    c.fixed = serde_json::from_value(v.clone())
                        .map_err(|e| invalid(key, format!("must be {{name: number}}: {e}")))?
                }
                "provisional_rounds" => c.provisional_rounds = count(key, v, 1, usize::MAX)? as u64,
                "meta_optimizer" => {
                    c.meta = serde_json::from_value(v.clone())
                        .map_err(|_| invalid(key, format!("must be \"none\" or \"gp\", got {v}")))?
                }
                "meta_candidates" => c.meta_candidates = count(key, v, 1, 100_000)?,
                "meta_kappa" => {
                    c.meta_kappa = v
                        .as_f64()
                        .filter(|k| k.is_finite() && *k >= 0.0)
                        .ok_or_else(|| invalid(key, format!("must be a number >= 0, got {v}")))?
                }
                "meta_min_records" => {
                    c.meta_min_records = count(key, v, 2, 100_000)?;
                    min_records_given = true;
                }
                "trial_spot_checks" => c.trial_spot_checks = probability(key, v)?,
                _ => {}
            }
        }
        if !min_records_given {
            c.meta_min_records = c.population.max(2);
        }
        c.validate()?;
        Ok(c)
    }

    /// Cross-field rules: elitism below the population, tournament within it.
    pub fn validate(&self) -> EngineResult<()> {
        if self.population < 2 {
            return Err(invalid("population", "must be at least 2"));
        }
        if self.elitism >= self.population {
            return Err(invalid(
                "elitism",
                format!(
                    "{} must be below the population ({})",
                    self.elitism, self.population
                ),
            ));
        }
        if self.tournament == 0 || self.tournament > self.population {
            return Err(invalid(
                "tournament",
                format!("must be from 1 to the population ({})", self.population),
            ));
        }
        if self.optimization_patience == 0 {
            return Err(invalid("optimization_patience", "must be at least 1"));
        }
        Ok(())
    }
}

fn count(key: &str, v: &Value, low: usize, high: usize) -> EngineResult<usize> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                format!("must be an integer from {low} to {high}, got {v}"),
            )
        })
}

fn probability(key: &str, v: &Value) -> EngineResult<f64> {
    v.as_f64()
        .filter(|p| (0.0..=1.0).contains(p))
        .ok_or_else(|| invalid(key, format!("must be a probability in [0, 1], got {v}")))
}

fn names(key: &str, v: &Value) -> EngineResult<Vec<String>> {
    serde_json::from_value(v.clone()).map_err(|_| {
        invalid(
            key,
            format!("must be a list of hyperparameter names, got {v}"),
        )
    })
}

/// The [`TrainRequest::seed`] the GA of run seed `run_seed` trains a candidate with: a pure
/// function of the run seed and the candidate's decoded hyperparameters, so one candidate of
/// one run always trains (and, for a domain like ts-forecast, is claimed) on the same data.
/// Exposed so that an outside search (`doin-train-eval serve`, driven by Optuna) scores a
/// point exactly as this GA would.
pub fn candidate_seed(run_seed: u64, hyperparameters: &BTreeMap<String, f64>) -> u64 {
    let words: Vec<u64> = std::iter::once(run_seed)
        .chain(hyperparameters.values().map(|v| v.to_bits()))
        .collect();
    Rng::derive(TAG_TRAIN, &words).next_u64()
}

/// One gene of a GA's search space as the GA decodes it: the trainer's bounds after
/// narrowing, and the config's `integer_genes` and `log_genes` flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneSpec {
    pub name: String,
    pub low: f64,
    pub high: f64,
    pub integer: bool,
    pub log: bool,
}

// === genes ===

/// One hyperparameter: its bounds and how the unit cube maps onto them.
#[derive(Debug, Clone, PartialEq)]
struct Gene {
    name: String,
    low: f64,
    high: f64,
    integer: bool,
    log: bool,
}

impl Gene {
    fn decode(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        if self.high <= self.low {
            return self.low;
        }
        let v = if self.log {
            (self.low.ln() + u * (self.high.ln() - self.low.ln())).exp()
        } else {
            self.low + u * (self.high - self.low)
        };
        if self.integer {
            v.round().clamp(self.low.ceil(), self.high.floor())
        } else {
            v.clamp(self.low, self.high)
        }
    }

    fn encode(&self, v: f64) -> f64 {
        if self.high <= self.low || !v.is_finite() {
            return 0.5;
        }
        let v = v.clamp(self.low, self.high);
        let u = if self.log {
            (v.ln() - self.low.ln()) / (self.high.ln() - self.low.ln())
        } else {
            (v - self.low) / (self.high - self.low)
        };
        u.clamp(0.0, 1.0)
    }

    /// `u` moved onto a value the gene can take (integers snap).
    fn snap(&self, u: f64) -> f64 {
        if self.integer {
            self.encode(self.decode(u))
        } else {
            u.clamp(0.0, 1.0)
        }
    }

    /// The unit-cube step between two neighbouring integers (0 for real genes).
    fn integer_step(&self) -> f64 {
        if !self.integer || self.high <= self.low {
            return 0.0;
        }
        let span = self.encode(self.low.ceil() + 1.0) - self.encode(self.low.ceil());
        span.max(0.0)
    }
}

// === population ===

/// Where a member came from.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Origin {
    /// Trained by this island; its fitness is its own claim.
    Own,
    /// Revealed by another island; fitness is its unverified claim.
    Provisional { hash: Hash32, since_round: u64 },
    /// Accepted on chain; fitness is the verified performance.
    Confirmed,
    /// Rejected on chain, or never confirmed: the next to be replaced.
    Discarded,
}

#[derive(Debug, Clone, PartialEq)]
struct Member {
    unit: Vec<f64>,
    fitness: f64,
    origin: Origin,
}

/// The GA's state at a glance, for logs and summaries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GaStats {
    /// Candidates trained (successfully).
    pub evaluations: u64,
    /// Completed generations (`population` evaluations each).
    pub generation: u64,
    /// Current stage (0-based) and the number of stages.
    pub stage: usize,
    pub stages: usize,
    /// Current mutation scale (unit-cube standard deviation).
    pub mutation_scale: f64,
    pub population: usize,
    /// Generations without progress of the population's best.
    pub stall_generations: u64,
    /// L2 patience exhausted in the last stage.
    pub stalled: bool,
    /// Rounds in which the surrogate chose the candidate.
    pub surrogate_rounds: u64,
    /// Of those, rounds in which the candidate was the surrogate's own optimum (not an
    /// offspring).
    pub surrogate_optima: u64,
    /// Records the surrogate learns from (this island's and other islands').
    pub records: usize,
    /// Of those, records other islands reported.
    pub reported_records: usize,
    /// Reports of other islands retrained by a spot check, and those that did not reproduce.
    pub spot_checks: u64,
    pub refuted_reporters: u64,
    /// Members migrated in (provisionally or for good).
    pub migrants_in: u64,
    /// Members revealed by others and not yet accepted.
    pub provisional: usize,
}

/// The GA island (see the module docs).
pub struct Genetic {
    plugin: Arc<dyn DomainPlugin>,
    genes: Vec<Gene>,
    config: GaConfig,
    limits: ResourceLimits,
    seed: u64,
    population: Vec<Member>,
    /// Unit values of genes while frozen.
    frozen: Vec<f64>,
    /// Gene indices per stage (one stage with every gene when no stages are configured).
    stages: Vec<Vec<usize>>,
    stage: usize,
    active: Vec<bool>,
    sigma: f64,
    best_own: Option<Proposal>,
    evaluations: u64,
    rounds: u64,
    generation: u64,
    generation_evals: usize,
    generation_start_best: f64,
    stage_generations: u64,
    stall_generations: u64,
    stalled: bool,
    records: Vec<Record>,
    gp_choice: Option<GpChoice>,
    fits_since_selection: u64,
    surrogate_rounds: u64,
    surrogate_optima: u64,
    migrants_in: u64,
    /// Other islands' trainings (see [`crate::reports`]).
    reports: ReportBook,
    spot_checks: u64,
    refuted_reporters: u64,
    /// This island's trainings not yet taken for a report (the latest
    /// [`MAX_TRIALS_PER_REPORT`]).
    outbox: VecDeque<Trial>,
}

impl fmt::Debug for Genetic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Genetic")
            .field("genes", &self.genes.len())
            .field("seed", &self.seed)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Genetic {
    /// A GA over `plugin`'s [`Train`] capability. The search space is the trainer's, narrowed
    /// by `setup.bounds` and the config's `param_bounds` (by exact name).
    pub fn new(
        plugin: Arc<dyn DomainPlugin>,
        setup: &OptimizerSetup,
        config: GaConfig,
    ) -> EngineResult<Self> {
        config.validate()?;
        let trainer = plugin
            .trainer()
            .ok_or(EngineError::Plugin(PluginError::Unsupported {
                capability: "trainer (the GA needs Train)",
            }))?;
        let mut space = trainer.search_space();
        space.validate().map_err(PluginError::from)?;
        let mut narrowing = vec![&setup.bounds];
        let own: Option<doin_core::limits::ParamBounds> = match setup.config.get("param_bounds") {
            None => None,
            Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                invalid(
                    "param_bounds",
                    format!("must be {{name: [low, high]}}: {e}"),
                )
            })?),
        };
        if let Some(own) = &own {
            narrowing.push(own);
        }
        for bounds in narrowing {
            for (name, &(low, high)) in &bounds.0 {
                if let Some(b) = space.0.get_mut(name) {
                    let narrowed = (b.0.max(low), b.1.min(high));
                    if !low.is_finite() || !high.is_finite() || narrowed.0 > narrowed.1 {
                        return Err(invalid(
                            &format!("param_bounds.{name}"),
                            format!("[{low}, {high}] does not overlap [{}, {}]", b.0, b.1),
                        ));
                    }
                    *b = narrowed;
                }
            }
        }
        if space.0.is_empty() {
            return Err(invalid(
                "search_space",
                "the domain declares no hyperparameters",
            ));
        }
        let known = |field: &str, names: Vec<&String>| -> EngineResult<()> {
            match names.into_iter().find(|n| !space.0.contains_key(*n)) {
                None => Ok(()),
                Some(n) => Err(invalid(
                    field,
                    format!(
                        "{n:?} is not in the search space ({})",
                        join_names(&space.0)
                    ),
                )),
            }
        };
        known("integer_genes", config.integer_genes.iter().collect())?;
        known("log_genes", config.log_genes.iter().collect())?;
        known("stages", config.stages.iter().flatten().collect())?;
        let genes: Vec<Gene> = space
            .0
            .iter()
            .map(|(name, &(low, high))| Gene {
                name: name.clone(),
                low,
                high,
                integer: config.integer_genes.contains(name),
                log: config.log_genes.contains(name),
            })
            .collect();
        for g in &genes {
            if g.log && g.low <= 0.0 {
                return Err(invalid(
                    "log_genes",
                    format!(
                        "{} needs bounds above 0, got [{}, {}]",
                        g.name, g.low, g.high
                    ),
                ));
            }
            if g.integer && g.low.ceil() > g.high.floor() {
                return Err(invalid(
                    "integer_genes",
                    format!("[{}, {}] of {} holds no integer", g.low, g.high, g.name),
                ));
            }
        }
        let frozen: Vec<f64> = genes
            .iter()
            .map(|g| g.snap(config.fixed.get(&g.name).map_or(0.5, |&v| g.encode(v))))
            .collect();
        let index_of = |name: &String| genes.iter().position(|g| &g.name == name);
        let stages: Vec<Vec<usize>> = if config.stages.is_empty() {
            vec![(0..genes.len()).collect()]
        } else {
            config
                .stages
                .iter()
                .map(|group| group.iter().filter_map(index_of).collect())
                .collect()
        };
        let mut ga = Genetic {
            plugin,
            sigma: config.mutation_scale,
            active: vec![false; genes.len()],
            genes,
            limits: setup.limits.clone(),
            seed: setup.seed,
            population: Vec::new(),
            frozen,
            stages,
            stage: 0,
            best_own: None,
            evaluations: 0,
            rounds: 0,
            generation: 0,
            generation_evals: 0,
            generation_start_best: f64::NEG_INFINITY,
            stage_generations: 0,
            stall_generations: 0,
            stalled: false,
            records: Vec::new(),
            gp_choice: None,
            fits_since_selection: 0,
            surrogate_rounds: 0,
            surrogate_optima: 0,
            migrants_in: 0,
            reports: ReportBook::default(),
            spot_checks: 0,
            refuted_reporters: 0,
            outbox: VecDeque::new(),
            config,
        };
        ga.activate_stage(0);
        Ok(ga)
    }

    /// The genes this GA searches, in its order (the search space's names, sorted).
    pub fn search_space(&self) -> Vec<GeneSpec> {
        self.genes
            .iter()
            .map(|g| GeneSpec {
                name: g.name.clone(),
                low: g.low,
                high: g.high,
                integer: g.integer,
                log: g.log,
            })
            .collect()
    }

    fn trainer(&self) -> PluginResult<&dyn Train> {
        self.plugin.trainer().ok_or(PluginError::Unsupported {
            capability: "trainer",
        })
    }

    fn activate_stage(&mut self, stage: usize) {
        self.stage = stage;
        for group in self.stages.iter().take(stage + 1) {
            for &i in group {
                if let Some(a) = self.active.get_mut(i) {
                    *a = true;
                }
            }
        }
    }

    /// Counters and levels.
    pub fn stats(&self) -> GaStats {
        GaStats {
            evaluations: self.evaluations,
            generation: self.generation,
            stage: self.stage,
            stages: self.stages.len(),
            mutation_scale: self.sigma,
            population: self.population.len(),
            stall_generations: self.stall_generations,
            stalled: self.stalled,
            surrogate_rounds: self.surrogate_rounds,
            surrogate_optima: self.surrogate_optima,
            records: self.records.len() + self.reports.len(),
            reported_records: self.reports.len(),
            spot_checks: self.spot_checks,
            refuted_reporters: self.refuted_reporters,
            migrants_in: self.migrants_in,
            provisional: self
                .population
                .iter()
                .filter(|m| matches!(m.origin, Origin::Provisional { .. }))
                .count(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &GaConfig {
        &self.config
    }

    /// Fitnesses of the population, best first (for tests and summaries).
    pub fn fitnesses(&self) -> Vec<f64> {
        let mut f: Vec<f64> = self.population.iter().map(|m| m.fitness).collect();
        f.sort_by(|a, b| b.total_cmp(a));
        f
    }

    /// The hyperparameters a unit-cube point decodes to.
    fn decode(&self, unit: &[f64]) -> BTreeMap<String, f64> {
        self.genes
            .iter()
            .zip(unit)
            .map(|(g, &u)| (g.name.clone(), g.decode(u)))
            .collect()
    }

    /// A migrant's hyperparameters in the unit cube; unknown names are ignored and missing
    /// ones take the frozen value. `None` when it names no gene at all.
    fn encode(&self, hyperparameters: &BTreeMap<String, f64>) -> Option<Vec<f64>> {
        let mut any = false;
        let unit = self
            .genes
            .iter()
            .zip(&self.frozen)
            .map(|(g, &frozen)| match hyperparameters.get(&g.name) {
                Some(&v) if v.is_finite() => {
                    any = true;
                    g.snap(g.encode(v))
                }
                _ => frozen,
            })
            .collect();
        any.then_some(unit)
    }

    /// Adds a (hyperparameters → performance) record to the surrogate's data: another
    /// participant's verified result, or a rejected one (with its measured performance).
    pub fn add_record(&mut self, hyperparameters: &BTreeMap<String, f64>, performance: f64) {
        if !performance.is_finite() {
            return;
        }
        if let Some(unit) = self.encode(hyperparameters) {
            self.records.push(Record { unit, performance });
            surrogate::trim(&mut self.records);
        }
    }

    /// Optimistic migration: a candidate another island revealed, with its claim as a
    /// provisional fitness until [`Optimize::inject`] confirms it or [`Genetic::reject`]
    /// discards it (matched by parameters hash).
    pub fn inject_provisional(&mut self, migrant: &Migrant) -> PluginResult<()> {
        let origin = Origin::Provisional {
            hash: params_hash(&migrant.params),
            since_round: self.rounds,
        };
        self.migrate(migrant, origin)
    }

    /// The chain rejected the candidate with these parameters: a provisional member of it is
    /// discarded (it becomes the next to be replaced). Returns whether one was found.
    pub fn reject(&mut self, hash: &Hash32) -> bool {
        let mut found = false;
        for m in &mut self.population {
            if matches!(m.origin, Origin::Provisional { hash: h, .. } if &h == hash) {
                m.origin = Origin::Discarded;
                m.fitness = f64::NEG_INFINITY;
                found = true;
            }
        }
        found
    }

    /// Another island's report of its trainings (see [`crate::reports`]): spot-checked when
    /// drawn (one retraining, with the trial's own seed), then added to the surrogate's
    /// records. An error is a training that failed for a reason of this node's (not the
    /// trial's): the report is not used and the reporter not blamed.
    pub fn observe_trials(
        &mut self,
        reporter: &AccountId,
        sequence: u64,
        trials: &[Trial],
    ) -> PluginResult<TrialsOutcome> {
        if self.config.meta != MetaOptimizer::Gp {
            // Nothing would learn from them: not worth a spot check's training.
            return Ok(TrialsOutcome::Ignored {
                reason: "no meta-optimizer".into(),
            });
        }
        let checked = match self.reports.admit(
            reporter,
            sequence,
            trials,
            self.seed,
            self.config.trial_spot_checks,
        ) {
            Admission::Skip(outcome) => return Ok(outcome),
            Admission::Add => false,
            Admission::Check(i) => {
                let trial = &trials[i];
                self.spot_checks += 1;
                let request = TrainRequest {
                    hyperparameters: &trial.hyperparameters,
                    seed: trial.seed,
                    limits: &self.limits,
                };
                let refuted = match self.trainer()?.train(&request) {
                    Ok(p) if reports::reproduces(p.claimed_performance, trial.performance) => None,
                    Ok(p) => Some(format!(
                        "trial {i} retrained to {} where {} was reported",
                        p.claimed_performance, trial.performance
                    )),
                    Err(e)
                        if e.blames_params() || matches!(e, PluginError::InvalidInput { .. }) =>
                    {
                        Some(format!("trial {i} cannot be trained: {e}"))
                    }
                    Err(e) => return Err(e),
                };
                if let Some(reason) = refuted {
                    self.reports.refute(reporter);
                    self.refuted_reporters += 1;
                    return Ok(TrialsOutcome::Refuted { reason });
                }
                self.reports.passed(reporter);
                true
            }
        };
        let records: Vec<Record> = trials
            .iter()
            .filter(|t| t.performance.is_finite())
            .filter_map(|t| {
                self.encode(&t.hyperparameters).map(|unit| Record {
                    unit,
                    performance: t.performance,
                })
            })
            .collect();
        let adopted = records.len();
        self.reports.add(reporter, records);
        Ok(TrialsOutcome::Adopted {
            records: adopted,
            checked,
        })
    }

    /// This island's trainings since the last call (the latest [`MAX_TRIALS_PER_REPORT`]),
    /// for a report to the other islands.
    pub fn take_trials(&mut self) -> Vec<Trial> {
        self.outbox.drain(..).collect()
    }

    fn migrate(&mut self, migrant: &Migrant, origin: Origin) -> PluginResult<()> {
        if !migrant.performance.is_finite() {
            return Err(PluginError::NonFiniteScore {
                value: migrant.performance,
            });
        }
        let hash = params_hash(&migrant.params);
        // A confirmation of a provisional member: its fitness becomes the verified one.
        if origin == Origin::Confirmed {
            if let Some(m) = self
                .population
                .iter_mut()
                .find(|m| matches!(m.origin, Origin::Provisional { hash: h, .. } if h == hash))
            {
                m.fitness = migrant.performance;
                m.origin = Origin::Confirmed;
                return Ok(());
            }
        }
        let unit =
            self.encode(&migrant.hyperparameters)
                .ok_or_else(|| PluginError::InvalidInput {
                    reason: format!(
                    "the migrant carries no hyperparameter of the GA's search space ({}), so it \
                     cannot join the population",
                    join_names(&self.genes.iter().map(|g| (g.name.clone(), ())).collect())
                ),
                })?;
        let member = Member {
            unit,
            fitness: migrant.performance,
            origin,
        };
        // The same genes already present: keep the better knowledge of them.
        if let Some(m) = self.population.iter_mut().find(|m| m.unit == member.unit) {
            if member.fitness > m.fitness || origin == Origin::Confirmed {
                *m = member;
            }
            return Ok(());
        }
        if self.population.len() < self.config.population {
            self.population.push(member);
            self.migrants_in += 1;
        } else if let Some(worst) = self.worst_replaceable() {
            if member.fitness > self.population[worst].fitness {
                self.population[worst] = member;
                self.migrants_in += 1;
            }
        }
        Ok(())
    }

    /// Index of the worst member outside the `elitism` best.
    fn worst_replaceable(&self) -> Option<usize> {
        let mut order: Vec<usize> = (0..self.population.len()).collect();
        order.sort_by(|&a, &b| {
            self.population[b]
                .fitness
                .total_cmp(&self.population[a].fitness)
        });
        order
            .get(self.config.elitism..)
            .and_then(|rest| rest.last().copied())
    }

    fn population_best(&self) -> f64 {
        self.population
            .iter()
            .map(|m| m.fitness)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    fn tournament(&self, rng: &mut Rng) -> usize {
        let mut best = rng.index(self.population.len());
        for _ in 1..self.config.tournament {
            let c = rng.index(self.population.len());
            if self.population[c].fitness > self.population[best].fitness {
                best = c;
            }
        }
        best
    }

    fn random_individual(&self, rng: &mut Rng) -> Vec<f64> {
        self.genes
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if self.active[i] {
                    g.snap(rng.unit())
                } else {
                    self.frozen[i]
                }
            })
            .collect()
    }

    /// One offspring and the fitness of its better parent.
    fn offspring(&self, rng: &mut Rng) -> (Vec<f64>, f64) {
        let a = self.tournament(rng);
        let b = self.tournament(rng);
        let (pa, pb) = (&self.population[a], &self.population[b]);
        let parent_best = pa.fitness.max(pb.fitness);
        let cross = rng.chance(self.config.crossover_prob);
        let n_active = self.active.iter().filter(|a| **a).count().max(1);
        let mutation_prob = self.config.mutation_prob.unwrap_or(1.0);
        let mut child = Vec::with_capacity(self.genes.len());
        let mut mutated_any = false;
        for (i, g) in self.genes.iter().enumerate() {
            if !self.active[i] {
                child.push(self.frozen[i]);
                continue;
            }
            let (ua, ub) = (pa.unit[i], pb.unit[i]);
            let mut u = if !cross {
                ua
            } else if g.integer {
                if rng.chance(0.5) {
                    ua
                } else {
                    ub
                }
            } else {
                ua + rng.uniform(-0.25, 1.25) * (ub - ua)
            };
            if rng.chance(mutation_prob) {
                mutated_any = true;
                let before = g.snap(u);
                u = g.snap(u + self.sigma * rng.normal());
                // An integer gene whose step rounds away still moves by one.
                if g.integer && u == before {
                    let step = g.integer_step();
                    u = g.snap(if rng.chance(0.5) { u + step } else { u - step });
                }
            }
            child.push(g.snap(reflect(u)));
        }
        // With a per-gene probability, make sure an uncrossed copy still changes.
        if !mutated_any && !cross {
            let pick = rng.index(n_active);
            if let Some(i) = (0..self.genes.len()).filter(|&i| self.active[i]).nth(pick) {
                let g = &self.genes[i];
                child[i] = g.snap(reflect(child[i] + self.sigma * rng.normal()));
            }
        }
        (child, parent_best)
    }

    /// The surrogate is on and has its minimum of records (this island's and reported).
    fn surrogate_ready(&self) -> bool {
        self.config.meta == MetaOptimizer::Gp
            && self.records.len() + self.reports.len() >= self.config.meta_min_records
    }

    /// What the surrogate learns from: this island's records and other islands' reported
    /// ones.
    fn surrogate_records(&self) -> Vec<Record> {
        self.records
            .iter()
            .chain(self.reports.records())
            .cloned()
            .collect()
    }

    /// The candidate the surrogate rates best by upper confidence bound among
    /// `meta_candidates` offspring and the surrogate's own optimum (unless that is a trained
    /// point), with the fitness of its better parent (none for the optimum: it does not adapt
    /// `σ`); `None` when the surrogate has too little data.
    fn screened_offspring(&mut self, rng: &mut Rng) -> Option<(Vec<f64>, f64)> {
        if !self.surrogate_ready() {
            return None;
        }
        let records = self.surrogate_records();
        let select = self.gp_choice.is_none()
            || records.len() < SELECT_EVERY_ROUND_BELOW
            || self.fits_since_selection >= SELECTION_REFRESH;
        let refit = if select {
            None
        } else {
            self.fits_since_selection += 1;
            self.gp_choice
                .and_then(|choice| Gp::fit_with(&records, choice))
        };
        let gp = match refit {
            Some(gp) => gp,
            None => {
                let gp = Gp::fit(&records)?;
                self.gp_choice = Some(gp.choice());
                self.fits_since_selection = 0;
                gp
            }
        };
        let kappa = self.config.meta_kappa;
        let score = |u: &[f64]| {
            let (mean, sd) = gp.predict(u);
            mean + kappa * sd
        };
        // The best offspring (score, genes, better parent's fitness), best first.
        let keep = OPTIMUM_STARTS.1.max(1);
        let mut top: Vec<(f64, Vec<f64>, f64)> = Vec::with_capacity(keep + 1);
        for _ in 0..self.config.meta_candidates {
            let (child, parent) = self.offspring(rng);
            let s = score(&child);
            if top.len() < keep || top.last().is_some_and(|(worst, _, _)| s > *worst) {
                let at = top.iter().position(|(t, _, _)| s > *t).unwrap_or(top.len());
                top.insert(at, (s, child, parent));
                top.truncate(keep);
            }
        }
        self.surrogate_rounds += 1;
        // The surrogate's optimum: its mean climbed from the best records and offspring,
        // frozen genes kept, integer genes snapped, never a point already trained.
        let mut by_performance: Vec<&Record> = records.iter().collect();
        by_performance.sort_by(|a, b| b.performance.total_cmp(&a.performance));
        let starts = by_performance
            .iter()
            .take(OPTIMUM_STARTS.0)
            .map(|r| {
                r.unit
                    .iter()
                    .zip(&self.active)
                    .zip(&self.frozen)
                    .map(|((&u, &active), &frozen)| if active { u } else { frozen })
                    .collect::<Vec<f64>>()
            })
            .chain(top.iter().take(OPTIMUM_STARTS.1).map(|(_, u, _)| u.clone()));
        let mut optimum: Option<(f64, Vec<f64>)> = None;
        for start in starts {
            let climbed: Vec<f64> = gp
                .ascend(&start, &self.active)
                .iter()
                .zip(&self.genes)
                .map(|(&u, g)| g.snap(u))
                .collect();
            if records.iter().any(|r| r.unit == climbed) {
                continue;
            }
            let s = score(&climbed);
            if optimum.as_ref().is_none_or(|(best, _)| s > *best) {
                optimum = Some((s, climbed));
            }
        }
        let (best_score, child, parent) = top.into_iter().next()?;
        match optimum {
            Some((s, u)) if s > best_score => {
                self.surrogate_optima += 1;
                Some((u, f64::NEG_INFINITY))
            }
            _ => Some((child, parent)),
        }
    }

    fn training_seed(&self, hyperparameters: &BTreeMap<String, f64>) -> u64 {
        candidate_seed(self.seed, hyperparameters)
    }

    /// Generation bookkeeping after one evaluation: L2 patience and stage advance.
    fn end_of_evaluation(&mut self) {
        self.generation_evals += 1;
        if self.generation_evals < self.config.population {
            return;
        }
        self.generation_evals = 0;
        self.generation += 1;
        self.stage_generations += 1;
        let best = self.population_best();
        if best > self.generation_start_best {
            self.stall_generations = 0;
            self.stalled = false;
        } else {
            self.stall_generations += 1;
        }
        self.generation_start_best = best;
        let budget_spent = self
            .config
            .generations_per_stage
            .is_some_and(|g| self.stage_generations >= g);
        let patience_spent = self.stall_generations >= self.config.optimization_patience;
        if (budget_spent || patience_spent) && self.stage + 1 < self.stages.len() {
            self.activate_stage(self.stage + 1);
            self.stage_generations = 0;
            self.stall_generations = 0;
            self.sigma = self.sigma.max(self.config.mutation_scale);
        } else if patience_spent {
            // Last stage: report the stall and re-diversify.
            self.stalled = true;
            self.stall_generations = 0;
            self.sigma = self.sigma.max(self.config.mutation_scale);
        }
    }
}

/// Folds a unit value that left `[0, 1]` back in (a mirror at each face), so mutation near
/// a bound does not pile candidates onto the bound.
fn reflect(u: f64) -> f64 {
    if !u.is_finite() {
        return 0.5;
    }
    let m = u.rem_euclid(2.0);
    if m > 1.0 {
        2.0 - m
    } else {
        m
    }
}

fn join_names<V>(map: &BTreeMap<String, V>) -> String {
    map.keys().cloned().collect::<Vec<_>>().join(", ")
}

impl Optimize for Genetic {
    /// Trains one candidate (a random one while the population fills, an offspring after)
    /// and proposes the best candidate this island has trained.
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal> {
        let round = self.rounds;
        self.rounds += 1;
        let mut rng = Rng::derive(TAG_ROUND, &[self.seed, ctx.seed, ctx.round]);
        let horizon = self.config.provisional_rounds;
        for m in &mut self.population {
            if let Origin::Provisional { since_round, .. } = m.origin {
                if round.saturating_sub(since_round) >= horizon {
                    m.origin = Origin::Discarded;
                    m.fitness = f64::NEG_INFINITY;
                }
            }
        }

        let mut last_error = None;
        let mut outcome = None;
        // After a refusal, the round's later attempts are plain offspring: the surrogate
        // would pick the same point, or one next to it, again.
        let mut refused = false;
        for _ in 0..MAX_ATTEMPTS {
            // The population fills with random members while the surrogate has too few
            // records; with other islands' reports it may have enough before the population
            // is full, and then it chooses (from the offspring of the members so far).
            let filling = self.population.len() < self.config.population
                && (self.population.is_empty() || !self.surrogate_ready());
            let (unit, parent_best, screened) = if filling {
                (self.random_individual(&mut rng), f64::NEG_INFINITY, false)
            } else if let Some((u, p)) = if refused {
                None
            } else {
                self.screened_offspring(&mut rng)
            } {
                (u, p, true)
            } else {
                let (u, p) = self.offspring(&mut rng);
                (u, p, false)
            };
            let hyperparameters = self.decode(&unit);
            let seed = self.training_seed(&hyperparameters);
            let request = TrainRequest {
                hyperparameters: &hyperparameters,
                seed,
                limits: &self.limits,
            };
            match self.trainer()?.train(&request) {
                Ok(p) if p.claimed_performance.is_finite() => {
                    let trial = Trial {
                        hyperparameters,
                        seed,
                        performance: p.claimed_performance,
                    };
                    outcome = Some((unit, parent_best, screened, p, trial));
                    break;
                }
                Ok(p) => {
                    refused = true;
                    last_error = Some(PluginError::NonFiniteScore {
                        value: p.claimed_performance,
                    })
                }
                // The candidate itself is unacceptable (over a limit, say): try another.
                Err(e) if e.blames_params() || matches!(e, PluginError::InvalidInput { .. }) => {
                    refused = true;
                    last_error = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        let Some((unit, parent_best, screened, proposal, trial)) = outcome else {
            return Err(last_error.unwrap_or_else(|| {
                PluginError::Failed("the GA produced no trainable candidate".into())
            }));
        };

        let fitness = proposal.claimed_performance;
        self.evaluations += 1;
        if self.outbox.len() == MAX_TRIALS_PER_REPORT {
            self.outbox.pop_front();
        }
        self.outbox.push_back(trial);
        self.records.push(Record {
            unit: unit.clone(),
            performance: fitness,
        });
        surrogate::trim(&mut self.records);
        if self.config.adaptive && parent_best.is_finite() {
            if fitness > parent_best {
                self.sigma *= SIGMA_UP;
            } else {
                self.sigma /= SIGMA_UP.powf(0.25);
            }
            self.sigma = self.sigma.clamp(SIGMA_RANGE.0, SIGMA_RANGE.1);
        }
        let member = Member {
            unit,
            fitness,
            origin: Origin::Own,
        };
        if self.population.len() < self.config.population {
            self.population.push(member);
        } else if let Some(worst) = self.worst_replaceable() {
            if fitness > self.population[worst].fitness {
                self.population[worst] = member;
            }
        }
        if self
            .best_own
            .as_ref()
            .is_none_or(|b| fitness > b.claimed_performance)
        {
            self.best_own = Some(proposal);
        }
        self.end_of_evaluation();

        let stats = self.stats();
        let best = self
            .best_own
            .clone()
            .ok_or_else(|| PluginError::Failed("no candidate trained yet".into()))?;
        let mut metrics = best.metrics.clone();
        metrics.extend([
            ("round".to_string(), ctx.round as f64),
            ("candidate_performance".to_string(), fitness),
            ("generation".to_string(), stats.generation as f64),
            ("stage".to_string(), stats.stage as f64),
            ("mutation_scale".to_string(), stats.mutation_scale),
            ("surrogate".to_string(), f64::from(u8::from(screened))),
        ]);
        Ok(Proposal { metrics, ..best })
    }

    /// A champion accepted on chain (verified performance): confirms its provisional member,
    /// or joins the population in place of the worst member when it is better.
    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
        self.migrate(migrant, Origin::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genes_decode_into_bounds_and_integers_snap() {
        let g = Gene {
            name: "w".into(),
            low: 2.0,
            high: 9.0,
            integer: true,
            log: false,
        };
        for u in [0.0, 0.13, 0.5, 0.99, 1.0] {
            let v = g.decode(u);
            assert_eq!(v, v.round());
            assert!((2.0..=9.0).contains(&v));
            assert_eq!(g.decode(g.snap(u)), v);
        }
        assert!(g.integer_step() > 0.0);
        let l = Gene {
            name: "lr".into(),
            low: 1e-4,
            high: 1e-1,
            integer: false,
            log: true,
        };
        assert!((l.decode(0.5) - 10f64.powf(-2.5)).abs() < 1e-9);
        assert!((l.encode(l.decode(0.3)) - 0.3).abs() < 1e-12);
        assert!((reflect(1.2) - 0.8).abs() < 1e-12);
        assert!((reflect(-0.1) - 0.1).abs() < 1e-12);
        assert_eq!(reflect(f64::NAN), 0.5);
    }

    #[test]
    fn config_keys_are_read_and_checked() {
        let c = GaConfig::from_json(
            &serde_json::json!({"population": 6, "elitism": 2, "meta_optimizer": "gp",
                "stages": [["a"], ["b"]], "integer_genes": ["a"], "step_size": 0.5}),
            3,
        )
        .unwrap();
        assert_eq!(c.population, 6);
        assert_eq!(c.meta, MetaOptimizer::Gp);
        assert_eq!(c.meta_min_records, 6);
        assert_eq!(c.stages.len(), 2);
        for (bad, field) in [
            (serde_json::json!({"population": 1}), "population"),
            (
                serde_json::json!({"population": 4, "elitism": 4}),
                "elitism",
            ),
            (serde_json::json!({"crossover_prob": 2}), "crossover_prob"),
            (
                serde_json::json!({"meta_optimizer": "nn"}),
                "meta_optimizer",
            ),
            (serde_json::json!({"stages": "a"}), "stages"),
        ] {
            let err = GaConfig::from_json(&bad, 3).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
