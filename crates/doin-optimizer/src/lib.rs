//! # doin-optimizer
//!
//! The optimizer side of a DOIN node: an [`Engine`] drives one domain plugin's optimizer (one
//! island of the island model) round by round and decides what is worth committing.
//!
//! # Bird's eye view
//!
//! ```text
//!            observe_champion(migrant)            step()  (on a blocking thread)
//!   node ───────────────────────────────► Engine ◄────────────────────────────── node
//!                                           │  propose(ctx{champion, round seed})
//!                                           ▼
//!                                  plugin's Optimize (e.g. the quadratic's random-step climber)
//!                                           │  Proposal {params, claim}
//!                                           ▼
//!              Step::Improved(proposal) → commit │ NoImprovement │ Converged → stop proposing
//! ```
//!
//! The plugin owns the search (how candidates are made and decoded); the engine owns what is
//! protocol: round seeds derived from the run seed (a run reproduces from its seed), the
//! commit rule (beat the champion and the last commit by ε, within the domain's size limit),
//! L2 patience (`optimization_patience` rounds without progress is a stall), the stop
//! criterion (`target_performance`: a converged domain stops consuming compute) and
//! migration (champions of other islands are injected into the plugin's optimizer). Islands
//! also exchange their trainings as trial reports ([`reports`]), which the GA's L3 surrogate
//! learns from after spot-checking them.
//!
//! The node composes the engine as a `Box<dyn OptimizerRole>`, so that tests and other
//! engines (a GA over a plugin's `Train` capability, an external process) can stand in.
//!
//! Outside a node, [`attach`] (feature `attach`, in the default `cli`) runs an engine as a
//! remote worker of a node: it commits and reveals through the node's HTTP API with its own
//! key (`doin-optimizer --attach URL --key FILE`).
//!
//! ```
//! use std::sync::Arc;
//! use doin_core::plugin::{DomainPlugin, OptimizerSetup, PluginSetup};
//! use doin_core::params::DomainId;
//! use doin_optimizer::{Engine, OptimizerRole, Step, StopSettings};
//!
//! let setup = PluginSetup::new(DomainId::new("quadratic").unwrap());
//! let plugin: Arc<dyn DomainPlugin> = doin_plugins::quadratic::factory(&setup).unwrap();
//! let stop = StopSettings::default().with_target_performance(Some(-100.0));
//! let engine = Engine::new(plugin, OptimizerSetup { seed: 7, ..Default::default() }, stop).unwrap();
//! let mut role: Box<dyn OptimizerRole> = Box::new(engine);
//! while role.step().unwrap() != Step::Converged {}
//! assert!(role.stats().best_performance.unwrap() >= -100.0);
//! ```

#[cfg(feature = "attach")]
pub mod attach;
mod engine;
pub mod ga;
pub mod reports;
mod rng;
pub mod surrogate;

pub use engine::{
    round_interval, round_seed, Engine, EngineError, EngineResult, EngineStats, MigrationPolicy,
    OptimizerKind, Step, StopSettings, DEFAULT_MIN_IMPROVEMENT, DEFAULT_OPTIMIZATION_PATIENCE,
};
pub use ga::{GaConfig, GaStats, Genetic, MetaOptimizer};
pub use reports::TrialsOutcome;

use std::collections::BTreeMap;

use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::plugin::Migrant;
use doin_core::trials::Trial;

/// What the node needs from an optimizer: implemented by [`Engine`], composed by the node as
/// `Box<dyn OptimizerRole>` and driven from one thread at a time.
pub trait OptimizerRole: Send {
    /// One round of search: CPU-bound, so call it from a blocking thread.
    fn step(&mut self) -> EngineResult<Step>;

    /// A champion accepted on chain (its verified performance).
    fn observe_champion(&mut self, migrant: Migrant) -> EngineResult<()>;

    /// A candidate another island revealed, not yet verified (optimistic migration). The
    /// default ignores it.
    fn observe_revealed(&mut self, migrant: Migrant) -> EngineResult<()> {
        let _ = migrant;
        Ok(())
    }

    /// The optimae with parameters `params_hash` was rejected; returns whether a provisional
    /// migrant of it was dropped. The default does nothing.
    fn observe_rejected(&mut self, params_hash: &Hash32) -> bool {
        let _ = params_hash;
        false
    }

    /// A (hyperparameters → verified performance) record for the L3 meta-optimizer. The
    /// default ignores it.
    fn observe_record(&mut self, hyperparameters: &BTreeMap<String, f64>, performance: f64) {
        let _ = (hyperparameters, performance);
    }

    /// Another island's report of its trainings, for the L3 surrogate (see
    /// [`reports`]). The default ignores it.
    fn observe_trials(
        &mut self,
        reporter: &AccountId,
        sequence: u64,
        trials: &[Trial],
    ) -> EngineResult<TrialsOutcome> {
        let _ = (reporter, sequence, trials);
        Ok(TrialsOutcome::Ignored {
            reason: "this optimizer has no surrogate".into(),
        })
    }

    /// This optimizer's trainings since the last call, to report to the other islands. The
    /// default has none.
    fn take_trials(&mut self) -> Vec<Trial> {
        Vec::new()
    }

    /// The candidate this optimizer converged on did not take the chain's champion to the
    /// target: search again (see [`Engine::resume`]). The default does nothing.
    fn resume(&mut self) {}

    fn stats(&self) -> EngineStats;
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ga;
#[cfg(test)]
mod tests_landscapes;
#[cfg(test)]
mod tests_reports;
