//! `GET /optimae`, `GET /optimae/{id}` and `GET /reputation`.
//!
//! Optimae between commit and verdict live in the chain state, so listing them reads
//! memory. A decided optimae has left the state: its verdict sits in the receipt of the
//! block that took it, found by a scan of recent receipts ([`MAX_VERDICT_LOOKBACK`] blocks
//! below the tip, a bound on the work one request may cause).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::amount::Amount;
use doin_core::block::BlockHash;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::optimae::votes_needed;
use doin_core::params::DomainId;
use doin_core::reputation::is_eligible;
use doin_core::state::{PendingOptimae, RecordedVote, VerdictRecord};
use doin_core::tx::Metric;

use super::error::{ApiError, ApiResult};
use super::paging::{parse_query, PageRules};
use super::{json, json_with_capacity, parse_hex32, truncate, ApiState};

/// Rules of `GET /optimae?limit=&offset=`.
pub const OPTIMAE_PAGE: PageRules = PageRules {
    default_limit: 20,
    max_limit: 100,
    max_offset: 10_000,
};
/// Rules of `GET /reputation?limit=&offset=`.
pub const REPUTATION_PAGE: PageRules = PageRules {
    default_limit: 20,
    max_limit: 100,
    // The ranking keeps `offset + limit` entries in a heap: bounded memory per request.
    max_offset: 10_000,
};
/// How far below the tip `GET /optimae/{id}` looks for the verdict of a decided optimae.
pub const MAX_VERDICT_LOOKBACK: u64 = 100_000;

/// Where an optimae is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum OptimaeStatus {
    /// Committed, waiting for its reveal.
    Committed,
    /// Revealed: its quorum is voting.
    Revealed,
    /// Decided: the verdict is in a block receipt.
    Decided,
    /// Never revealed in time: part of the stake burned.
    Expired,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct OptimaeQuery {
    /// Only this domain.
    domain: Option<String>,
    /// `committed` or `revealed` (decided ones are in `/stats/export.csv`).
    status: Option<OptimaeStatus>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// One evaluator's vote so far.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct VoteEntry {
    evaluator: AccountId,
    measured: f64,
    data_hash: Hash32,
}

fn votes_of(votes: &BTreeMap<AccountId, RecordedVote>) -> Vec<VoteEntry> {
    votes
        .iter()
        .map(|(evaluator, v)| VoteEntry {
            evaluator: *evaluator,
            measured: v.measured,
            data_hash: v.data_hash,
        })
        .collect()
}

/// What the reveal added, with the quorum's progress.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RevealView {
    params_hash: Hash32,
    params_size: u64,
    claim: f64,
    metrics: Vec<Metric>,
    reveal_height: u64,
    quorum_seed: Hash32,
    /// The evaluators drawn, in draw order.
    quorum: Vec<AccountId>,
    /// ⌈2K/3⌉ of the drawn quorum K must vote (and agree) for an acceptance.
    votes_needed: usize,
    votes_cast: usize,
    votes: Vec<VoteEntry>,
    /// Last height at which votes count; the verdict is taken at its end.
    vote_deadline: u64,
}

/// An optimae still in the chain state.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct PendingView {
    id: Hash32,
    status: OptimaeStatus,
    domain: DomainId,
    optimizer: AccountId,
    stake: Amount,
    commit_height: u64,
    /// Hash of the block that included the commit (known from the next block on).
    commit_block: Option<BlockHash>,
    /// Last height at which the reveal is accepted.
    reveal_deadline: u64,
    reveal: Option<RevealView>,
}

fn pending_view(id: Hash32, p: &PendingOptimae, reveal_window: u64) -> PendingView {
    PendingView {
        id,
        status: if p.reveal.is_some() {
            OptimaeStatus::Revealed
        } else {
            OptimaeStatus::Committed
        },
        domain: p.domain.clone(),
        optimizer: p.optimizer,
        stake: p.stake,
        commit_height: p.commit_height,
        commit_block: p.commit_block,
        reveal_deadline: p.commit_height.saturating_add(reveal_window),
        reveal: p.reveal.as_ref().map(|r| RevealView {
            params_hash: r.params_hash,
            params_size: r.params_size,
            claim: r.claim,
            metrics: r.metrics.clone(),
            reveal_height: r.reveal_height,
            quorum_seed: r.quorum_seed,
            quorum: r.quorum.clone(),
            votes_needed: votes_needed(u32::try_from(r.quorum.len()).unwrap_or(u32::MAX)),
            votes_cast: r.votes.len(),
            votes: votes_of(&r.votes),
            vote_deadline: r.vote_deadline,
        }),
    }
}

/// `GET /optimae`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct OptimaeList {
    height: u64,
    /// Matching optimae in all (before paging).
    count: usize,
    offset: usize,
    limit: usize,
    has_more: bool,
    /// By commit height, then id.
    optimae: Vec<PendingView>,
}

fn parse_domain(s: &str) -> ApiResult<DomainId> {
    DomainId::new(s).map_err(|e| ApiError::bad_request("invalid_domain", e.to_string()))
}

/// Optimae between commit and verdict, optionally of one domain and in one status.
pub(super) async fn list(
    State(api): State<ApiState>,
    query: Result<Query<OptimaeQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let page = OPTIMAE_PAGE.page(q.limit, q.offset)?;
    let domain = q.domain.as_deref().map(parse_domain).transpose()?;
    if let Some(d) = &domain {
        if api.ctx.params.domain(d).is_none() {
            return Err(ApiError::not_found(format!(
                "domain {d} is not on this chain"
            )));
        }
    }
    if matches!(
        q.status,
        Some(OptimaeStatus::Decided | OptimaeStatus::Expired)
    ) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "status is `committed` or `revealed`: decided optimae are listed by \
             /stats/export.csv and looked up by /optimae/{id}",
        ));
    }
    let view = api.ctx.view();
    let state = &*view.state;
    let mut matching: Vec<(&Hash32, &PendingOptimae)> = state
        .optimae
        .iter()
        .filter(|(_, p)| domain.as_ref().is_none_or(|d| &p.domain == d))
        .filter(|(_, p)| match q.status {
            Some(OptimaeStatus::Committed) => p.reveal.is_none(),
            Some(OptimaeStatus::Revealed) => p.reveal.is_some(),
            _ => true,
        })
        .collect();
    matching.sort_by_key(|(id, p)| (p.commit_height, **id));
    let count = matching.len();
    let optimae: Vec<PendingView> = matching
        .into_iter()
        .skip(page.offset)
        .take(page.limit)
        .map(|(id, p)| pending_view(*id, p, api.ctx.params.reveal_window))
        .collect();
    let body = OptimaeList {
        height: state.height,
        count,
        offset: page.offset,
        limit: page.limit,
        has_more: page.offset.saturating_add(optimae.len()) < count,
        optimae,
    };
    Ok(json_with_capacity(&body, 512 + 1200 * body.optimae.len()))
}

/// A decided (or expired) optimae, from the receipt of the block that decided it.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct DecidedView {
    id: Hash32,
    status: OptimaeStatus,
    /// The block whose end took the verdict.
    height: u64,
    block_hash: BlockHash,
    timestamp_ms: u64,
    /// The verdict with the claim, metrics and votes it was taken on (absent when expired).
    record: Option<VerdictRecord>,
    /// Stake burned (rejections and expiries).
    burned: Amount,
}

/// `GET /optimae/{id}`: either an optimae in the state or a decided one.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub(super) enum OptimaeView {
    Pending(PendingView),
    Decided(DecidedView),
}

/// One optimae by id (its commitment): pending from the state, decided from its receipt.
pub(super) async fn get(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let id = Hash32(parse_hex32("optimae id (commitment)", &id)?);
    let view = api.ctx.view();
    let tip = view.state.height;
    if let Some(p) = view.state.optimae.get(&id) {
        let body = OptimaeView::Pending(pending_view(id, p, api.ctx.params.reveal_window));
        return Ok(json_with_capacity(&body, 2048));
    }
    let from = tip.saturating_sub(MAX_VERDICT_LOOKBACK);
    let mut to = tip;
    // A hash in a receipt may also be a params or data hash; keep looking below such a hit.
    // Each step moves `to` down, so the loop ends; a decided optimae is in one receipt only.
    loop {
        let Some(record) = api
            .ctx
            .store
            .receipt_mentioning(&id, from, to)
            .await
            .map_err(|e| ApiError::internal(&e))?
        else {
            break;
        };
        if let Some(receipt) = &record.receipt {
            let verdict = receipt.verdicts.iter().find(|v| v.commitment == id);
            let expired = receipt.expired.iter().find(|(c, _)| *c == id);
            if verdict.is_some() || expired.is_some() {
                let body = OptimaeView::Decided(DecidedView {
                    id,
                    status: if verdict.is_some() {
                        OptimaeStatus::Decided
                    } else {
                        OptimaeStatus::Expired
                    },
                    height: record.height,
                    block_hash: record.hash,
                    timestamp_ms: record.timestamp_ms,
                    burned: verdict
                        .map(|v| v.burned)
                        .or(expired.map(|(_, b)| *b))
                        .unwrap_or_default(),
                    record: verdict.cloned(),
                });
                return Ok(json_with_capacity(&body, 2048));
            }
        }
        if record.height <= from {
            break;
        }
        to = record.height - 1;
    }
    Err(ApiError::not_found(format!(
        "optimae {} is neither pending nor decided in the last {MAX_VERDICT_LOOKBACK} blocks",
        truncate(&id.to_hex(), 80)
    )))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct ReputationQuery {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// One account in the reputation ranking.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ReputationEntry {
    /// 1 for the highest reputation.
    rank: usize,
    account: AccountId,
    /// Milli-points.
    reputation: u64,
    /// Whether the account may be drawn into quorums (reputation ≥ `min_eligible`).
    eligible: bool,
    /// Domains where the account is a registered evaluator.
    evaluator_of: Vec<DomainId>,
}

/// `GET /reputation`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ReputationPage {
    height: u64,
    /// Least reputation (milli-points) to be drawn into a quorum.
    min_eligible: u64,
    /// Reputation never exceeds this (milli-points).
    max: u64,
    /// Accounts with a reputation above zero.
    count: usize,
    offset: usize,
    limit: usize,
    has_more: bool,
    /// Highest reputation first; ties by account id.
    accounts: Vec<ReputationEntry>,
}

/// Accounts ranked by reputation, with quorum eligibility.
pub(super) async fn reputation(
    State(api): State<ApiState>,
    query: Result<Query<ReputationQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let page = REPUTATION_PAGE.page(q.limit, q.offset)?;
    let view = api.ctx.view();
    let state = &*view.state;
    let rp = &api.ctx.params.reputation;
    let keep = page.offset.saturating_add(page.limit);
    // A min-heap of the best `keep` (reputation, Reverse(account)): O(n log keep).
    let mut heap: BinaryHeap<Reverse<(u64, Reverse<AccountId>)>> = BinaryHeap::new();
    let mut count = 0usize;
    for (account, acc) in state.accounts.iter().filter(|(_, a)| a.reputation > 0) {
        count += 1;
        if keep == 0 {
            continue;
        }
        let key = (acc.reputation, Reverse(*account));
        if heap.len() < keep {
            heap.push(Reverse(key));
        } else if heap.peek().is_some_and(|Reverse(min)| key > *min) {
            heap.pop();
            heap.push(Reverse(key));
        }
    }
    let mut ranked: Vec<(u64, AccountId)> = heap
        .into_iter()
        .map(|Reverse((r, Reverse(a)))| (r, a))
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let accounts: Vec<ReputationEntry> = ranked
        .into_iter()
        .enumerate()
        .skip(page.offset)
        .map(|(i, (reputation, account))| ReputationEntry {
            rank: i + 1,
            account,
            reputation,
            eligible: is_eligible(reputation, rp),
            evaluator_of: state
                .evaluators
                .iter()
                .filter(|(_, bonds)| bonds.contains_key(&account))
                .map(|(d, _)| d.clone())
                .collect(),
        })
        .collect();
    let body = ReputationPage {
        height: state.height,
        min_eligible: rp.min_eligible,
        max: rp.max,
        count,
        offset: page.offset,
        limit: page.limit,
        has_more: page.offset.saturating_add(accounts.len()) < count,
        accounts,
    };
    Ok(json(&body))
}
