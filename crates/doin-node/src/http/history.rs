//! `GET /domains/{id}/history?limit=&before=&verdicts=`: the verdicts of a domain over time,
//! from the stored block receipts. With the default `verdicts=accepted` that is the
//! succession of its champions: each entry's `performance` is the verified (median
//! measured) performance, so the list is the domain's best performance over time, the
//! dashboard's chart.
//!
//! Pages go backwards from the tip (newest first in the store, returned oldest first so a
//! chart can draw them as they come). A page is bounded twice: by `limit` entries and by
//! [`MAX_SCAN_BLOCKS`] heights scanned, so a domain with few verdicts on a long chain costs a
//! bounded amount per request; `next_before` says where the next page starts (`null` once
//! genesis is reached).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::optimae::Verdict;
use doin_core::params::DomainId;

use super::error::{ApiError, ApiResult};
use super::{json_with_capacity, truncate, ApiState};

/// Entries a page holds when `limit` is not given.
pub const DEFAULT_HISTORY_LIMIT: u32 = 200;
/// Most entries one page may hold.
pub const MAX_HISTORY_LIMIT: u32 = 1_000;
/// Most heights one page scans. Empty blocks cost a substring test each (well under a
/// microsecond), so this keeps a page in the tens of milliseconds at worst.
pub const MAX_SCAN_BLOCKS: u64 = 100_000;

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<u32>,
    /// Only heights below this one (default: everything up to the tip).
    before: Option<u64>,
    /// `accepted` (default) or `all` (rejected and no-quorum verdicts too).
    verdicts: Option<String>,
}

#[derive(Debug, Serialize)]
struct Entry {
    height: u64,
    time_ms: u64,
    /// The optimae's commitment, its id everywhere in the API.
    optimae: Hash32,
    optimizer: AccountId,
    /// `accepted`, `rejected` or `no_quorum`.
    verdict: &'static str,
    /// Verified performance: the median of the quorum's measurements (null without quorum).
    performance: Option<f64>,
    /// Improvement over the champion it replaced (accepted only).
    credit: Option<f64>,
    claim: f64,
    votes: usize,
}

#[derive(Debug, Serialize)]
struct History<'a> {
    domain_id: &'a DomainId,
    /// This node's target for the domain (its config), when it works on it.
    target_performance: Option<f64>,
    /// The performance a first optimae must beat (chain parameter).
    baseline_performance: f64,
    /// The current champion's performance.
    best_performance: Option<f64>,
    tip_height: u64,
    /// Heights `scanned_from..before` were searched for this page.
    scanned_from: u64,
    /// `before` for the next (older) page; null when this page reached genesis.
    next_before: Option<u64>,
    /// Oldest first.
    entries: Vec<Entry>,
}

/// Where a page of `stored` (newest first, at most `limit`, from heights `from..before`)
/// ends: `(scanned_from, next_before)`. A full page may have cut the verdicts of its oldest
/// block short; those are dropped here and come whole with the next page, unless that block
/// alone fills the page (then the next page starts below it, skipping its remaining
/// verdicts: a limit of hundreds per block is never met in practice).
fn page_end(
    stored: &mut Vec<crate::storage::StoredVerdict>,
    limit: u32,
    from: u64,
) -> (u64, Option<u64>) {
    let full = limit > 0 && stored.len() >= limit as usize;
    match stored.last().map(|v| v.height) {
        Some(oldest) if full => {
            let cut = stored.iter().filter(|v| v.height == oldest).count();
            if cut < stored.len() {
                stored.truncate(stored.len() - cut);
                (oldest + 1, Some(oldest + 1))
            } else {
                (oldest, Some(oldest))
            }
        }
        _ => (from, (from > 0).then_some(from)),
    }
}

/// The history of one domain's verdicts (accepted ones by default).
pub(super) async fn history(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let ctx = &api.ctx;
    let Some(domain) = ctx.params.domains.iter().find(|d| d.id.as_str() == id) else {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "unknown_domain",
            format!("no domain {:?} on this chain", truncate(&id, 80)),
        ));
    };
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY_LIMIT);
    if limit > MAX_HISTORY_LIMIT {
        return Err(ApiError::bad_request(
            "limit_too_large",
            format!("limit is at most {MAX_HISTORY_LIMIT}, got {limit}"),
        ));
    }
    let accepted_only = match q.verdicts.as_deref() {
        None | Some("accepted") => true,
        Some("all") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "verdicts must be \"accepted\" or \"all\", got {:?}",
                    truncate(other, 40)
                ),
            ))
        }
    };
    let view = ctx.view();
    let tip = view.state.height;
    let before = q.before.unwrap_or(u64::MAX).min(tip.saturating_add(1));
    let from = before.saturating_sub(MAX_SCAN_BLOCKS);
    let mut stored = ctx
        .store
        .verdicts(&domain.id, from, before, limit, accepted_only)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let (scanned_from, next_before) = page_end(&mut stored, limit, from);
    stored.reverse();
    let entries: Vec<Entry> = stored
        .into_iter()
        .map(|v| {
            let r = v.record;
            let (verdict, performance, credit) = match r.verdict {
                Verdict::Accepted { median, credit } => ("accepted", Some(median), Some(credit)),
                Verdict::Rejected { median, .. } => ("rejected", Some(median), None),
                Verdict::NoQuorum { .. } => ("no_quorum", None, None),
            };
            Entry {
                height: v.height,
                time_ms: v.timestamp_ms,
                optimae: r.commitment,
                optimizer: r.optimizer,
                verdict,
                performance,
                credit,
                claim: r.claim,
                votes: r.votes.len(),
            }
        })
        .collect();
    let body = History {
        domain_id: &domain.id,
        target_performance: ctx.domain(&domain.id).and_then(|d| d.target_performance),
        baseline_performance: domain.baseline_performance,
        best_performance: view.state.champions.get(&domain.id).map(|c| c.performance),
        tip_height: tip,
        scanned_from,
        next_before,
        entries,
    };
    Ok(json_with_capacity(&body, 512 + 300 * body.entries.len()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use doin_core::amount::Amount;
    use doin_core::identity::Keypair;
    use doin_core::optimae::RejectReason;
    use doin_core::params::ChainParams;
    use doin_core::state::{BlockReceipt, ChainState, VerdictRecord};

    use super::*;
    use crate::storage::{Store, StoredVerdict};

    fn record(domain: &DomainId, n: u8, verdict: Verdict) -> VerdictRecord {
        VerdictRecord {
            commitment: Hash32([n; 32]),
            domain: domain.clone(),
            optimizer: Keypair::from_seed([9; 32]).account(),
            claim: f64::from(n),
            params_hash: Hash32([n; 32]),
            metrics: Vec::new(),
            verdict,
            work: 0,
            votes: BTreeMap::new(),
            burned: Amount::ZERO,
        }
    }

    fn accepted(median: f64) -> Verdict {
        Verdict::Accepted {
            median,
            credit: 1.0,
        }
    }

    /// A store of 40 empty blocks whose receipts carry verdicts: block 5 accepts one of
    /// `quadratic` and rejects one of `other`, block 10 rejects one of `quadratic`, blocks
    /// 20 and 30 accept one each, block 30 two more (three verdicts in one block).
    async fn store_with_verdicts(dir: &std::path::Path) -> (Store, DomainId) {
        let mut params = ChainParams::dev("history");
        let q = params.domains[0].id.clone();
        let mut other = params.domains[0].clone();
        other.id = DomainId::new("other").unwrap();
        params.domains.push(other.clone());
        let key = Keypair::from_seed([1; 32]);
        let (genesis, mut state) = ChainState::genesis(&params);
        let store = Store::open(&dir.join("chain.db"), 100).await.unwrap();
        store.init(&params, &genesis, &state).await.unwrap();
        for height in 1..=40u64 {
            let ts = state.empty_block_allowed_from(&params);
            let built = state.build_block(&params, &key, ts, Vec::new()).unwrap();
            let mut receipt = BlockReceipt {
                verdicts: Vec::new(),
                ..built.receipt.clone()
            };
            let n = height as u8;
            match height {
                5 => {
                    receipt.verdicts.push(record(&q, n, accepted(-50.0)));
                    receipt.verdicts.push(record(
                        &other.id,
                        n + 100,
                        Verdict::NoQuorum {
                            votes: 0,
                            needed: 1,
                        },
                    ));
                }
                10 => receipt.verdicts.push(record(
                    &q,
                    n,
                    Verdict::Rejected {
                        reason: RejectReason::NoImprovement,
                        median: -49.9,
                    },
                )),
                20 => receipt.verdicts.push(record(&q, n, accepted(-20.0))),
                30 => {
                    for i in 0..3 {
                        receipt
                            .verdicts
                            .push(record(&q, n + i, accepted(-10.0 + f64::from(i))));
                    }
                }
                _ => {}
            }
            store
                .append_block(&built.block, &built.state, &receipt)
                .await
                .unwrap();
            state = built.state;
        }
        (store, q)
    }

    fn heights(v: &[StoredVerdict]) -> Vec<u64> {
        v.iter().map(|v| v.height).collect()
    }

    #[tokio::test]
    async fn verdicts_are_filtered_by_domain_kind_and_range_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, q) = store_with_verdicts(dir.path()).await;
        let all = store.verdicts(&q, 0, 41, 100, false).await.unwrap();
        assert_eq!(heights(&all), [30, 30, 30, 20, 10, 5]);
        // Within a block, in receipt order.
        let claims: Vec<f64> = all[..3].iter().map(|v| v.record.claim).collect();
        assert_eq!(claims, [30.0, 31.0, 32.0]);
        assert!(all.iter().all(|v| v.record.domain == q));
        assert!(all.iter().all(|v| v.timestamp_ms > 0));
        let acc = store.verdicts(&q, 0, 41, 100, true).await.unwrap();
        assert_eq!(heights(&acc), [30, 30, 30, 20, 5]);
        assert_eq!(
            heights(&store.verdicts(&q, 6, 30, 100, false).await.unwrap()),
            [20, 10]
        );
        assert_eq!(
            heights(&store.verdicts(&q, 0, 41, 2, false).await.unwrap()),
            [30, 30]
        );
        let other = DomainId::new("other").unwrap();
        assert_eq!(
            heights(&store.verdicts(&other, 0, 41, 100, false).await.unwrap()),
            [5]
        );
        assert!(store
            .verdicts(&other, 0, 41, 100, true)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .verdicts(&q, 10, 10, 100, false)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .verdicts(&q, 0, 41, 0, false)
            .await
            .unwrap()
            .is_empty());
        assert!(
            store
                .verdicts(&q, 0, u64::MAX, 100, false)
                .await
                .unwrap()
                .len()
                == 6
        );
    }

    #[tokio::test]
    async fn pages_never_split_a_block_and_chain_to_genesis() {
        let dir = tempfile::tempdir().unwrap();
        let (store, q) = store_with_verdicts(dir.path()).await;
        // limit 4 cuts into nothing: 30,30,30,20 is full, block 20 is whole but may not be:
        // it is dropped and comes with the next page.
        let mut page = store.verdicts(&q, 0, 41, 4, false).await.unwrap();
        assert_eq!(page_end(&mut page, 4, 0), (21, Some(21)));
        assert_eq!(heights(&page), [30, 30, 30]);
        let mut page = store.verdicts(&q, 0, 21, 4, false).await.unwrap();
        assert_eq!(page_end(&mut page, 4, 0), (0, None));
        assert_eq!(heights(&page), [20, 10, 5]);
        // One block fills the page: keep it, go on below it.
        let mut page = store.verdicts(&q, 0, 41, 2, false).await.unwrap();
        assert_eq!(page_end(&mut page, 2, 0), (30, Some(30)));
        assert_eq!(heights(&page), [30, 30]);
        // A scan window that starts above genesis points below itself.
        let mut page = store.verdicts(&q, 15, 41, 100, false).await.unwrap();
        assert_eq!(page_end(&mut page, 100, 15), (15, Some(15)));
        assert_eq!(heights(&page), [30, 30, 30, 20]);
    }
}
