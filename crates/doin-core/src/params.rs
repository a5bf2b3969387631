//! Chain parameters: every consensus constant a network agrees on at genesis.
//!
//! Economic constants that the product promises (reward, halving, cap, 65/30/5 split) are
//! `const`s in [`crate::economics`]; everything a network may tune lives here and is bound
//! into the genesis block through [`ChainParams::hash`].

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::encode::{put, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash32, HashKind};
use crate::identity::AccountId;
use crate::limits::ResourceLimits;

/// Longest domain id, in bytes.
pub const MAX_DOMAIN_ID_LEN: usize = 64;

/// A domain's id: 1–64 characters of `[a-z0-9_.-]`.
#[derive(
    Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct DomainId(String);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("domain id {id:?}: must be 1-{MAX_DOMAIN_ID_LEN} characters of a-z, 0-9, '_', '.', '-'")]
pub struct DomainIdError {
    pub id: String,
}

impl DomainId {
    pub fn new(id: impl Into<String>) -> Result<Self, DomainIdError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_DOMAIN_ID_LEN
            && id
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if ok {
            Ok(DomainId(id))
        } else {
            Err(DomainIdError { id })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DomainId {
    type Error = DomainIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DomainId::new(s)
    }
}

impl From<DomainId> for String {
    fn from(d: DomainId) -> String {
        d.0
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Encode for DomainId {
    fn encode(&self, out: &mut Vec<u8>) {
        put::string(out, &self.0);
    }
}

impl Decode for DomainId {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s = r.string("domain", MAX_DOMAIN_ID_LEN)?;
        DomainId::new(s).map_err(|e| DecodeError::Invalid {
            field: "domain",
            reason: e.to_string(),
        })
    }
}

/// Consensus parameters of one optimization domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainParams {
    pub id: DomainId,
    /// K: evaluators drawn for each optimae.
    pub quorum_size: u32,
    /// A measurement agrees with a claim when `|m − claim| ≤ abs + rel·|claim|`.
    pub tolerance_abs: f64,
    pub tolerance_rel: f64,
    /// ε: the least improvement over the champion that counts (a copy is worth nothing).
    pub min_improvement: f64,
    /// The performance a domain starts from, before any champion (higher is better).
    pub baseline_performance: f64,
    /// Work units credited per 1.0 of verified improvement (normalizes domains' scales).
    pub work_per_unit: u64,
    /// Smallest stake a commit must lock.
    pub min_stake: Amount,
    pub limits: ResourceLimits,
}

/// Parameters of the reputation system (fixed point: 1 point = 1000 milli-points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReputationParams {
    /// Gain of an optimizer per accepted optimae, in milli-points.
    pub optimizer_gain: u64,
    /// Gain of an evaluator per vote that matched the verdict, in milli-points.
    pub evaluator_gain: u64,
    /// Losses are this many times the corresponding gain (asymmetric: 3 by default).
    pub penalty_multiplier: u64,
    /// Least reputation to be drawn into a quorum, in milli-points.
    pub min_eligible: u64,
    /// Reputation of a freshly registered evaluator (bonded), in milli-points.
    pub initial: u64,
    /// Every `decay_epoch` blocks, each score is multiplied by `1 − decay_permille/1000`.
    pub decay_epoch: u64,
    pub decay_permille: u64,
    /// Scores never exceed this (bounds the reputation factor and integer math).
    pub max: u64,
}

/// Parameters of payment channels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelParams {
    pub min_deposit: Amount,
    /// Blocks between a settle (or a client's close) and the collect that pays out.
    pub settle_window: u64,
    /// Longest lifetime a channel may ask for, in blocks.
    pub max_lifetime: u64,
}

/// The default [`ChainParams::proposer_timeout_ms`].
pub const DEFAULT_PROPOSER_TIMEOUT_MS: u64 = 1_000;

fn default_proposer_timeout_ms() -> u64 {
    DEFAULT_PROPOSER_TIMEOUT_MS
}

/// Everything a network agrees on at genesis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChainParams {
    /// Bound into every signature, so transactions cannot be replayed on another network.
    pub chain_id: String,
    pub genesis_time_ms: u64,
    /// Coins that exist at genesis (counted against the supply cap).
    pub genesis_allocations: Vec<(AccountId, Amount)>,
    /// Accounts registered as evaluators at genesis, per domain (bootstraps quorums).
    pub genesis_evaluators: Vec<(DomainId, AccountId)>,
    pub target_block_time_ms: u64,
    /// A block without enough verified work is valid once this long has passed since its parent.
    pub max_block_interval_ms: u64,
    /// Work threshold of the first block.
    pub initial_difficulty: u64,
    /// How far ahead of a validator's clock a timestamp may be.
    pub max_future_drift_ms: u64,
    pub finality_depth: u64,
    /// How long each proposer in the schedule has before the next in line may take over
    /// (see [`crate::schedule`]).
    #[serde(default = "default_proposer_timeout_ms")]
    pub proposer_timeout_ms: u64,
    pub max_block_txs: u32,
    /// Block fullness the base fee steers toward.
    pub target_block_txs: u32,
    pub initial_base_fee: Amount,
    pub min_base_fee: Amount,
    pub max_tx_bytes: u32,
    /// Blocks after a commit's inclusion within which it must be revealed.
    pub reveal_window: u64,
    /// Blocks after a reveal's inclusion within which the quorum votes.
    pub vote_window: u64,
    /// Share of a stake burned when an optimae is rejected or never revealed.
    pub stake_burn_percent: u64,
    /// Bond locked by `RegisterEvaluator`.
    pub evaluator_bond: Amount,
    pub reputation: ReputationParams,
    pub channels: ChannelParams,
    /// Development mode: an optimizer may sit in its own quorum, so one node can run a chain.
    /// Never enable on a network with more than one operator.
    pub solo_mode: bool,
    pub domains: Vec<DomainParams>,
}

/// A chain parameter that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("chain parameter {field}: {reason}")]
pub struct ParamsError {
    pub field: String,
    pub reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> ParamsError {
    ParamsError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl ChainParams {
    pub fn domain(&self, id: &DomainId) -> Option<&DomainParams> {
        self.domains.iter().find(|d| &d.id == id)
    }

    /// Hash of the canonical encoding; the genesis block commits to it.
    pub fn hash(&self) -> Hash32 {
        HashKind::Params.hash(&self.to_bytes())
    }

    /// Checks every parameter; a chain never starts on nonsense.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.chain_id.is_empty() || self.chain_id.len() > 64 {
            return Err(bad("chain_id", "must be 1-64 bytes"));
        }
        let positive = [
            ("target_block_time_ms", self.target_block_time_ms),
            ("max_block_interval_ms", self.max_block_interval_ms),
            ("initial_difficulty", self.initial_difficulty),
            ("finality_depth", self.finality_depth),
            ("proposer_timeout_ms", self.proposer_timeout_ms),
            ("max_block_txs", u64::from(self.max_block_txs)),
            ("target_block_txs", u64::from(self.target_block_txs)),
            ("max_tx_bytes", u64::from(self.max_tx_bytes)),
            ("reveal_window", self.reveal_window),
            ("vote_window", self.vote_window),
            ("reputation.decay_epoch", self.reputation.decay_epoch),
            (
                "reputation.penalty_multiplier",
                self.reputation.penalty_multiplier,
            ),
            ("reputation.max", self.reputation.max),
            ("channels.settle_window", self.channels.settle_window),
            ("channels.max_lifetime", self.channels.max_lifetime),
        ];
        for (field, value) in positive {
            if value == 0 {
                return Err(bad(field, "must be greater than zero"));
            }
        }
        if self.target_block_txs > self.max_block_txs {
            return Err(bad("target_block_txs", "must not exceed max_block_txs"));
        }
        if self.min_base_fee > self.initial_base_fee {
            return Err(bad("min_base_fee", "must not exceed initial_base_fee"));
        }
        if self.stake_burn_percent > 100 {
            return Err(bad("stake_burn_percent", "must be 0-100"));
        }
        if self.reputation.decay_permille > 1000 {
            return Err(bad("reputation.decay_permille", "must be 0-1000"));
        }
        if self.reputation.initial > self.reputation.max
            || self.reputation.min_eligible > self.reputation.max
        {
            return Err(bad(
                "reputation",
                "initial and min_eligible must not exceed max",
            ));
        }
        let allocated = self
            .genesis_allocations
            .iter()
            .try_fold(0u64, |acc, (_, a)| acc.checked_add(a.0))
            .ok_or_else(|| bad("genesis_allocations", "sum overflows"))?;
        if allocated > crate::economics::MAX_SUPPLY.0 {
            return Err(bad(
                "genesis_allocations",
                "sum exceeds the 21,000,000 DOIN cap",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, d) in self.domains.iter().enumerate() {
            let f = |name: &str| format!("domains[{i}].{name}");
            if !seen.insert(&d.id) {
                return Err(bad(f("id"), format!("duplicate domain {}", d.id)));
            }
            if d.quorum_size == 0 || d.quorum_size > 64 {
                return Err(bad(f("quorum_size"), "must be 1-64"));
            }
            for (name, v) in [
                ("tolerance_abs", d.tolerance_abs),
                ("tolerance_rel", d.tolerance_rel),
                ("min_improvement", d.min_improvement),
            ] {
                if !v.is_finite() || v < 0.0 {
                    return Err(bad(f(name), "must be a finite number >= 0"));
                }
            }
            if !d.baseline_performance.is_finite() {
                return Err(bad(f("baseline_performance"), "must be finite"));
            }
            if d.work_per_unit == 0 {
                return Err(bad(f("work_per_unit"), "must be greater than zero"));
            }
            d.limits
                .validate()
                .map_err(|e| bad(f(&format!("limits.{}", e.field)), e.reason))?;
        }
        for (domain, _) in &self.genesis_evaluators {
            if self.domain(domain).is_none() {
                return Err(bad(
                    "genesis_evaluators",
                    format!("unknown domain {domain}"),
                ));
            }
        }
        Ok(())
    }

    /// Parameters of a development network: short windows, one quadratic domain, solo mode.
    pub fn dev(chain_id: &str) -> ChainParams {
        ChainParams {
            chain_id: chain_id.to_string(),
            genesis_time_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            genesis_allocations: Vec::new(),
            genesis_evaluators: Vec::new(),
            target_block_time_ms: 2_000,
            max_block_interval_ms: 10_000,
            initial_difficulty: 1_000,
            max_future_drift_ms: 15_000,
            finality_depth: 6,
            proposer_timeout_ms: DEFAULT_PROPOSER_TIMEOUT_MS,
            max_block_txs: 2_000,
            target_block_txs: 1_000,
            initial_base_fee: Amount(1_000),
            min_base_fee: Amount(100),
            max_tx_bytes: 64 * 1024,
            reveal_window: 10,
            vote_window: 10,
            stake_burn_percent: 20,
            evaluator_bond: Amount::from_doin(1),
            reputation: ReputationParams {
                optimizer_gain: 1_000,
                evaluator_gain: 400,
                penalty_multiplier: 3,
                min_eligible: 2_000,
                initial: 2_000,
                decay_epoch: 100,
                decay_permille: 50,
                max: 100_000,
            },
            channels: ChannelParams {
                min_deposit: Amount::from_doin(1),
                settle_window: 10,
                max_lifetime: 100_000,
            },
            solo_mode: true,
            domains: vec![DomainParams {
                id: DomainId::new("quadratic").expect("valid id"),
                // Solo mode: one node is the whole quorum.
                quorum_size: 1,
                tolerance_abs: 0.5,
                tolerance_rel: 0.05,
                // A few times the quadratic's evaluator noise (0.05), so that a copy of the
                // champion never passes as an improvement.
                min_improvement: 0.25,
                baseline_performance: -1.0e4,
                work_per_unit: 1_000,
                min_stake: Amount(10_000),
                limits: ResourceLimits::default(),
            }],
        }
    }
}

impl Encode for DomainParams {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        put::u32(out, self.quorum_size);
        put::f64(out, self.tolerance_abs);
        put::f64(out, self.tolerance_rel);
        put::f64(out, self.min_improvement);
        put::f64(out, self.baseline_performance);
        put::u64(out, self.work_per_unit);
        self.min_stake.encode(out);
        self.limits.encode(out);
    }
}

impl Encode for ChainParams {
    fn encode(&self, out: &mut Vec<u8>) {
        put::string(out, &self.chain_id);
        put::u64(out, self.genesis_time_ms);
        put::len(out, self.genesis_allocations.len());
        for (account, amount) in &self.genesis_allocations {
            account.encode(out);
            amount.encode(out);
        }
        put::len(out, self.genesis_evaluators.len());
        for (domain, account) in &self.genesis_evaluators {
            domain.encode(out);
            account.encode(out);
        }
        for v in [
            self.target_block_time_ms,
            self.max_block_interval_ms,
            self.initial_difficulty,
            self.max_future_drift_ms,
            self.finality_depth,
            self.proposer_timeout_ms,
        ] {
            put::u64(out, v);
        }
        put::u32(out, self.max_block_txs);
        put::u32(out, self.target_block_txs);
        self.initial_base_fee.encode(out);
        self.min_base_fee.encode(out);
        put::u32(out, self.max_tx_bytes);
        for v in [
            self.reveal_window,
            self.vote_window,
            self.stake_burn_percent,
        ] {
            put::u64(out, v);
        }
        self.evaluator_bond.encode(out);
        let r = &self.reputation;
        for v in [
            r.optimizer_gain,
            r.evaluator_gain,
            r.penalty_multiplier,
            r.min_eligible,
            r.initial,
            r.decay_epoch,
            r.decay_permille,
            r.max,
        ] {
            put::u64(out, v);
        }
        self.channels.min_deposit.encode(out);
        put::u64(out, self.channels.settle_window);
        put::u64(out, self.channels.max_lifetime);
        put::bool(out, self.solo_mode);
        put::len(out, self.domains.len());
        for d in &self.domains {
            d.encode(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_params_are_valid() {
        ChainParams::dev("doin-dev").validate().unwrap();
    }

    #[test]
    fn domain_ids_are_restricted() {
        assert!(DomainId::new("quadratic").is_ok());
        assert!(DomainId::new("ts-forecast.v2").is_ok());
        for bad in ["", "Upper", "has space", &"x".repeat(65)] {
            assert!(DomainId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invalid_params_name_the_field() {
        let mut p = ChainParams::dev("x");
        p.domains[0].tolerance_rel = f64::NAN;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("domains[0].tolerance_rel"));
        let mut p = ChainParams::dev("x");
        p.vote_window = 0;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("vote_window"));
        let mut p = ChainParams::dev("x");
        p.domains.push(p.domains[0].clone());
        assert!(p.validate().unwrap_err().to_string().contains("duplicate"));
    }

    #[test]
    fn hash_changes_with_any_parameter() {
        let a = ChainParams::dev("x");
        let mut b = a.clone();
        b.domains[0].min_improvement = 2e-3;
        assert_ne!(a.hash(), b.hash());
    }
}
