//! `GET /tx/{id}` and `POST /tx`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use doin_core::block::BlockHash;
use doin_core::chain::finalized_height;
use doin_core::hash::Hash32;
use doin_core::tx::{SignedTx, TxId};

use super::error::{ApiError, ApiResult};
use super::{json, parse_hex32, ApiState, MAX_BODY_BYTES};

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum TxStatus {
    /// In a block of this node's chain.
    Confirmed,
    /// In the mempool, waiting for a block.
    Pending,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct TxLookup<'a> {
    id: TxId,
    status: TxStatus,
    /// Block height, hash and position: present when confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    block_height: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    block_hash: Option<BlockHash>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confirmations: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finalized: Option<bool>,
    tx: &'a SignedTx,
}

/// A transaction by id: confirmed (with its block) or pending (in the mempool).
pub(super) async fn get_tx(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let id = Hash32(parse_hex32("transaction id", &id)?);
    let ctx = &api.ctx;
    // The store first: a transaction just included may still sit in the mempool briefly.
    if let Some(rec) = ctx
        .store
        .tx(&id)
        .await
        .map_err(|e| ApiError::internal(&e))?
    {
        let tip = ctx.view().state.height;
        return Ok(json(&TxLookup {
            id,
            status: TxStatus::Confirmed,
            block_height: Some(rec.height),
            block_hash: Some(rec.block_hash),
            index: Some(rec.index),
            confirmations: Some(tip.saturating_sub(rec.height).saturating_add(1)),
            finalized: Some(rec.height <= finalized_height(tip, ctx.params.finality_depth)),
            tx: &rec.tx,
        }));
    }
    let pending = ctx
        .mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .cloned();
    match pending {
        Some(tx) => Ok(json(&TxLookup {
            id,
            status: TxStatus::Pending,
            block_height: None,
            block_hash: None,
            index: None,
            confirmations: None,
            finalized: None,
            tx: &tx,
        })),
        None => Err(ApiError::not_found(format!(
            "transaction {id} is neither in this node's chain nor in its mempool"
        ))),
    }
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Accepted {
    accepted: bool,
    id: TxId,
}

/// Submits a signed transaction. The body is the transaction's serde JSON form (any
/// content type is read as JSON). 400: unreadable; 422: refused; 409: already pending.
pub(super) async fn submit(
    State(api): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(MAX_BODY_BYTES)
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the request body is empty; send a signed transaction as JSON",
        ));
    }
    let tx: SignedTx = serde_json::from_slice(&body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_transaction_json"
        } else {
            "invalid_json"
        };
        ApiError::bad_request(
            code,
            format!("the body is not a signed transaction in JSON: {e}"),
        )
    })?;
    // A signature check and a trial application on a copy of the state: keep it off the
    // async workers.
    let ctx = api.ctx.clone();
    let result = tokio::task::spawn_blocking(move || ctx.submit(tx))
        .await
        .map_err(|e| ApiError::internal(&format_args!("submit task failed: {e}")))?;
    match result {
        Ok(id) => Ok(json(&Accepted { accepted: true, id })),
        Err(e) => Err(ApiError::from_submit(&e)),
    }
}
