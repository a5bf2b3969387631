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
//! | `GET /metrics` | Prometheus metrics (OpenMetrics or text format, by `Accept`) |
//! | `GET /domains/{id}/history?limit=&before=&verdicts=` | a domain's verdicts over time (its champions by default) |
//! | `GET /events` | server-sent events: `status`, then `block` and `status` per block |
//! | `GET /dashboard` | the live dashboard (HTML, CSS and JS embedded in the binary) |
//! | `GET /chain/finality` | finalized height and hash |
//! | `GET /chain/difficulty?blocks=` | difficulty threshold, block-time EMA, recent blocks' work |
//! | `GET /chain/rewards?from=&to=` | minted coins and payouts by block (at most 100 blocks) |
//! | `GET /mempool?limit=&offset=` | pending transactions, base fee, suggested bid |
//! | `GET /fees?blocks=` | the fee market: base fee, next block's rule, recent base fees |
//! | `GET /optimae?domain=&status=&limit=&offset=` | optimae between commit and verdict |
//! | `GET /optimae/{id}` | one optimae: pending from the state, decided from its receipt |
//! | `POST /params?domain=` | store a parameter blob (raw bytes) under its hash, for a remote worker's reveal |
//! | `GET /params/{id}` | the parameter blob with this hash (raw bytes), e.g. a champion's model |
//! | `GET /reputation?limit=&offset=` | accounts by reputation, with quorum eligibility |
//! | `GET /coin` | supply, issuance, burns, cap, block reward, halving schedule |
//! | `GET /stats` | per domain: verdict counts, best performance, time to target |
//! | `GET /stats/export.csv?from=&to=&domain=` | verdicts as CSV, a bounded height range |
//! | `GET /openapi.json` | the OpenAPI 3.0 document of all of the above |
//!
//! Every route is documented in `openapi::ROUTES`, from which `/openapi.json` is built;
//! a test fails when the router and that table disagree.
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
//! - **Read-only and unauthenticated**: the writes are `POST /tx`, whose payload is signed by
//!   its sender, and `POST /params`, content-addressed and bounded in size per request and
//!   in total (see `params.rs`), so CORS allows any origin by default (a browser dashboard or
//!   wallet can call any node); `http.cors_origins` in the node config narrows it.
//! - **Bounded lists**: every list takes `limit`/`offset` or `from`/`to` with a documented
//!   maximum, and a request over it is a 400, never a silently shortened page.

mod account;
mod chain;
mod chain_info;
mod coin;
mod dashboard;
pub mod error;
mod events;
mod history;
mod inference;
mod market;
mod metrics;
mod openapi;
mod optimae;
mod paging;
mod params;
mod peers;
mod stats;
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
use doin_core::config::HttpConfig;
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
    /// The node's metrics (the registry the inference service and the block follower
    /// record into), for `GET /metrics`.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The running verdict tally behind `GET /stats`.
    pub(crate) stats: stats::StatsCache,
    /// Limits and ledger of `POST /params`.
    pub(crate) uploads: params::Uploads,
}

pub(crate) type ApiState = Arc<Api>;

/// The API's router, with its error handling, body limit and CORS layers (any origin).
pub fn router(ctx: Arc<NodeContext>, inference: Arc<InferenceService>) -> Router {
    router_with(ctx, inference, &HttpConfig::default())
}

/// The API's router with the node's HTTP settings (CORS origins).
pub fn router_with(
    ctx: Arc<NodeContext>,
    inference: Arc<InferenceService>,
    http: &HttpConfig,
) -> Router {
    let inference_body_limit = inference.max_input_bytes() + inference::ENVELOPE_BYTES;
    let uploads = params::Uploads::for_chain(&ctx.params);
    // The handler reads the raw body and enforces the limit itself (per domain, with a JSON
    // 413); the layer only keeps any buffering extractor at the same bound.
    let upload_body_limit = usize::try_from(uploads.limit()).unwrap_or(usize::MAX);
    let api = Arc::new(Api {
        account_hex: ctx.account().to_hex(),
        metrics: Arc::clone(inference.metrics()),
        stats: stats::StatsCache::default(),
        uploads,
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
        .route("/peers", get(peers::peers))
        .route(
            "/inference",
            get(inference::offers)
                .post(inference::infer)
                .layer(DefaultBodyLimit::max(inference_body_limit)),
        )
        .route("/channel/{id}", get(inference::channel))
        .route("/channels", get(inference::channels))
        .route("/chain/finality", get(chain_info::finality))
        .route("/chain/difficulty", get(chain_info::difficulty))
        .route("/chain/rewards", get(chain_info::rewards))
        .route("/mempool", get(market::mempool))
        .route("/fees", get(market::fees))
        .route("/optimae", get(optimae::list))
        .route("/optimae/{id}", get(optimae::get))
        .route("/reputation", get(optimae::reputation))
        .route(
            "/params",
            axum::routing::post(params::upload).layer(DefaultBodyLimit::max(upload_body_limit)),
        )
        .route("/params/{id}", get(params::download))
        .route("/coin", get(coin::coin))
        .route("/stats", get(stats::stats))
        .route("/stats/export.csv", get(stats::export_csv))
        .route("/openapi.json", get(openapi::openapi))
        .route("/metrics", get(metrics::metrics))
        .merge(dashboard::routes())
        // Must come after the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    with_layers_for(routes.with_state(api), http)
}

/// [`with_layers_for`] with the default settings (any origin).
#[cfg(test)]
fn with_layers(routes: Router) -> Router {
    with_layers_for(routes, &HttpConfig::default())
}

/// The layers every route gets: body limit, CORS, and panic-to-500 outermost.
fn with_layers_for(routes: Router, http: &HttpConfig) -> Router {
    let routes = routes.layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let routes = match cors_layer(http) {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes.layer(middleware::from_fn(catch_panic))
}

/// The CORS layer for `http.cors_origins`: any origin for `["*"]`, exactly the listed ones
/// otherwise, none at all (no CORS headers) for `[]`.
fn cors_layer(http: &HttpConfig) -> Option<CorsLayer> {
    if http.cors_origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .allow_headers([header::CONTENT_TYPE]);
    if http.allows_any_origin() {
        return Some(layer.allow_origin(AnyOrigin));
    }
    // The config validated each origin; one that still is not a header value is skipped
    // (and logged) rather than failing the whole API.
    let origins: Vec<HeaderValue> = http
        .cors_origins
        .iter()
        .filter_map(|o| match HeaderValue::from_str(o) {
            Ok(v) => Some(v),
            Err(_) => {
                tracing::warn!(origin = %o, "http.cors_origins: not a valid origin; skipped");
                None
            }
        })
        .collect();
    Some(layer.allow_origin(origins))
}

/// Serves the API on `listener` until `shutdown` completes; in-flight requests finish first.
/// CORS allows any origin; [`serve_with`] takes the node's HTTP settings.
pub async fn serve(
    ctx: Arc<NodeContext>,
    inference: Arc<InferenceService>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(ctx, inference, &HttpConfig::default(), listener, shutdown).await
}

/// [`serve`] with the node's HTTP settings (`http` in the node config).
pub async fn serve_with(
    ctx: Arc<NodeContext>,
    inference: Arc<InferenceService>,
    http: &HttpConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        // Small JSON responses: do not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    // Event streams never end by themselves: end them when shutdown starts, or graceful
    // shutdown would wait for them forever.
    let (close_streams, closing) = events::Closing::new();
    let app = router_with(ctx, inference, http).layer(axum::Extension(closing));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = close_streams.send(true);
        })
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
