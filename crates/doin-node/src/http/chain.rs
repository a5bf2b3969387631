//! `GET /chain/params`, `GET /chain/blocks` and `GET /chain/block/{id}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::block::{Block, BlockHeader};
use doin_core::chain::finalized_height;
use doin_core::hash::Hash32;
use doin_core::identity::Signature;
use doin_core::state::BlockReceipt;
use doin_core::tx::{SignedTx, TxId};

use super::error::{ApiError, ApiResult};
use super::{json, json_with_capacity, parse_hex32, truncate, ApiState};

/// Blocks `/chain/blocks` returns when no range is given.
pub const DEFAULT_BLOCKS_PAGE: u64 = 20;
/// Most blocks one `/chain/blocks` request may ask for.
pub const MAX_BLOCKS_PAGE: u64 = 100;

pub(super) async fn params(State(api): State<ApiState>) -> Response {
    json_with_capacity(&api.ctx.params, 2048)
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct BlocksQuery {
    /// First height (inclusive).
    from: Option<u64>,
    /// Last height (inclusive); at most 100 blocks per request.
    to: Option<u64>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BlockSummary {
    hash: Hash32,
    header: BlockHeader,
    tx_count: usize,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct BlocksPage {
    from: u64,
    to: u64,
    tip_height: u64,
    /// Whether blocks exist above `to`.
    has_more: bool,
    /// Ascending by height.
    blocks: Vec<BlockSummary>,
}

/// Resolves the requested range (inclusive; defaults filled in) or says why it is invalid.
/// The range may extend above the tip: the caller clamps it.
fn block_range(q: &BlocksQuery, tip: u64) -> ApiResult<(u64, u64)> {
    super::paging::height_range(q.from, q.to, tip, DEFAULT_BLOCKS_PAGE, MAX_BLOCKS_PAGE)
}

/// Headers (with hash and transaction count) of heights `from..=to`, both inclusive.
pub(super) async fn blocks(
    State(api): State<ApiState>,
    query: Result<Query<BlocksQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let tip = api.ctx.view().state.height;
    let (from, to) = block_range(&q, tip)?;
    if from > tip {
        return Ok(json(&BlocksPage {
            from,
            to,
            tip_height: tip,
            has_more: false,
            blocks: Vec::new(),
        }));
    }
    let to = to.min(tip);
    let blocks = api
        .ctx
        .store
        .blocks(from, to)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let blocks: Vec<BlockSummary> = blocks
        .into_iter()
        .map(|b| BlockSummary {
            hash: b.hash(),
            tx_count: b.txs.len(),
            header: b.header,
        })
        .collect();
    let page = BlocksPage {
        from,
        to,
        tip_height: tip,
        has_more: to < tip,
        blocks,
    };
    Ok(json_with_capacity(&page, 256 + 700 * page.blocks.len()))
}

/// How `/chain/block/{id}` names a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockId {
    Height(u64),
    Hash(Hash32),
    Latest,
}

fn parse_block_id(s: &str) -> ApiResult<BlockId> {
    if s == "latest" || s == "tip" {
        return Ok(BlockId::Latest);
    }
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    if hex_part.len() == 64 {
        return parse_hex32("block hash", s).map(|b| BlockId::Hash(Hash32(b)));
    }
    if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(h) = s.parse::<u64>() {
            return Ok(BlockId::Height(h));
        }
    }
    Err(ApiError::bad_request(
        "invalid_id",
        format!(
            "a block is named by its height (a decimal integer), its hash (64 hex digits) or \"latest\"; got {:?}",
            truncate(s, 80)
        ),
    ))
}

/// A transaction as the API shows it: its id and, in `tx`, the exact form `POST /tx` takes.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct TxEntry<'a> {
    pub(super) id: TxId,
    pub(super) index: usize,
    pub(super) tx: &'a SignedTx,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct FullBlock<'a> {
    hash: Hash32,
    header: &'a BlockHeader,
    signature: &'a Signature,
    tx_count: usize,
    txs: Vec<TxEntry<'a>>,
    /// Blocks on top of this one, itself included (1 for the tip).
    confirmations: u64,
    finalized: bool,
    /// What the block did beyond its transactions: verdicts, payouts, minted and burned coins.
    receipt: Option<BlockReceipt>,
}

/// One full block, by height, hash or `latest`, with its receipt.
pub(super) async fn block(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let tip = api.ctx.view().state.height;
    let store = &api.ctx.store;
    let block: Option<Block> = match parse_block_id(&id)? {
        // Above the tip there is nothing (and the store refuses heights beyond i64).
        BlockId::Height(h) if h > tip => None,
        BlockId::Height(h) => store
            .block_by_height(h)
            .await
            .map_err(|e| ApiError::internal(&e))?,
        BlockId::Latest => store
            .block_by_height(tip)
            .await
            .map_err(|e| ApiError::internal(&e))?,
        BlockId::Hash(hash) => store
            .block_by_hash(&hash)
            .await
            .map_err(|e| ApiError::internal(&e))?,
    };
    let Some(block) = block else {
        return Err(ApiError::not_found(format!(
            "no block {} in this node's chain (tip height {tip})",
            truncate(&id, 80)
        )));
    };
    let height = block.header.height;
    let receipt = store
        .receipt(height)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let body = FullBlock {
        hash: block.hash(),
        header: &block.header,
        signature: &block.signature,
        tx_count: block.txs.len(),
        txs: block
            .txs
            .iter()
            .enumerate()
            .map(|(index, tx)| TxEntry {
                id: tx.id(),
                index,
                tx,
            })
            .collect(),
        confirmations: tip.saturating_sub(height).saturating_add(1),
        finalized: height <= finalized_height(tip, api.ctx.params.finality_depth),
        receipt,
    };
    Ok(json_with_capacity(&body, 2048 + 600 * block.txs.len()))
}

#[cfg(test)]
mod unit {
    use super::*;

    fn q(from: Option<u64>, to: Option<u64>) -> BlocksQuery {
        BlocksQuery { from, to }
    }

    #[test]
    fn block_range_defaults_and_limits() {
        assert_eq!(block_range(&q(None, None), 5).unwrap(), (0, 5));
        assert_eq!(block_range(&q(None, None), 500).unwrap(), (481, 500));
        assert_eq!(block_range(&q(Some(10), None), 500).unwrap(), (10, 29));
        assert_eq!(block_range(&q(Some(10), None), 15).unwrap(), (10, 15));
        assert_eq!(block_range(&q(None, Some(30)), 500).unwrap(), (11, 30));
        assert_eq!(block_range(&q(Some(0), Some(99)), 500).unwrap(), (0, 99));
        assert_eq!(block_range(&q(Some(3), Some(50)), 10).unwrap(), (3, 50));
        assert_eq!(block_range(&q(Some(11), None), 10).unwrap(), (11, 11));
        let too_big = block_range(&q(Some(0), Some(100)), 500).unwrap_err();
        assert_eq!(too_big.code, "range_too_large");
        assert!(too_big.message.contains("100"), "{}", too_big.message);
        let huge = block_range(&q(Some(0), Some(u64::MAX)), 5).unwrap_err();
        assert_eq!(huge.code, "range_too_large");
        assert_eq!(
            block_range(&q(Some(5), Some(4)), 5).unwrap_err().code,
            "invalid_range"
        );
        assert_eq!(
            block_range(&q(Some(u64::MAX), None), 5).unwrap(),
            (u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn block_ids() {
        assert_eq!(parse_block_id("0").unwrap(), BlockId::Height(0));
        assert_eq!(
            parse_block_id("18446744073709551615").unwrap(),
            BlockId::Height(u64::MAX)
        );
        assert_eq!(parse_block_id("latest").unwrap(), BlockId::Latest);
        let h = "ab".repeat(32);
        assert_eq!(
            parse_block_id(&h).unwrap(),
            BlockId::Hash(Hash32([0xab; 32]))
        );
        assert_eq!(
            parse_block_id(&format!("0x{h}")).unwrap(),
            BlockId::Hash(Hash32([0xab; 32]))
        );
        for bad in [
            "",
            "-1",
            "1.5",
            "18446744073709551616",
            "zz",
            &"g".repeat(64),
            "１２",
            "0x",
        ] {
            assert_eq!(
                parse_block_id(bad).unwrap_err().code,
                "invalid_id",
                "{bad:?}"
            );
        }
    }
}
