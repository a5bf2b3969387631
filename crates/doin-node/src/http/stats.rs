//! `GET /stats` (per-domain outcome counts, best performance, time to target) and
//! `GET /stats/export.csv` (one row per verdict, a bounded height range per request).
//!
//! # Why a cache
//! Counting every verdict ever taken means reading every receipt of the chain. `/stats`
//! keeps a running tally over the **final** blocks (those that can never be reorganized,
//! so the tally never has to be undone) and adds the few unfinalized blocks above them on
//! each request. A request scans at most [`MAX_STATS_SCAN_BLOCKS`] new final blocks: on a
//! long chain the first requests answer with `complete: false` and a partial tally that
//! each following request extends, so no single request does unbounded work.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::chain::finalized_height;
use doin_core::hash::Hash32;
use doin_core::optimae::{RejectReason, Verdict};
use doin_core::params::DomainId;
use doin_core::tx::TxKind;

use super::error::{ApiError, ApiResult};
use super::paging::{height_range, parse_query};
use super::{json_with_capacity, ApiState};
use crate::storage::ReceiptRecord;

/// Most new final blocks one `GET /stats` request adds to the tally.
pub const MAX_STATS_SCAN_BLOCKS: u64 = 20_000;
/// Receipts read per storage query while tallying.
const SCAN_BATCH_BLOCKS: u64 = 500;
/// Blocks `GET /stats/export.csv` covers when no range is given.
pub const DEFAULT_EXPORT_BLOCKS: u64 = 1_000;
/// Most blocks one `GET /stats/export.csv` request may cover.
pub const MAX_EXPORT_BLOCKS: u64 = 10_000;

/// When a domain first reached the node's target performance.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
pub(super) struct TargetReached {
    height: u64,
    timestamp_ms: u64,
    /// The verified performance that reached it.
    performance: f64,
    /// Milliseconds from genesis to that block.
    time_to_target_ms: u64,
}

/// Running counts of one domain.
#[derive(Debug, Clone, Default)]
struct DomainTally {
    accepted: u64,
    rejected: u64,
    no_quorum: u64,
    expired: u64,
    best_verified: Option<f64>,
    first_verdict_height: Option<u64>,
    last_verdict_height: Option<u64>,
    target_reached: Option<TargetReached>,
}

/// The tally over blocks `1..=scanned_to`.
#[derive(Debug, Clone, Default)]
struct Tally {
    scanned_to: u64,
    domains: BTreeMap<DomainId, DomainTally>,
    /// Expiries whose commit could not be found (cannot happen on a consistent store).
    expired_unattributed: u64,
}

/// The `/stats` cache, shared by requests (one tallies at a time; the others wait for it
/// rather than repeat its work).
#[derive(Debug, Default)]
pub(crate) struct StatsCache {
    final_tally: tokio::sync::Mutex<Tally>,
}

impl Tally {
    /// Adds one block's receipt. `commit_domains` maps the commitments the block expired to
    /// their domains.
    fn add(
        &mut self,
        r: &ReceiptRecord,
        genesis_ms: u64,
        targets: &BTreeMap<DomainId, f64>,
        commit_domains: &BTreeMap<Hash32, DomainId>,
    ) {
        let Some(receipt) = &r.receipt else { return };
        for v in &receipt.verdicts {
            let d = self.domains.entry(v.domain.clone()).or_default();
            d.first_verdict_height.get_or_insert(r.height);
            d.last_verdict_height = Some(r.height);
            match v.verdict {
                Verdict::Accepted { median, .. } => {
                    d.accepted += 1;
                    d.best_verified = Some(d.best_verified.map_or(median, |b| b.max(median)));
                    let reached = targets.get(&v.domain).is_some_and(|t| median >= *t);
                    if reached && d.target_reached.is_none() {
                        d.target_reached = Some(TargetReached {
                            height: r.height,
                            timestamp_ms: r.timestamp_ms,
                            performance: median,
                            time_to_target_ms: r.timestamp_ms.saturating_sub(genesis_ms),
                        });
                    }
                }
                Verdict::Rejected { .. } => d.rejected += 1,
                Verdict::NoQuorum { .. } => d.no_quorum += 1,
            }
        }
        for (commitment, _) in &receipt.expired {
            match commit_domains.get(commitment) {
                Some(domain) => self.domains.entry(domain.clone()).or_default().expired += 1,
                None => self.expired_unattributed += 1,
            }
        }
        self.scanned_to = self.scanned_to.max(r.height);
    }
}

/// The domains of the commitments `r` expired: an expiry happens at the first height past
/// the reveal window, so the commit is in block `height − reveal_window − 1`.
async fn expired_domains(
    api: &super::Api,
    r: &ReceiptRecord,
) -> ApiResult<BTreeMap<Hash32, DomainId>> {
    let mut out = BTreeMap::new();
    let Some(receipt) = &r.receipt else {
        return Ok(out);
    };
    if receipt.expired.is_empty() {
        return Ok(out);
    }
    let Some(commit_height) = r
        .height
        .checked_sub(api.ctx.params.reveal_window.saturating_add(1))
    else {
        return Ok(out);
    };
    let Some(block) = api
        .ctx
        .store
        .block_by_height(commit_height)
        .await
        .map_err(|e| ApiError::internal(&e))?
    else {
        return Ok(out);
    };
    for tx in &block.txs {
        if let TxKind::Commit {
            domain, commitment, ..
        } = &tx.body.kind
        {
            if receipt.expired.iter().any(|(c, _)| c == commitment) {
                out.insert(*commitment, domain.clone());
            }
        }
    }
    Ok(out)
}

/// Adds blocks `from..=to` to `tally`, in batches.
async fn scan(
    api: &super::Api,
    tally: &mut Tally,
    from: u64,
    to: u64,
    targets: &BTreeMap<DomainId, f64>,
) -> ApiResult<()> {
    let genesis_ms = api.ctx.params.genesis_time_ms;
    let mut next = from;
    while next <= to {
        let last = next.saturating_add(SCAN_BATCH_BLOCKS - 1).min(to);
        let records = api
            .ctx
            .store
            .receipts(next, last)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        for r in &records {
            let domains = expired_domains(api, r).await?;
            tally.add(r, genesis_ms, targets, &domains);
        }
        tally.scanned_to = tally.scanned_to.max(last);
        match last.checked_add(1) {
            Some(n) => next = n,
            None => break,
        }
    }
    Ok(())
}

/// One domain in `/stats`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct DomainStats {
    domain_id: DomainId,
    /// Verdicts taken (accepted + rejected + no quorum).
    verdicts: u64,
    accepted: u64,
    rejected: u64,
    /// Too few valid votes to decide: the stake was returned.
    no_quorum: u64,
    /// Commitments never revealed in time.
    expired: u64,
    /// Optimae committed and not yet decided.
    pending: usize,
    /// Optimization rounds this node has run on the domain (null if it does not optimize it).
    rounds: Option<u64>,
    /// The champion's verified performance now.
    best_performance: Option<f64>,
    /// The performance the domain starts from.
    baseline_performance: f64,
    /// This node's target for the domain (null when not configured here).
    target_performance: Option<f64>,
    /// When an accepted verdict first reached the target (null if not yet).
    target_reached: Option<TargetReached>,
    first_verdict_height: Option<u64>,
    last_verdict_height: Option<u64>,
}

/// `GET /stats`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct StatsView {
    height: u64,
    /// The tally covers blocks up to here.
    scanned_to: u64,
    /// `false` while the tally is still catching up with a long chain: ask again.
    complete: bool,
    domains: Vec<DomainStats>,
}

pub(super) async fn stats(State(api): State<ApiState>) -> ApiResult<Response> {
    let ctx = &api.ctx;
    let view = ctx.view();
    let state = &*view.state;
    let tip = state.height;
    let final_h = finalized_height(tip, ctx.params.finality_depth);
    let targets: BTreeMap<DomainId, f64> = ctx
        .domains
        .iter()
        .filter_map(|d| d.target_performance.map(|t| (d.id.clone(), t)))
        .collect();
    let mut tally = {
        let mut cached = api.stats.final_tally.lock().await;
        let from = cached.scanned_to + 1;
        if from <= final_h {
            let to = final_h.min(from.saturating_add(MAX_STATS_SCAN_BLOCKS - 1));
            scan(&api, &mut cached, from, to, &targets).await?;
        }
        cached.clone()
    };
    let complete = tally.scanned_to >= final_h;
    if complete && final_h < tip {
        scan(&api, &mut tally, final_h + 1, tip, &targets).await?;
    }
    let domains = ctx
        .params
        .domains
        .iter()
        .map(|p| {
            let t = tally.domains.get(&p.id).cloned().unwrap_or_default();
            let local = ctx.domain(&p.id);
            DomainStats {
                domain_id: p.id.clone(),
                verdicts: t.accepted + t.rejected + t.no_quorum,
                accepted: t.accepted,
                rejected: t.rejected,
                no_quorum: t.no_quorum,
                expired: t.expired,
                pending: state.optimae.values().filter(|o| o.domain == p.id).count(),
                rounds: local
                    .filter(|d| d.optimize)
                    .map(|d| d.rounds.load(std::sync::atomic::Ordering::Relaxed)),
                best_performance: state.champions.get(&p.id).map(|c| c.performance),
                baseline_performance: p.baseline_performance,
                target_performance: local.and_then(|d| d.target_performance),
                target_reached: t.target_reached,
                first_verdict_height: t.first_verdict_height,
                last_verdict_height: t.last_verdict_height,
            }
        })
        .collect();
    let body = StatsView {
        height: tip,
        scanned_to: tally.scanned_to.min(tip),
        complete,
        domains,
    };
    Ok(json_with_capacity(&body, 512 + 512 * body.domains.len()))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct ExportQuery {
    /// First height (inclusive).
    from: Option<u64>,
    /// Last height (inclusive); at most 10,000 blocks per request.
    to: Option<u64>,
    /// Only this domain.
    domain: Option<String>,
}

/// The CSV header row of `/stats/export.csv`.
pub const EXPORT_COLUMNS: &str =
    "height,timestamp_ms,domain,optimae,optimizer,claim,median,verdict,credit,work,burned,votes";

/// A verdict as the CSV's `verdict` column writes it.
fn verdict_label(v: &Verdict) -> &'static str {
    match v {
        Verdict::Accepted { .. } => "accepted",
        Verdict::Rejected {
            reason: RejectReason::ClaimNotReproduced,
            ..
        } => "rejected_claim_not_reproduced",
        Verdict::Rejected {
            reason: RejectReason::NoImprovement,
            ..
        } => "rejected_no_improvement",
        Verdict::NoQuorum { .. } => "no_quorum",
    }
}

/// Appends the CSV rows of one block's verdicts (of `domain`, when given). Every field is
/// a number, a hex string, a domain id (`[a-z0-9_.-]`) or a fixed label, so none needs
/// quoting.
fn write_rows(out: &mut String, r: &ReceiptRecord, domain: Option<&DomainId>) {
    let Some(receipt) = &r.receipt else { return };
    for v in receipt
        .verdicts
        .iter()
        .filter(|v| domain.is_none_or(|d| &v.domain == d))
    {
        let (median, credit) = match v.verdict {
            Verdict::Accepted { median, credit } => (Some(median), credit),
            Verdict::Rejected { median, .. } => (Some(median), 0.0),
            Verdict::NoQuorum { .. } => (None, 0.0),
        };
        let median = median.map(|m| m.to_string()).unwrap_or_default();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            r.height,
            r.timestamp_ms,
            v.domain,
            v.commitment,
            v.optimizer.to_hex(),
            v.claim,
            median,
            verdict_label(&v.verdict),
            credit,
            v.work,
            v.burned.0,
            v.votes.len(),
        );
    }
}

/// Verdicts of a height range as CSV (`text/csv`), oldest first. When blocks exist above
/// the range, a `Link: <...>; rel="next"` header names the next page.
pub(super) async fn export_csv(
    State(api): State<ApiState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let domain = match q.domain.as_deref() {
        Some(s) => {
            let d = DomainId::new(s)
                .map_err(|e| ApiError::bad_request("invalid_domain", e.to_string()))?;
            if api.ctx.params.domain(&d).is_none() {
                return Err(ApiError::not_found(format!(
                    "domain {d} is not on this chain"
                )));
            }
            Some(d)
        }
        None => None,
    };
    let tip = api.ctx.view().state.height;
    let (from, to) = height_range(q.from, q.to, tip, DEFAULT_EXPORT_BLOCKS, MAX_EXPORT_BLOCKS)?;
    let records = super::paging::receipts_to_tip(&api.ctx.store, from, to, tip).await?;
    let mut out = String::with_capacity(4096);
    out.push_str(EXPORT_COLUMNS);
    out.push('\n');
    for r in &records {
        write_rows(&mut out, r, domain.as_ref());
    }
    let mut resp = Response::new(Body::from(out));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if to < tip {
        let next_from = to + 1;
        let next_to = next_from.saturating_add(to - from).min(tip);
        let mut link = format!("</stats/export.csv?from={next_from}&to={next_to}");
        if let Some(d) = &domain {
            link.push_str("&domain=");
            link.push_str(d.as_str());
        }
        link.push_str(">; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, v);
        }
    }
    Ok(resp)
}
