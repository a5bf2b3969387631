//! `GET /chain/finality`, `GET /chain/difficulty` and `GET /chain/rewards`.
//!
//! Finality and difficulty come from the chain view plus a bounded read of recent headers;
//! rewards come from block receipts (what each block minted and paid), a bounded height
//! range per request.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::amount::Amount;
use doin_core::block::BlockHash;
use doin_core::chain::finalized_height;
use doin_core::difficulty::DifficultyState;
use doin_core::identity::AccountId;

use super::error::{ApiError, ApiResult};
use super::paging::{height_range, parse_query, recent_blocks};
use super::{json, json_with_capacity, ApiState};

/// Recent blocks `GET /chain/difficulty` lists by default.
pub const DEFAULT_DIFFICULTY_BLOCKS: u64 = 20;
/// Most recent blocks `GET /chain/difficulty?blocks=` may list.
pub const MAX_DIFFICULTY_BLOCKS: u64 = 100;
/// Blocks `GET /chain/rewards` covers when no range is given.
pub const DEFAULT_REWARDS_BLOCKS: u64 = 20;
/// Most blocks one `GET /chain/rewards` request may cover.
pub const MAX_REWARDS_BLOCKS: u64 = 100;

/// `GET /chain/finality`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct FinalityView {
    tip_height: u64,
    tip_hash: BlockHash,
    /// Blocks below the tip after which a block is final.
    finality_depth: u64,
    /// Blocks at or below this height are never reorganized.
    finalized_height: u64,
    finalized_hash: BlockHash,
    finalized_time_ms: u64,
    /// Blocks between the finalized block and the tip.
    unfinalized_blocks: u64,
}

pub(super) async fn finality(State(api): State<ApiState>) -> ApiResult<Response> {
    let ctx = &api.ctx;
    let view = ctx.view();
    let tip = view.state.height;
    let depth = ctx.params.finality_depth;
    let final_height = finalized_height(tip, depth);
    let (finalized_hash, finalized_time_ms) = if final_height == tip {
        (view.state.tip, view.state.tip_time_ms)
    } else {
        let block = ctx
            .store
            .block_by_height(final_height)
            .await
            .map_err(|e| ApiError::internal(&e))?
            .ok_or_else(|| {
                ApiError::internal(&format_args!(
                    "finalized block {final_height} is missing from the store (tip {tip})"
                ))
            })?;
        (block.hash(), block.header.timestamp_ms)
    };
    Ok(json(&FinalityView {
        tip_height: tip,
        tip_hash: view.state.tip,
        finality_depth: depth,
        finalized_height: final_height,
        finalized_hash,
        finalized_time_ms,
        unfinalized_blocks: tip - final_height,
    }))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct DifficultyQuery {
    /// Recent blocks to list (default 20, at most 100).
    blocks: Option<u64>,
}

/// One recent block's work figures (from its header).
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct WorkEntry {
    height: u64,
    timestamp_ms: u64,
    /// Milliseconds since the parent block (null for genesis).
    interval_ms: Option<u64>,
    /// Verified work units the block recorded.
    work: u64,
    /// Work the block needed to be produced before its maximum interval.
    difficulty: u64,
    cumulative_work: u128,
}

/// `GET /chain/difficulty`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct DifficultyView {
    height: u64,
    /// Verified work units the next block needs.
    threshold: u64,
    ema_block_time_ms: u64,
    target_block_time_ms: u64,
    /// A block with less work is still valid this long after its parent.
    max_block_interval_ms: u64,
    /// The full difficulty state (epoch start included).
    state: DifficultyState,
    cumulative_work: u128,
    /// Recent blocks, oldest first, ending at the tip.
    recent: Vec<WorkEntry>,
}

pub(super) async fn difficulty(
    State(api): State<ApiState>,
    query: Result<Query<DifficultyQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let n = recent_blocks(q.blocks, DEFAULT_DIFFICULTY_BLOCKS, MAX_DIFFICULTY_BLOCKS)?;
    let ctx = &api.ctx;
    let view = ctx.view();
    let state = &*view.state;
    let recent = if n == 0 {
        Vec::new()
    } else {
        // One block more than listed, for the first listed block's interval.
        let from = state.height.saturating_sub(n);
        let blocks = ctx
            .store
            .blocks(from, state.height)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let first_listed = state.height.saturating_sub(n - 1);
        let mut parent_time: Option<u64> = None;
        let mut out = Vec::with_capacity(blocks.len());
        for b in &blocks {
            let h = &b.header;
            if h.height >= first_listed {
                out.push(WorkEntry {
                    height: h.height,
                    timestamp_ms: h.timestamp_ms,
                    interval_ms: parent_time.map(|p| h.timestamp_ms.saturating_sub(p)),
                    work: h.work,
                    difficulty: h.difficulty,
                    cumulative_work: h.cumulative_work,
                });
            }
            parent_time = Some(h.timestamp_ms);
        }
        out
    };
    let body = DifficultyView {
        height: state.height,
        threshold: state.difficulty.threshold,
        ema_block_time_ms: state.difficulty.ema_block_time_ms,
        target_block_time_ms: ctx.params.target_block_time_ms,
        max_block_interval_ms: ctx.params.max_block_interval_ms,
        state: state.difficulty,
        cumulative_work: state.cumulative_work,
        recent,
    };
    Ok(json_with_capacity(&body, 512 + 160 * body.recent.len()))
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct RewardsQuery {
    /// First height (inclusive).
    from: Option<u64>,
    /// Last height (inclusive); at most 100 blocks per request.
    to: Option<u64>,
}

/// One account's payout in a block.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Payout {
    account: AccountId,
    amount: Amount,
}

/// What one block minted and paid.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BlockRewards {
    height: u64,
    hash: BlockHash,
    timestamp_ms: u64,
    proposer: AccountId,
    /// New coins the block created (its capped subsidy, less pools nobody earned).
    minted: Amount,
    /// Tips the block's transactions paid the proposer.
    tips: Amount,
    /// Coins the block destroyed (base fees and stake burns).
    burned: Amount,
    /// Verified work the block recorded.
    work: u64,
    /// Block reward and tips paid, per account.
    payouts: Vec<Payout>,
}

/// `GET /chain/rewards`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RewardsPage {
    from: u64,
    to: u64,
    tip_height: u64,
    has_more: bool,
    /// Sum of `minted` over the listed blocks.
    minted: Amount,
    /// Ascending by height; genesis (which mints through allocations) is left out.
    blocks: Vec<BlockRewards>,
}

pub(super) async fn rewards(
    State(api): State<ApiState>,
    query: Result<Query<RewardsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = parse_query(query)?;
    let tip = api.ctx.view().state.height;
    let (from, to) = height_range(
        q.from,
        q.to,
        tip,
        DEFAULT_REWARDS_BLOCKS,
        MAX_REWARDS_BLOCKS,
    )?;
    let records = super::paging::receipts_to_tip(&api.ctx.store, from, to, tip).await?;
    let blocks: Vec<BlockRewards> = records
        .into_iter()
        .filter_map(|r| {
            let receipt = r.receipt?;
            Some(BlockRewards {
                height: r.height,
                hash: r.hash,
                timestamp_ms: r.timestamp_ms,
                proposer: r.proposer,
                minted: receipt.minted,
                tips: receipt.tips,
                burned: receipt.burned,
                work: receipt.work,
                payouts: receipt
                    .payouts
                    .into_iter()
                    .map(|(account, amount)| Payout { account, amount })
                    .collect(),
            })
        })
        .collect();
    let minted = blocks.iter().map(|b| b.minted).sum();
    let body = RewardsPage {
        from,
        to,
        tip_height: tip,
        has_more: to < tip,
        minted,
        blocks,
    };
    Ok(json_with_capacity(&body, 512 + 400 * body.blocks.len()))
}
