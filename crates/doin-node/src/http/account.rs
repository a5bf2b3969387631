//! `GET /account/{id}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use doin_core::amount::Amount;
use doin_core::block::BlockHash;
use doin_core::identity::AccountId;
use doin_core::params::DomainId;
use doin_core::tx::{SignedTx, TxId};

use super::error::{ApiError, ApiResult};
use super::{json_with_capacity, parse_hex32, ApiState};

/// Transactions `/account/{id}` lists when no `limit` is given.
pub const DEFAULT_ACCOUNT_TXS: u32 = 20;
/// Most transactions one `/account/{id}` request may list.
pub const MAX_ACCOUNT_TXS: u32 = 100;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct AccountQuery {
    /// Recent transactions to list (default 20, at most 100).
    limit: Option<u32>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct EvaluatorEntry<'a> {
    domain: &'a DomainId,
    bond: Amount,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct AccountTx {
    id: TxId,
    block_height: u64,
    block_hash: BlockHash,
    index: u32,
    tx: SignedTx,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct AccountView<'a> {
    account: AccountId,
    /// The chain height this view is taken at (the tip).
    height: u64,
    /// Whether the chain state has a record of this account (any id is a valid, empty account).
    known: bool,
    balance: Amount,
    balance_display: String,
    /// The nonce the account's next transaction must carry, as of the tip.
    nonce: u64,
    /// The nonce to use for a new transaction, after this account's pending ones.
    pending_nonce: u64,
    /// Reputation in milli-points.
    reputation: u64,
    /// Domains the account evaluates, with its bond.
    evaluator: Vec<EvaluatorEntry<'a>>,
    /// Last transactions sent by the account, newest first.
    transactions: Vec<AccountTx>,
}

pub(super) async fn account(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<AccountQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let account = AccountId(parse_hex32("account id", &id)?);
    let limit = q.limit.unwrap_or(DEFAULT_ACCOUNT_TXS);
    if limit > MAX_ACCOUNT_TXS {
        return Err(ApiError::bad_request(
            "limit_too_large",
            format!("limit is at most {MAX_ACCOUNT_TXS}, got {limit}"),
        ));
    }
    let ctx = &api.ctx;
    let records = if limit == 0 {
        Vec::new()
    } else {
        ctx.store
            .txs_by_account(&account, limit)
            .await
            .map_err(|e| ApiError::internal(&e))?
    };
    let view = ctx.view();
    let state = &*view.state;
    let record = state.accounts.get(&account);
    let acc = record.cloned().unwrap_or_default();
    let mut pending_nonce = acc.nonce;
    {
        let pool = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a sender's queue is bounded by the mempool's capacity.
        while pool.has_nonce(&account, pending_nonce) {
            pending_nonce += 1;
        }
    }
    let evaluator = state
        .evaluators
        .iter()
        .filter_map(|(domain, bonds)| {
            bonds.get(&account).map(|bond| EvaluatorEntry {
                domain,
                bond: *bond,
            })
        })
        .collect();
    let transactions: Vec<AccountTx> = records
        .into_iter()
        .map(|r| AccountTx {
            id: r.tx.id(),
            block_height: r.height,
            block_hash: r.block_hash,
            index: r.index,
            tx: r.tx,
        })
        .collect();
    let body = AccountView {
        account,
        height: state.height,
        known: record.is_some(),
        balance: acc.balance,
        balance_display: acc.balance.to_string(),
        nonce: acc.nonce,
        pending_nonce,
        reputation: acc.reputation,
        evaluator,
        transactions,
    };
    Ok(json_with_capacity(
        &body,
        1024 + 700 * body.transactions.len(),
    ))
}
