//! `GET /metrics`: Prometheus metrics ([`crate::metrics`]).
//!
//! The gauges are refreshed from memory first, so a scrape sees the mempool and the chain
//! as of the request. The format follows the `Accept` header: OpenMetrics for Prometheus,
//! the classic text format for everything else (`curl`, `promtool check metrics`).

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::ApiState;
use crate::metrics::Format;

pub(super) async fn metrics(State(api): State<ApiState>, headers: HeaderMap) -> Response {
    api.metrics.refresh(&api.ctx);
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match api.metrics.encode(format) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            )],
            text,
        )
            .into_response(),
        Err(err) => ApiError::internal(&err).into_response(),
    }
}
