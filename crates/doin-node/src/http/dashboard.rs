//! `GET /dashboard`: a live web page served by the node itself, plus the routes it needs
//! that are not plain JSON reads (`/events`, `/domains/{id}/history`).
//!
//! The page is three hand-written files under `dashboard/` (HTML, CSS, JavaScript) embedded
//! in the binary with `include_str!`: no CDN, no npm, no build step, nothing to install
//! next to the node, and the page always matches the node's API version. The script draws
//! its chart as inline SVG.
//!
//! First render stays fast on any chain length: the page asks only for bounded pages
//! (`/status`, `/domains`, the last 20 headers, the newest accepted optimae of each domain)
//! and then follows `/events`; it never walks the chain. It records when the first full
//! render finished in `data-first-render-ms` on `<html>` (a `performance.now()` figure),
//! which `scripts/bench-dashboard.sh` reads.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use super::{events, history, ApiState};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const STYLE_CSS: &str = include_str!("dashboard/style.css");
const APP_JS: &str = include_str!("dashboard/app.js");

/// The dashboard's routes, for [`super::router`] to merge.
pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/style.css", get(style))
        .route("/dashboard/app.js", get(script))
        .route("/domains/{id}/history", get(history::history))
        .route(
            "/events",
            get(events::events).layer(Extension(events::EventStreams::default())),
        )
}

/// An embedded asset. `no-cache` makes browsers revalidate: after an upgrade of the node
/// the page and its script never disagree.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn index() -> Response {
    let mut resp = asset(INDEX_HTML, "text/html; charset=utf-8");
    // Everything the page loads comes from this node; inline scripts are not needed.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    resp
}

async fn style() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

async fn script() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}
