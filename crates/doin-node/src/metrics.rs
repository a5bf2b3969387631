//! Prometheus metrics, served at `GET /metrics` (see `docs/api.md#get-metrics`).
//!
//! One [`Metrics`] per node owns a `prometheus_client` [`Registry`] with the prefix `doin`
//! and typed metric families. `prometheus-client` is the library `libp2p-metrics` uses (the
//! same version), so the networking layer registers libp2p's metrics into this registry
//! ([`Metrics::registry_mut`], before the `Metrics` is shared) and one scrape returns both.
//!
//! Where the values come from:
//! - **Blocks** ([`run`]): a task follows the chain event stream and counts every block once,
//!   in height order: blocks, blocks this node proposed, block intervals, transactions per
//!   block, coins minted and burned, optimae verdicts and expiries per domain, and evaluator
//!   agreement. When it falls behind the stream (or starts late) it reads the missed blocks
//!   and receipts from the store, so counters never skip a block (up to
//!   [`MAX_BACKFILL_BLOCKS`] at once).
//! - **Gauges** ([`Metrics::refresh`]): set from memory (the chain view, the mempool, the
//!   domain runtimes, among them each optimizer's latest counters: rounds, surrogate
//!   records, spot checks of trial reports) after every block and again at every scrape, so
//!   a scrape never shows a mempool or round count older than the request.
//! - **Inference** ([`Metrics::record_inference`]): the inference service records every
//!   query's result and, for answered ones, latency and payment.
//!
//! Label cardinality is bounded: `domain` takes the chain's domain ids (fixed by the chain
//! parameters) or `(unknown)` for a query naming a domain this node does not serve (domain
//! ids cannot contain parentheses, so it never collides); every other label is a fixed set.
//!
//! - **Reorganizations** ([`Metrics::record_reorg`]): count and depth (blocks replaced), from
//!   the chain event stream; the block counters then count the new branch's blocks.
//!
//! - **libp2p** (`doin_libp2p_*`, only on a node with networking): `libp2p-metrics`' own
//!   families, registered when the swarm starts ([`crate::network::open`]) and recorded by
//!   the swarm task from the events it handles: the swarm's connections (established,
//!   incoming, errors, establishment time, duration, by role and transport stack), dials and
//!   listen addresses; gossipsub messages received; identify exchanges and the peers'
//!   protocols and addresses; kademlia routing table updates, inbound requests and queries;
//!   and `doin_libp2p_bandwidth_bytes_total`, bytes in and out counted by the transport.
//!   `libp2p-metrics` has no request-response recorder: sync requests show up only in the
//!   connection and byte counts. A labelled family with no sample yet (no connection error
//!   so far, say) is left out of a scrape, as by every `prometheus_client` family.
//!
//! Two text formats, chosen by the scraper's `Accept` header ([`Format::negotiate`]):
//! OpenMetrics 1.0 (what Prometheus asks for) straight from
//! [`prometheus_client::encoding::text::encode`], and otherwise the classic Prometheus text
//! format 0.0.4 (what `curl` and `promtool check metrics` read), converted from it by
//! [`to_prometheus_text`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use doin_core::amount::Amount;
use doin_core::block::BlockHeader;
use doin_core::chain::finalized_height;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::optimae::{agrees, Verdict, VerdictRules};
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::{BlockReceipt, VerdictRecord};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use thiserror::Error;
use tokio::sync::{broadcast, watch};

use crate::context::{now_ms, ChainEvent, NodeContext};
use crate::inference::InferenceError;

/// Most blocks read back from the store when the metrics task fell behind the event stream.
/// A larger gap (the task starved for minutes) is skipped with a warning: catching up would
/// hold a database connection for long, and the counters are diagnostics, not accounting.
pub const MAX_BACKFILL_BLOCKS: u64 = 1_000;

/// The `domain` label of a query for a domain this node does not serve.
pub const UNKNOWN_DOMAIN_LABEL: &str = "(unknown)";

/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of the classic Prometheus text format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the block interval histogram: 0.25 s to about 8.5 minutes,
/// doubling; the target block time is seconds to a minute, the empty-block interval longer.
fn block_interval_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.25, 2.0, 12)
}

/// Upper bounds of the transactions-per-block histogram (the first bucket counts empty blocks).
/// Reorganization depths (blocks replaced); deeper than `finality_depth` cannot happen.
const REORG_DEPTH_BUCKETS: [f64; 7] = [1.0, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0];

const BLOCK_TX_BUCKETS: [f64; 13] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Inference latency buckets: 25 µs (a cheap model answered inline) to about 3.3 s, doubling.
fn inference_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_025, 2.0, 18))
}

/// Why the metrics could not be encoded (a `fmt::Write` into a `String` does not fail in
/// practice; a collector registered by another crate might).
#[derive(Debug, Error)]
#[error("encoding the metrics failed")]
pub struct EncodeError(#[from] std::fmt::Error);

/// The text format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text: typed counters (`_total` samples), units, `info` metrics, `# EOF`.
    OpenMetrics,
    /// Prometheus text 0.0.4, which every Prometheus tool reads.
    PrometheusText,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it (Prometheus does), else the classic
    /// text format, as Prometheus' own Go client negotiates.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::PrometheusText => PROMETHEUS_TEXT_CONTENT_TYPE,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DomainLabels {
    domain: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GossipLabels {
    /// `blocks`, `txs` or `domain` (the per-domain topics together: bounded cardinality).
    topic: &'static str,
    /// `accepted`, `rejected` or `ignored`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    domain: String,
    /// `accepted`, `rejected`, `no_quorum` or `expired` (never revealed in time).
    verdict: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgreementLabels {
    domain: String,
    /// `with_median` or `off_median`.
    agreement: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InferenceLabels {
    domain: String,
    /// `ok` or the error code of the HTTP answer ([`InferenceError::code`]).
    result: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The node's metrics: see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    chain_height: Gauge,
    finalized_height: Gauge,
    blocks: Counter,
    blocks_proposed: Counter,
    block_interval: Histogram,
    block_txs: Histogram,
    minted: Counter,
    burned: Counter,
    base_fee: Gauge,
    difficulty: Gauge,
    mempool: Gauge,
    optimae: Family<VerdictLabels, Counter>,
    votes: Family<AgreementLabels, Counter>,
    best_performance: Family<DomainLabels, FloatGauge>,
    rounds: Family<DomainLabels, Counter>,
    surrogate_records: Family<DomainLabels, Gauge>,
    reported_records: Family<DomainLabels, Gauge>,
    spot_checks: Family<DomainLabels, Counter>,
    refuted_reporters: Family<DomainLabels, Counter>,
    inference_requests: Family<InferenceLabels, Counter>,
    inference_latency: Family<DomainLabels, Histogram, fn() -> Histogram>,
    vouchers: Family<DomainLabels, Counter>,
    received: Family<DomainLabels, Counter>,
    start_time: FloatGauge,
    uptime: FloatGauge,
    peers: Gauge,
    gossip: Family<GossipLabels, Counter>,
    reorgs: Counter,
    reorg_depth: Histogram,
    /// Serializes [`Metrics::refresh`]: it turns the domains' round totals into counter
    /// increments, which two concurrent refreshes would count twice.
    refresh_lock: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every family, with no values yet.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("doin"),
            chain_height: Gauge::default(),
            finalized_height: Gauge::default(),
            blocks: Counter::default(),
            blocks_proposed: Counter::default(),
            block_interval: Histogram::new(block_interval_buckets()),
            block_txs: Histogram::new(BLOCK_TX_BUCKETS),
            minted: Counter::default(),
            burned: Counter::default(),
            base_fee: Gauge::default(),
            difficulty: Gauge::default(),
            mempool: Gauge::default(),
            reorgs: Counter::default(),
            reorg_depth: Histogram::new(REORG_DEPTH_BUCKETS),
            optimae: Family::default(),
            votes: Family::default(),
            best_performance: Family::default(),
            rounds: Family::default(),
            surrogate_records: Family::default(),
            reported_records: Family::default(),
            spot_checks: Family::default(),
            refuted_reporters: Family::default(),
            inference_requests: Family::default(),
            inference_latency: Family::new_with_constructor(inference_histogram),
            vouchers: Family::default(),
            received: Family::default(),
            start_time: FloatGauge::default(),
            uptime: FloatGauge::default(),
            peers: Gauge::default(),
            gossip: Family::default(),
            refresh_lock: Mutex::new(()),
        };
        let r = &mut m.registry;
        r.register(
            "build",
            "Build information of the running node (value 1)",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register_with_unit(
            "process_start_time",
            "When the node started, in seconds since the Unix epoch",
            Unit::Seconds,
            m.start_time.clone(),
        );
        r.register_with_unit(
            "process_uptime",
            "Seconds since the node started",
            Unit::Seconds,
            m.uptime.clone(),
        );
        r.register(
            "chain_height",
            "Height of the chain tip",
            m.chain_height.clone(),
        );
        r.register(
            "peers",
            "Peers connected over the peer-to-peer network",
            m.peers.clone(),
        );
        r.register(
            "gossip_messages",
            "Gossiped messages received, by topic kind and the node's verdict",
            m.gossip.clone(),
        );
        r.register(
            "chain_finalized_height",
            "Highest final block (finality_depth below the tip), never reorganized",
            m.finalized_height.clone(),
        );
        r.register(
            "chain_blocks",
            "Blocks added to the chain since the node started",
            m.blocks.clone(),
        );
        r.register(
            "blocks_proposed",
            "Blocks proposed (built and signed) by this node since it started",
            m.blocks_proposed.clone(),
        );
        r.register_with_unit(
            "block_interval",
            "Time between a block and its parent, from their timestamps",
            Unit::Seconds,
            m.block_interval.clone(),
        );
        r.register(
            "block_transactions",
            "Transactions per block",
            m.block_txs.clone(),
        );
        r.register_with_unit(
            "block_reward_minted",
            "New coins minted by block rewards, in base units (1 DOIN = 10^8)",
            Unit::Other("base_units".into()),
            m.minted.clone(),
        );
        r.register_with_unit(
            "burned",
            "Coins burned by blocks (base fees and stakes), in base units",
            Unit::Other("base_units".into()),
            m.burned.clone(),
        );
        r.register_with_unit(
            "base_fee",
            "Base fee per transaction of the next block, in base units (burned)",
            Unit::Other("base_units".into()),
            m.base_fee.clone(),
        );
        r.register(
            "difficulty",
            "Verified work the next block needs (unless its empty-block interval passed)",
            m.difficulty.clone(),
        );
        r.register(
            "mempool_transactions",
            "Transactions waiting in the mempool",
            m.mempool.clone(),
        );
        r.register(
            "optimae",
            "Optimae decided by blocks, per domain and verdict (accepted, rejected, no_quorum, expired)",
            m.optimae.clone(),
        );
        r.register(
            "evaluator_votes",
            "Evaluator votes of decided optimae, by agreement with the median measurement within the domain tolerance",
            m.votes.clone(),
        );
        r.register(
            "domain_best_performance",
            "Verified performance of the domain champion on chain (higher is better)",
            m.best_performance.clone(),
        );
        r.register(
            "optimizer_rounds",
            "Optimization rounds run by this node, per domain",
            m.rounds.clone(),
        );
        r.register(
            "optimizer_surrogate_records",
            "Records the GA's L3 surrogate learns from (its own trainings and other islands')",
            m.surrogate_records.clone(),
        );
        r.register(
            "optimizer_reported_records",
            "Of the surrogate's records, those other islands reported (trial reports)",
            m.reported_records.clone(),
        );
        r.register(
            "optimizer_spot_checks",
            "Trials of other islands' reports retrained to check them",
            m.spot_checks.clone(),
        );
        r.register(
            "optimizer_refuted_reporters",
            "Reporters whose spot-checked trial did not reproduce (their reports are refused)",
            m.refuted_reporters.clone(),
        );
        r.register(
            "inference_requests",
            "Inference queries, per domain and result (ok or the error code)",
            m.inference_requests.clone(),
        );
        r.register_with_unit(
            "inference_duration",
            "Time to answer an inference query (payment check, model, voucher record)",
            Unit::Seconds,
            m.inference_latency.clone(),
        );
        r.register(
            "payments_vouchers_accepted",
            "Vouchers that paid for an answered inference query",
            m.vouchers.clone(),
        );
        r.register_with_unit(
            "payments_received",
            "Value of the accepted vouchers (their raise of the channel amount), in base units",
            Unit::Other("base_units".into()),
            m.received.clone(),
        );
        r.register(
            "chain_reorgs",
            "Reorganizations to a branch with more work since the node started",
            m.reorgs.clone(),
        );
        r.register(
            "chain_reorg_depth",
            "Blocks replaced by each reorganization",
            m.reorg_depth.clone(),
        );
        m
    }

    /// Counts one reorganization that replaced `depth` blocks.
    pub fn record_reorg(&self, depth: u64) {
        self.reorgs.inc();
        self.reorg_depth.observe(depth as f64);
    }

    /// Counts one gossiped message: `topic` is `blocks`, `txs` or `domain`; `result` is
    /// `accepted`, `rejected` or `ignored`.
    pub fn record_gossip(&self, topic: &'static str, result: &'static str) {
        self.gossip
            .get_or_create(&GossipLabels { topic, result })
            .inc();
    }

    /// The registry, to register more metrics (libp2p's, through `libp2p-metrics`: see
    /// [`crate::network::open`]) before the `Metrics` is shared.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Encodes every metric in `format`.
    pub fn encode(&self, format: Format) -> Result<String, EncodeError> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(match format {
            Format::OpenMetrics => text,
            Format::PrometheusText => to_prometheus_text(&text),
        })
    }

    /// Sets the gauges (and the round counters) from the node's memory: chain view, mempool
    /// and domain runtimes. Cheap: one read lock and one short mempool lock.
    pub fn refresh(&self, ctx: &NodeContext) {
        let _serial = self.refresh_lock.lock().unwrap_or_else(|e| e.into_inner());
        let view = ctx.view();
        let state = &*view.state;
        self.chain_height.set(to_i64(state.height));
        self.finalized_height.set(to_i64(finalized_height(
            state.height,
            ctx.params.finality_depth,
        )));
        self.base_fee.set(to_i64(state.base_fee.0));
        self.peers
            .set(i64::try_from(ctx.net.peers.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        self.difficulty.set(to_i64(state.difficulty.threshold));
        let pending = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.mempool.set(i64::try_from(pending).unwrap_or(i64::MAX));
        for (domain, champion) in &state.champions {
            self.best_performance
                .get_or_create(&domain_labels(domain))
                .set(champion.performance);
        }
        for d in ctx.domains.iter().filter(|d| d.optimize) {
            let counter = self.rounds.get_or_create(&domain_labels(&d.id));
            let total = d.rounds.load(Ordering::Relaxed);
            counter.inc_by(total.saturating_sub(counter.get()));
            let search = *d.search.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(ga) = search.and_then(|s| s.ga) {
                let labels = domain_labels(&d.id);
                self.surrogate_records
                    .get_or_create(&labels)
                    .set(i64::try_from(ga.records).unwrap_or(i64::MAX));
                self.reported_records
                    .get_or_create(&labels)
                    .set(i64::try_from(ga.reported_records).unwrap_or(i64::MAX));
                for (family, total) in [
                    (&self.spot_checks, ga.spot_checks),
                    (&self.refuted_reporters, ga.refuted_reporters),
                ] {
                    let counter = family.get_or_create(&labels);
                    counter.inc_by(total.saturating_sub(counter.get()));
                }
            }
        }
        self.start_time.set(ctx.started_at_ms as f64 / 1000.0);
        self.uptime
            .set(now_ms().saturating_sub(ctx.started_at_ms) as f64 / 1000.0);
    }

    /// Counts one block of a chain with `params`, seen by node `me`. `parent_time_ms` is its
    /// parent's timestamp, when known.
    // Plain values rather than a `NodeContext`, so that tests can feed any receipt.
    #[allow(clippy::too_many_arguments)]
    fn record_block(
        &self,
        params: &ChainParams,
        me: &AccountId,
        header: &BlockHeader,
        receipt: &BlockReceipt,
        tx_count: usize,
        parent_time_ms: Option<u64>,
        pending_domains: &mut HashMap<Hash32, DomainId>,
    ) {
        self.blocks.inc();
        if header.proposer == *me {
            self.blocks_proposed.inc();
        }
        if let Some(parent) = parent_time_ms {
            let interval_ms = header.timestamp_ms.saturating_sub(parent);
            self.block_interval.observe(interval_ms as f64 / 1000.0);
        }
        self.block_txs.observe(tx_count as f64);
        self.minted.inc_by(receipt.minted.0);
        self.burned.inc_by(receipt.burned.0);
        for record in &receipt.verdicts {
            pending_domains.remove(&record.commitment);
            let verdict = match record.verdict {
                Verdict::Accepted { .. } => "accepted",
                Verdict::Rejected { .. } => "rejected",
                Verdict::NoQuorum { .. } => "no_quorum",
            };
            self.count_optimae(&record.domain, verdict);
            self.record_agreement(params, record);
        }
        for (commitment, _burned) in &receipt.expired {
            match pending_domains.remove(commitment) {
                Some(domain) => self.count_optimae(&domain, "expired"),
                // Committed and expired while the task was more than a reveal window
                // behind: the domain is no longer known, and a guess would be wrong.
                None => {
                    tracing::debug!("metrics: expired commitment {commitment} of unknown domain")
                }
            }
        }
    }

    fn count_optimae(&self, domain: &DomainId, verdict: &'static str) {
        self.optimae
            .get_or_create(&VerdictLabels {
                domain: domain.as_str().to_owned(),
                verdict,
            })
            .inc();
    }

    /// Counts each vote as within the domain's tolerance of the votes' median, or not: how
    /// far the evaluators, each on its own synthetic data, agree with each other.
    fn record_agreement(&self, params: &ChainParams, record: &VerdictRecord) {
        let Some(params) = params.domain(&record.domain) else {
            return;
        };
        let rules = VerdictRules::from(params);
        let measured: Vec<f64> = record.votes.values().map(|v| v.measured).collect();
        let Some(median) = median(&measured) else {
            return;
        };
        for m in measured {
            let agreement = if agrees(&rules, median, m) {
                "with_median"
            } else {
                "off_median"
            };
            self.votes
                .get_or_create(&AgreementLabels {
                    domain: record.domain.as_str().to_owned(),
                    agreement,
                })
                .inc();
        }
    }

    /// Records one inference query: its result, and for an answered one its latency and
    /// the payment it carried (`received`: how much its voucher raised the channel amount).
    pub fn record_inference(
        &self,
        domain: Option<&DomainId>,
        result: Result<Option<Amount>, &InferenceError>,
        elapsed: Duration,
    ) {
        let domain = domain.map_or(UNKNOWN_DOMAIN_LABEL, DomainId::as_str);
        let labels = DomainLabels {
            domain: domain.to_owned(),
        };
        let code = match result {
            Ok(received) => {
                self.inference_latency
                    .get_or_create(&labels)
                    .observe(elapsed.as_secs_f64());
                if let Some(received) = received {
                    self.vouchers.get_or_create(&labels).inc();
                    self.received.get_or_create(&labels).inc_by(received.0);
                }
                "ok"
            }
            Err(err) => err.code(),
        };
        self.inference_requests
            .get_or_create(&InferenceLabels {
                domain: labels.domain,
                result: code,
            })
            .inc();
    }
}

fn domain_labels(domain: &DomainId) -> DomainLabels {
    DomainLabels {
        domain: domain.as_str().to_owned(),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Median of the finite values (mean of the middle two for an even count), the convention
/// of `doin_core::optimae::decide`.
fn median(values: &[f64]) -> Option<f64> {
    let mut finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f64::total_cmp);
    let mid = finite.len() / 2;
    match finite.len() {
        0 => None,
        n if n % 2 == 1 => finite.get(mid).copied(),
        _ => Some(finite.get(mid - 1)? / 2.0 + finite.get(mid)? / 2.0),
    }
}

/// Converts OpenMetrics text (as `prometheus_client` writes it) to the Prometheus text
/// format 0.0.4:
/// - a counter family `x` is typed and described as `x_total` (its samples' name);
/// - an `info` family `x` becomes the gauge `x_info`; `gaugehistogram` becomes `histogram`;
///   `stateset` becomes `gauge`; `unknown` becomes `untyped`;
/// - `# UNIT` and `# EOF` lines and exemplars are dropped;
/// - `\"` in help text becomes `"` (the older format escapes only `\\` and `\n` there).
///
/// Samples keep their names and values, which both formats write the same way.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus_client writes a family's HELP before its TYPE, and the TYPE decides the
    // name the HELP must carry: hold the HELP line until then.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            write_help(&mut out, help.take(), None);
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (renamed, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gaugehistogram" => (name.to_owned(), "histogram"),
                "stateset" => (name.to_owned(), "gauge"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            write_help(&mut out, help.take(), Some((name, &renamed)));
            let _ = writeln!(out, "# TYPE {renamed} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            write_help(&mut out, help.take(), None);
            out.push_str(strip_exemplar(line));
            out.push('\n');
        }
    }
    write_help(&mut out, help, None);
    out
}

/// Writes a held HELP line, under the family's new name when `rename` is `(old, new)` and
/// the HELP is the old family's.
fn write_help(out: &mut String, help: Option<(&str, &str)>, rename: Option<(&str, &str)>) {
    let Some((name, text)) = help else {
        return;
    };
    let name = match rename {
        Some((old, new)) if old == name => new,
        _ => name,
    };
    let _ = writeln!(out, "# HELP {name} {}", text.replace("\\\"", "\""));
}

/// A sample line without its exemplar (` # {labels} value` after the value). The label set,
/// whose quoted values may contain anything, is skipped first.
fn strip_exemplar(line: &str) -> &str {
    let mut after_labels = 0;
    if let Some(open) = line
        .find([' ', '{'])
        .filter(|&i| line[i..].starts_with('{'))
    {
        let (mut quoted, mut escaped) = (false, false);
        for (i, c) in line[open..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                '}' if !quoted => {
                    after_labels = open + i;
                    break;
                }
                _ => {}
            }
        }
    }
    match line[after_labels..].find(" # ") {
        Some(at) => &line[..after_labels + at],
        None => line,
    }
}

/// Follows the chain until `stop`: counts every block once (see the module documentation)
/// and refreshes the gauges after each.
///
/// Subscribes to the chain events and takes its starting point (the current tip) when
/// called, not when the returned future is first polled: call it before the block producer
/// starts, and every block the producer makes is counted.
pub fn run(
    metrics: Arc<Metrics>,
    ctx: Arc<NodeContext>,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut events = ctx.events.subscribe();
    let mut follower = Follower::new(&ctx);
    metrics.refresh(&ctx);
    async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(ChainEvent::Block { header, receipt, tx_count }) => {
                        follower.on_block(&metrics, &ctx, &header, &receipt, tx_count).await;
                    }
                    Ok(ChainEvent::Reorg { fork_height, depth, .. }) => {
                        metrics.record_reorg(depth);
                        follower.rewind(&ctx, fork_height).await;
                    }
                    // The next block event reads the skipped blocks from the store.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("metrics: {n} chain events missed; catching up from the store");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = stop.changed() => break,
            }
            metrics.refresh(&ctx);
        }
    }
}

/// Where the metrics task stands in the chain.
#[derive(Debug)]
struct Follower {
    /// The last block counted (or the tip when the task started).
    height: u64,
    time_ms: u64,
    /// Domains of the commitments pending when last looked: an expiry in a receipt names
    /// only the commitment.
    pending_domains: HashMap<Hash32, DomainId>,
}

impl Follower {
    fn new(ctx: &NodeContext) -> Follower {
        let view = ctx.view();
        let mut follower = Follower {
            height: view.tip.height,
            time_ms: view.tip.timestamp_ms,
            pending_domains: HashMap::new(),
        };
        follower.learn_pending(ctx);
        follower
    }

    fn learn_pending(&mut self, ctx: &NodeContext) {
        let view = ctx.view();
        for (commitment, pending) in &view.state.optimae {
            self.pending_domains
                .entry(*commitment)
                .or_insert_with(|| pending.domain.clone());
        }
    }

    async fn on_block(
        &mut self,
        metrics: &Metrics,
        ctx: &NodeContext,
        header: &BlockHeader,
        receipt: &BlockReceipt,
        tx_count: usize,
    ) {
        if header.height <= self.height {
            return; // counted already (it was the tip when the task started)
        }
        if header.height - self.height - 1 > MAX_BACKFILL_BLOCKS {
            tracing::warn!(
                "metrics: {} blocks behind; not counting blocks {}..{}",
                header.height - self.height - 1,
                self.height + 1,
                header.height
            );
            self.pending_domains.clear();
        } else {
            self.backfill(metrics, ctx, header.height).await;
        }
        let parent_time = (self.height + 1 == header.height).then_some(self.time_ms);
        metrics.record_block(
            &ctx.params,
            &ctx.account(),
            header,
            receipt,
            tx_count,
            parent_time,
            &mut self.pending_domains,
        );
        self.height = header.height;
        self.time_ms = header.timestamp_ms;
        self.learn_pending(ctx);
    }

    /// After a reorganization: the blocks above `fork_height` are counted again as the new
    /// branch's `Block` events arrive.
    async fn rewind(&mut self, ctx: &NodeContext, fork_height: u64) {
        if fork_height >= self.height {
            return;
        }
        self.height = fork_height;
        if let Ok(Some(block)) = ctx.store.block_by_height(fork_height).await {
            self.time_ms = block.header.timestamp_ms;
        }
    }

    /// Counts the blocks after `self.height` and below `until` from the store.
    async fn backfill(&mut self, metrics: &Metrics, ctx: &NodeContext, until: u64) {
        while self.height + 1 < until {
            let height = self.height + 1;
            let block = ctx.store.block_by_height(height).await;
            let receipt = ctx.store.receipt(height).await;
            let (Ok(Some(block)), Ok(Some(receipt))) = (block, receipt) else {
                tracing::warn!("metrics: block {height} or its receipt is unreadable; not counted");
                return;
            };
            metrics.record_block(
                &ctx.params,
                &ctx.account(),
                &block.header,
                &receipt,
                block.txs.len(),
                Some(self.time_ms),
                &mut self.pending_domains,
            );
            self.height = height;
            self.time_ms = block.header.timestamp_ms;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_openmetrics_only_when_asked() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::PrometheusText);
        assert_eq!(Format::negotiate(None), Format::PrometheusText);
    }

    #[test]
    fn conversion_renames_counters_and_info_and_drops_openmetrics_lines() {
        let om = "# HELP doin_blocks Blocks.\n# TYPE doin_blocks counter\ndoin_blocks_total 3\n\
                  # HELP doin_build Build \\\"x\\\".\n# TYPE doin_build info\ndoin_build_info{version=\"1\"} 1\n\
                  # HELP doin_d_seconds D.\n# TYPE doin_d_seconds histogram\n# UNIT doin_d_seconds seconds\n\
                  doin_d_seconds_bucket{le=\"+Inf\"} 1 # {id=\"a\"} 0.5\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP doin_blocks_total Blocks.\n# TYPE doin_blocks_total counter\ndoin_blocks_total 3\n\
             # HELP doin_build_info Build \"x\".\n# TYPE doin_build_info gauge\ndoin_build_info{version=\"1\"} 1\n\
             # HELP doin_d_seconds D.\n# TYPE doin_d_seconds histogram\n\
             doin_d_seconds_bucket{le=\"+Inf\"} 1\n"
        );
    }

    #[test]
    fn exemplars_are_cut_after_the_label_set() {
        assert_eq!(strip_exemplar("a_total 3 # {t=\"x\"} 1"), "a_total 3");
        assert_eq!(
            strip_exemplar("a_total{v=\" # {\\\"}\"} 3 # {t=\"x\"} 1"),
            "a_total{v=\" # {\\\"}\"} 3"
        );
        assert_eq!(strip_exemplar("a{v=\" # \"} 3"), "a{v=\" # \"} 3");
        assert_eq!(strip_exemplar("a 3"), "a 3");
    }

    #[test]
    fn median_follows_the_verdict_convention() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, f64::INFINITY, 3.0]), Some(2.5));
    }

    fn header(height: u64, timestamp_ms: u64, proposer: AccountId) -> BlockHeader {
        BlockHeader {
            height,
            parent: Hash32([0; 32]),
            timestamp_ms,
            tx_root: Hash32([0; 32]),
            state_root: Hash32([0; 32]),
            proposer,
            work: 0,
            cumulative_work: 0,
            difficulty: 1_000,
            base_fee: Amount(100),
            minted: Amount(5_000),
        }
    }

    fn record(commitment: u8, verdict: Verdict, measured: &[f64]) -> VerdictRecord {
        let votes = measured
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let who = doin_core::identity::Keypair::from_seed([i as u8 + 10; 32]).account();
                let vote = doin_core::state::RecordedVote {
                    measured: *m,
                    data_hash: Hash32([0; 32]),
                };
                (who, vote)
            })
            .collect();
        VerdictRecord {
            commitment: Hash32([commitment; 32]),
            domain: DomainId::new("quadratic").unwrap_or_else(|e| panic!("{e:?}")),
            optimizer: doin_core::identity::Keypair::from_seed([9; 32]).account(),
            claim: -10.0,
            params_hash: Hash32([0; 32]),
            metrics: Vec::new(),
            verdict,
            work: 0,
            votes,
            burned: Amount::ZERO,
        }
    }

    /// The value of the sample line starting with `series ` (exactly that series).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn blocks_count_verdicts_expiries_agreement_and_intervals() {
        let m = Metrics::new();
        let params = ChainParams::dev("t");
        let me = doin_core::identity::Keypair::from_seed([1; 32]).account();
        let other = doin_core::identity::Keypair::from_seed([2; 32]).account();
        let quadratic = DomainId::new("quadratic").unwrap_or_else(|e| panic!("{e:?}"));
        let mut pending = HashMap::from([
            (Hash32([1; 32]), quadratic.clone()),
            (Hash32([2; 32]), quadratic.clone()),
            (Hash32([3; 32]), quadratic.clone()),
        ]);
        let receipt = BlockReceipt {
            verdicts: vec![
                record(
                    1,
                    Verdict::Accepted {
                        median: -10.1,
                        credit: 5.0,
                    },
                    // Median -10.1, tolerance 0.5 + 0.05 * 10.1: -20 is off, the rest with.
                    &[-10.0, -10.2, -9.9, -20.0],
                ),
                record(
                    2,
                    Verdict::NoQuorum {
                        votes: 0,
                        needed: 1,
                    },
                    &[],
                ),
            ],
            // One whose domain is known, one that was never seen pending.
            expired: vec![(Hash32([3; 32]), Amount(1)), (Hash32([4; 32]), Amount(1))],
            minted: Amount(5_000),
            burned: Amount(300),
            ..BlockReceipt::default()
        };
        m.record_block(
            &params,
            &me,
            &header(5, 10_000, me),
            &receipt,
            3,
            None,
            &mut pending,
        );
        let empty = BlockReceipt {
            minted: Amount(5_000),
            ..BlockReceipt::default()
        };
        m.record_block(
            &params,
            &me,
            &header(6, 12_500, other),
            &empty,
            0,
            Some(10_000),
            &mut pending,
        );
        assert!(pending.is_empty(), "decided and expired ones are forgotten");

        let text = m.encode(Format::PrometheusText).unwrap_or_default();
        for (series, value) in [
            ("doin_chain_blocks_total", 2.0),
            ("doin_blocks_proposed_total", 1.0),
            ("doin_block_reward_minted_base_units_total", 10_000.0),
            ("doin_burned_base_units_total", 300.0),
            ("doin_block_transactions_count", 2.0),
            ("doin_block_transactions_sum", 3.0),
            ("doin_block_transactions_bucket{le=\"0.0\"}", 1.0),
            // Only the second block's parent time was known: one interval of 2.5 s.
            ("doin_block_interval_seconds_count", 1.0),
            ("doin_block_interval_seconds_sum", 2.5),
            (
                "doin_optimae_total{domain=\"quadratic\",verdict=\"accepted\"}",
                1.0,
            ),
            (
                "doin_optimae_total{domain=\"quadratic\",verdict=\"no_quorum\"}",
                1.0,
            ),
            (
                "doin_optimae_total{domain=\"quadratic\",verdict=\"expired\"}",
                1.0,
            ),
            (
                "doin_evaluator_votes_total{domain=\"quadratic\",agreement=\"with_median\"}",
                3.0,
            ),
            (
                "doin_evaluator_votes_total{domain=\"quadratic\",agreement=\"off_median\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
        assert!(!text.contains("verdict=\"rejected\""), "{text}");
    }

    #[test]
    fn inference_results_are_counted_with_bounded_labels() {
        let m = Metrics::new();
        let q = DomainId::new("quadratic").unwrap_or_else(|e| panic!("{e:?}"));
        m.record_inference(Some(&q), Ok(Some(Amount(7))), Duration::from_millis(2));
        m.record_inference(Some(&q), Ok(None), Duration::from_micros(30));
        m.record_inference(
            None,
            Err(&InferenceError::UnknownDomain("x".repeat(80))),
            Duration::ZERO,
        );
        let text = m.encode(Format::PrometheusText).unwrap_or_default();
        for line in [
            "doin_inference_requests_total{domain=\"quadratic\",result=\"ok\"} 2",
            "doin_inference_requests_total{domain=\"(unknown)\",result=\"unknown_domain\"} 1",
            "doin_inference_duration_seconds_count{domain=\"quadratic\"} 2",
            "doin_payments_vouchers_accepted_total{domain=\"quadratic\"} 1",
            "doin_payments_received_base_units_total{domain=\"quadratic\"} 7",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        let open = m.encode(Format::OpenMetrics).unwrap_or_default();
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE doin_build info\n"), "{open}");
    }
}
