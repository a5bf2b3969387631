//! Worker mode: an engine that works for a node from outside it (`doin-optimizer --attach`).
//!
//! The worker runs the same [`Engine`] as a node's optimizer role, on its own machine and with
//! its own key, and uses the node only through its HTTP API (`doin-client`):
//!
//! ```text
//!  engine thread ── best candidate ──► pipeline (this thread)                      node
//!        ▲                               │ beats the champion by ε?
//!        │                               ├─ POST /params (the parameters, by hash) ────►
//!        │                               ├─ POST /tx Commit (stake = min_stake) ───────►  wait for its block
//!        │                               ├─ POST /tx Reveal (hash, claim, salt, metrics)►  wait for its block
//!        │                               └─ GET /optimae/{commitment} until decided ───►  quorum votes
//!        └── champions accepted on chain ◄── GET /domains, GET /params/{hash} ◄─────────
//! ```
//!
//! It mirrors the node's role (`doin-node`'s `roles/optimizer.rs`): the engine thread never
//! waits for the network; the pipeline takes the latest candidate when it is free, commits it
//! only if it still beats the on-chain champion by the domain's `min_improvement`, and
//! follows it to its verdict; a refused commit (full mempool, node busy) is retried, since the
//! engine may already have stopped on that candidate. Champions accepted on chain (this
//! worker's and others') are fed back into the engine (island model).
//!
//! It stops after `rounds` engine rounds (once the last candidate worth committing is
//! decided), when the chain's champion reaches the target, or when [`AttachOptions::stop`]
//! is set (Ctrl-C in the binary): an optimae already committed
//! is still revealed (an unrevealed commit burns part of its stake) but its verdict is not
//! awaited. An engine that converges waits for its candidate at the target to be decided; if
//! the champion is still short of the target then (rejected, or beaten to a value just below
//! it), the search resumes, as a node's optimizer does. [`run`] returns an [`AttachSummary`]: optimae committed, accepted, rejected,
//! credit earned, stakes locked and burned, fees paid.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doin_client::{ChainRules, ClientError, DomainInfo, NodeClient, Wallet};
use doin_core::amount::Amount;
use doin_core::config::DomainConfig;
use doin_core::fee::{charge, FeeBid};
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use doin_core::optimae::{self, Verdict};
use doin_core::params::DomainId;
use doin_core::plugin::{DomainPlugin, Migrant, Proposal};
use doin_core::tx::{Metric, TxId, TxKind, MAX_METRICS, MAX_METRIC_NAME};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use thiserror::Error;

use crate::{round_interval, Engine, EngineError, EngineStats, OptimizerKind, Step, StopSettings};

/// How often the pipeline reads the champion while it waits for a candidate.
const POLL: Duration = Duration::from_millis(250);
/// How often a pending optimae is looked up.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Wait before trying a refused commit again.
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Tries of one candidate whose commit keeps being refused.
const MAX_RETRIES: u32 = 30;
/// Longest wait for a commit to be included (it locks nothing until then).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(300);
/// Blocks past its deadline after which an undecided optimae is given up on.
const VERDICT_GRACE_BLOCKS: u64 = 3;
/// Engine rounds that may fail before the worker stops.
const MAX_FAILED_ROUNDS: u64 = 10;
/// Own parameter blobs kept in memory (to feed back an accepted one without downloading it).
const OWN_PARAMS_KEPT: usize = 4;

// === options, events, summary, errors ===

/// What [`run`] needs: the node, the key, the domain and its plugin, and when to stop.
#[derive(Clone)]
pub struct AttachOptions {
    /// The node's HTTP API, e.g. `http://127.0.0.1:8470`.
    pub node_url: String,
    /// The worker's key file; created if missing. Its account commits, stakes and earns.
    pub key_file: PathBuf,
    /// The domain's configuration (the node config's entry, with any overrides).
    pub domain: DomainConfig,
    /// The domain's plugin, built from `domain`.
    pub plugin: Arc<dyn DomainPlugin>,
    /// Run seed: the same seed reproduces the same search.
    pub seed: u64,
    /// Most engine rounds.
    pub rounds: u64,
    /// Stop once the chain's champion reaches this (default: `domain.target_performance`).
    pub target: Option<f64>,
    /// The chain the node must run; `None` accepts the node's.
    pub chain_id: Option<String>,
    /// Set to stop (Ctrl-C).
    pub stop: Arc<AtomicBool>,
}

impl fmt::Debug for AttachOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachOptions")
            .field("node_url", &self.node_url)
            .field("key_file", &self.key_file)
            .field("domain", &self.domain.domain_id)
            .field("seed", &self.seed)
            .field("rounds", &self.rounds)
            .field("target", &self.target)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

impl AttachOptions {
    /// Options with seed 0, 10,000 rounds, the domain's target and any chain id.
    pub fn new(
        node_url: &str,
        key_file: PathBuf,
        domain: DomainConfig,
        plugin: Arc<dyn DomainPlugin>,
    ) -> AttachOptions {
        AttachOptions {
            node_url: node_url.to_string(),
            key_file,
            domain,
            plugin,
            seed: 0,
            rounds: 10_000,
            target: None,
            chain_id: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// What happened to one optimae.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Verified improvement: `credit = median − previous champion`.
    Accepted { median: f64, credit: f64, work: u64 },
    /// The quorum did not reproduce the claim, or it is no improvement: part of the stake
    /// burned.
    Rejected {
        reason: String,
        median: f64,
        burned: Amount,
    },
    /// Not enough votes to decide: the stake is refunded.
    NoQuorum { votes: usize, needed: usize },
    /// Never revealed in time: part of the stake burned.
    Expired { burned: Amount },
    /// Not followed to its verdict (interrupted, or no verdict in time); see
    /// `GET /optimae/{commitment}`.
    Undecided { why: String },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Accepted {
                median,
                credit,
                work,
            } => write!(
                f,
                "accepted: verified {median:.4}, credit {credit:.4} ({work} work)"
            ),
            Outcome::Rejected {
                reason,
                median,
                burned,
            } => write!(
                f,
                "rejected ({reason}, verified {median:.4}): {burned} of the stake burned"
            ),
            Outcome::NoQuorum { votes, needed } => {
                write!(f, "no quorum ({votes} of {needed} votes): stake refunded")
            }
            Outcome::Expired { burned } => {
                write!(f, "expired unrevealed: {burned} of the stake burned")
            }
            Outcome::Undecided { why } => write!(f, "undecided ({why})"),
        }
    }
}

/// Something the worker did or saw, for a progress display or a log.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Connected: the node's chain and height, the worker's account and balance.
    Attached {
        node: String,
        chain_id: String,
        height: u64,
        account: AccountId,
        balance: Amount,
        champion: Option<f64>,
    },
    /// Periodically: engine rounds, the best local claim, the bar to beat.
    Progress {
        rounds: u64,
        best: Option<f64>,
        champion: f64,
    },
    /// A new champion on chain. `adopted`: whether its parameters went into the engine
    /// (`false`: the node does not hold them); `None` once the engine has stopped.
    Champion {
        performance: f64,
        ours: bool,
        adopted: Option<bool>,
    },
    Committed {
        commitment: Hash32,
        claim: f64,
        stake: Amount,
        height: u64,
    },
    Revealed {
        commitment: Hash32,
        params_size: u64,
        height: u64,
    },
    Verdict {
        commitment: Hash32,
        outcome: Outcome,
    },
    /// A candidate could not be committed now; it is tried again.
    Retry { reason: String },
    /// Anything else worth a line.
    Note(String),
}

fn short(h: &Hash32) -> String {
    h.to_hex()[..12].to_string()
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Attached {
                node,
                chain_id,
                height,
                account,
                balance,
                champion,
            } => {
                write!(
                    f,
                    "attached to {node} (chain {chain_id}, height {height}) as {account}, \
                     balance {balance}; champion "
                )?;
                match champion {
                    Some(p) => write!(f, "{p:.4}"),
                    None => write!(f, "none yet"),
                }
            }
            Event::Progress {
                rounds,
                best,
                champion,
            } => match best {
                Some(b) => write!(f, "{rounds} rounds, best {b:.4}, champion {champion:.4}"),
                None => write!(f, "{rounds} rounds, champion {champion:.4}"),
            },
            Event::Champion {
                performance,
                ours,
                adopted,
            } => write!(
                f,
                "new champion {performance:.4} ({}){}",
                if *ours {
                    "this worker's"
                } else {
                    "another account's"
                },
                match adopted {
                    Some(false) => "; its parameters are not available here",
                    _ => "",
                }
            ),
            Event::Committed {
                commitment,
                claim,
                stake,
                height,
            } => write!(
                f,
                "committed {} (claim {claim:.4}, stake {stake}) at height {height}",
                short(commitment)
            ),
            Event::Revealed {
                commitment,
                params_size,
                height,
            } => write!(
                f,
                "revealed {} ({params_size} bytes of parameters) at height {height}",
                short(commitment)
            ),
            Event::Verdict {
                commitment,
                outcome,
            } => write!(f, "{}: {outcome}", short(commitment)),
            Event::Retry { reason } => write!(f, "{reason}; trying again"),
            Event::Note(text) => f.write_str(text),
        }
    }
}

/// Why the worker stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `rounds` engine rounds done.
    Rounds,
    /// The chain's champion reached the target.
    TargetReached,
    /// [`AttachOptions::stop`] was set.
    Interrupted,
    /// Too many engine rounds failed.
    EngineFailed { error: String },
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Rounds => f.write_str("all rounds done"),
            StopReason::TargetReached => f.write_str("the champion on chain reached the target"),
            StopReason::Interrupted => f.write_str("interrupted"),
            StopReason::EngineFailed { error } => {
                write!(f, "{MAX_FAILED_ROUNDS} rounds failed; last: {error}")
            }
        }
    }
}

/// One optimae this worker committed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimaeRecord {
    pub commitment: Hash32,
    pub params_hash: Hash32,
    pub claim: f64,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a worker run did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachSummary {
    pub node: String,
    pub chain_id: String,
    pub domain: DomainId,
    pub account: AccountId,
    pub optimizer: OptimizerKind,
    pub seed: u64,
    /// Engine rounds run (failed ones included).
    pub rounds: u64,
    pub failed_rounds: u64,
    /// The best claim the engine made.
    pub best_local: Option<f64>,
    pub commits: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub no_quorum: u64,
    pub expired: u64,
    pub undecided: u64,
    /// Credit of the accepted optimae (verified improvement).
    pub credit: f64,
    pub work: u64,
    /// Stakes the commits locked (returned on acceptance or no quorum, less what burned).
    pub stakes_locked: Amount,
    pub stakes_burned: Amount,
    /// Fees of the worker's commits and reveals (base fee burned plus tip).
    pub fees_paid: Amount,
    pub balance_start: Amount,
    pub balance_end: Option<Amount>,
    /// The chain's champion at the end.
    pub champion: Option<f64>,
    pub champion_is_ours: bool,
    pub target: Option<f64>,
    pub stopped: StopReason,
    pub seconds: f64,
    pub optimae: Vec<OptimaeRecord>,
}

impl fmt::Display for AttachSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let optimizer = match self.optimizer {
            OptimizerKind::RandomStep => "random step",
            OptimizerKind::Ga => "GA",
        };
        writeln!(
            f,
            "node         {} (chain {}) as {}",
            self.node, self.chain_id, self.account
        )?;
        writeln!(
            f,
            "domain       {} ({optimizer}, seed {})",
            self.domain, self.seed
        )?;
        write!(
            f,
            "rounds       {} ({} failed)",
            self.rounds, self.failed_rounds
        )?;
        match self.best_local {
            Some(b) => writeln!(f, ", best local {b:.4}")?,
            None => writeln!(f)?,
        }
        writeln!(
            f,
            "optimae      {} committed: {} accepted, {} rejected, {} no quorum, {} expired, \
             {} undecided",
            self.commits,
            self.accepted,
            self.rejected,
            self.no_quorum,
            self.expired,
            self.undecided
        )?;
        writeln!(f, "credit       {:.4} ({} work)", self.credit, self.work)?;
        writeln!(
            f,
            "stakes       {} locked, {} burned",
            self.stakes_locked, self.stakes_burned
        )?;
        writeln!(f, "fees         {}", self.fees_paid)?;
        match self.balance_end {
            Some(end) => writeln!(f, "balance      {} -> {end}", self.balance_start)?,
            None => writeln!(f, "balance      {} -> unknown", self.balance_start)?,
        }
        match self.champion {
            Some(c) => writeln!(
                f,
                "champion     {c:.4} ({})",
                if self.champion_is_ours {
                    "this worker's"
                } else {
                    "another account's"
                }
            )?,
            None => writeln!(f, "champion     none")?,
        }
        match self.target {
            Some(t) => writeln!(f, "target       {t}")?,
            None => writeln!(f, "target       none")?,
        }
        writeln!(f, "stopped      {}", self.stopped)?;
        write!(f, "time         {:.3} s", self.seconds)
    }
}

/// Why a worker could not start or go on; each says what to do about it.
#[derive(Debug, Error)]
pub enum AttachError {
    #[error("key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error(
        "cannot reach the node at {url}: {reason} (is it running, and is --attach its HTTP \
         address, e.g. http://127.0.0.1:8470?)"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "the node at {url} runs chain {actual:?}, not {expected:?} (the config's); attach to a \
         node of that chain, or pass --chain-id {actual} if the node is the right one"
    )]
    WrongChain {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    UnknownDomain(String),
    #[error(
        "account {account} holds {balance}, but a commit in {domain} locks {stake} (the \
         domain's min_stake) and pays up to {fees} in fees: fund it first, e.g. from the \
         node's account: `doin-node wallet --node {url} --key <the node's identity.key> \
         transfer --to {account} --amount 1`"
    )]
    NoFunds {
        account: AccountId,
        balance: Amount,
        stake: Amount,
        fees: Amount,
        domain: DomainId,
        url: String,
    },
    #[error("the optimizer: {0}")]
    Engine(#[from] EngineError),
    #[error("{what}: {source}")]
    Node {
        what: String,
        #[source]
        source: ClientError,
    },
    #[error("{0}")]
    Failed(String),
}

/// A client error while doing `what`, with an unreachable node told apart.
fn node_error(url: &str, what: &str, err: ClientError) -> AttachError {
    match err {
        ClientError::Transport { reason, .. } => AttachError::Unreachable {
            url: url.to_string(),
            reason,
        },
        source => AttachError::Node {
            what: what.to_string(),
            source,
        },
    }
}

// === the engine thread ===

/// What the engine thread and the pipeline share.
#[derive(Debug)]
struct Shared {
    /// The latest candidate worth committing, until the pipeline takes it.
    best: Mutex<Option<Proposal>>,
    /// The engine thread has finished (rounds done, converged, failed or stopped).
    done: AtomicBool,
    rounds: AtomicU64,
    failed: AtomicU64,
    stats: Mutex<EngineStats>,
    ended: Mutex<Option<StopReason>>,
    /// Tells the engine thread to stop (the pipeline is done).
    halt: AtomicBool,
    /// The engine converged and waits for the pipeline to decide: stop (the champion is at
    /// the target) or search on ([`Shared::resume`]).
    converged: AtomicBool,
    /// Set by the pipeline: the candidate at the target was decided and the champion is still
    /// below it, so the converged engine resumes (as a node's optimizer does).
    resume: AtomicBool,
}

impl Shared {
    fn new(stats: EngineStats) -> Self {
        Shared {
            best: Mutex::new(None),
            done: AtomicBool::new(false),
            rounds: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            stats: Mutex::new(stats),
            ended: Mutex::new(None),
            halt: AtomicBool::new(false),
            converged: AtomicBool::new(false),
            resume: AtomicBool::new(false),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct EngineRun {
    engine: Engine,
    rounds: u64,
    pace: Duration,
    stop: Arc<AtomicBool>,
}

fn engine_loop(run: EngineRun, shared: &Shared, champions: &mpsc::Receiver<Migrant>) {
    let EngineRun {
        mut engine,
        rounds,
        pace,
        stop,
    } = run;
    let halted = || stop.load(Ordering::Relaxed) || shared.halt.load(Ordering::Relaxed);
    let mut ended = StopReason::Rounds;
    while shared.rounds.load(Ordering::Relaxed) < rounds {
        if halted() {
            ended = StopReason::Interrupted;
            break;
        }
        let round_start = Instant::now();
        while let Ok(migrant) = champions.try_recv() {
            // A champion the plugin cannot take still raises the commit bar.
            let _ = engine.observe_champion(migrant);
        }
        match engine.step() {
            Ok(Step::Improved(proposal)) => *lock(&shared.best) = Some(proposal),
            Ok(Step::NoImprovement) => {}
            Ok(Step::Converged) => {
                // The candidate at the target is with the pipeline: wait for its verdict.
                *lock(&shared.stats) = engine.stats();
                shared.converged.store(true, Ordering::SeqCst);
                while !shared.resume.swap(false, Ordering::SeqCst) {
                    if halted() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                shared.converged.store(false, Ordering::SeqCst);
                if halted() {
                    ended = StopReason::Interrupted;
                    break;
                }
                engine.resume();
                continue;
            }
            Err(e) => {
                if shared.failed.fetch_add(1, Ordering::Relaxed) + 1 >= MAX_FAILED_ROUNDS {
                    ended = StopReason::EngineFailed {
                        error: e.to_string(),
                    };
                    shared.rounds.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        *lock(&shared.stats) = engine.stats();
        // Paced rounds (`round_interval_ms`), as in the node.
        while let Some(left) = pace.checked_sub(round_start.elapsed()) {
            if left.is_zero() || halted() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
    *lock(&shared.stats) = engine.stats();
    *lock(&shared.ended) = Some(ended);
    // After `best`: a pipeline that sees `done` also sees the last candidate.
    shared.done.store(true, Ordering::SeqCst);
}

// === the pipeline ===

/// How one candidate's submission ended, short of a verdict.
enum SubmitError {
    /// Nothing was spent; try the candidate again later.
    Later(String),
    /// The candidate cannot be committed (too large); drop it.
    Skip(String),
    /// The worker cannot go on.
    Fatal(AttachError),
}

impl From<AttachError> for SubmitError {
    fn from(e: AttachError) -> Self {
        SubmitError::Fatal(e)
    }
}

struct Worker<'a> {
    node: NodeClient,
    wallet: Wallet,
    rules: ChainRules,
    url: String,
    domain: DomainId,
    account: AccountId,
    info: DomainInfo,
    target: Option<f64>,
    stop: Arc<AtomicBool>,
    on_event: &'a mut dyn FnMut(&Event),
    /// The champion last seen (its commitment).
    last_champion: Option<Hash32>,
    /// The parameters of this worker's latest optimae, by hash.
    own: VecDeque<(Hash32, Vec<u8>)>,
    summary: Totals,
}

#[derive(Default)]
struct Totals {
    commits: u64,
    accepted: u64,
    rejected: u64,
    no_quorum: u64,
    expired: u64,
    undecided: u64,
    credit: f64,
    work: u64,
    stakes_locked: u64,
    stakes_burned: u64,
    fees_paid: u64,
    optimae: Vec<OptimaeRecord>,
}

impl Worker<'_> {
    fn emit(&mut self, event: Event) {
        (self.on_event)(&event);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn err(&self, what: &str, e: ClientError) -> AttachError {
        node_error(&self.url, what, e)
    }

    fn height(&self) -> Result<u64, AttachError> {
        self.node
            .status()
            .map(|s| s.chain_height)
            .map_err(|e| self.err("reading the node's status", e))
    }

    fn target_reached(&self) -> bool {
        match (self.target, &self.info.champion) {
            (Some(t), Some(c)) => c.performance >= t,
            _ => false,
        }
    }

    /// The champion's parameters as a migrant: this worker's own from memory, another's
    /// from the node (`None` when the node does not hold them).
    fn champion_migrant(&mut self) -> Option<Migrant> {
        let c = self.info.champion.clone()?;
        let params = match self.own.iter().find(|(h, _)| *h == c.params_hash) {
            Some((_, p)) => p.clone(),
            None => self
                .node
                .download_params(&c.params_hash, self.info.params.limits.max_params_bytes)
                .ok()?,
        };
        // The reveal's `hp.*` metrics, so that a GA island can place the champion.
        let hyperparameters: BTreeMap<String, f64> = self
            .node
            .optimae(&c.commitment)
            .ok()
            .and_then(|o| o.record)
            .map(|r| {
                r.metrics
                    .iter()
                    .filter_map(|m| Some((m.name.strip_prefix("hp.")?.to_string(), m.value)))
                    .collect()
            })
            .unwrap_or_default();
        Some(Migrant {
            params,
            performance: c.performance,
            hyperparameters,
        })
    }

    /// Reads the domain again; a new champion goes to the engine while it runs.
    fn refresh(
        &mut self,
        champions: &mpsc::Sender<Migrant>,
        engine_running: bool,
    ) -> Result<(), AttachError> {
        self.info = self
            .node
            .domain(&self.domain)
            .map_err(|e| self.err("reading the domain", e))?;
        let current = self.info.champion.as_ref().map(|c| c.commitment);
        if current == self.last_champion {
            return Ok(());
        }
        self.last_champion = current;
        let Some(c) = self.info.champion.clone() else {
            return Ok(());
        };
        let adopted = engine_running.then(|| match self.champion_migrant() {
            Some(m) => {
                // The engine may stop meanwhile: then nobody needs it.
                let _ = champions.send(m);
                true
            }
            None => false,
        });
        self.emit(Event::Champion {
            performance: c.performance,
            ours: c.optimizer == self.account,
            adopted,
        });
        Ok(())
    }

    fn pipeline(
        &mut self,
        shared: &Shared,
        champions: &mpsc::Sender<Migrant>,
    ) -> Result<StopReason, AttachError> {
        let mut last_poll: Option<Instant> = None;
        let mut retry: Option<(Proposal, Instant, u32)> = None;
        loop {
            if self.stopped() {
                return Ok(StopReason::Interrupted);
            }
            if last_poll.is_none_or(|t| t.elapsed() >= POLL) {
                last_poll = Some(Instant::now());
                self.refresh(champions, !shared.done.load(Ordering::SeqCst))?;
                if self.target_reached() {
                    return Ok(StopReason::TargetReached);
                }
                let best = lock(&shared.stats).best_performance;
                self.emit(Event::Progress {
                    rounds: shared.rounds.load(Ordering::Relaxed),
                    best,
                    champion: self.info.bar(),
                });
            }
            let done = shared.done.load(Ordering::SeqCst);
            let fresh = lock(&shared.best).take();
            let (proposal, tries) = match (fresh, retry.take()) {
                (Some(p), _) => (p, 0),
                (None, Some((p, at, tries))) if at <= Instant::now() => (p, tries),
                (None, waiting) => {
                    if done && waiting.is_none() {
                        return Ok(lock(&shared.ended).clone().unwrap_or(StopReason::Rounds));
                    }
                    // The engine converged and its candidate at the target was decided (this
                    // loop follows each candidate to its verdict, and the champion was read
                    // after it): the champion is still short of the target, so search on.
                    if waiting.is_none() && shared.converged.load(Ordering::SeqCst) {
                        self.emit(Event::Note(
                            "the candidate at the target did not become champion; searching on"
                                .into(),
                        ));
                        shared.resume.store(true, Ordering::SeqCst);
                        while shared.converged.load(Ordering::SeqCst) && !self.stopped() {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                    retry = waiting;
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            let bar = self.info.bar() + self.info.params.min_improvement;
            if proposal.claimed_performance < bar {
                continue; // the champion got there first
            }
            match self.submit(&proposal) {
                Ok(()) => last_poll = None,
                Err(SubmitError::Later(reason)) => {
                    if tries + 1 >= MAX_RETRIES {
                        self.emit(Event::Note(format!(
                            "{reason}; giving up on this candidate after {MAX_RETRIES} tries"
                        )));
                    } else {
                        self.emit(Event::Retry { reason });
                        retry = Some((proposal, Instant::now() + RETRY_DELAY, tries + 1));
                    }
                }
                Err(SubmitError::Skip(reason)) => self.emit(Event::Note(reason)),
                Err(SubmitError::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Upload, commit, reveal and follow one candidate to its verdict.
    fn submit(&mut self, proposal: &Proposal) -> Result<(), SubmitError> {
        let size = proposal.params.len() as u64;
        let max = self.info.params.limits.max_params_bytes;
        if size > max {
            return Err(SubmitError::Skip(format!(
                "a candidate of {size} bytes is over the domain's max_params_bytes ({max}); \
                 not committed"
            )));
        }
        let upload = self
            .node
            .upload_params_detailed(&proposal.params, Some(&self.domain))
            .map_err(|e| match e {
                ClientError::Api {
                    status: 503 | 507,
                    message,
                    ..
                } => SubmitError::Later(format!(
                    "the node cannot take the parameters now: {message}"
                )),
                ClientError::Api {
                    status: 413,
                    message,
                    ..
                } => SubmitError::Skip(format!("the node refused the parameters: {message}")),
                e => SubmitError::Fatal(self.err("uploading the parameters", e)),
            })?;
        let params_hash = upload.params_hash;
        self.own.push_back((params_hash, proposal.params.clone()));
        if self.own.len() > OWN_PARAMS_KEPT {
            self.own.pop_front();
        }

        let claim = proposal.claimed_performance;
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        let commitment =
            optimae::commitment(&self.domain, &self.account, &params_hash, claim, &salt);
        let stake = self.info.params.min_stake;
        let sent = self
            .wallet
            .send_detailed(TxKind::Commit {
                domain: self.domain.clone(),
                commitment,
                stake,
            })
            .map_err(|e| self.refused("the commit", e))?;
        let Some(commit_height) = self.wait_included(&sent.id, None, COMMIT_TIMEOUT)? else {
            return Err(SubmitError::Later(format!(
                "commit {} left the mempool without being included",
                short(&commitment)
            )));
        };
        self.summary.commits += 1;
        self.summary.stakes_locked += stake.units();
        self.pay(sent.fee, commit_height);
        self.summary.optimae.push(OptimaeRecord {
            commitment,
            params_hash,
            claim,
            outcome: Outcome::Undecided {
                why: "not revealed".into(),
            },
        });
        self.emit(Event::Committed {
            commitment,
            claim,
            stake,
            height: commit_height,
        });

        // The node keeps an unreferenced upload for a while; refresh it if the commit took
        // long enough that it could go before the reveal lands.
        let height = self.height()?;
        if upload
            .retained_until_height
            .is_some_and(|until| height.saturating_add(2) >= until)
        {
            if let Err(e) = self
                .node
                .upload_params_detailed(&proposal.params, Some(&self.domain))
            {
                self.emit(Event::Note(format!(
                    "refreshing the parameters on the node: {e}"
                )));
            }
        }
        let deadline = commit_height.saturating_add(self.rules.reveal_window);
        let revealed = self
            .wallet
            .send_detailed(TxKind::Reveal {
                commitment,
                params_hash,
                params_size: size,
                claim,
                salt,
                metrics: metrics_of(proposal),
            })
            .map_err(|e| self.refused("the reveal", e));
        match revealed {
            Ok(sent) => match self.wait_included(&sent.id, Some(deadline), COMMIT_TIMEOUT)? {
                Some(h) => {
                    self.pay(sent.fee, h);
                    self.emit(Event::Revealed {
                        commitment,
                        params_size: size,
                        height: h,
                    });
                }
                None => self.emit(Event::Note(format!(
                    "the reveal of {} was not included by height {deadline}",
                    short(&commitment)
                ))),
            },
            Err(SubmitError::Fatal(e)) => return Err(SubmitError::Fatal(e)),
            Err(SubmitError::Later(reason) | SubmitError::Skip(reason)) => {
                self.emit(Event::Note(format!(
                    "reveal of {} refused ({reason}); the commit will expire",
                    short(&commitment)
                )))
            }
        }

        let outcome = self.follow(&commitment)?;
        match &outcome {
            Outcome::Accepted { credit, work, .. } => {
                self.summary.accepted += 1;
                self.summary.credit += credit;
                self.summary.work += work;
            }
            Outcome::Rejected { burned, .. } => {
                self.summary.rejected += 1;
                self.summary.stakes_burned += burned.units();
            }
            Outcome::NoQuorum { .. } => self.summary.no_quorum += 1,
            Outcome::Expired { burned } => {
                self.summary.expired += 1;
                self.summary.stakes_burned += burned.units();
            }
            Outcome::Undecided { .. } => self.summary.undecided += 1,
        }
        if let Some(r) = self.summary.optimae.last_mut() {
            r.outcome = outcome.clone();
        }
        self.emit(Event::Verdict {
            commitment,
            outcome,
        });
        Ok(())
    }

    /// A transaction the node refused: out of funds is fatal (with how to fund), a busy
    /// mempool is retried, anything else stops the worker.
    fn refused(&self, what: &str, e: ClientError) -> SubmitError {
        match e {
            ClientError::Api { ref code, .. } if code == "insufficient_balance" => {
                let balance = self.wallet.balance().unwrap_or_default();
                let fees = self.wallet.max_fee().unwrap_or_default();
                SubmitError::Fatal(AttachError::NoFunds {
                    account: self.account,
                    balance,
                    stake: self.info.params.min_stake,
                    fees: Amount(fees.units().saturating_mul(2)),
                    domain: self.domain.clone(),
                    url: self.url.clone(),
                })
            }
            ClientError::Api {
                status, ref code, ..
            } if status == 409
                || status == 503
                || matches!(
                    code.as_str(),
                    "underpriced" | "mempool_full" | "nonce_gap" | "nonce_too_low" | "bad_nonce"
                ) =>
            {
                SubmitError::Later(format!("the node did not take {what}: {e}"))
            }
            e => SubmitError::Fatal(self.err(&format!("submitting {what}"), e)),
        }
    }

    /// Adds what a transaction with bid `fee` paid in the block at `height`.
    fn pay(&mut self, fee: FeeBid, height: u64) {
        let paid = self
            .node
            .base_fee_at(height)
            .ok()
            .and_then(|base| charge(&fee, base).ok())
            .map_or(fee.max_fee, |c| c.total());
        self.summary.fees_paid += paid.units();
    }

    /// Waits until transaction `id` is in a block; `None` when it left the mempool, or the
    /// chain passed `deadline` without it.
    fn wait_included(
        &self,
        id: &TxId,
        deadline: Option<u64>,
        timeout: Duration,
    ) -> Result<Option<u64>, AttachError> {
        let start = Instant::now();
        loop {
            match self.node.wait_confirmed(id, Duration::from_secs(1)) {
                Ok(height) => return Ok(Some(height)),
                Err(ClientError::NotConfirmed { state, .. }) => {
                    if state != "pending" {
                        return Ok(None);
                    }
                    if let Some(d) = deadline {
                        if self.height()? > d {
                            return Ok(None);
                        }
                    }
                    if start.elapsed() > timeout {
                        return Err(AttachError::Failed(format!(
                            "transaction {id} is still pending after {} s (the base fee may \
                             have risen above its bid); see GET /tx/{id}",
                            timeout.as_secs()
                        )));
                    }
                }
                Err(e) => return Err(self.err("waiting for a transaction", e)),
            }
        }
    }

    /// Follows an optimae to its verdict (or expiry).
    fn follow(&mut self, commitment: &Hash32) -> Result<Outcome, AttachError> {
        let mut unknown = 0u32;
        loop {
            if self.stopped() {
                return Ok(Outcome::Undecided {
                    why: "interrupted; see GET /optimae/{commitment}".into(),
                });
            }
            match self.node.optimae(commitment) {
                Ok(info) if info.is_decided() => {
                    let burned = info.burned.unwrap_or_default();
                    return Ok(match info.record.map(|r| (r.verdict, r.work, r.burned)) {
                        None => Outcome::Expired { burned },
                        Some((Verdict::Accepted { median, credit }, work, _)) => {
                            Outcome::Accepted {
                                median,
                                credit,
                                work,
                            }
                        }
                        Some((Verdict::Rejected { reason, median }, _, burned)) => {
                            Outcome::Rejected {
                                reason: format!("{reason:?}"),
                                median,
                                burned,
                            }
                        }
                        Some((Verdict::NoQuorum { votes, needed }, _, _)) => {
                            Outcome::NoQuorum { votes, needed }
                        }
                    });
                }
                Ok(info) => {
                    unknown = 0;
                    let deadline = info
                        .reveal
                        .as_ref()
                        .map(|r| r.vote_deadline)
                        .or(info.reveal_deadline);
                    if let Some(d) = deadline {
                        if self.height()? > d.saturating_add(VERDICT_GRACE_BLOCKS) {
                            return Ok(Outcome::Undecided {
                                why: format!("no verdict by height {d}"),
                            });
                        }
                    }
                }
                Err(ClientError::Api { status: 404, .. }) => {
                    unknown += 1;
                    if unknown >= 50 {
                        return Ok(Outcome::Undecided {
                            why: "the node no longer knows it (a reorganization?)".into(),
                        });
                    }
                }
                Err(e) => return Err(self.err("following the verdict", e)),
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

/// Experiment metrics and hyperparameters of a proposal, as reveal metrics (bounded), as
/// the node's optimizer role reveals them.
pub fn metrics_of(proposal: &Proposal) -> Vec<Metric> {
    proposal
        .hyperparameters
        .iter()
        .map(|(k, v)| (format!("hp.{k}"), *v))
        .chain(proposal.metrics.iter().map(|(k, v)| (k.clone(), *v)))
        .filter(|(name, v)| v.is_finite() && !name.is_empty() && name.len() <= MAX_METRIC_NAME)
        .take(MAX_METRICS)
        .map(|(name, value)| Metric { name, value })
        .collect()
}

// === run ===

/// Works for the node at `opts.node_url` until a stop condition; reports what it does
/// through `on_event` and returns the summary. Errors are those a user can act on: the node
/// unreachable, another chain, an unknown domain, no funds for the stake (with how to fund).
pub fn run(
    opts: AttachOptions,
    on_event: &mut dyn FnMut(&Event),
) -> Result<AttachSummary, AttachError> {
    let started = Instant::now();
    let key = Keypair::load_or_generate(&opts.key_file).map_err(|e| AttachError::Key {
        path: opts.key_file.clone(),
        reason: e.to_string(),
    })?;
    let account = key.account();
    let node = NodeClient::new(&opts.node_url);
    let url = node.base_url().to_string();
    let status = node
        .status()
        .map_err(|e| node_error(&url, "reading the node's status", e))?;
    if let Some(expected) = &opts.chain_id {
        if *expected != status.chain_id {
            return Err(AttachError::WrongChain {
                url,
                expected: expected.clone(),
                actual: status.chain_id,
            });
        }
    }
    let rules = node
        .chain_rules()
        .map_err(|e| node_error(&url, "reading the chain parameters", e))?;
    let domain = opts.domain.domain_id.clone();
    let info = node.domain(&domain).map_err(|e| match e {
        ClientError::Api {
            code, message: m, ..
        } if code == "unknown_domain" => AttachError::UnknownDomain(m),
        e => node_error(&url, "reading the domains", e),
    })?;
    let wallet = Wallet::connect(node.clone(), key)
        .map_err(|e| node_error(&url, "connecting the wallet", e))?;
    let balance = wallet
        .balance()
        .map_err(|e| node_error(&url, "reading the balance", e))?;
    let fees = Amount(
        wallet
            .max_fee()
            .map_err(|e| node_error(&url, "reading the base fee", e))?
            .units()
            .saturating_mul(2),
    );
    let stake = info.params.min_stake;
    if balance.units() < stake.units().saturating_add(fees.units()) {
        return Err(AttachError::NoFunds {
            account,
            balance,
            stake,
            fees,
            domain,
            url,
        });
    }

    // The engine, as the node builds it: the chain's ε and baseline, the config's target.
    let target = opts.target.or(opts.domain.target_performance);
    let stop_settings = StopSettings::from_domain_config(&opts.domain)?
        .with_min_improvement(info.params.min_improvement)
        .with_baseline_performance(Some(info.params.baseline_performance))
        .with_target_performance(target);
    let mut engine = Engine::new(
        Arc::clone(&opts.plugin),
        opts.domain.optimizer_setup(opts.seed),
        stop_settings,
    )?;
    let kind = engine.optimizer_kind();
    let pace = round_interval(&opts.domain)?;

    on_event(&Event::Attached {
        node: url.clone(),
        chain_id: status.chain_id.clone(),
        height: status.chain_height,
        account,
        balance,
        champion: info.champion.as_ref().map(|c| c.performance),
    });
    let mut worker = Worker {
        node,
        wallet,
        rules,
        url,
        domain,
        account,
        last_champion: info.champion.as_ref().map(|c| c.commitment),
        info,
        target,
        stop: Arc::clone(&opts.stop),
        on_event,
        own: VecDeque::new(),
        summary: Totals::default(),
    };
    // Resume from the champion, when the node holds its parameters.
    if let Some(m) = worker.champion_migrant() {
        if let Err(e) = engine.observe_champion(m) {
            worker.emit(Event::Note(format!("cannot start from the champion: {e}")));
        }
    }

    let shared = Shared::new(engine.stats());
    let (champ_tx, champ_rx) = mpsc::channel::<Migrant>();
    let engine_run = EngineRun {
        engine,
        rounds: opts.rounds,
        pace,
        stop: Arc::clone(&opts.stop),
    };
    let stopped = if worker.target_reached() {
        StopReason::TargetReached // nothing to do
    } else {
        std::thread::scope(|scope| {
            let shared = &shared;
            std::thread::Builder::new()
                .name("optimizer-worker".into())
                .spawn_scoped(scope, move || engine_loop(engine_run, shared, &champ_rx))
                .map_err(|e| AttachError::Failed(format!("starting the engine thread: {e}")))?;
            let stopped = worker.pipeline(shared, &champ_tx);
            shared.halt.store(true, Ordering::Relaxed);
            stopped
        })?
    };
    let stats = *lock(&shared.stats);
    let balance_end = worker.wallet.balance().ok();
    let t = std::mem::take(&mut worker.summary);
    let champion = worker.info.champion.as_ref();
    Ok(AttachSummary {
        node: worker.url.clone(),
        chain_id: status.chain_id,
        domain: worker.domain.clone(),
        account,
        optimizer: kind,
        seed: opts.seed,
        rounds: shared.rounds.load(Ordering::Relaxed),
        failed_rounds: shared.failed.load(Ordering::Relaxed),
        best_local: stats.best_performance,
        commits: t.commits,
        accepted: t.accepted,
        rejected: t.rejected,
        no_quorum: t.no_quorum,
        expired: t.expired,
        undecided: t.undecided,
        credit: t.credit,
        work: t.work,
        stakes_locked: Amount(t.stakes_locked),
        stakes_burned: Amount(t.stakes_burned),
        fees_paid: Amount(t.fees_paid),
        balance_start: balance,
        balance_end,
        champion: champion.map(|c| c.performance),
        champion_is_ours: champion.is_some_and(|c| c.optimizer == account),
        target,
        stopped,
        seconds: started.elapsed().as_secs_f64(),
        optimae: t.optimae,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(what: &str, ready: impl Fn() -> bool) {
        let start = Instant::now();
        while !ready() {
            assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_converged_engine_waits_for_the_verdict_and_resumes_when_the_pipeline_says() {
        use doin_core::plugin::{OptimizerSetup, PluginSetup};
        let setup = PluginSetup::new(DomainId::new("quadratic").unwrap_or_else(|_| unreachable!()));
        let plugin = doin_plugins::quadratic::factory(&setup).unwrap_or_else(|e| panic!("{e}"));
        let stop = StopSettings::default().with_target_performance(Some(-400.0));
        let engine = Engine::new(
            plugin,
            OptimizerSetup {
                seed: 3,
                ..Default::default()
            },
            stop,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let shared = Shared::new(engine.stats());
        let (_champions, champion_rx) = mpsc::channel();
        std::thread::scope(|scope| {
            let run = EngineRun {
                engine,
                rounds: 100_000,
                pace: Duration::ZERO,
                stop: Arc::new(AtomicBool::new(false)),
            };
            let shared = &shared;
            scope.spawn(move || engine_loop(run, shared, &champion_rx));
            wait("convergence", || shared.converged.load(Ordering::SeqCst));
            let candidate = lock(&shared.best).take();
            assert!(candidate.is_some_and(|p| p.claimed_performance >= -400.0));
            // It trains nothing while the verdict is out.
            let rounds = shared.rounds.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(shared.rounds.load(Ordering::SeqCst), rounds);
            assert!(!shared.done.load(Ordering::SeqCst));
            // The pipeline found the champion still short: the engine searches on, and (its
            // candidate never decided on chain here) offers it again.
            shared.resume.store(true, Ordering::SeqCst);
            wait("a candidate again", || lock(&shared.best).is_some());
            shared.halt.store(true, Ordering::SeqCst);
            wait("the engine thread to end", || {
                shared.done.load(Ordering::SeqCst)
            });
        });
        assert_eq!(*lock(&shared.ended), Some(StopReason::Interrupted));
    }

    #[test]
    fn reveal_metrics_are_bounded_like_the_node_role() {
        let mut p = Proposal {
            claimed_performance: -1.0,
            ..Default::default()
        };
        p.hyperparameters.insert("x0".into(), 0.5);
        p.metrics.insert("loss".into(), 0.25);
        p.metrics.insert("nan".into(), f64::NAN);
        p.metrics.insert("n".repeat(MAX_METRIC_NAME + 1), 1.0);
        for i in 0..MAX_METRICS {
            p.metrics.insert(format!("m{i:02}"), i as f64);
        }
        let m = metrics_of(&p);
        assert_eq!(m.len(), MAX_METRICS);
        assert_eq!(m[0].name, "hp.x0");
        assert!(m.iter().all(|m| m.value.is_finite()));
        assert!(m.iter().all(|m| m.name.len() <= MAX_METRIC_NAME));
    }

    #[test]
    fn outcomes_and_errors_say_what_happened_and_what_to_do() {
        let accepted = Outcome::Accepted {
            median: -1.5,
            credit: 2.25,
            work: 2250,
        };
        assert_eq!(
            accepted.to_string(),
            "accepted: verified -1.5000, credit 2.2500 (2250 work)"
        );
        let v = serde_json::to_value(&accepted).unwrap_or_default();
        assert_eq!(v["outcome"], "accepted");
        let e = AttachError::NoFunds {
            account: Keypair::from_seed([1; 32]).account(),
            balance: Amount::ZERO,
            stake: Amount(10_000),
            fees: Amount(3_000),
            domain: DomainId::new("quadratic").unwrap_or_else(|_| unreachable!()),
            url: "http://127.0.0.1:8470".into(),
        }
        .to_string();
        assert!(
            e.contains("doin-node wallet --node http://127.0.0.1:8470"),
            "{e}"
        );
        assert!(e.contains("transfer --to"), "{e}");
    }
}
