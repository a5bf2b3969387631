//! # doin-evaluator
//!
//! The verification side of a DOIN node (DESIGN.md §3.3, step 4): re-score a revealed
//! optimae on synthetic data that nobody could know in advance.
//!
//! # Bird's eye view
//!
//! ```text
//! quorum_seed, evaluator key ──data_seed──► seed ──plugin.generate──► dataset ──► data_hash
//! params blob ──params_hash == revealed hash?──► plugin.evaluate(params, dataset) ──► measured
//!                                              └──────────► Vote { measured, data_hash, data_seed }
//! ```
//!
//! 1. The blob fetched from peers must hash to the revealed `params_hash` (content address).
//! 2. The data seed is `H(quorum_seed ‖ evaluator key)` ([`doin_core::optimae::data_seed`]):
//!    unique per evaluator and unpredictable before the commit was included.
//! 3. [`doin_core::plugin::measure`] checks the blob against the domain's size limit,
//!    generates the data, scores, and refuses non-finite scores.
//!
//! The node signs the [`Vote`] and publishes it; this crate holds no keys.
//!
//! # Who is at fault
//!
//! An [`EvalError`] says what the node should do ([`EvalError::fault`]):
//!
//! * [`Fault::Params`]: the revealed parameters are bad (malformed for the domain, over its
//!   size limit). Any honest evaluator fails the same way, so the node votes
//!   [`BAD_PARAMS_SCORE`] (votes must be finite): the claim is not reproduced and the
//!   optimizer's stake is burned, rather than the quorum timing out.
//! * [`Fault::Transfer`]: the blob does not match the revealed hash. The peer that served it
//!   is at fault, not necessarily the optimizer: fetch it again (from another peer); do not
//!   vote on these bytes.
//! * [`Fault::Local`]: this node failed (plugin error, non-finite score, missing
//!   capability). Do not vote; an honest evaluator elsewhere may well succeed.
//!
//! ```
//! use std::sync::Arc;
//! use doin_core::{AccountId, Hash32};
//! use doin_core::limits::ResourceLimits;
//! use doin_core::params::DomainId;
//! use doin_core::plugin::{params_hash, PluginSetup};
//! use doin_evaluator::{Evaluator, EvaluatorRole};
//! use doin_plugins::quadratic;
//!
//! let plugin = quadratic::factory(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap();
//! let evaluator: Box<dyn EvaluatorRole> = Box::new(Evaluator::new(plugin, ResourceLimits::default()));
//! let params = quadratic::encode_params(&[0.0; 10]);
//! let vote = evaluator
//!     .evaluate(&Hash32([1; 32]), &AccountId([2; 32]), &params, &params_hash(&params))
//!     .unwrap();
//! assert!(vote.measured.is_finite());
//! ```

use std::fmt;
use std::sync::Arc;

use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::limits::ResourceLimits;
use doin_core::optimae::data_seed;
use doin_core::plugin::{measure, params_hash, DomainInfo, DomainPlugin, PluginError};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The score a node votes for parameters that are bad for the domain ([`Fault::Params`]):
/// the lowest score any real domain can be expected to reach, yet finite, as votes must be.
pub const BAD_PARAMS_SCORE: f64 = -1e300;

/// An evaluator's measurement, before the node signs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// The performance measured on this evaluator's own data (finite).
    pub measured: f64,
    /// Digest of the synthetic dataset, so anyone can check which data was used.
    pub data_hash: Hash32,
    /// The data seed, `H(quorum_seed ‖ evaluator key)`.
    pub data_seed: Hash32,
}

/// Whose fault an [`EvalError`] is, which decides what the node does (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// The parameters are bad: vote [`BAD_PARAMS_SCORE`].
    Params,
    /// The bytes received are not the revealed ones: fetch again, do not vote on them.
    Transfer,
    /// This node failed: do not vote.
    Local,
}

/// Why an evaluation produced no measurement.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    /// The blob does not hash to the revealed `params_hash`.
    #[error("parameter blob hashes to {actual}, but the reveal names {expected}")]
    ParamsHashMismatch { expected: Hash32, actual: Hash32 },
    /// The parameters are malformed for the domain or over its size limit.
    #[error("bad parameters: {0}")]
    BadParams(#[source] PluginError),
    /// The plugin failed for a reason local to this node.
    #[error("evaluation failed locally: {0}")]
    Local(#[source] PluginError),
}

/// Result alias of evaluations.
pub type EvalResult<T> = Result<T, EvalError>;

impl EvalError {
    pub fn fault(&self) -> Fault {
        match self {
            EvalError::ParamsHashMismatch { .. } => Fault::Transfer,
            EvalError::BadParams(_) => Fault::Params,
            EvalError::Local(_) => Fault::Local,
        }
    }

    /// True when the parameters themselves are bad ([`Fault::Params`]): any honest evaluator
    /// fails the same way, so the node votes [`BAD_PARAMS_SCORE`].
    pub fn blames_params(&self) -> bool {
        self.fault() == Fault::Params
    }

    /// The score to vote instead of a measurement: [`BAD_PARAMS_SCORE`] when the parameters
    /// are at fault, nothing otherwise.
    pub fn vote_score(&self) -> Option<f64> {
        (self.fault() == Fault::Params).then_some(BAD_PARAMS_SCORE)
    }
}

impl From<PluginError> for EvalError {
    fn from(e: PluginError) -> Self {
        if e.blames_params() {
            EvalError::BadParams(e)
        } else {
            EvalError::Local(e)
        }
    }
}

/// What the node needs from an evaluator: implemented by [`Evaluator`], composed by the node
/// as `Arc<dyn EvaluatorRole>` and shared between threads (evaluation is CPU-bound: call it
/// from a blocking thread).
pub trait EvaluatorRole: Send + Sync {
    /// Measures `params` for the optimae whose quorum seed is `quorum_seed`, as `evaluator`.
    fn evaluate(
        &self,
        quorum_seed: &Hash32,
        evaluator: &AccountId,
        params: &[u8],
        expected_params_hash: &Hash32,
    ) -> EvalResult<Vote>;

    /// The domain this evaluator measures.
    fn domain(&self) -> DomainInfo;
}

/// Re-scores revealed parameters of one domain on the evaluator's own synthetic data.
#[derive(Clone)]
pub struct Evaluator {
    plugin: Arc<dyn DomainPlugin>,
    limits: ResourceLimits,
}

impl fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evaluator")
            .field("domain", &self.plugin.info().id)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Evaluator {
    /// An evaluator of `plugin`'s domain enforcing `limits` (the domain's, from the chain).
    pub fn new(plugin: Arc<dyn DomainPlugin>, limits: ResourceLimits) -> Self {
        Evaluator { plugin, limits }
    }

    pub fn limits(&self) -> &ResourceLimits {
        &self.limits
    }

    /// Checks the blob against `expected_params_hash`, derives this evaluator's data seed
    /// from `quorum_seed`, generates its data and measures. Deterministic for the same inputs
    /// on the same machine.
    pub fn evaluate(
        &self,
        quorum_seed: &Hash32,
        evaluator: &AccountId,
        params: &[u8],
        expected_params_hash: &Hash32,
    ) -> EvalResult<Vote> {
        let actual = params_hash(params);
        if actual != *expected_params_hash {
            return Err(EvalError::ParamsHashMismatch {
                expected: *expected_params_hash,
                actual,
            });
        }
        let seed = data_seed(quorum_seed, evaluator);
        let measurement = measure(self.plugin.as_ref(), params, &seed, &self.limits)?;
        Ok(Vote {
            measured: measurement.measured,
            data_hash: measurement.data_hash,
            data_seed: seed,
        })
    }
}

impl EvaluatorRole for Evaluator {
    fn evaluate(
        &self,
        quorum_seed: &Hash32,
        evaluator: &AccountId,
        params: &[u8],
        expected_params_hash: &Hash32,
    ) -> EvalResult<Vote> {
        Evaluator::evaluate(self, quorum_seed, evaluator, params, expected_params_hash)
    }

    fn domain(&self) -> DomainInfo {
        self.plugin.info()
    }
}

#[cfg(test)]
mod tests;
