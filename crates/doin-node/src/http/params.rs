//! `POST /params` and `GET /params/{hash}`: parameter blobs (model weights) by content hash.
//!
//! A remote worker (`doin-optimizer --attach`) trains away from the node, so before it
//! reveals an optimae the node must hold the parameters the reveal points to: evaluators look
//! them up by hash, this node's in its own blob store and its peers' through the network
//! (`SyncRequest::Params`, served from the same store). `POST /params` stores the body under
//! its hash ([`doin_core::plugin::params_hash`]); `GET /params/{hash}` serves any blob the
//! node holds (a champion's model, for a worker to continue from it).
//!
//! Anyone can upload, so both the size of one upload and the space all uploads can take are
//! bounded:
//! - **One upload** is at most the largest `limits.max_params_bytes` among the chain's
//!   domains (capped at [`MAX_UPLOAD_CEILING`]), or the named domain's with `?domain=`. A
//!   `Content-Length` over the limit is refused before any byte is read, and a body without
//!   one is refused as soon as it grows past the limit: nothing over the limit is ever
//!   buffered or written. At most [`MAX_CONCURRENT_UPLOADS`] bodies are read at once, so
//!   memory is bounded too.
//! - **All uploads**: an upload is *unreferenced* until a reveal on chain names its hash
//!   (pending optimae) or it becomes a champion. Unreferenced uploads count against a quota
//!   (four of the largest uploads, at least [`MIN_UPLOAD_QUOTA`]); one that would exceed it
//!   is refused with `507 upload_quota_exceeded`. An unreferenced upload
//!   is kept for `2 × reveal_window + 2` blocks after its last upload (a commit made after
//!   the upload must be revealed within `reveal_window` blocks of its inclusion), then
//!   deleted at the next upload. Once referenced, a blob leaves the ledger and is kept like
//!   every blob the node fetched for a reveal: making an upload permanent costs a commit's
//!   stake and fees, the same price as through the network.
//!
//! The ledger lives in memory: uploads left unreferenced when the node stops are not deleted
//! after a restart (at most one quota's worth per run). Blobs that were already in the store
//! (the node's own, a peer's, a champion's) are never tracked or deleted.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, SemaphorePermit};

use doin_core::hash::Hash32;
use doin_core::params::{ChainParams, DomainId};
use doin_core::plugin::params_hash;
use doin_core::state::ChainState;

use super::error::{ApiError, ApiResult};
use super::{json, parse_hex32, truncate, ApiState};
use crate::blobs::BlobError;

/// Largest upload accepted whatever the domains allow (the body is buffered in memory).
pub const MAX_UPLOAD_CEILING: u64 = 256 << 20;
/// Least space unreferenced uploads may take together.
pub const MIN_UPLOAD_QUOTA: u64 = 256 << 20;
/// Upload bodies read at once (each up to the upload limit in memory).
pub const MAX_CONCURRENT_UPLOADS: usize = 4;
/// Blob downloads served at once (each read whole into memory to be verified).
pub const MAX_CONCURRENT_DOWNLOADS: usize = 8;
/// How long a request waits for a free upload or download slot before `503 busy`.
const SLOT_WAIT: Duration = Duration::from_secs(10);
/// Longest time one upload body may take to arrive (`408 timeout` after).
const UPLOAD_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// What a tiny upload counts against the quota (a file costs at least a disk block), so the
/// quota also bounds the number of tracked uploads.
const MIN_ACCOUNTED_BYTES: u64 = 4096;

/// The upload limit, quota and ledger, shared by the handlers.
#[derive(Debug)]
pub(crate) struct Uploads {
    /// Largest body `POST /params` reads without `?domain=`.
    limit: u64,
    /// Most bytes unreferenced uploads may take together.
    quota: u64,
    /// Blocks an unreferenced upload is kept after its last upload.
    retention: u64,
    ledger: Mutex<Ledger>,
    upload_slots: Semaphore,
    download_slots: Semaphore,
}

impl Uploads {
    /// The limits for a chain: the largest `max_params_bytes` of its domains (capped), a
    /// quota of four such uploads (at least [`MIN_UPLOAD_QUOTA`]), and a retention of
    /// `2 × reveal_window + 2` blocks.
    pub(crate) fn for_chain(params: &ChainParams) -> Uploads {
        let limit = params
            .domains
            .iter()
            .map(|d| d.limits.max_params_bytes)
            .max()
            .unwrap_or(0)
            .min(MAX_UPLOAD_CEILING);
        Uploads::new(
            limit,
            limit.saturating_mul(4).max(MIN_UPLOAD_QUOTA),
            params.reveal_window.saturating_mul(2).saturating_add(2),
        )
    }

    pub(crate) fn new(limit: u64, quota: u64, retention: u64) -> Uploads {
        Uploads {
            limit,
            quota,
            retention,
            ledger: Mutex::new(Ledger::default()),
            upload_slots: Semaphore::new(MAX_CONCURRENT_UPLOADS),
            download_slots: Semaphore::new(MAX_CONCURRENT_DOWNLOADS),
        }
    }

    /// The largest body `POST /params` reads (without `?domain=`).
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === the ledger of unreferenced uploads ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Bytes counted against the quota.
    cost: u64,
    /// Chain height of the last upload of these bytes.
    height: u64,
}

/// Uploads not yet referenced on chain, with what they count against the quota.
#[derive(Debug, Default)]
struct Ledger {
    entries: HashMap<Hash32, Entry>,
    total: u64,
}

/// What [`Ledger::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Already tracked: its retention starts again at this height.
    Refreshed,
    /// Room reserved: write the blob, or [`Ledger::release`] it if the write fails.
    Reserved,
    /// Over the quota: `used` bytes are taken; the oldest entry expires after `next_expiry`.
    OverQuota { used: u64, next_expiry: Option<u64> },
}

fn cost_of(size: u64) -> u64 {
    size.max(MIN_ACCOUNTED_BYTES)
}

impl Ledger {
    /// Forgets entries the chain now references (they are kept for good) and removes those
    /// unreferenced for more than `retention` blocks, returning the latter for deletion.
    fn prune(
        &mut self,
        height: u64,
        retention: u64,
        referenced: impl Fn(&Hash32) -> bool,
    ) -> Vec<Hash32> {
        let mut expired = Vec::new();
        self.entries.retain(|hash, e| {
            let keep = if referenced(hash) {
                false
            } else if height > e.height.saturating_add(retention) {
                expired.push(*hash);
                false
            } else {
                true
            };
            if !keep {
                self.total -= e.cost;
            }
            keep
        });
        expired
    }

    /// Whether `hash` is tracked.
    fn contains(&self, hash: &Hash32) -> bool {
        self.entries.contains_key(hash)
    }

    /// Tracks an upload of `size` bytes at `height` if the quota has room for it.
    fn admit(&mut self, hash: Hash32, size: u64, height: u64, quota: u64) -> Admission {
        if let Some(e) = self.entries.get_mut(&hash) {
            e.height = e.height.max(height);
            return Admission::Refreshed;
        }
        let cost = cost_of(size);
        if self.total.saturating_add(cost) > quota {
            return Admission::OverQuota {
                used: self.total,
                next_expiry: self.entries.values().map(|e| e.height).min(),
            };
        }
        self.total += cost;
        self.entries.insert(hash, Entry { cost, height });
        Admission::Reserved
    }

    /// Undoes a reservation whose write failed.
    fn release(&mut self, hash: &Hash32) {
        if let Some(e) = self.entries.remove(hash) {
            self.total -= e.cost;
        }
    }
}

/// The parameter hashes the chain references: champions and revealed pending optimae.
fn referenced_hashes(state: &ChainState) -> HashSet<Hash32> {
    state
        .champions
        .values()
        .map(|c| c.params_hash)
        .chain(
            state
                .optimae
                .values()
                .filter_map(|p| p.reveal.as_ref().map(|r| r.params_hash)),
        )
        .collect()
}

// === POST /params ===

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(super) struct UploadQuery {
    /// Bound the size by this domain's `limits.max_params_bytes` (default: the largest of
    /// the chain's domains).
    domain: Option<String>,
}

/// `POST /params`: where the blob is and for how long it is kept.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(super) struct Stored {
    /// `params_hash` of the body: what a reveal names.
    params_hash: Hash32,
    /// Bytes.
    size: u64,
    /// Whether this request wrote the blob (`false`: the node already held it).
    stored: bool,
    /// Height after which the blob is deleted unless a reveal or champion on chain names it
    /// by then (uploading it again extends this); `null` when it is kept regardless.
    retained_until_height: Option<u64>,
}

async fn slot<'a>(slots: &'a Semaphore, what: &str) -> ApiResult<SemaphorePermit<'a>> {
    match tokio::time::timeout(SLOT_WAIT, slots.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("too many {what} at once; retry in a few seconds"),
        )),
    }
}

/// Reads at most `limit` bytes of `body`; 413 as soon as it grows past the limit.
async fn read_limited(body: Body, limit: u64, expected: Option<u64>) -> ApiResult<Vec<u8>> {
    let capacity = expected.unwrap_or(0).min(limit);
    let mut buf = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut stream = body.into_data_stream();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request("invalid_body", format!("reading the body: {e}"))
            })?;
            if (buf.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(UPLOAD_READ_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!(
                "the body did not arrive within {} s",
                UPLOAD_READ_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::payload_too_large(usize::try_from(limit).unwrap_or(usize::MAX))
}

/// Stores the body (raw parameter bytes) under its hash. 201 when written, 200 when the node
/// already held it.
pub(super) async fn upload(
    State(api): State<ApiState>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let uploads = &api.uploads;
    let limit = match q.domain.as_deref() {
        None => uploads.limit,
        Some(id) => {
            let id = DomainId::new(id).map_err(|e| {
                ApiError::bad_request("invalid_domain", format!("{:?}: {e}", truncate(id, 80)))
            })?;
            let domain = api.ctx.params.domain(&id).ok_or_else(|| {
                ApiError::bad_request(
                    "unknown_domain",
                    format!("domain {id} is not on this chain"),
                )
            })?;
            domain.limits.max_params_bytes.min(MAX_UPLOAD_CEILING)
        }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let _permit = slot(&uploads.upload_slots, "uploads").await?;
    let bytes = read_limited(body, limit, declared).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "the request body is empty; send the parameter bytes (application/octet-stream)",
        ));
    }
    let api2 = api.clone();
    let stored = tokio::task::spawn_blocking(move || store(&api2, &bytes, limit))
        .await
        .map_err(|e| ApiError::internal(&e))??;
    let status = if stored.stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut resp = json(&stored);
    *resp.status_mut() = status;
    Ok(resp)
}

/// Hashes and stores `bytes` within the ledger's rules (blocking: hashing and disk I/O).
fn store(api: &super::Api, bytes: &[u8], limit: u64) -> ApiResult<Stored> {
    let uploads = &api.uploads;
    let hash = params_hash(bytes);
    let size = bytes.len() as u64;
    let state = api.ctx.view().state;
    let height = state.height;
    let referenced = referenced_hashes(&state);
    let blobs = &api.ctx.blobs;

    let (expired, admission) = {
        let mut ledger = uploads.ledger();
        let expired = ledger.prune(height, uploads.retention, |h| referenced.contains(h));
        let admission = if ledger.contains(&hash) || !blobs.contains(&hash) {
            Some(ledger.admit(hash, size, height, uploads.quota))
        } else {
            None // held already and not an upload of ours: kept regardless
        };
        (expired, admission)
    };
    for h in &expired {
        match blobs.remove(h) {
            Ok(_) => tracing::debug!("params {h}: unreferenced upload expired; deleted"),
            Err(e) => tracing::warn!("params {h}: deleting an expired upload: {e}"),
        }
    }
    let retained_until = Some(height.saturating_add(uploads.retention));
    match admission {
        Some(Admission::Refreshed) | None => {
            // A damaged file is replaced; an intact one is left alone.
            blobs.put(bytes, limit).map_err(|e| blob_error(&e, limit))?;
            Ok(Stored {
                params_hash: hash,
                size,
                stored: false,
                retained_until_height: admission.and(retained_until),
            })
        }
        Some(Admission::OverQuota { used, next_expiry }) => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "upload_quota_exceeded",
            format!(
                "uploads not yet named by a reveal hold {used} of this node's {} bytes for \
                 them; {}",
                uploads.quota,
                match next_expiry {
                    Some(h) => format!(
                        "the oldest is dropped after height {}; retry then",
                        h.saturating_add(uploads.retention)
                    ),
                    None => "this blob alone is over the quota".to_string(),
                }
            ),
        )),
        Some(Admission::Reserved) => match blobs.put(bytes, limit) {
            Ok(_) => {
                tracing::info!("params {hash}: {size} bytes uploaded");
                Ok(Stored {
                    params_hash: hash,
                    size,
                    stored: true,
                    retained_until_height: retained_until,
                })
            }
            Err(e) => {
                uploads.ledger().release(&hash);
                Err(blob_error(&e, limit))
            }
        },
    }
}

fn blob_error(e: &BlobError, limit: u64) -> ApiError {
    match e {
        BlobError::TooLarge { .. } => too_large(limit),
        _ => ApiError::internal(e),
    }
}

// === GET /params/{hash} ===

/// The blob with this hash, as `application/octet-stream`.
pub(super) async fn download(
    State(api): State<ApiState>,
    hash: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let Path(hash) = hash.map_err(|e| ApiError::bad_request("invalid_id", e.body_text()))?;
    let hash = Hash32(parse_hex32("params hash", &hash)?);
    let _permit = slot(&api.uploads.download_slots, "downloads").await?;
    let blobs = api.ctx.blobs.clone();
    let bytes = tokio::task::spawn_blocking(move || blobs.get(&hash))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&e))?
        .ok_or_else(|| ApiError::not_found(format!("this node holds no parameters {hash}")))?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    // Content-addressed: the bytes under a hash never change.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash32 {
        Hash32([n; 32])
    }

    #[test]
    fn the_quota_counts_unreferenced_uploads_and_refuses_over_it() {
        let mut l = Ledger::default();
        assert_eq!(l.admit(h(1), 10_000, 5, 25_000), Admission::Reserved);
        assert_eq!(l.admit(h(2), 10_000, 6, 25_000), Admission::Reserved);
        // Re-uploading is free and restarts the retention.
        assert_eq!(l.admit(h(1), 10_000, 7, 25_000), Admission::Refreshed);
        assert_eq!(l.entries[&h(1)].height, 7);
        assert_eq!(
            l.admit(h(3), 10_000, 7, 25_000),
            Admission::OverQuota {
                used: 20_000,
                next_expiry: Some(6)
            }
        );
        // A tiny blob costs a disk block.
        assert_eq!(l.admit(h(4), 1, 7, 25_000), Admission::Reserved);
        assert_eq!(l.total, 24_096);
        l.release(&h(4));
        assert_eq!(l.total, 20_000);
        assert!(!l.contains(&h(4)));
    }

    #[test]
    fn pruning_forgets_referenced_uploads_and_expires_old_unreferenced_ones() {
        let mut l = Ledger::default();
        for (n, height) in [(1, 0), (2, 0), (3, 8)] {
            assert_eq!(l.admit(h(n), 5_000, height, 1 << 20), Admission::Reserved);
        }
        // Within the retention nothing expires.
        assert!(l.prune(10, 10, |_| false).is_empty());
        assert_eq!(l.entries.len(), 3);
        // Height 11 is past 0 + 10: blob 2 expires; blob 1 is referenced (kept, untracked).
        let expired = l.prune(11, 10, |x| *x == h(1));
        assert_eq!(expired, vec![h(2)]);
        assert_eq!(l.entries.keys().copied().collect::<Vec<_>>(), vec![h(3)]);
        assert_eq!(l.total, 5_000);
    }

    #[test]
    fn the_limits_follow_the_chain() {
        let mut params = ChainParams::dev("t");
        params.domains[0].limits.max_params_bytes = 1_000;
        let u = Uploads::for_chain(&params);
        assert_eq!(u.limit(), 1_000);
        assert_eq!(u.quota, MIN_UPLOAD_QUOTA);
        assert_eq!(u.retention, 2 * params.reveal_window + 2);
        params.domains[0].limits.max_params_bytes = u64::MAX;
        let u = Uploads::for_chain(&params);
        assert_eq!(u.limit(), MAX_UPLOAD_CEILING);
        assert_eq!(u.quota, 4 * MAX_UPLOAD_CEILING);
    }
}
