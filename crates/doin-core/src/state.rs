//! The chain state machine: accounts, evaluator registry, pending optimae, champions and
//! channels, and the rules that move it from one block to the next.
//!
//! Two levels of atomicity:
//! - [`ChainState::apply_tx`] runs every check of a transaction before its first write, so a
//!   rejected transaction changes nothing (block producers rely on this to skip bad ones);
//! - [`ChainState::apply_block`] works on a copy of the parent state and returns the new one
//!   only when the whole block, header included, re-executes to exactly what it claims.
//!
//! After the transactions, the end of a block decides every optimae whose quorum has voted
//! or whose voting window closed, burns stakes of commits never revealed, pays the block
//! reward, decays reputation on epoch boundaries, and moves difficulty and base fee.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::block::{Block, BlockError, BlockHash, BlockHeader};
use crate::chain::{check_timestamp, MEDIAN_TIME_SPAN};
use crate::channel::{channel_id, Channel, ChannelError};
use crate::difficulty::DifficultyState;
use crate::economics::{capped_subsidy, split_block_reward, RewardInput};
use crate::encode::{put, Encode};
use crate::fee::{charge, next_base_fee};
use crate::hash::{merkle_root, Hash32, HashKind};
use crate::identity::{AccountId, Keypair, Signature};
use crate::optimae::{self, CastVote, QuorumCandidate, Verdict, VerdictRules};
use crate::params::{ChainParams, DomainId};
use crate::reputation;
use crate::schedule;
use crate::tx::{Metric, SignedTx, TxId, TxKind};

/// One account's on-chain record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Account {
    pub balance: Amount,
    /// The nonce the account's next transaction must carry.
    pub nonce: u64,
    /// Reputation in milli-points, derived from chain events only.
    pub reputation: u64,
}

/// A vote recorded on chain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecordedVote {
    pub measured: f64,
    pub data_hash: Hash32,
}

/// What a reveal added to a commitment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Revealed {
    pub params_hash: Hash32,
    pub params_size: u64,
    pub claim: f64,
    pub metrics: Vec<Metric>,
    pub reveal_height: u64,
    pub quorum_seed: Hash32,
    /// The evaluators drawn for this optimae, in draw order.
    pub quorum: Vec<AccountId>,
    pub votes: BTreeMap<AccountId, RecordedVote>,
    /// Last height at which votes are accepted; the verdict is taken at its end.
    pub vote_deadline: u64,
}

/// An optimae between commit and verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PendingOptimae {
    pub domain: DomainId,
    pub optimizer: AccountId,
    pub stake: Amount,
    pub commit_height: u64,
    /// Hash of the block that included the commit; known from the next block on.
    pub commit_block: Option<BlockHash>,
    pub reveal: Option<Revealed>,
}

/// The best verified model of a domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Champion {
    pub commitment: Hash32,
    pub optimizer: AccountId,
    /// The verified (median measured) performance, not the claim.
    pub performance: f64,
    pub params_hash: Hash32,
    pub params_size: u64,
    pub height: u64,
}

/// The state after a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainState {
    pub height: u64,
    /// Hash of the block that produced this state (not part of the state root).
    pub tip: BlockHash,
    pub tip_time_ms: u64,
    pub cumulative_work: u128,
    /// Timestamps of the last blocks, oldest first (median-time-past rule).
    pub recent_timestamps: Vec<u64>,
    pub difficulty: DifficultyState,
    /// Base fee the next block's transactions pay.
    pub base_fee: Amount,
    /// Coins ever created (genesis allocations and block rewards).
    pub issued: Amount,
    /// Coins ever destroyed (base fees, stake burns).
    pub burned: Amount,
    pub accounts: BTreeMap<AccountId, Account>,
    /// Registered evaluators per domain, with their bond.
    pub evaluators: BTreeMap<DomainId, BTreeMap<AccountId, Amount>>,
    pub optimae: BTreeMap<Hash32, PendingOptimae>,
    pub champions: BTreeMap<DomainId, Champion>,
    pub channels: BTreeMap<Hash32, Channel>,
}

/// Why a transaction cannot be applied to the current state. Nothing changed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ApplyError {
    #[error("nonce: expected {expected}, got {got}")]
    Nonce { expected: u64, got: u64 },
    #[error("balance: {needed} needed, {available} available")]
    InsufficientBalance { needed: Amount, available: Amount },
    #[error("fee: {0}")]
    Fee(String),
    #[error("domain: unknown domain {0}")]
    UnknownDomain(DomainId),
    #[error("stake: {stake} is below the domain minimum {min}")]
    StakeTooSmall { stake: Amount, min: Amount },
    #[error("commitment {0} already exists")]
    DuplicateCommitment(Hash32),
    #[error("commitment {0} is unknown (never committed, or already decided)")]
    UnknownCommitment(Hash32),
    #[error("only the optimizer that committed may reveal")]
    NotOptimizer,
    #[error("commitment {0} is already revealed")]
    AlreadyRevealed(Hash32),
    #[error("commitment {0} is not revealed yet")]
    NotRevealed(Hash32),
    #[error("reveal at height {height} is outside the window ({from}..={to})")]
    RevealWindow { height: u64, from: u64, to: u64 },
    #[error("reveal does not open the commitment (domain, optimizer, params hash, claim or salt differ)")]
    CommitmentMismatch,
    #[error("params_size: {0}")]
    ParamsSize(String),
    #[error("vote: sender was not selected for this optimae's quorum")]
    NotInQuorum,
    #[error("vote: sender already voted")]
    DuplicateVote,
    #[error("vote: the voting window closed at height {0}")]
    VoteClosed(u64),
    #[error("already registered as an evaluator for {0}")]
    AlreadyEvaluator(DomainId),
    #[error("channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

impl ApplyError {
    /// Whether the transaction may apply a block or two later: it refers to a commitment or
    /// a reveal still on its way, or spends coins still on their way, or reveals before its
    /// window opened. A node keeps such a transaction from a peer aside for a few blocks
    /// instead of dropping it (gossip does not deliver in order).
    pub fn may_apply_later(&self) -> bool {
        match self {
            ApplyError::UnknownCommitment(_)
            | ApplyError::NotRevealed(_)
            | ApplyError::InsufficientBalance { .. } => true,
            ApplyError::RevealWindow { height, from, .. } => height < from,
            _ => false,
        }
    }

    /// Whether the signed transaction proves its sender misbehaved, whatever the timing: a
    /// vote from an account the quorum did not draw, a reveal of someone else's commitment,
    /// a reveal that does not open its commitment. (A bad nonce, a missing balance or an
    /// unknown commitment may be a matter of timing or of a fork, and are not.)
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            ApplyError::NotInQuorum | ApplyError::NotOptimizer | ApplyError::CommitmentMismatch
        )
    }
}

/// A verdict taken at the end of a block: what the analytics store and logs need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VerdictRecord {
    pub commitment: Hash32,
    pub domain: DomainId,
    pub optimizer: AccountId,
    pub claim: f64,
    pub params_hash: Hash32,
    pub metrics: Vec<Metric>,
    pub verdict: Verdict,
    /// Work units credited (0 unless accepted).
    pub work: u64,
    pub votes: BTreeMap<AccountId, RecordedVote>,
    /// Stake burned (rejections).
    pub burned: Amount,
}

/// What a block did beyond its transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BlockReceipt {
    pub verdicts: Vec<VerdictRecord>,
    /// Commitments never revealed in time, with the stake burned.
    pub expired: Vec<(Hash32, Amount)>,
    /// Block reward and tips paid, per account.
    pub payouts: BTreeMap<AccountId, Amount>,
    pub minted: Amount,
    /// Everything burned by this block (base fees and stakes).
    pub burned: Amount,
    pub tips: Amount,
    pub work: u64,
}

/// Per-block accumulators while transactions are applied.
#[derive(Debug, Default)]
struct BlockAcc {
    tips: Amount,
    burned: Amount,
    tx_count: u32,
}

/// A transaction skipped while building a block, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub id: TxId,
    pub reason: ApplyError,
}

/// A block built by [`ChainState::build_block`], with the state it leads to.
#[derive(Debug, Clone)]
pub struct BuiltBlock {
    pub block: Block,
    pub state: ChainState,
    pub receipt: BlockReceipt,
    pub skipped: Vec<Skipped>,
}

/// Why no block can be built now.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BuildError {
    #[error("work {work} is below the difficulty {difficulty}; an empty block is allowed from {allowed_from_ms} ms")]
    NotReady {
        work: u64,
        difficulty: u64,
        allowed_from_ms: u64,
    },
    #[error("timestamp: {0}")]
    Timestamp(String),
    /// The proposer's turn in the schedule has not come yet.
    #[error("rank {rank} in the proposer schedule: not before {earliest_ms} ms")]
    NotYourTurn { rank: u64, earliest_ms: u64 },
}

impl ChainState {
    /// The genesis block and state of a chain. Panics only if `params` fail validation,
    /// which callers check first.
    pub fn genesis(params: &ChainParams) -> (Block, ChainState) {
        let mut state = ChainState {
            height: 0,
            tip: Hash32::ZERO,
            tip_time_ms: params.genesis_time_ms,
            cumulative_work: 0,
            recent_timestamps: vec![params.genesis_time_ms],
            difficulty: DifficultyState::genesis(
                params.initial_difficulty,
                params.target_block_time_ms,
                params.genesis_time_ms,
            ),
            base_fee: params.initial_base_fee,
            issued: Amount::ZERO,
            burned: Amount::ZERO,
            accounts: BTreeMap::new(),
            evaluators: BTreeMap::new(),
            optimae: BTreeMap::new(),
            champions: BTreeMap::new(),
            channels: BTreeMap::new(),
        };
        for (account, amount) in &params.genesis_allocations {
            state.credit(account, *amount);
            state.issued = state
                .issued
                .checked_add(*amount)
                .expect("validated allocations fit the cap");
        }
        for (domain, account) in &params.genesis_evaluators {
            state
                .evaluators
                .entry(domain.clone())
                .or_default()
                .insert(*account, Amount::ZERO);
            let acc = state.accounts.entry(*account).or_default();
            acc.reputation = acc.reputation.max(params.reputation.initial);
        }
        let header = BlockHeader {
            height: 0,
            parent: params.hash(),
            timestamp_ms: params.genesis_time_ms,
            tx_root: merkle_root(&[]),
            state_root: state.state_root(),
            proposer: AccountId([0; 32]),
            work: 0,
            cumulative_work: 0,
            difficulty: params.initial_difficulty,
            base_fee: params.initial_base_fee,
            minted: state.issued,
        };
        let block = Block {
            header,
            signature: Signature([0; 64]),
            txs: Vec::new(),
        };
        state.tip = block.hash();
        (block, state)
    }

    pub fn account(&self, id: &AccountId) -> Account {
        self.accounts.get(id).cloned().unwrap_or_default()
    }

    /// Coins in circulation: issued minus burned.
    pub fn supply(&self) -> Amount {
        self.issued.saturating_sub(self.burned)
    }

    /// Every coin is somewhere: balances, evaluator bonds, optimae stakes, channel deposits.
    pub fn held(&self) -> Amount {
        let balances: Amount = self.accounts.values().map(|a| a.balance).sum();
        let bonds: Amount = self
            .evaluators
            .values()
            .flat_map(|m| m.values().copied())
            .sum();
        let stakes: Amount = self.optimae.values().map(|o| o.stake).sum();
        let deposits: Amount = self.channels.values().map(|c| c.deposit).sum();
        [balances, bonds, stakes, deposits].into_iter().sum()
    }

    /// The conservation invariant: no coin created or lost outside issuance and burns.
    pub fn check_conservation(&self) -> Result<(), String> {
        let held = self.held();
        if held == self.supply() {
            Ok(())
        } else {
            Err(format!(
                "held {held} != issued {} - burned {}",
                self.issued, self.burned
            ))
        }
    }

    /// Hash of the canonical encoding of everything but the tip hash.
    pub fn state_root(&self) -> Hash32 {
        HashKind::State.hash(&self.to_bytes())
    }

    /// Evaluators of `domain` eligible for quorums, with their reputation.
    pub fn eligible_evaluators(
        &self,
        domain: &DomainId,
        params: &ChainParams,
    ) -> Vec<QuorumCandidate> {
        self.evaluators
            .get(domain)
            .into_iter()
            .flat_map(|m| m.keys())
            .map(|account| QuorumCandidate {
                account: *account,
                reputation: self.account(account).reputation,
            })
            .filter(|c| reputation::is_eligible(c.reputation, &params.reputation))
            .collect()
    }

    fn credit(&mut self, account: &AccountId, amount: Amount) {
        if amount.0 == 0 {
            return;
        }
        let acc = self.accounts.entry(*account).or_default();
        // Cannot overflow: every balance is part of a supply capped far below u64::MAX.
        acc.balance = acc
            .balance
            .checked_add(amount)
            .expect("balance overflow contradicts the supply cap");
    }

    fn burn(&mut self, amount: Amount) {
        self.burned = self
            .burned
            .checked_add(amount)
            .expect("burned never exceeds issued");
    }

    // ---- transactions ------------------------------------------------------------------

    /// Applies one transaction that passed [`SignedTx::verify_stateless`] at block `height`.
    /// Every check runs before the first write: on error nothing changed.
    pub fn apply_tx(
        &mut self,
        params: &ChainParams,
        tx: &SignedTx,
        height: u64,
    ) -> Result<(Amount, Amount), ApplyError> {
        let body = &tx.body;
        let sender = body.sender;
        let account = self.account(&sender);
        if body.nonce != account.nonce {
            return Err(ApplyError::Nonce {
                expected: account.nonce,
                got: body.nonce,
            });
        }
        let fee = charge(&body.fee, self.base_fee).map_err(|e| ApplyError::Fee(e.to_string()))?;
        let value = self.check_kind(params, &sender, &body.kind, height)?;
        let needed = fee
            .burned
            .checked_add(fee.tip)
            .and_then(|f| f.checked_add(value))
            .ok_or(ApplyError::InsufficientBalance {
                needed: Amount(u64::MAX),
                available: account.balance,
            })?;
        if account.balance < needed {
            return Err(ApplyError::InsufficientBalance {
                needed,
                available: account.balance,
            });
        }
        // ---- all checks passed: from here on nothing fails ----
        let acc = self.accounts.entry(sender).or_default();
        acc.balance = acc.balance.saturating_sub(needed);
        acc.nonce += 1;
        self.burn(fee.burned);
        self.execute_kind(params, &sender, body.nonce, &body.kind, height);
        Ok((fee.burned, fee.tip))
    }

    /// Checks a transaction kind against the state; returns the coins it takes from the
    /// sender besides the fee.
    fn check_kind(
        &self,
        params: &ChainParams,
        sender: &AccountId,
        kind: &TxKind,
        height: u64,
    ) -> Result<Amount, ApplyError> {
        match kind {
            TxKind::Transfer { amount, .. } => Ok(*amount),
            TxKind::RegisterEvaluator { domain } => {
                params
                    .domain(domain)
                    .ok_or_else(|| ApplyError::UnknownDomain(domain.clone()))?;
                if self
                    .evaluators
                    .get(domain)
                    .is_some_and(|m| m.contains_key(sender))
                {
                    return Err(ApplyError::AlreadyEvaluator(domain.clone()));
                }
                Ok(params.evaluator_bond)
            }
            TxKind::Commit {
                domain,
                commitment,
                stake,
            } => {
                let d = params
                    .domain(domain)
                    .ok_or_else(|| ApplyError::UnknownDomain(domain.clone()))?;
                if *stake < d.min_stake {
                    return Err(ApplyError::StakeTooSmall {
                        stake: *stake,
                        min: d.min_stake,
                    });
                }
                if self.optimae.contains_key(commitment) {
                    return Err(ApplyError::DuplicateCommitment(*commitment));
                }
                Ok(*stake)
            }
            TxKind::Reveal {
                commitment,
                params_hash,
                params_size,
                claim,
                salt,
                ..
            } => {
                let pending = self
                    .optimae
                    .get(commitment)
                    .ok_or(ApplyError::UnknownCommitment(*commitment))?;
                if &pending.optimizer != sender {
                    return Err(ApplyError::NotOptimizer);
                }
                if pending.reveal.is_some() {
                    return Err(ApplyError::AlreadyRevealed(*commitment));
                }
                let (from, to) = (
                    pending.commit_height + 1,
                    pending.commit_height + params.reveal_window,
                );
                if height < from || height > to || pending.commit_block.is_none() {
                    return Err(ApplyError::RevealWindow { height, from, to });
                }
                let opened =
                    optimae::commitment(&pending.domain, sender, params_hash, *claim, salt);
                if &opened != commitment {
                    return Err(ApplyError::CommitmentMismatch);
                }
                let domain = params
                    .domain(&pending.domain)
                    .ok_or_else(|| ApplyError::UnknownDomain(pending.domain.clone()))?;
                domain
                    .limits
                    .check_params_size(*params_size)
                    .map_err(|e| ApplyError::ParamsSize(e.reason))?;
                Ok(Amount::ZERO)
            }
            TxKind::Vote { commitment, .. } => {
                let pending = self
                    .optimae
                    .get(commitment)
                    .ok_or(ApplyError::UnknownCommitment(*commitment))?;
                let reveal = pending
                    .reveal
                    .as_ref()
                    .ok_or(ApplyError::NotRevealed(*commitment))?;
                if !reveal.quorum.contains(sender) {
                    return Err(ApplyError::NotInQuorum);
                }
                if reveal.votes.contains_key(sender) {
                    return Err(ApplyError::DuplicateVote);
                }
                if height > reveal.vote_deadline {
                    return Err(ApplyError::VoteClosed(reveal.vote_deadline));
                }
                Ok(Amount::ZERO)
            }
            TxKind::ChannelOpen {
                provider,
                deposit,
                lifetime,
            } => {
                Channel::open(
                    *sender,
                    *provider,
                    *deposit,
                    *lifetime,
                    height,
                    &params.channels,
                )?;
                Ok(*deposit)
            }
            TxKind::ChannelClose { channel } => {
                self.channel(channel)?
                    .close(sender, height, params.channels.settle_window)?;
                Ok(Amount::ZERO)
            }
            TxKind::ChannelSettle { voucher } => {
                self.channel(&voucher.channel)?.settle(
                    &voucher.channel,
                    sender,
                    voucher,
                    height,
                    params.channels.settle_window,
                )?;
                Ok(Amount::ZERO)
            }
            TxKind::ChannelCollect { channel } => {
                self.channel(channel)?.collect(sender, height)?;
                Ok(Amount::ZERO)
            }
        }
    }

    fn channel(&self, id: &Hash32) -> Result<&Channel, ChannelError> {
        self.channels.get(id).ok_or(ChannelError::Unknown(*id))
    }

    /// Performs a kind that [`Self::check_kind`] accepted; the sender was already debited.
    fn execute_kind(
        &mut self,
        params: &ChainParams,
        sender: &AccountId,
        nonce: u64,
        kind: &TxKind,
        height: u64,
    ) {
        match kind {
            TxKind::Transfer { to, amount } => self.credit(to, *amount),
            TxKind::RegisterEvaluator { domain } => {
                self.evaluators
                    .entry(domain.clone())
                    .or_default()
                    .insert(*sender, params.evaluator_bond);
                let acc = self.accounts.entry(*sender).or_default();
                acc.reputation = acc.reputation.max(params.reputation.initial);
            }
            TxKind::Commit {
                domain,
                commitment,
                stake,
            } => {
                self.optimae.insert(
                    *commitment,
                    PendingOptimae {
                        domain: domain.clone(),
                        optimizer: *sender,
                        stake: *stake,
                        commit_height: height,
                        commit_block: None,
                        reveal: None,
                    },
                );
            }
            TxKind::Reveal {
                commitment,
                params_hash,
                params_size,
                claim,
                metrics,
                ..
            } => {
                let (domain, commit_block) = match self.optimae.get(commitment) {
                    Some(p) => (p.domain.clone(), p.commit_block.unwrap_or_default()),
                    None => return,
                };
                let k = params.domain(&domain).map_or(0, |d| d.quorum_size as usize);
                let seed = optimae::quorum_seed(&commit_block, commitment);
                let candidates = self.eligible_evaluators(&domain, params);
                let quorum =
                    optimae::select_quorum(&seed, &candidates, sender, k, params.solo_mode);
                if let Some(p) = self.optimae.get_mut(commitment) {
                    p.reveal = Some(Revealed {
                        params_hash: *params_hash,
                        params_size: *params_size,
                        claim: *claim,
                        metrics: metrics.clone(),
                        reveal_height: height,
                        quorum_seed: seed,
                        quorum,
                        votes: BTreeMap::new(),
                        vote_deadline: height + params.vote_window,
                    });
                }
            }
            TxKind::Vote {
                commitment,
                measured,
                data_hash,
            } => {
                if let Some(reveal) = self
                    .optimae
                    .get_mut(commitment)
                    .and_then(|p| p.reveal.as_mut())
                {
                    reveal.votes.insert(
                        *sender,
                        RecordedVote {
                            measured: *measured,
                            data_hash: *data_hash,
                        },
                    );
                }
            }
            TxKind::ChannelOpen {
                provider,
                deposit,
                lifetime,
            } => {
                if let Ok(ch) = Channel::open(
                    *sender,
                    *provider,
                    *deposit,
                    *lifetime,
                    height,
                    &params.channels,
                ) {
                    self.channels.insert(channel_id(sender, nonce), ch);
                }
            }
            TxKind::ChannelClose { channel } => {
                if let Some(Ok(next)) = self
                    .channels
                    .get(channel)
                    .map(|c| c.close(sender, height, params.channels.settle_window))
                {
                    self.channels.insert(*channel, next);
                }
            }
            TxKind::ChannelSettle { voucher } => {
                let id = voucher.channel;
                if let Some(Ok(next)) = self
                    .channels
                    .get(&id)
                    .map(|c| c.settle(&id, sender, voucher, height, params.channels.settle_window))
                {
                    self.channels.insert(id, next);
                }
            }
            TxKind::ChannelCollect { channel } => {
                if let Some(ch) = self.channels.get(channel).cloned() {
                    if let Ok(payout) = ch.collect(sender, height) {
                        self.channels.remove(channel);
                        self.credit(&ch.provider, payout.provider);
                        self.credit(&ch.client, payout.client);
                    }
                }
            }
        }
    }

    // ---- blocks ------------------------------------------------------------------------

    /// A copy of this state prepared for applying the next block's transactions with
    /// [`Self::apply_tx`] (mempool admission checks against it).
    pub fn for_next_block(&self) -> ChainState {
        let mut next = self.clone();
        next.begin_block();
        next
    }

    /// Start of a block: commits of the previous block learn their block's hash, which seeds
    /// their quorum (unknowable when they were committed).
    fn begin_block(&mut self) {
        let (parent_height, parent_hash) = (self.height, self.tip);
        for pending in self.optimae.values_mut() {
            if pending.commit_height == parent_height && pending.commit_block.is_none() {
                pending.commit_block = Some(parent_hash);
            }
        }
    }

    /// End of a block at `height`: verdicts, expiries, rewards, reputation decay, difficulty,
    /// base fee. Returns the receipt; `self` becomes the state after the block (tip aside).
    fn end_block(
        &mut self,
        params: &ChainParams,
        height: u64,
        timestamp_ms: u64,
        proposer: &AccountId,
        acc: BlockAcc,
    ) -> BlockReceipt {
        let mut receipt = BlockReceipt {
            tips: acc.tips,
            burned: acc.burned,
            ..Default::default()
        };
        let mut optimizer_weights: Vec<(AccountId, u128)> = Vec::new();
        let mut evaluator_counts: Vec<(AccountId, u64)> = Vec::new();
        let rp = params.reputation.clone();

        let due: Vec<Hash32> = self
            .optimae
            .iter()
            .filter(|(_, p)| match &p.reveal {
                Some(r) => r.votes.len() == r.quorum.len() || height >= r.vote_deadline,
                None => height > p.commit_height + params.reveal_window,
            })
            .map(|(c, _)| *c)
            .collect();

        for commitment in due {
            let Some(pending) = self.optimae.remove(&commitment) else {
                continue;
            };
            let burn = pending.stake.mul_div(params.stake_burn_percent, 100);
            let Some(reveal) = pending.reveal else {
                // Withheld reveal: part of the stake burns and the optimizer loses reputation.
                self.burn(burn);
                receipt.burned = receipt.burned.checked_add(burn).unwrap_or(receipt.burned);
                self.credit(&pending.optimizer, pending.stake.saturating_sub(burn));
                self.penalize(&pending.optimizer, rp.optimizer_gain, &rp);
                receipt.expired.push((commitment, burn));
                continue;
            };
            let Some(domain) = params.domain(&pending.domain) else {
                continue;
            };
            // A quorum drawn smaller than K (too few eligible evaluators) decides on its size.
            let rules = VerdictRules::from(domain).for_drawn_quorum(reveal.quorum.len());
            let champion = self
                .champions
                .get(&pending.domain)
                .map_or(domain.baseline_performance, |c| c.performance);
            let votes: Vec<CastVote> = reveal
                .votes
                .iter()
                .map(|(evaluator, v)| CastVote {
                    evaluator: *evaluator,
                    measured: v.measured,
                })
                .collect();
            let outcome = optimae::decide(&rules, reveal.claim, champion, &votes);

            // Evaluators: matching votes earn, everything else (contrary or absent) loses 3×.
            let matched: BTreeSet<AccountId> = outcome.matched.iter().copied().collect();
            for evaluator in &reveal.quorum {
                if matched.contains(evaluator) {
                    self.reward_reputation(evaluator, rp.evaluator_gain, &rp);
                    evaluator_counts.push((*evaluator, 1));
                } else {
                    self.penalize(evaluator, rp.evaluator_gain, &rp);
                }
            }

            let mut record = VerdictRecord {
                commitment,
                domain: pending.domain.clone(),
                optimizer: pending.optimizer,
                claim: reveal.claim,
                params_hash: reveal.params_hash,
                metrics: reveal.metrics.clone(),
                verdict: outcome.verdict,
                work: 0,
                votes: reveal.votes.clone(),
                burned: Amount::ZERO,
            };
            match outcome.verdict {
                Verdict::Accepted { median, credit } => {
                    let work = optimae::credit_units(credit, domain.work_per_unit);
                    record.work = work;
                    receipt.work = receipt.work.saturating_add(work);
                    self.credit(&pending.optimizer, pending.stake);
                    let score = self.account(&pending.optimizer).reputation;
                    optimizer_weights.push((
                        pending.optimizer,
                        reputation::reward_weight(work, score, &rp),
                    ));
                    self.reward_reputation(&pending.optimizer, rp.optimizer_gain, &rp);
                    self.champions.insert(
                        pending.domain.clone(),
                        Champion {
                            commitment,
                            optimizer: pending.optimizer,
                            performance: median,
                            params_hash: reveal.params_hash,
                            params_size: reveal.params_size,
                            height,
                        },
                    );
                }
                Verdict::Rejected { .. } => {
                    self.burn(burn);
                    receipt.burned = receipt.burned.checked_add(burn).unwrap_or(receipt.burned);
                    record.burned = burn;
                    self.credit(&pending.optimizer, pending.stake.saturating_sub(burn));
                    if !outcome.corroborated {
                        // A claim the quorum could not reproduce: the fake-claim penalty.
                        self.penalize(&pending.optimizer, rp.optimizer_gain, &rp);
                    }
                }
                Verdict::NoQuorum { .. } => self.credit(&pending.optimizer, pending.stake),
            }
            receipt.verdicts.push(record);
        }

        // Block reward: 65/30/5 by verified credit × reputation, matching votes, proposer.
        let subsidy = capped_subsidy(height, self.issued);
        let split = split_block_reward(&RewardInput {
            proposer: *proposer,
            subsidy,
            tips: acc.tips,
            optimizers: optimizer_weights,
            evaluators: evaluator_counts,
        });
        for (account, amount) in &split.payouts {
            self.credit(account, *amount);
        }
        self.issued = self
            .issued
            .checked_add(split.minted)
            .expect("capped subsidy keeps issuance under the cap");
        receipt.minted = split.minted;
        receipt.payouts = split.payouts;

        if reputation::is_decay_height(height, &rp) {
            for acc in self.accounts.values_mut() {
                acc.reputation = reputation::decay(acc.reputation, rp.decay_permille);
            }
        }

        self.difficulty = self.difficulty.next(
            height,
            self.tip_time_ms,
            timestamp_ms,
            params.target_block_time_ms,
        );
        self.base_fee = next_base_fee(
            self.base_fee,
            acc.tx_count,
            params.target_block_txs,
            params.min_base_fee,
        );
        self.recent_timestamps.push(timestamp_ms);
        if self.recent_timestamps.len() > MEDIAN_TIME_SPAN {
            self.recent_timestamps.remove(0);
        }
        self.cumulative_work = self
            .cumulative_work
            .saturating_add(u128::from(receipt.work) + 1);
        self.height = height;
        self.tip_time_ms = timestamp_ms;
        receipt
    }

    fn reward_reputation(
        &mut self,
        account: &AccountId,
        gain: u64,
        rp: &crate::params::ReputationParams,
    ) {
        let acc = self.accounts.entry(*account).or_default();
        acc.reputation = reputation::reward(acc.reputation, gain, rp.max);
    }

    fn penalize(&mut self, account: &AccountId, gain: u64, rp: &crate::params::ReputationParams) {
        let acc = self.accounts.entry(*account).or_default();
        acc.reputation = reputation::penalize(acc.reputation, gain, rp.penalty_multiplier);
    }

    /// Earliest timestamp at which a block without enough work is valid.
    pub fn empty_block_allowed_from(&self, params: &ChainParams) -> u64 {
        self.tip_time_ms
            .saturating_add(params.max_block_interval_ms)
    }

    /// Validates `block` against this (parent) state by re-executing it. On success returns
    /// the new state and the receipt; on any error this state is untouched.
    /// `now_ms` is the validator's clock for the future-drift rule (`None` skips that rule,
    /// e.g. when replaying stored blocks).
    pub fn apply_block(
        &self,
        params: &ChainParams,
        block: &Block,
        now_ms: Option<u64>,
    ) -> Result<(ChainState, BlockReceipt), BlockError> {
        let h = &block.header;
        if h.height != self.height + 1 {
            return Err(BlockError::WrongHeight {
                expected: self.height + 1,
                got: h.height,
            });
        }
        if h.parent != self.tip {
            return Err(BlockError::WrongParent {
                expected: self.tip,
                got: h.parent,
            });
        }
        check_timestamp(
            h.timestamp_ms,
            &self.recent_timestamps,
            now_ms,
            params.max_future_drift_ms,
        )
        .map_err(|e| BlockError::Timestamp(e.to_string()))?;
        let rank = schedule::proposer_rank(self, &h.proposer);
        let earliest_ms = schedule::earliest_timestamp(self, params, rank);
        if h.timestamp_ms < earliest_ms {
            return Err(BlockError::BeforeTurn {
                rank,
                earliest_ms,
                timestamp_ms: h.timestamp_ms,
            });
        }
        let ids = block.verify_stateless(params)?;

        let mut next = self.clone();
        next.begin_block();
        let mut acc = BlockAcc::default();
        for (index, (tx, id)) in block.txs.iter().zip(&ids).enumerate() {
            let (burned, tip) =
                next.apply_tx(params, tx, h.height)
                    .map_err(|e| BlockError::Apply {
                        index,
                        id: *id,
                        reason: e.to_string(),
                    })?;
            acc.add(burned, tip);
        }
        let receipt = next.end_block(params, h.height, h.timestamp_ms, &h.proposer, acc);

        let expect = |field: &'static str, claimed: String, actual: String| {
            if claimed == actual {
                Ok(())
            } else {
                Err(BlockError::Mismatch {
                    field,
                    claimed,
                    actual,
                })
            }
        };
        expect("work", h.work.to_string(), receipt.work.to_string())?;
        expect(
            "difficulty",
            h.difficulty.to_string(),
            self.difficulty.threshold.to_string(),
        )?;
        expect(
            "base_fee",
            h.base_fee.to_string(),
            self.base_fee.to_string(),
        )?;
        expect("minted", h.minted.to_string(), receipt.minted.to_string())?;
        expect(
            "cumulative_work",
            h.cumulative_work.to_string(),
            next.cumulative_work.to_string(),
        )?;
        if h.work < h.difficulty && h.timestamp_ms < self.empty_block_allowed_from(params) {
            return Err(BlockError::InsufficientWork {
                work: h.work,
                difficulty: h.difficulty,
            });
        }
        expect(
            "state_root",
            h.state_root.to_hex(),
            next.state_root().to_hex(),
        )?;
        next.tip = block.hash();
        Ok((next, receipt))
    }

    /// Builds and signs the next block from candidate transactions, skipping those that do
    /// not apply (each skip changes nothing). Fails when the block would carry too little work
    /// before the empty-block interval.
    pub fn build_block(
        &self,
        params: &ChainParams,
        proposer: &Keypair,
        timestamp_ms: u64,
        candidates: impl IntoIterator<Item = SignedTx>,
    ) -> Result<BuiltBlock, BuildError> {
        check_timestamp(
            timestamp_ms,
            &self.recent_timestamps,
            None,
            params.max_future_drift_ms,
        )
        .map_err(|e| BuildError::Timestamp(e.to_string()))?;
        let rank = schedule::proposer_rank(self, &proposer.account());
        let earliest_ms = schedule::earliest_timestamp(self, params, rank);
        if timestamp_ms < earliest_ms {
            return Err(BuildError::NotYourTurn { rank, earliest_ms });
        }
        let height = self.height + 1;
        let mut next = self.clone();
        next.begin_block();
        let mut acc = BlockAcc::default();
        let mut txs = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = BTreeSet::new();
        for tx in candidates {
            if txs.len() >= params.max_block_txs as usize {
                break;
            }
            let id = match tx.verify_stateless(params) {
                Ok(id) => id,
                Err(e) => {
                    skipped.push(Skipped {
                        id: tx.id(),
                        reason: ApplyError::Invalid(e.to_string()),
                    });
                    continue;
                }
            };
            if !seen.insert(id) {
                continue;
            }
            match next.apply_tx(params, &tx, height) {
                Ok((burned, tip)) => {
                    acc.add(burned, tip);
                    txs.push(tx);
                }
                Err(reason) => skipped.push(Skipped { id, reason }),
            }
        }
        let receipt = next.end_block(params, height, timestamp_ms, &proposer.account(), acc);
        let allowed_from_ms = self.empty_block_allowed_from(params);
        if receipt.work < self.difficulty.threshold && timestamp_ms < allowed_from_ms {
            return Err(BuildError::NotReady {
                work: receipt.work,
                difficulty: self.difficulty.threshold,
                allowed_from_ms,
            });
        }
        let ids: Vec<TxId> = txs.iter().map(SignedTx::id).collect();
        let header = BlockHeader {
            height,
            parent: self.tip,
            timestamp_ms,
            tx_root: merkle_root(&ids),
            state_root: next.state_root(),
            proposer: proposer.account(),
            work: receipt.work,
            cumulative_work: next.cumulative_work,
            difficulty: self.difficulty.threshold,
            base_fee: self.base_fee,
            minted: receipt.minted,
        };
        let block = Block::seal(header, txs, proposer);
        next.tip = block.hash();
        Ok(BuiltBlock {
            block,
            state: next,
            receipt,
            skipped,
        })
    }
}

impl BlockAcc {
    fn add(&mut self, burned: Amount, tip: Amount) {
        self.burned = self.burned.checked_add(burned).unwrap_or(self.burned);
        self.tips = self.tips.checked_add(tip).unwrap_or(self.tips);
        self.tx_count += 1;
    }
}

// ---- canonical encoding of the state (for the state root) ---------------------------------

impl Encode for Account {
    fn encode(&self, out: &mut Vec<u8>) {
        self.balance.encode(out);
        put::u64(out, self.nonce);
        put::u64(out, self.reputation);
    }
}

impl Encode for Revealed {
    fn encode(&self, out: &mut Vec<u8>) {
        self.params_hash.encode(out);
        put::u64(out, self.params_size);
        put::f64(out, self.claim);
        put::len(out, self.metrics.len());
        for m in &self.metrics {
            m.encode(out);
        }
        put::u64(out, self.reveal_height);
        self.quorum_seed.encode(out);
        put::len(out, self.quorum.len());
        for a in &self.quorum {
            a.encode(out);
        }
        put::len(out, self.votes.len());
        for (a, v) in &self.votes {
            a.encode(out);
            put::f64(out, v.measured);
            v.data_hash.encode(out);
        }
        put::u64(out, self.vote_deadline);
    }
}

impl Encode for PendingOptimae {
    fn encode(&self, out: &mut Vec<u8>) {
        self.domain.encode(out);
        self.optimizer.encode(out);
        self.stake.encode(out);
        put::u64(out, self.commit_height);
        put::bool(out, self.commit_block.is_some());
        if let Some(h) = &self.commit_block {
            h.encode(out);
        }
        put::bool(out, self.reveal.is_some());
        if let Some(r) = &self.reveal {
            r.encode(out);
        }
    }
}

impl Encode for Champion {
    fn encode(&self, out: &mut Vec<u8>) {
        self.commitment.encode(out);
        self.optimizer.encode(out);
        put::f64(out, self.performance);
        self.params_hash.encode(out);
        put::u64(out, self.params_size);
        put::u64(out, self.height);
    }
}

fn encode_map<K: Encode, V: Encode>(out: &mut Vec<u8>, map: &BTreeMap<K, V>) {
    put::len(out, map.len());
    for (k, v) in map {
        k.encode(out);
        v.encode(out);
    }
}

impl Encode for ChainState {
    /// Everything but `tip`: the state root must not depend on the hash of the block whose
    /// header carries it.
    fn encode(&self, out: &mut Vec<u8>) {
        put::u64(out, self.height);
        put::u64(out, self.tip_time_ms);
        put::u128(out, self.cumulative_work);
        put::len(out, self.recent_timestamps.len());
        for t in &self.recent_timestamps {
            put::u64(out, *t);
        }
        self.difficulty.encode(out);
        self.base_fee.encode(out);
        self.issued.encode(out);
        self.burned.encode(out);
        encode_map(out, &self.accounts);
        put::len(out, self.evaluators.len());
        for (domain, members) in &self.evaluators {
            domain.encode(out);
            encode_map(out, members);
        }
        encode_map(out, &self.optimae);
        encode_map(out, &self.champions);
        encode_map(out, &self.channels);
    }
}
