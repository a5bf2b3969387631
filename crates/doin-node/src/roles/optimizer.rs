//! The optimizer role of one domain.
//!
//! A dedicated thread runs the optimizer engine (CPU-bound training never blocks the async
//! runtime) and publishes its best candidate. An async pipeline takes the latest candidate
//! that beats the on-chain champion, stores its
//! parameters, commits, waits for the commit's block and reveals; a task per optimae
//! follows the verdict while the pipeline takes the next candidate (at most
//! [`MAX_IN_FLIGHT`] at once). Champions accepted on chain are fed back into the engine
//! (island model), and a domain that reaches its target stops consuming compute.

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use doin_core::hash::Hash32;
use doin_core::optimae;
use doin_core::params::DomainId;
use doin_core::plugin::{Migrant, Proposal};
use doin_core::state::VerdictRecord;
use doin_core::trials::{SignedTrialReport, TrialReport};
use doin_core::tx::{Metric, TxKind, MAX_METRICS};
use doin_optimizer::{OptimizerRole, Step, TrialsOutcome};
use rand_core::{OsRng, RngCore};
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use super::wait_for_blocks;
use crate::context::{now_ms, ChainEvent, NodeContext};

/// What the island learns from the other islands (the network).
#[derive(Debug)]
pub enum Migration {
    /// A champion accepted on chain: adopted for good.
    Champion(Migrant),
    /// Another node's revealed candidate, measured by this node's evaluator and found to
    /// reproduce its claim: adopted provisionally, before the verdict (optimistic migration).
    Revealed(Migrant),
    /// The chain rejected the optimae with these parameters: a provisional migrant leaves.
    Rejected(Hash32),
}

/// What the node keeps to talk to a running optimizer thread.
#[derive(Debug)]
pub struct OptimizerHandle {
    pub domain: DomainId,
    /// What other islands found, for the engine's population.
    pub migrants: mpsc::Sender<Migration>,
}

/// Starts the engine thread and the commit/reveal pipeline of one domain.
pub fn spawn(
    ctx: Arc<NodeContext>,
    domain: DomainId,
    engine: Box<dyn OptimizerRole>,
    round_interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<OptimizerHandle> {
    let (best_tx, best_rx) = watch::channel::<Option<Proposal>>(None);
    let (champ_tx, champ_rx) = mpsc::channel::<Migration>();
    let thread_ctx = Arc::clone(&ctx);
    let thread_domain = domain.clone();
    let thread_shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name(format!("optimizer-{domain}"))
        .spawn(move || {
            engine_loop(
                thread_ctx,
                thread_domain,
                engine,
                round_interval,
                best_tx,
                champ_rx,
                thread_shutdown,
            )
        })?;
    tokio::spawn(pipeline(ctx, domain.clone(), best_rx, shutdown));
    Ok(OptimizerHandle {
        domain,
        migrants: champ_tx,
    })
}

fn engine_loop(
    ctx: Arc<NodeContext>,
    domain: DomainId,
    mut engine: Box<dyn OptimizerRole>,
    round_interval: Duration,
    best: watch::Sender<Option<Proposal>>,
    migrants: mpsc::Receiver<Migration>,
    shutdown: watch::Receiver<bool>,
) {
    let Some(runtime) = ctx.domain(&domain) else {
        return;
    };
    let mut unconfirmed = Unconfirmed::default();
    let mut reports = Reports::new(&ctx);
    while !*shutdown.borrow() {
        let round_start = std::time::Instant::now();
        if runtime.converged.load(Ordering::Relaxed) {
            // A converged domain uses no compute: no spot checks either.
            reports.drop_pending();
        } else {
            reports.take_in(&domain, engine.as_mut());
        }
        while let Ok(migration) = migrants.try_recv() {
            let adopted = match migration {
                Migration::Champion(migrant) => engine.observe_champion(migrant),
                Migration::Revealed(migrant) => {
                    tracing::info!(
                        "{domain}: adopted another node's revealed candidate ({:.4} on my data) provisionally",
                        migrant.performance
                    );
                    // Measured here: a verified record for the surrogate too.
                    engine.observe_record(&migrant.hyperparameters, migrant.performance);
                    engine.observe_revealed(migrant)
                }
                Migration::Rejected(params_hash) => {
                    engine.observe_rejected(&params_hash);
                    Ok(())
                }
            };
            if let Err(err) = adopted {
                tracing::warn!("{domain}: migrant not adopted: {err}");
            }
        }
        match engine.step() {
            Ok(Step::Improved(proposal)) => {
                tracing::debug!(
                    "{domain}: local improvement to {}",
                    proposal.claimed_performance
                );
                best.send_replace(Some(proposal));
            }
            Ok(Step::NoImprovement) => {}
            Ok(Step::Converged) => {
                if !runtime.converged.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "{domain}: target performance reached; optimizer stops, evaluation goes on"
                    );
                }
                let on_chain = runtime
                    .target_performance
                    .is_some_and(|t| champion_performance(&ctx, &domain) >= t);
                if !on_chain && unconfirmed.settled(&ctx, &domain) {
                    // The candidate at the target was decided without taking the champion
                    // there (or never committed): search on. A champion at the target keeps
                    // the engine converged (`resume` checks).
                    engine.resume();
                    if !engine.stats().converged {
                        runtime.converged.store(false, Ordering::Relaxed);
                        tracing::info!(
                            "{domain}: the candidate at the target did not become champion; searching on"
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            Err(err) => {
                tracing::warn!("{domain}: optimizer step failed: {err}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        runtime.rounds.fetch_add(1, Ordering::Relaxed);
        *runtime.search.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine.stats());
        reports.send_out(&ctx, &domain, engine.as_mut());
        // Paced rounds (`round_interval_ms`): the rest of the interval, in short sleeps so a
        // shutdown is not held up.
        while let Some(left) = round_interval.checked_sub(round_start.elapsed()) {
            if left.is_zero() || *shutdown.borrow() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// The island's side of trial reports (see `doin_optimizer::reports`): other nodes'
/// reports into the engine, and the engine's own trainings out, signed by this node.
struct Reports {
    inbound: broadcast::Receiver<Arc<SignedTrialReport>>,
    /// The last sequence number sent. Sequences start from the clock (milliseconds), so they
    /// keep increasing across restarts and receivers never take a new report for a replay.
    sequence: u64,
}

impl Reports {
    fn new(ctx: &NodeContext) -> Self {
        Reports {
            inbound: ctx.net.inbound_trials.subscribe(),
            sequence: 0,
        }
    }

    /// Hands the reports that arrived since the last round to the engine (which
    /// spot-checks some by retraining).
    fn take_in(&mut self, domain: &DomainId, engine: &mut dyn OptimizerRole) {
        loop {
            let report = match self.inbound.try_recv() {
                Ok(report) => report,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::debug!("{domain}: {n} trial reports dropped (queue full)");
                    continue;
                }
                Err(_) => return,
            };
            // The network hands over no report of this node's own.
            let r = &report.report;
            if &r.domain != domain {
                continue;
            }
            match engine.observe_trials(&r.reporter, r.sequence, &r.trials) {
                Ok(TrialsOutcome::Refuted { reason }) => tracing::warn!(
                    "{domain}: trial report of {} refuted by a spot check ({reason}); its reports are ignored from now on",
                    r.reporter
                ),
                Ok(TrialsOutcome::Adopted {
                    records,
                    checked: true,
                }) => tracing::info!(
                    "{domain}: trial report of {}: spot check reproduced; {records} records adopted",
                    r.reporter
                ),
                Ok(outcome) => tracing::debug!("{domain}: trial report of {}: {outcome:?}", r.reporter),
                Err(e) => tracing::warn!("{domain}: trial report of {} not used: {e}", r.reporter),
            }
        }
    }

    /// Discards the reports that arrived (a converged engine does not learn).
    fn drop_pending(&mut self) {
        self.inbound = self.inbound.resubscribe();
    }

    /// Signs the engine's trainings since the last round into one report for the network (a
    /// node without networking drops them: nobody would read them).
    fn send_out(&mut self, ctx: &NodeContext, domain: &DomainId, engine: &mut dyn OptimizerRole) {
        let trials = engine.take_trials();
        if trials.is_empty() || ctx.net.handle.get().is_none() {
            return;
        }
        self.sequence = (self.sequence + 1).max(now_ms());
        let report = TrialReport {
            chain_id: ctx.params.chain_id.clone(),
            domain: domain.clone(),
            reporter: ctx.account(),
            sequence: self.sequence,
            trials,
        };
        // A domain with more or longer-named hyperparameters than a report carries: receivers
        // would refuse it (and blame this node), so it stays here.
        if let Err(e) = report.check_fields() {
            tracing::debug!("{domain}: trial report not sent: {e}");
            return;
        }
        let _ = ctx.net.outbound_trials.send(report.sign(&ctx.key));
    }
}

/// Blocks a converged engine waits, with no optimae of this node pending in its domain,
/// before it concludes that its candidate at the target will not become champion.
const SETTLE_BLOCKS: u64 = 3;

/// Watches a converged engine's domain for this node's optimae to be decided.
#[derive(Debug, Default)]
struct Unconfirmed {
    /// The height at which none of this node's optimae was pending any more.
    idle_since: Option<u64>,
}

impl Unconfirmed {
    /// Whether this node has had no optimae pending in `domain` for [`SETTLE_BLOCKS`]
    /// blocks (the pipeline commits a new candidate within a block, so its candidate at the
    /// target was decided, or never went out).
    fn settled(&mut self, ctx: &NodeContext, domain: &DomainId) -> bool {
        let view = ctx.view();
        let me = ctx.account();
        let pending = view
            .state
            .optimae
            .values()
            .any(|p| p.optimizer == me && &p.domain == domain);
        if pending {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert(view.state.height);
        if view.state.height >= since + SETTLE_BLOCKS {
            self.idle_since = None;
            return true;
        }
        false
    }
}

/// The current champion performance of a domain (the baseline before any).
fn champion_performance(ctx: &NodeContext, domain: &DomainId) -> f64 {
    let view = ctx.view();
    view.state
        .champions
        .get(domain)
        .map(|c| c.performance)
        .unwrap_or_else(|| {
            ctx.params
                .domain(domain)
                .map_or(f64::NEG_INFINITY, |d| d.baseline_performance)
        })
}

async fn pipeline(
    ctx: Arc<NodeContext>,
    domain: DomainId,
    mut best: watch::Receiver<Option<Proposal>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(domain_params) = ctx.params.domain(&domain).cloned() else {
        return;
    };
    let mut blocks = ctx.events.subscribe();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // A candidate whose commit was refused (no coins for the stake yet, a full mempool): it
    // is tried again at each block until it commits or a better one replaces it. The engine
    // may already have stopped on it (it reached the target), so dropping it would lose it.
    let mut retry: Option<Proposal> = None;
    loop {
        let proposal = tokio::select! {
            changed = best.changed() => {
                if changed.is_err() { return }
                best.borrow_and_update().clone()
            }
            block = blocks.recv(), if retry.is_some() => match block {
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => retry.take(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        };
        let Some(proposal) = proposal else {
            continue;
        };
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        // While this waited for a slot the engine may have found better.
        let proposal = match best.borrow_and_update().clone() {
            Some(latest) if latest.claimed_performance > proposal.claimed_performance => latest,
            _ => proposal,
        };
        // The engine proposes only candidates that beat its previous proposal by
        // `min_improvement`, so a new one also beats this node's optimae still awaiting
        // verdicts; only the champion can have overtaken it.
        let champion = champion_performance(&ctx, &domain);
        if proposal.claimed_performance < champion + domain_params.min_improvement {
            continue; // someone else's champion got there first
        }
        match commit_and_reveal(&ctx, &domain, &proposal, &domain_params).await {
            Ok(commitment) => {
                tokio::spawn(follow_verdict(
                    Arc::clone(&ctx),
                    domain.clone(),
                    commitment,
                    slot,
                ));
            }
            Err(err) if err.downcast_ref::<NotCommitted>().is_some() => {
                if retry.is_none() {
                    tracing::warn!("{domain}: {err}; retrying at the next block");
                }
                retry = Some(proposal);
            }
            Err(err) => tracing::warn!("{domain}: {err:#}"),
        }
    }
}

/// Most optimae of one domain between reveal and verdict at once. A better candidate found
/// while earlier ones await their verdicts is committed right away, with its own stake, so
/// the other islands learn of it from its reveal without waiting for those verdicts.
const MAX_IN_FLIGHT: usize = 4;

/// The commit itself was refused: nothing was spent, the candidate can be tried again.
#[derive(Debug, thiserror::Error)]
#[error("commit refused: {0}")]
struct NotCommitted(crate::context::SubmitError);

/// Commits one candidate, waits for the commit's block and reveals it; returns the
/// commitment.
async fn commit_and_reveal(
    ctx: &Arc<NodeContext>,
    domain: &DomainId,
    proposal: &Proposal,
    domain_params: &doin_core::params::DomainParams,
) -> anyhow::Result<Hash32> {
    let mut events = ctx.events.subscribe();
    let blobs = ctx.blobs.clone();
    let params = proposal.params.clone();
    let max = domain_params.limits.max_params_bytes;
    let params_hash = tokio::task::spawn_blocking(move || blobs.put(&params, max)).await??;
    let params_size = proposal.params.len() as u64;
    let claim = proposal.claimed_performance;
    let mut salt = [0u8; 32];
    OsRng.fill_bytes(&mut salt);
    let commitment = optimae::commitment(domain, &ctx.account(), &params_hash, claim, &salt);
    ctx.submit_own(TxKind::Commit {
        domain: domain.clone(),
        commitment,
        stake: domain_params.min_stake,
    })
    .map_err(NotCommitted)?;
    tracing::info!(
        "{domain}: committed {} (claim {claim:.4})",
        short(&commitment)
    );

    let window = ctx.params.reveal_window;
    let included = wait_for_blocks(ctx, &mut events, window, |ctx, _| {
        let view = ctx.view();
        view.state
            .optimae
            .get(&commitment)
            .filter(|p| p.commit_height < view.state.height + 1)
            .map(|_| ())
    })
    .await;
    anyhow::ensure!(
        included.is_some(),
        "commit {} was not included in time",
        short(&commitment)
    );

    let metrics = metrics_of(proposal);
    ctx.submit_own(TxKind::Reveal {
        commitment,
        params_hash,
        params_size,
        claim,
        salt,
        metrics,
    })?;
    tracing::info!(
        "{domain}: revealed {} ({params_size} bytes of parameters)",
        short(&commitment)
    );
    Ok(commitment)
}

/// Follows a revealed optimae to its verdict (or expiry), then frees its slot.
async fn follow_verdict(
    ctx: Arc<NodeContext>,
    domain: DomainId,
    commitment: Hash32,
    _slot: OwnedSemaphorePermit,
) {
    let mut events = ctx.events.subscribe();
    let horizon = ctx.params.reveal_window + ctx.params.vote_window + 2;
    let verdict = wait_for_blocks(&ctx, &mut events, horizon, |_, event| match event {
        Some(ChainEvent::Block { receipt, .. }) => receipt
            .verdicts
            .iter()
            .find(|v| v.commitment == commitment)
            .cloned()
            .map(Ok)
            .or_else(|| {
                receipt
                    .expired
                    .iter()
                    .any(|(c, _)| c == &commitment)
                    .then_some(Err(()))
            }),
        Some(ChainEvent::Reorg { .. }) | None => None,
    })
    .await;
    match verdict {
        Some(Ok(record)) => log_verdict(&domain, &record),
        Some(Err(())) => tracing::warn!("{domain}: {} expired unrevealed", short(&commitment)),
        None => tracing::warn!(
            "{domain}: no verdict for {} in {horizon} blocks",
            short(&commitment)
        ),
    }
}

fn log_verdict(domain: &DomainId, record: &VerdictRecord) {
    use doin_core::optimae::Verdict;
    match &record.verdict {
        Verdict::Accepted { median, credit } => tracing::info!(
            "{domain}: verified {}: accepted, median {median:.4}, credit {credit:.4} ({} work)",
            short(&record.commitment),
            record.work
        ),
        Verdict::Rejected { reason, median } => tracing::warn!(
            "{domain}: verified {}: rejected ({reason:?}, median {median:.4}), {} burned",
            short(&record.commitment),
            record.burned
        ),
        Verdict::NoQuorum { votes, needed } => tracing::warn!(
            "{domain}: {}: no quorum ({votes} of {needed} votes); stake refunded",
            short(&record.commitment)
        ),
    }
}

/// Experiment metrics and hyperparameters of a proposal, as reveal metrics (bounded).
fn metrics_of(proposal: &Proposal) -> Vec<Metric> {
    proposal
        .hyperparameters
        .iter()
        .map(|(k, v)| (format!("hp.{k}"), *v))
        .chain(proposal.metrics.iter().map(|(k, v)| (k.clone(), *v)))
        .filter(|(name, v)| {
            v.is_finite() && !name.is_empty() && name.len() <= doin_core::tx::MAX_METRIC_NAME
        })
        .take(MAX_METRICS)
        .map(|(name, value)| Metric { name, value })
        .collect()
}

fn short(h: &Hash32) -> String {
    h.to_hex()[..12].to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use doin_core::amount::Amount;
    use doin_core::identity::Keypair;
    use doin_core::params::ChainParams;
    use doin_optimizer::{EngineResult, EngineStats};

    use super::*;
    use crate::producer::produce_once;

    /// An engine that proposes the given candidates, one per round, then nothing.
    struct Scripted(VecDeque<Proposal>);

    impl OptimizerRole for Scripted {
        fn step(&mut self) -> EngineResult<Step> {
            Ok(self
                .0
                .pop_front()
                .map_or(Step::NoImprovement, Step::Improved))
        }
        fn observe_champion(&mut self, _: Migrant) -> EngineResult<()> {
            Ok(())
        }
        fn stats(&self) -> EngineStats {
            EngineStats {
                rounds: 0,
                improvements: 0,
                best_performance: None,
                champion_performance: f64::NEG_INFINITY,
                stalled_rounds: 0,
                stalled: false,
                converged: false,
                ga: None,
            }
        }
    }

    fn candidate(claim: f64) -> Proposal {
        Proposal {
            params: doin_plugins::quadratic::encode_params(&[claim; 10]),
            claimed_performance: claim,
            ..Proposal::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_better_candidate_is_committed_while_the_first_awaits_its_verdict() {
        let node = Keypair::from_seed([1; 32]);
        let quadratic = DomainId::new("quadratic").unwrap();
        let mut params = ChainParams::dev("in-flight");
        params.genesis_allocations = vec![(node.account(), Amount::from_doin(100))];
        params.genesis_evaluators = vec![(quadratic.clone(), node.account())];
        params.target_block_time_ms = 50;
        params.max_block_interval_ms = 200;
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::test_support::context(
            dir.path(),
            params,
            node,
            std::slice::from_ref(&quadratic),
        )
        .await;
        let me = ctx.account();
        // No evaluator runs: no verdict comes, so both optimae stay pending.
        let engine = Scripted(VecDeque::from([candidate(-100.0), candidate(-50.0)]));
        let (stop, shutdown) = watch::channel(false);
        let _handle = spawn(
            Arc::clone(&ctx),
            quadratic.clone(),
            Box::new(engine),
            Duration::from_millis(300),
            shutdown,
        )
        .unwrap();
        let revealed_pending = || -> Vec<f64> {
            ctx.view()
                .state
                .optimae
                .values()
                .filter(|p| p.optimizer == me && p.domain == quadratic)
                .filter_map(|p| p.reveal.as_ref().map(|r| r.claim))
                .collect()
        };
        for _ in 0..400 {
            produce_once(&ctx).await.unwrap();
            if revealed_pending().len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut claims = revealed_pending();
        claims.sort_by(f64::total_cmp);
        assert_eq!(
            claims,
            vec![-100.0, -50.0],
            "both revealed and pending at once"
        );
        let _ = stop.send(true);
    }
}
