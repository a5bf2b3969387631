//! `GET /health`, `GET /status` and `GET /domains`.
//!
//! `/status` reads only memory: the chain view (one read lock and an `Arc` clone), the
//! mempool length (one short lock) and the domain flags. The response is serialized from
//! borrowed data, so a request allocates little beyond its output buffer.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::Response;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;

use doin_core::amount::Amount;
use doin_core::chain::finalized_height;
use doin_core::hash::Hash32;
use doin_core::params::{DomainId, DomainParams};
use doin_core::state::{ChainState, Champion};

use super::{json, json_with_capacity, ApiState};
use crate::context::{now_ms, DomainRuntime};

/// `GET /health`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Health {
    status: &'static str,
}

pub(super) async fn health() -> Response {
    json(&Health { status: "ok" })
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Status<'a> {
    version: &'static str,
    /// The node's network identity. Until libp2p lands this is its account id.
    peer_id: &'a str,
    account: &'a str,
    node_label: &'a str,
    chain_id: &'a str,
    chain_height: u64,
    tip_hash: &'a Hash32,
    tip_time_ms: u64,
    finalized_height: u64,
    cumulative_work: u128,
    peers: u64,
    balance: Amount,
    balance_display: String,
    total_supply: Amount,
    total_supply_display: String,
    issued: Amount,
    burned: Amount,
    base_fee: Amount,
    difficulty: u64,
    ema_block_time_ms: u64,
    target_block_time_ms: u64,
    mempool_size: usize,
    uptime_ms: u64,
    #[schemars(with = "Vec<StatusDomain<'a>>")]
    domains: StatusDomains<'a>,
    /// Where to buy predictions from this node: `POST /inference` (details: `GET /inference`).
    inference: StatusInference<'a>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct StatusInference<'a> {
    mode: doin_core::config::InferenceMode,
    prices: &'a [crate::inference::DomainPrice],
}

/// The node's domains, serialized by iteration (no intermediate vector).
struct StatusDomains<'a> {
    domains: &'a [DomainRuntime],
    state: &'a ChainState,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct StatusDomain<'a> {
    domain_id: &'a DomainId,
    optimize: bool,
    evaluate: bool,
    /// The on-chain champion's verified performance.
    best_performance: Option<f64>,
    target_performance: Option<f64>,
    converged: bool,
    /// Rounds the local optimizer has run.
    rounds: u64,
    champion: Option<&'a Champion>,
}

impl<'a> StatusDomain<'a> {
    fn new(d: &'a DomainRuntime, state: &'a ChainState) -> Self {
        let champion = state.champions.get(&d.id);
        StatusDomain {
            domain_id: &d.id,
            optimize: d.optimize,
            evaluate: d.evaluate,
            best_performance: champion.map(|c| c.performance),
            target_performance: d.target_performance,
            converged: d.converged.load(Ordering::Relaxed),
            rounds: d.rounds.load(Ordering::Relaxed),
            champion,
        }
    }
}

impl Serialize for StatusDomains<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.domains.len()))?;
        for d in self.domains {
            seq.serialize_element(&StatusDomain::new(d, self.state))?;
        }
        seq.end()
    }
}

pub(super) async fn status(State(api): State<ApiState>) -> Response {
    let ctx = &api.ctx;
    let view = ctx.view();
    let state = &*view.state;
    let mempool_size = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner()).len();
    let balance = state
        .accounts
        .get(&ctx.account())
        .map_or(Amount::ZERO, |a| a.balance);
    let supply = state.supply();
    let body = Status {
        version: env!("CARGO_PKG_VERSION"),
        peer_id: &api.account_hex,
        account: &api.account_hex,
        node_label: &ctx.node_label,
        chain_id: &ctx.params.chain_id,
        chain_height: state.height,
        tip_hash: &state.tip,
        tip_time_ms: state.tip_time_ms,
        finalized_height: finalized_height(state.height, ctx.params.finality_depth),
        cumulative_work: state.cumulative_work,
        peers: ctx.net.peers.load(std::sync::atomic::Ordering::Relaxed) as u64,
        balance,
        balance_display: balance.to_string(),
        total_supply: supply,
        total_supply_display: supply.to_string(),
        issued: state.issued,
        burned: state.burned,
        base_fee: state.base_fee,
        difficulty: state.difficulty.threshold,
        ema_block_time_ms: state.difficulty.ema_block_time_ms,
        target_block_time_ms: ctx.params.target_block_time_ms,
        mempool_size,
        uptime_ms: now_ms().saturating_sub(ctx.started_at_ms),
        domains: StatusDomains {
            domains: &ctx.domains,
            state,
        },
        inference: StatusInference {
            mode: api.inference.mode(),
            prices: api.inference.prices(),
        },
    };
    json_with_capacity(&body, 1024 + 512 * ctx.domains.len())
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Domains<'a> {
    domains: Vec<DomainEntry<'a>>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct DomainEntry<'a> {
    domain_id: &'a DomainId,
    params: &'a DomainParams,
    champion: Option<&'a Champion>,
    best_performance: Option<f64>,
    /// Evaluators registered on chain (bonded or at genesis).
    evaluators: usize,
    /// Optimae committed and not yet decided.
    pending_optimae: usize,
    /// This node's role in the domain, or null when it does not work on it.
    local: Option<LocalDomain>,
}

#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct LocalDomain {
    optimize: bool,
    evaluate: bool,
    target_performance: Option<f64>,
    converged: bool,
    rounds: u64,
    /// The optimizer's counters after its latest round (`EngineStats`: L2 patience, the
    /// GA's generation, surrogate and trial reports), null before the first.
    #[schemars(with = "Option<serde_json::Value>")]
    search: Option<doin_optimizer::EngineStats>,
}

/// Every domain of the chain with its champion; `local` says what this node does in it.
pub(super) async fn domains(State(api): State<ApiState>) -> Response {
    let ctx = &api.ctx;
    let view = ctx.view();
    let state = &*view.state;
    let domains = ctx
        .params
        .domains
        .iter()
        .map(|p| {
            let champion = state.champions.get(&p.id);
            DomainEntry {
                domain_id: &p.id,
                params: p,
                champion,
                best_performance: champion.map(|c| c.performance),
                evaluators: state.evaluators.get(&p.id).map_or(0, |m| m.len()),
                pending_optimae: state.optimae.values().filter(|o| o.domain == p.id).count(),
                local: ctx.domain(&p.id).map(|d| LocalDomain {
                    optimize: d.optimize,
                    evaluate: d.evaluate,
                    target_performance: d.target_performance,
                    converged: d.converged.load(Ordering::Relaxed),
                    rounds: d.rounds.load(Ordering::Relaxed),
                    search: *d.search.lock().unwrap_or_else(|e| e.into_inner()),
                }),
            }
        })
        .collect();
    json(&Domains { domains })
}
