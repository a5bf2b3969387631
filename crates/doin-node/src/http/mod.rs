//! The node's HTTP API (JSON over HTTP/1.1, default port 8470).
//!
//! Routes (see `docs/api.md` for shapes and examples):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /health` | liveness: `{"status":"ok"}` |
//! | `GET /status` | the node at a glance, from memory only (no database access) |
//! | `GET /domains` | every chain domain: parameters, champion, this node's role in it |
//! | `GET /chain/params` | the chain parameters (a file another node can start from) |
//! | `GET /chain/blocks?from=&to=` | headers of a height range (default: the last 20, at most 100) |
//! | `GET /chain/block/{height\|hash\|latest}` | one full block with its receipt |
//! | `GET /tx/{id}` | a confirmed or pending transaction |
//! | `POST /tx` | submit a signed transaction (its serde JSON form) |
//! | `GET /account/{id}?limit=` | balance, nonce, reputation, evaluator bonds, recent transactions |
//! | `GET /inference` | the domains this node serves, with price, provider account and champion |
//! | `POST /inference` | a prediction from a domain's champion, paid with a channel voucher |
//! | `GET /channel/{id}` | a payment channel on chain, with this node's best voucher as provider |
//! | `GET /channels?account=&limit=` | the channels of an account (default: this node) |
//!
//! Design:
//! - **Errors are always JSON** (`{"error": code, "message": text}`, [`error::ApiError`]), for
//!   extractor rejections too: handlers take `Result<Extractor, Rejection>` and map the
//!   rejection, the fallback answers unknown routes with 404 and wrong methods with 405,
//!   oversized bodies get 413, and a panicking handler is caught and answered with 500 (the
//!   panic is logged) instead of dropping the connection.
//! - **`/status` is cheap**: one read lock on the chain view (an `Arc` clone), one mempool
//!   lock for its length, and serialization straight from borrowed data. It is meant to be
//!   polled by dashboards and load balancers.
//! - **Blocking work stays off the runtime**: `POST /tx` runs [`NodeContext::submit`] (a
//!   signature check and a trial application on a copy of the state) on the blocking pool.
//! - **Read-only and unauthenticated**: the only write is `POST /tx`, whose payload is
//!   signed by its sender, so CORS allows any origin (a browser dashboard or wallet can call
//!   any node).

mod account;
mod chain;
pub mod error;
mod inference;
mod status;
#[cfg(test)]
mod tests;
mod tx;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use tower_http::cors::{Any as AnyOrigin, CorsLayer};

use crate::context::NodeContext;
use crate::inference::InferenceService;
use error::ApiError;

/// Largest request body accepted (a signed transaction is at most `max_tx_bytes` encoded,
/// 64 KiB in the default parameters; its JSON form with hex fields is under 3× that).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler shares: the node plus values computed once at startup.
#[derive(Debug)]
pub(crate) struct Api {
    pub(crate) ctx: Arc<NodeContext>,
    pub(crate) inference: Arc<InferenceService>,
    /// The node's account, hex: computed once instead of per `/status` request.
    pub(crate) account_hex: String,
}

pub(crate) type ApiState = Arc<Api>;

/// The API's router, with its error handling, body limit and CORS layers.
pub fn router(ctx: Arc<NodeContext>, inference: Arc<InferenceService>) -> Router {
    let inference_body_limit = inference.max_input_bytes() + inference::ENVELOPE_BYTES;
    let api = Arc::new(Api {
        account_hex: ctx.account().to_hex(),
        ctx,
        inference,
    });
    let routes = Router::new()
        .route("/health", get(status::health))
        .route("/status", get(status::status))
        .route("/domains", get(status::domains))
        .route("/chain/params", get(chain::params))
        .route("/chain/blocks", get(chain::blocks))
        .route("/chain/block/{id}", get(chain::block))
        .route("/tx", axum::routing::post(tx::submit))
        .route("/tx/{id}", get(tx::get_tx))
        .route("/account/{id}", get(account::account))
        .route(
            "/inference",
            get(inference::offers)
                .post(inference::infer)
                .layer(DefaultBodyLimit::max(inference_body_limit)),
        )
        .route("/channel/{id}", get(inference::channel))
        .route("/channels", get(inference::channels))
        // Must come after the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    with_layers(routes.with_state(api))
}

/// The layers every route gets: body limit, CORS, and panic-to-500 outermost.
fn with_layers(routes: Router) -> Router {
    routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(
            CorsLayer::new()
                .allow_origin(AnyOrigin)
                .allow_methods([Method::GET, Method::HEAD, Method::POST])
                .allow_headers([header::CONTENT_TYPE]),
        )
        .layer(middleware::from_fn(catch_panic))
}

/// Serves the API on `listener` until `shutdown` completes; in-flight requests finish first.
pub async fn serve(
    ctx: Arc<NodeContext>,
    inference: Arc<InferenceService>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Small JSON responses: do not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(ctx, inference))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A 200 JSON response. Serialization failure (not expected for our types) becomes a JSON 500.
pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Response {
    json_with_capacity(value, 512)
}

pub(crate) fn json_with_capacity<T: Serialize + ?Sized>(value: &T, capacity: usize) -> Response {
    let mut buf = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => {
            let mut resp = Response::new(Body::from(buf));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::internal(&format_args!("serializing a response: {e}")).into_response(),
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not allowed on {} (see the Allow header)",
            uri.path()
        ),
    )
}

/// Turns a panic in a handler into a logged JSON 500 instead of a dropped connection.
async fn catch_panic(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    // Cheap clones (shared bytes): the hot path allocates nothing here.
    let uri = req.uri().clone();
    match CatchUnwind(Box::pin(next.run(req))).await {
        Ok(resp) => resp,
        Err(panic) => {
            let what = panic_message(panic.as_ref());
            ApiError::internal(&format_args!(
                "handler for {method} {} panicked: {what}",
                uri.path()
            ))
            .into_response()
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

type PanicPayload = Box<dyn Any + Send + 'static>;

/// Polls a future inside `catch_unwind`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, PanicPayload>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        // The future is dropped right after a panic and never polled again, so whatever
        // state it broke is not observed: asserting unwind safety is sound here.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// Parses a 32-byte id given as 64 hex digits (an optional `0x` prefix is accepted).
pub(crate) fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32], ApiError> {
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    let mut out = [0u8; 32];
    if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut out).is_err() {
        return Err(ApiError::bad_request(
            "invalid_id",
            format!("{what} must be 64 hex digits, got {:?}", truncate(s, 80)),
        ));
    }
    Ok(out)
}

/// At most `max` bytes of `s` (on a char boundary), for echoing input in error messages.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
