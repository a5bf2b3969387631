//! `GET /inference`, `POST /inference`, `GET /channel/{id}`, `GET /channels`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use doin_core::amount::Amount;
use doin_core::channel::{Channel, Voucher};
use doin_core::config::InferenceMode;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;

use super::error::{ApiError, ApiResult};
use super::{json, json_with_capacity, parse_hex32, ApiState};
use crate::inference::payments::PaymentError;
use crate::inference::InferenceError;

/// Room for the request's envelope and voucher on top of `max_input_bytes`.
pub const ENVELOPE_BYTES: usize = 1024;
/// Most channels one `GET /channels` lists.
pub const MAX_CHANNELS_LISTED: usize = 100;

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct OffersView<'a> {
    mode: InferenceMode,
    provider: AccountId,
    offers: &'a [crate::inference::Offer],
}

/// What this node serves and at what price.
pub(super) async fn offers(State(api): State<ApiState>) -> Response {
    let offers = api.inference.offers();
    json(&OffersView {
        mode: api.inference.mode(),
        provider: api.ctx.account(),
        offers: &offers,
    })
}

/// The original's request shape plus a voucher.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct InferRequest {
    domain_id: String,
    input_data: Value,
    #[serde(default)]
    voucher: Option<Voucher>,
}

#[derive(Serialize)]
struct PaymentInfo {
    price: Amount,
    provider: AccountId,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<Hash32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    paid: Option<Amount>,
}

#[derive(Serialize)]
struct PaymentRequired<'a> {
    error: &'static str,
    message: String,
    payment: PaymentInfo,
    how_to_pay: &'a str,
}

const HOW_TO_PAY: &str = "open a payment channel to `provider` (a ChannelOpen transaction; \
`doin-node wallet channel open`), then send with each query a voucher signed by the channel's \
client for the channel's cumulative amount: what this node already holds (`paid`) plus `price`";

/// Answers a query from the domain's champion; in paid mode the body carries a voucher.
pub(super) async fn infer(
    State(api): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let limit = api.inference.max_input_bytes() + ENVELOPE_BYTES;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(limit)
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })?;
    if body.len() > limit {
        return Err(ApiError::payload_too_large(limit));
    }
    let request: InferRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_request",
            format!(
                "expected {{\"domain_id\": ..., \"input_data\": {{...}}, \"voucher\": {{\"channel\", \"amount\", \"signature\"}}}}: {e}"
            ),
        )
    })?;
    let voucher = request.voucher;
    match api
        .inference
        .answer(&request.domain_id, request.input_data, voucher)
        .await
    {
        Ok(answer) => Ok(json(&answer)),
        Err(InferenceError::Payment(err)) if !matches!(err, PaymentError::Store(_)) => Ok(
            payment_required(&api, &request.domain_id, voucher.as_ref(), &err),
        ),
        Err(err) => Err(inference_error(&err)),
    }
}

fn payment_required(
    api: &super::Api,
    domain: &str,
    voucher: Option<&Voucher>,
    err: &PaymentError,
) -> Response {
    let channel = voucher.map(|v| v.channel);
    let paid = channel.and_then(|c| api.inference.desk().paid_for(&api.ctx.view().state, &c));
    let price = doin_core::params::DomainId::new(domain)
        .ok()
        .and_then(|d| api.inference.price(&d))
        .unwrap_or(Amount::ZERO);
    let body = PaymentRequired {
        error: err.code(),
        message: err.to_string(),
        payment: PaymentInfo {
            price,
            provider: api.ctx.account(),
            channel,
            paid,
        },
        how_to_pay: HOW_TO_PAY,
    };
    let mut resp = json(&body);
    *resp.status_mut() = StatusCode::PAYMENT_REQUIRED;
    resp
}

fn inference_error(err: &InferenceError) -> ApiError {
    let message = err.to_string();
    match err {
        InferenceError::UnknownDomain(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_domain", message)
        }
        InferenceError::NotReady(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "model_not_ready", message)
        }
        InferenceError::BadInput(_) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message)
        }
        InferenceError::Payment(e) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.code(), message)
        }
        InferenceError::Model(_) | InferenceError::Worker(_) => ApiError::internal(err),
    }
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ChannelView<'a> {
    id: Hash32,
    #[serde(flatten)]
    channel: &'a Channel,
    tip_height: u64,
    /// This node's best voucher for the channel, when it is the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    best_voucher: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queries: Option<u64>,
}

fn channel_view<'a>(
    api: &super::Api,
    id: Hash32,
    channel: &'a Channel,
    tip: u64,
) -> ChannelView<'a> {
    let held = api.inference.desk().held(&id);
    ChannelView {
        id,
        channel,
        tip_height: tip,
        best_voucher: held.map(|h| h.best_voucher),
        queries: held.map(|h| h.queries),
    }
}

/// A payment channel on chain.
pub(super) async fn channel(
    State(api): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(id) = id.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let id = Hash32(parse_hex32("channel id", &id)?);
    let view = api.ctx.view();
    let channel = view.state.channels.get(&id).ok_or_else(|| {
        ApiError::not_found(format!(
            "channel {id} is not on chain (never opened, or already paid out)"
        ))
    })?;
    Ok(json(&channel_view(&api, id, channel, view.state.height)))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelsQuery {
    /// Channels where this account is client or provider (default: this node).
    account: Option<String>,
    /// At most 100 (the default).
    limit: Option<usize>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ChannelList<'a> {
    account: AccountId,
    channels: Vec<ChannelView<'a>>,
}

/// Channels of an account (as client or provider), at most `limit` (≤ 100).
pub(super) async fn channels(
    State(api): State<ApiState>,
    query: Result<Query<ChannelsQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let account = match q.account {
        Some(a) => AccountId(parse_hex32("account", &a)?),
        None => api.ctx.account(),
    };
    let limit = q.limit.unwrap_or(MAX_CHANNELS_LISTED);
    if limit > MAX_CHANNELS_LISTED {
        return Err(ApiError::bad_request(
            "limit_too_large",
            format!("limit is at most {MAX_CHANNELS_LISTED}, got {limit}"),
        ));
    }
    let view = api.ctx.view();
    let tip = view.state.height;
    let channels: Vec<ChannelView<'_>> = view
        .state
        .channels
        .iter()
        .filter(|(_, c)| c.client == account || c.provider == account)
        .take(limit)
        .map(|(id, c)| channel_view(&api, *id, c, tip))
        .collect();
    let n = channels.len();
    Ok(json_with_capacity(&ChannelList { account, channels }, 256 + 400 * n).into_response())
}
