//! `GET /events`: the node's chain events as server-sent events (SSE), for the dashboard and
//! for anyone who wants to follow the chain without polling.
//!
//! Each client gets:
//! - `status` right away: the same JSON as `GET /status`, so a client starts from a
//!   consistent picture without a second request;
//! - per block, `block` (height, hash, time, transactions, coins minted and burned, this
//!   node's reward, the verdicts taken, optimae still in flight) and then `status` again;
//! - `lagged` when it fell behind and events were dropped (`{"skipped": n}`): the client
//!   refetches what it shows instead of the node queueing for it;
//! - a keep-alive comment every [`KEEP_ALIVE`], so proxies and browsers keep the stream open.
//!
//! # Bounded by construction
//! - Every client reads its own receiver of the node's event channel ([`NodeContext::events`],
//!   a `tokio::sync::broadcast` with a fixed capacity): a slow client makes its receiver lag
//!   and skip, never makes the node buffer more. Events are rendered only when the client's
//!   socket takes them (hyper polls the stream on demand), so nothing piles up per client.
//! - At most [`MAX_EVENT_STREAMS`] streams are open at once; one more gets `503
//!   too_many_streams`. Each stream holds a permit until it ends.
//! - On shutdown every stream ends ([`Closing`]), so graceful shutdown, which waits for
//!   in-flight responses, is not held up by an open dashboard.
//!
//! [`NodeContext::events`]: crate::context::NodeContext::events

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use doin_core::amount::Amount;
use doin_core::block::BlockHeader;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::optimae::Verdict;
use doin_core::params::DomainId;
use doin_core::state::{BlockReceipt, VerdictRecord};

use super::error::ApiError;
use super::ApiState;
use crate::context::ChainEvent;

/// Most event streams open at once. Each costs a task-free stream and one broadcast
/// receiver; the cap keeps a misbehaving client from opening thousands.
pub const MAX_EVENT_STREAMS: usize = 64;

/// Interval of keep-alive comments: under the 30-60 s idle timeouts common in proxies.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before reconnecting a dropped stream (the SSE `retry` field).
const RETRY: Duration = Duration::from_secs(2);

/// Largest `/status` body the stream copies (it is about 1 KiB per domain).
const MAX_STATUS_BYTES: usize = 1 << 20;

/// What every event stream shares: the cap on open streams.
#[derive(Debug, Clone)]
pub(crate) struct EventStreams {
    permits: Arc<Semaphore>,
}

impl Default for EventStreams {
    fn default() -> Self {
        EventStreams {
            permits: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }
}

/// Flips to `true` when the server shuts down; open streams end then. Installed by
/// [`super::serve`]; a router used without it (tests) simply never closes streams.
#[derive(Debug, Clone)]
pub(crate) struct Closing(watch::Receiver<bool>);

impl Closing {
    /// A closing signal and the sender that fires it.
    pub(crate) fn new() -> (watch::Sender<bool>, Closing) {
        let (tx, rx) = watch::channel(false);
        (tx, Closing(rx))
    }
}

/// One verdict as the `block` event shows it.
#[derive(Debug, Serialize)]
struct VerdictEvent<'a> {
    domain: &'a DomainId,
    commitment: &'a Hash32,
    optimizer: &'a AccountId,
    claim: f64,
    /// `accepted`, `rejected` or `no_quorum`.
    verdict: &'static str,
    /// Median of the measurements (the verified performance when accepted).
    median: Option<f64>,
    /// Verified improvement over the previous champion (accepted only).
    credit: Option<f64>,
    /// Why it was rejected.
    reason: Option<String>,
    votes: usize,
}

impl<'a> VerdictEvent<'a> {
    fn new(v: &'a VerdictRecord) -> Self {
        let (verdict, median, credit, reason) = match &v.verdict {
            Verdict::Accepted { median, credit } => {
                ("accepted", Some(*median), Some(*credit), None)
            }
            Verdict::Rejected { reason, median } => {
                ("rejected", Some(*median), None, Some(format!("{reason:?}")))
            }
            Verdict::NoQuorum { votes, needed } => (
                "no_quorum",
                None,
                None,
                Some(format!("{votes} of {needed} votes")),
            ),
        };
        VerdictEvent {
            domain: &v.domain,
            commitment: &v.commitment,
            optimizer: &v.optimizer,
            claim: v.claim,
            verdict,
            median,
            credit,
            reason,
            votes: v.votes.len(),
        }
    }
}

/// Optimae of a domain between commit and verdict: the evaluations in flight.
#[derive(Debug, Serialize)]
struct InFlight<'a> {
    domain: &'a DomainId,
    /// Committed, not revealed yet.
    committed: usize,
    /// Revealed and waiting for the quorum's votes.
    revealed: usize,
    /// Votes already recorded for the revealed ones.
    votes: usize,
}

/// The `block` event.
#[derive(Debug, Serialize)]
struct BlockEvent<'a> {
    height: u64,
    hash: Hash32,
    parent: &'a Hash32,
    time_ms: u64,
    proposer: &'a AccountId,
    tx_count: usize,
    work: u64,
    difficulty: u64,
    base_fee: Amount,
    minted: Amount,
    burned: Amount,
    tips: Amount,
    /// What the block paid this node (its share of the reward and tips).
    my_reward: Amount,
    verdicts: Vec<VerdictEvent<'a>>,
    /// Commitments whose reveal never came (stake burned).
    expired: usize,
    /// Per domain of the chain, after this block (or a newer one, if it came meanwhile).
    in_flight: Vec<InFlight<'a>>,
}

/// `GET /events`.
pub(super) async fn events(
    State(api): State<ApiState>,
    Extension(streams): Extension<EventStreams>,
    closing: Option<Extension<Closing>>,
) -> Response {
    let Ok(permit) = Arc::clone(&streams.permits).try_acquire_owned() else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("at most {MAX_EVENT_STREAMS} event streams may be open at once; retry later"),
        )
        .into_response();
    };
    let closing = closing.map(|Extension(c)| c.0);
    let stream = event_stream(api, permit, closing);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// What one stream holds between events.
struct StreamState {
    api: ApiState,
    rx: broadcast::Receiver<ChainEvent>,
    closing: Option<watch::Receiver<bool>>,
    /// Sent before the next event is awaited (the `status` that follows a `block`).
    queued: Option<Event>,
    first: bool,
    /// Held for the stream's life: frees a slot of [`MAX_EVENT_STREAMS`] when dropped.
    _permit: OwnedSemaphorePermit,
}

fn event_stream(
    api: ApiState,
    permit: OwnedSemaphorePermit,
    closing: Option<watch::Receiver<bool>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // Subscribe before the first status is rendered: no block falls between the two.
    let rx = api.ctx.events.subscribe();
    let state = StreamState {
        api,
        rx,
        closing,
        queued: None,
        first: true,
        _permit: permit,
    };
    stream::unfold(state, |mut st| async move {
        if st.first {
            st.first = false;
            let event = status_event(&st.api).await.retry(RETRY);
            return Some((Ok(event), st));
        }
        if let Some(event) = st.queued.take() {
            return Some((Ok(event), st));
        }
        let next = match st.closing.as_mut() {
            Some(closing) => {
                tokio::select! {
                    next = st.rx.recv() => next,
                    _ = closing.wait_for(|c| *c) => return None,
                }
            }
            None => st.rx.recv().await,
        };
        let event = match next {
            Ok(ChainEvent::Block {
                header,
                receipt,
                tx_count,
            }) => block_event(&st.api, &header, &receipt, tx_count),
            Ok(ChainEvent::Reorg {
                fork_height,
                depth,
                old_tip,
                new_tip,
            }) => json_event(
                "reorg",
                &serde_json::json!({
                    "fork_height": fork_height,
                    "depth": depth,
                    "old_tip": old_tip,
                    "new_tip": new_tip,
                }),
            ),
            Err(RecvError::Lagged(skipped)) => {
                json_event("lagged", &serde_json::json!({ "skipped": skipped }))
            }
            Err(RecvError::Closed) => return None,
        };
        st.queued = Some(status_event(&st.api).await);
        Some((Ok(event), st))
    })
}

fn json_event<T: Serialize>(name: &'static str, data: &T) -> Event {
    match Event::default().event(name).json_data(data) {
        Ok(event) => event,
        // Not expected for our types; the client sees a named error instead of a gap.
        Err(err) => {
            tracing::error!("http: serializing a {name} event: {err}");
            Event::default().event("error").data("serialization failed")
        }
    }
}

/// The `status` event: exactly the body of `GET /status` (one source of truth for both).
async fn status_event(api: &ApiState) -> Event {
    let resp = super::status::status(State(Arc::clone(api))).await;
    match axum::body::to_bytes(resp.into_body(), MAX_STATUS_BYTES).await {
        Ok(bytes) => Event::default()
            .event("status")
            .data(String::from_utf8_lossy(&bytes)),
        Err(err) => {
            tracing::error!("http: reading the status for an event: {err}");
            Event::default().event("error").data("status unavailable")
        }
    }
}

fn block_event(
    api: &ApiState,
    header: &BlockHeader,
    receipt: &BlockReceipt,
    tx_count: usize,
) -> Event {
    let ctx = &api.ctx;
    let view = ctx.view();
    let in_flight = ctx
        .params
        .domains
        .iter()
        .map(|d| {
            let mut f = InFlight {
                domain: &d.id,
                committed: 0,
                revealed: 0,
                votes: 0,
            };
            for p in view.state.optimae.values().filter(|p| p.domain == d.id) {
                match &p.reveal {
                    Some(r) => {
                        f.revealed += 1;
                        f.votes += r.votes.len();
                    }
                    None => f.committed += 1,
                }
            }
            f
        })
        .collect();
    let event = BlockEvent {
        height: header.height,
        hash: header.hash(),
        parent: &header.parent,
        time_ms: header.timestamp_ms,
        proposer: &header.proposer,
        tx_count,
        work: header.work,
        difficulty: header.difficulty,
        base_fee: header.base_fee,
        minted: receipt.minted,
        burned: receipt.burned,
        tips: receipt.tips,
        my_reward: receipt
            .payouts
            .get(&ctx.account())
            .copied()
            .unwrap_or_default(),
        verdicts: receipt.verdicts.iter().map(VerdictEvent::new).collect(),
        expired: receipt.expired.len(),
        in_flight,
    };
    json_event("block", &event)
}
