//! The one error shape of the API: `{"error": "<code>", "message": "<human text>"}` with a
//! status code that means what it says.
//!
//! `error` is a stable, machine-readable code (snake_case); `message` is for people and may
//! change. Internal failures (storage, a panicking handler) are logged in full and reported
//! to the client only as `internal`, so database details never leak.

use std::borrow::Cow;
use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::context::SubmitError;
use crate::mempool::MempoolError;
use doin_core::state::ApplyError;
use doin_core::tx::TxError;

/// An API failure, rendered as a JSON error body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `not_found`, `bad_nonce`.
    pub code: &'static str,
    pub message: Cow<'static, str>,
}

/// The body of every error response (named `ApiError` in the OpenAPI document).
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ApiError")]
pub(super) struct ErrorBody<'a> {
    /// Stable machine-readable code, e.g. `not_found`.
    error: &'a str,
    /// For people; may change.
    message: &'a str,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request itself is malformed (a bad id, query or body).
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404: the thing asked for does not exist (here).
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500: something failed on our side. `cause` is logged, never sent.
    pub fn internal(cause: &dyn fmt::Display) -> Self {
        tracing::error!(error = %cause, "http: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the node's log",
        )
    }

    /// 413: the request body is over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// A transaction refused by [`crate::context::NodeContext::submit`]: 422, except a
    /// duplicate of a pending transaction, which is 409.
    pub fn from_submit(err: &SubmitError) -> Self {
        let (status, code) = match err {
            SubmitError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                match e {
                    TxError::WrongChain { .. } => "wrong_chain",
                    TxError::TooLarge { .. } => "tx_too_large",
                    TxError::Field { .. } => "invalid_field",
                    TxError::Signature(_) => "bad_signature",
                    TxError::Decode(_) => "invalid_transaction",
                },
            ),
            SubmitError::Rejected(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                match e {
                    ApplyError::Nonce { .. } => "bad_nonce",
                    ApplyError::InsufficientBalance { .. } => "insufficient_balance",
                    ApplyError::Fee(_) => "bad_fee",
                    _ => "rejected",
                },
            ),
            SubmitError::Mempool(e) => match e {
                MempoolError::Duplicate(_) => (StatusCode::CONFLICT, "already_pending"),
                MempoolError::Replay { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "nonce_too_low"),
                MempoolError::NonceGap { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "nonce_gap"),
                MempoolError::Underpriced { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "underpriced")
                }
                MempoolError::Full { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "mempool_full"),
            },
        };
        Self::new(status, code, err.to_string())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        // Serializing two strings cannot fail; fall back to a fixed body all the same.
        let bytes = serde_json::to_vec(&body)
            .unwrap_or_else(|_| br#"{"error":"internal","message":"internal error"}"#.to_vec());
        let mut resp = (self.status, bytes).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// Handlers' result type.
pub type ApiResult<T> = Result<T, ApiError>;
