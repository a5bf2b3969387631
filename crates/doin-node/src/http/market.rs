//! `GET /mempool` and `GET /fees`: the pending pool and the fee market.
//!
//! Both read memory (the chain view and one short mempool lock); `/fees` also reads the
//! headers of recent blocks, a bounded range. The suggested bid is the one the node uses for
//! its own transactions ([`doin_core::fee::suggested_bid`]): its `max_fee` still clears the
//! base fee after two completely full blocks, so a transaction sent with it does not go
//! stale while it waits.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::amount::Amount;
use doin_core::fee::{next_base_fee, suggested_bid, FeeBid, BASE_FEE_CHANGE_DENOMINATOR};
use doin_core::identity::AccountId;
use doin_core::tx::{SignedTx, TxId};

use super::error::{ApiError, ApiResult};
use super::paging::{parse_query, recent_blocks, PageRules};
use super::{json_with_capacity, ApiState};

/// Rules of `GET /mempool?limit=&offset=`.
pub const MEMPOOL_PAGE: PageRules = PageRules {
    default_limit: 20,
    max_limit: 100,
    // The pool itself is bounded (`Mempool::capacity`); this only refuses absurd offsets.
    max_offset: 100_000,
};
/// Tip suggested when the pool has room for everyone in the next block: the same tip the
/// node pays on its own transactions.
pub const DEFAULT_SUGGESTED_TIP: Amount = Amount(100);
/// Recent blocks `GET /fees` lists by default.
pub const DEFAULT_FEE_HISTORY: u64 = 20;
/// Most recent blocks `GET /fees?blocks=` may list.
pub const MAX_FEE_HISTORY: u64 = 100;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct MempoolQuery {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// One pending transaction.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct PendingTx {
    id: TxId,
    sender: AccountId,
    nonce: u64,
    /// The transaction's kind (`transfer`, `commit`, ...).
    kind: &'static str,
    fee: FeeBid,
    /// Exactly the JSON `POST /tx` takes.
    tx: SignedTx,
}

/// `GET /mempool`: a page of the pending pool, highest tip first.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct MempoolPage {
    /// Transactions pending in all.
    count: usize,
    /// Most transactions the pool holds; when full, a newcomer must out-tip the lowest.
    capacity: usize,
    offset: usize,
    limit: usize,
    /// Whether pending transactions exist after this page.
    has_more: bool,
    /// Base fee the next block's transactions pay (burned).
    base_fee: Amount,
    /// A fee bid that gets a transaction into one of the next blocks.
    suggested_bid: FeeBid,
    txs: Vec<PendingTx>,
}

/// The tip that gets a newcomer into the next block: the default, or one unit more than the
/// lowest tip that would still make it into a full next block.
fn suggested_tip(pool: &crate::mempool::Mempool, max_block_txs: u32) -> Amount {
    let rank = usize::try_from(max_block_txs)
        .unwrap_or(usize::MAX)
        .saturating_sub(1);
    match pool.tip_at_rank(rank) {
        Some(tip) => Amount(tip.0.saturating_add(1)).max(DEFAULT_SUGGESTED_TIP),
        None => DEFAULT_SUGGESTED_TIP,
    }
}

pub(super) async fn mempool(
    State(api): State<ApiState>,
    query: Result<Query<MempoolQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let page = MEMPOOL_PAGE.page(q.limit, q.offset)?;
    let base_fee = api.ctx.view().state.base_fee;
    let (count, capacity, entries, tip) = {
        let pool = api.ctx.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (
            pool.len(),
            pool.capacity(),
            pool.page(page.offset, page.limit),
            suggested_tip(&pool, api.ctx.params.max_block_txs),
        )
    };
    let txs: Vec<PendingTx> = entries
        .into_iter()
        .map(|(id, tx)| PendingTx {
            id,
            sender: tx.body.sender,
            nonce: tx.body.nonce,
            kind: tx.body.kind.name(),
            fee: tx.body.fee,
            tx,
        })
        .collect();
    let body = MempoolPage {
        count,
        capacity,
        offset: page.offset,
        limit: page.limit,
        has_more: page.offset.saturating_add(txs.len()) < count,
        base_fee,
        suggested_bid: suggested_bid(base_fee, tip),
        txs,
    };
    Ok(json_with_capacity(&body, 512 + 700 * body.txs.len()))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct FeesQuery {
    /// Recent blocks to list (default 20, at most 100).
    blocks: Option<u64>,
}

/// The inputs of the base fee rule for the block after the next one.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BaseFeeRule {
    /// The base fee moves by at most `1/max_change_denominator` per block.
    max_change_denominator: u64,
    /// A block with this many transactions leaves the base fee unchanged.
    target_block_txs: u32,
    /// Most transactions in one block.
    max_block_txs: u32,
    /// The base fee never falls below this.
    min_base_fee: Amount,
    /// Transactions pending now.
    pending_txs: usize,
    /// The next block's size if it takes every pending transaction it can.
    projected_next_block_txs: u32,
    /// The base fee after the next block, if it has `projected_next_block_txs`.
    projected_base_fee: Amount,
    /// The base fee after the next block if it is empty (the floor of the range).
    base_fee_if_empty: Amount,
    /// The base fee after the next block if it is full (the ceiling of the range).
    base_fee_if_full: Amount,
}

/// One recent block's fee figures (from its header).
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct FeeHistoryEntry {
    height: u64,
    timestamp_ms: u64,
    /// The base fee the block's transactions paid (burned).
    base_fee: Amount,
    tx_count: usize,
}

/// `GET /fees`: the fee market now.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct FeesView {
    /// The chain height the figures are taken at (the tip).
    height: u64,
    /// Base fee the next block's transactions pay (burned).
    base_fee: Amount,
    base_fee_display: String,
    next: BaseFeeRule,
    /// Tip suggested now (more when the pool holds more than a block's worth).
    suggested_tip: Amount,
    /// A bid that still clears the base fee after two full blocks.
    suggested_bid: FeeBid,
    /// Recent blocks, oldest first, ending at the tip.
    history: Vec<FeeHistoryEntry>,
}

pub(super) async fn fees(
    State(api): State<ApiState>,
    query: Result<Query<FeesQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let n = recent_blocks(q.blocks, DEFAULT_FEE_HISTORY, MAX_FEE_HISTORY)?;
    let ctx = &api.ctx;
    let view = ctx.view();
    let state = &*view.state;
    let params = &ctx.params;
    let (pending, tip) = {
        let pool = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (pool.len(), suggested_tip(&pool, params.max_block_txs))
    };
    let history = if n == 0 {
        Vec::new()
    } else {
        let from = state.height.saturating_sub(n - 1);
        ctx.store
            .blocks(from, state.height)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .into_iter()
            .map(|b| FeeHistoryEntry {
                height: b.header.height,
                timestamp_ms: b.header.timestamp_ms,
                base_fee: b.header.base_fee,
                tx_count: b.txs.len(),
            })
            .collect()
    };
    let base = state.base_fee;
    let projected = u32::try_from(pending)
        .unwrap_or(u32::MAX)
        .min(params.max_block_txs);
    let rule = |txs: u32| next_base_fee(base, txs, params.target_block_txs, params.min_base_fee);
    let body = FeesView {
        height: state.height,
        base_fee: base,
        base_fee_display: base.to_string(),
        next: BaseFeeRule {
            max_change_denominator: BASE_FEE_CHANGE_DENOMINATOR,
            target_block_txs: params.target_block_txs,
            max_block_txs: params.max_block_txs,
            min_base_fee: params.min_base_fee,
            pending_txs: pending,
            projected_next_block_txs: projected,
            projected_base_fee: rule(projected),
            base_fee_if_empty: rule(0),
            base_fee_if_full: rule(params.max_block_txs),
        },
        suggested_tip: tip,
        suggested_bid: suggested_bid(base, tip),
        history,
    };
    Ok(json_with_capacity(&body, 1024 + 120 * body.history.len()))
}
