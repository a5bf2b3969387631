//! The evaluator role, and the champion feed to the local optimizers.
//!
//! Each revealed optimae whose quorum draws this node is measured on the node's own
//! synthetic data (off the async threads) and voted on. The measurement starts as soon as
//! the reveal reaches the mempool, before its block: the data seed is fixed once the commit
//! is on chain (`H(commit block ‖ commitment)`), so the measurement is the one the vote will
//! carry, and the vote goes out the moment the reveal's block makes this node a quorum
//! member. This is done for reveals that the current state says will draw this node, and
//! for every other node's reveal in a domain this node optimizes.
//!
//! It also feeds the optimizer engines of its domains (the island model): another node's
//! revealed candidate it measured and found to reproduce its claim, provisionally (so an
//! island learns of another's find a block earlier than from the reveal's block); champions
//! accepted on chain, for good; rejected ones, to drop their provisional copy.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::optimae::{self, Verdict, VerdictRules};
use doin_core::params::DomainId;
use doin_core::plugin::Migrant;
use doin_core::tx::{SignedTx, TxKind};
use doin_evaluator::EvaluatorRole;
use tokio::sync::{broadcast, watch};

use super::optimizer::{Migration, OptimizerHandle};
use crate::context::{ChainEvent, NodeContext};

/// The reveal's `hp.*` metrics, so a GA island can place a migrant in its search space.
fn hyperparameters_of(metrics: &[doin_core::tx::Metric]) -> BTreeMap<String, f64> {
    metrics
        .iter()
        .filter_map(|m| Some((m.name.strip_prefix("hp.")?.to_string(), m.value)))
        .collect()
}

/// The score voted for parameters that do not even load: finite (votes must be), and far
/// below any honest claim, so the claim is not reproduced.
pub const UNLOADABLE_SCORE: f64 = -1e300;

/// Commitments this node measures or has measured (each at most once), shared by the
/// measurement tasks. Entries leave once the optimae is decided.
type Measured = Arc<Mutex<HashSet<Hash32>>>;

/// Runs until shutdown.
pub async fn run(
    ctx: Arc<NodeContext>,
    evaluators: BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: Vec<OptimizerHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = ctx.events.subscribe();
    let mut reveals = ctx.admitted_reveals.subscribe();
    let measured: Measured = Arc::default();
    vote_where_drawn(&ctx, &evaluators, &optimizers, &measured);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            event = events.recv() => match event {
                Ok(ChainEvent::Block { receipt, .. }) => {
                    feed_champions(&ctx, &optimizers, &receipt.verdicts);
                }
                // The new branch's blocks follow as `Block` events.
                Ok(ChainEvent::Reorg { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            reveal = reveals.recv() => {
                match reveal {
                    Ok(tx) => measure_early(&ctx, &evaluators, &optimizers, &measured, &tx),
                    // Missed reveals are measured from their block instead.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                continue;
            }
        }
        vote_where_drawn(&ctx, &evaluators, &optimizers, &measured);
    }
}

/// One revealed optimae to measure.
struct Measurement {
    domain: DomainId,
    commitment: Hash32,
    optimizer: AccountId,
    quorum_seed: Hash32,
    params_hash: Hash32,
    claim: f64,
    hyperparameters: BTreeMap<String, f64>,
}

/// A reveal just admitted to the mempool: measured now when this node will be drawn for
/// it or optimizes its domain (see the module docs).
fn measure_early(
    ctx: &Arc<NodeContext>,
    evaluators: &BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: &[OptimizerHandle],
    measured: &Measured,
    tx: &SignedTx,
) {
    let TxKind::Reveal {
        commitment,
        params_hash,
        claim,
        salt,
        metrics,
        ..
    } = &tx.body.kind
    else {
        return;
    };
    let view = ctx.view();
    let Some(pending) = view.state.optimae.get(commitment) else {
        return;
    };
    if pending.reveal.is_some() || !evaluators.contains_key(&pending.domain) {
        return; // on chain already: measured from its block
    }
    let optimizer = tx.body.sender;
    // The mempool checks that a reveal opens its commitment only for the sender's next
    // nonce; nothing is measured for one that does not.
    if pending.optimizer != optimizer
        || optimae::commitment(&pending.domain, &optimizer, params_hash, *claim, salt)
            != *commitment
    {
        return;
    }
    // The commit block's hash is in the state from the block after it on; before that it
    // is the tip's.
    let commit_block = match pending.commit_block {
        Some(hash) => hash,
        None if pending.commit_height == view.tip.height => view.tip.hash(),
        None => return,
    };
    let quorum_seed = optimae::quorum_seed(&commit_block, commitment);
    let me = ctx.account();
    let optimizes = optimizer != me && optimizers.iter().any(|h| h.domain == pending.domain);
    let k = ctx
        .params
        .domain(&pending.domain)
        .map_or(0, |d| d.quorum_size as usize);
    let drawn = optimae::select_quorum(
        &quorum_seed,
        &view.state.eligible_evaluators(&pending.domain, &ctx.params),
        &optimizer,
        k,
        ctx.params.solo_mode,
    )
    .contains(&me);
    if !optimizes && !drawn {
        return;
    }
    spawn_measurement(
        ctx,
        evaluators,
        optimizers,
        measured,
        Measurement {
            domain: pending.domain.clone(),
            commitment: *commitment,
            optimizer,
            quorum_seed,
            params_hash: *params_hash,
            claim: *claim,
            hyperparameters: hyperparameters_of(metrics),
        },
    );
}

/// Revealed optimae on chain whose quorum drew this node and that it has not measured yet.
fn vote_where_drawn(
    ctx: &Arc<NodeContext>,
    evaluators: &BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: &[OptimizerHandle],
    measured: &Measured,
) {
    let view = ctx.view();
    let me = ctx.account();
    measured
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|c| view.state.optimae.contains_key(c));
    for (commitment, pending) in &view.state.optimae {
        let Some(reveal) = &pending.reveal else {
            continue;
        };
        if !reveal.quorum.contains(&me) || reveal.votes.contains_key(&me) {
            continue;
        }
        spawn_measurement(
            ctx,
            evaluators,
            optimizers,
            measured,
            Measurement {
                domain: pending.domain.clone(),
                commitment: *commitment,
                optimizer: pending.optimizer,
                quorum_seed: reveal.quorum_seed,
                params_hash: reveal.params_hash,
                claim: reveal.claim,
                hyperparameters: hyperparameters_of(&reveal.metrics),
            },
        );
    }
}

/// Measures one optimae (once per commitment), hands it to this node's island when it
/// reproduces another node's claim, and votes once the reveal is on chain and drew this node.
fn spawn_measurement(
    ctx: &Arc<NodeContext>,
    evaluators: &BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: &[OptimizerHandle],
    measured: &Measured,
    m: Measurement,
) {
    let Some(evaluator) = evaluators.get(&m.domain).map(Arc::clone) else {
        return;
    };
    if !measured
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(m.commitment)
    {
        return;
    }
    let me = ctx.account();
    let island = (m.optimizer != me)
        .then(|| optimizers.iter().find(|h| h.domain == m.domain))
        .flatten()
        .map(|h| h.migrants.clone());
    let domain_params = ctx.params.domain(&m.domain);
    let rules = domain_params.map(VerdictRules::from);
    let max_bytes = domain_params.map_or(0, |d| d.limits.max_params_bytes);
    let (ctx, measured) = (Arc::clone(ctx), Arc::clone(measured));
    tokio::spawn(async move {
        let domain = m.domain.clone();
        // Another node's reveal: its parameters come from the peers that have them.
        crate::network::ensure_params(&ctx, &m.params_hash, max_bytes).await;
        let blobs = ctx.blobs.clone();
        let (seed, params_hash) = (m.quorum_seed, m.params_hash);
        let result = tokio::task::spawn_blocking(move || {
            let params = blobs
                .get(&params_hash)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "parameters {} are not available on this node",
                        &params_hash.to_hex()[..12]
                    )
                })?;
            let vote = evaluator
                .evaluate(&seed, &me, &params, &params_hash)
                .map(|v| (v.measured, v.data_hash))
                .or_else(|err| {
                    if err.blames_params() {
                        Ok((UNLOADABLE_SCORE, Hash32::ZERO))
                    } else {
                        Err(err.to_string())
                    }
                })?;
            Ok::<_, String>((vote, params))
        })
        .await;
        let ((score, data_hash), params) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(reason)) => {
                tracing::warn!("{domain}: cannot evaluate: {reason}; not voting");
                return;
            }
            Err(join) => {
                tracing::error!("{domain}: evaluation task failed: {join}");
                return;
            }
        };
        let reproduced = rules
            .as_ref()
            .is_some_and(|r| optimae::agrees(r, m.claim, score));
        if let (Some(island), true) = (&island, reproduced) {
            let _ = island.send(Migration::Revealed(Migrant {
                params,
                performance: score,
                hyperparameters: m.hyperparameters.clone(),
            }));
        }
        vote_when_drawn(&ctx, &measured, &m, score, data_hash).await;
    });
}

/// Whether the on-chain reveal of `m` asks for this node's vote.
enum Ballot {
    /// Drawn and not voted yet.
    Vote,
    /// Decided, expired, not drawn, or voted already.
    Nothing,
    /// The reveal on chain has another seed than the one measured with (a reorganization
    /// moved the commit): measure again from the block.
    Remeasure,
}

/// Waits (a bounded number of blocks) for the reveal to be on chain, then votes if drawn.
async fn vote_when_drawn(
    ctx: &NodeContext,
    measured: &Measured,
    m: &Measurement,
    score: f64,
    data_hash: Hash32,
) {
    let me = ctx.account();
    let mut events = ctx.events.subscribe();
    let ballot =
        super::wait_for_blocks(ctx, &mut events, ctx.params.reveal_window + 2, |ctx, _| {
            let view = ctx.view();
            let Some(pending) = view.state.optimae.get(&m.commitment) else {
                return Some(Ballot::Nothing);
            };
            let reveal = pending.reveal.as_ref()?;
            Some(if reveal.quorum_seed != m.quorum_seed {
                Ballot::Remeasure
            } else if reveal.quorum.contains(&me) && !reveal.votes.contains_key(&me) {
                Ballot::Vote
            } else {
                Ballot::Nothing
            })
        })
        .await;
    let domain = &m.domain;
    match ballot {
        Some(Ballot::Vote) => match ctx.submit_own(TxKind::Vote {
            commitment: m.commitment,
            measured: score,
            data_hash,
        }) {
            Ok(_) => tracing::info!(
                "{domain}: evaluated {} on my own synthetic data: {score:.4}; voted",
                &m.commitment.to_hex()[..12]
            ),
            Err(err) => tracing::warn!("{domain}: vote not submitted: {err}"),
        },
        Some(Ballot::Remeasure) => {
            measured
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&m.commitment);
        }
        Some(Ballot::Nothing) | None => {}
    }
}

fn feed_champions(
    ctx: &NodeContext,
    optimizers: &[OptimizerHandle],
    verdicts: &[doin_core::state::VerdictRecord],
) {
    for record in verdicts {
        let median = match record.verdict {
            Verdict::Accepted { median, .. } => median,
            Verdict::Rejected { .. } | Verdict::NoQuorum { .. } => {
                // Drops a provisional migrant of it, if this island adopted one.
                if let Some(handle) = optimizers.iter().find(|h| h.domain == record.domain) {
                    let _ = handle
                        .migrants
                        .send(Migration::Rejected(record.params_hash));
                }
                continue;
            }
        };
        if let Some(runtime) = ctx.domain(&record.domain) {
            if runtime.target_performance.is_some_and(|t| median >= t) {
                ctx.mark_converged(&record.domain);
            }
        }
        let Some(handle) = optimizers.iter().find(|h| h.domain == record.domain) else {
            continue;
        };
        match ctx.blobs.get(&record.params_hash) {
            Ok(Some(params)) => {
                let _ = handle.migrants.send(Migration::Champion(Migrant {
                    params,
                    performance: median,
                    hyperparameters: hyperparameters_of(&record.metrics),
                }));
            }
            _ => tracing::debug!(
                "champion parameters {} not held locally",
                record.params_hash
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use doin_core::amount::Amount;
    use doin_core::fee::FeeBid;
    use doin_core::identity::Keypair;
    use doin_core::params::ChainParams;
    use doin_core::plugin::TrainRequest;
    use doin_core::tx::{Metric, TxBody};

    use super::*;
    use crate::producer::produce_once;

    fn quadratic() -> DomainId {
        DomainId::new("quadratic").unwrap()
    }

    fn tx(ctx: &NodeContext, from: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
        TxBody {
            chain_id: ctx.params.chain_id.clone(),
            sender: from.account(),
            nonce,
            fee: FeeBid {
                max_fee: Amount(10_000),
                tip: Amount(10),
            },
            kind,
        }
        .sign(from)
    }

    /// Produces blocks until the tip is above `height`.
    async fn block_above(ctx: &Arc<NodeContext>, height: u64) {
        for _ in 0..500 {
            produce_once(ctx).await.unwrap();
            if ctx.view().tip.height > height {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no block above {height}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_nodes_reveal_migrates_before_its_block_and_the_vote_goes_out_with_it() {
        let node = Keypair::from_seed([1; 32]);
        let other = Keypair::from_seed([2; 32]);
        let mut params = ChainParams::dev("early-measurement");
        params.genesis_allocations = vec![
            (node.account(), Amount::from_doin(100)),
            (other.account(), Amount::from_doin(100)),
        ];
        params.genesis_evaluators = vec![(quadratic(), node.account())];
        // Blocks without work (a commit, a reveal) are allowed after the max interval.
        params.target_block_time_ms = 100;
        params.max_block_interval_ms = 300;
        let dir = tempfile::tempdir().unwrap();
        let ctx = crate::test_support::context(dir.path(), params, node, &[quadratic()]).await;

        // The node's evaluator and island, and the evaluator role running.
        let setup = doin_core::plugin::PluginSetup::new(quadratic());
        let plugin = doin_plugins::quadratic::factory(&setup).unwrap();
        let limits = ctx.params.domains[0].limits.clone();
        let evaluator: Arc<dyn EvaluatorRole> = Arc::new(doin_evaluator::Evaluator::new(
            Arc::clone(&plugin),
            limits.clone(),
        ));
        let (island, migrants) = std::sync::mpsc::channel();
        let handle = OptimizerHandle {
            domain: quadratic(),
            migrants: island,
        };
        let (stop, shutdown) = watch::channel(false);
        tokio::spawn(run(
            Arc::clone(&ctx),
            BTreeMap::from([(quadratic(), evaluator)]),
            vec![handle],
            shutdown,
        ));

        // The other node's candidate, trained for real, committed in a block.
        let hyperparameters: BTreeMap<String, f64> = (0..10)
            .map(|i| (format!("x{i}"), f64::from(i) - 4.0))
            .collect();
        let trained = plugin
            .trainer()
            .unwrap()
            .train(&TrainRequest {
                hyperparameters: &hyperparameters,
                seed: 5,
                limits: &limits,
            })
            .unwrap();
        let params_hash = ctx.blobs.put(&trained.params, u64::MAX).unwrap();
        let claim = trained.claimed_performance;
        let salt = [9; 32];
        let commitment =
            optimae::commitment(&quadratic(), &other.account(), &params_hash, claim, &salt);
        let stake = ctx.params.domains[0].min_stake;
        ctx.submit(tx(
            &ctx,
            &other,
            0,
            TxKind::Commit {
                domain: quadratic(),
                commitment,
                stake,
            },
        ))
        .unwrap();
        block_above(&ctx, 0).await;

        // Its reveal reaches the mempool; no block is made.
        let height = ctx.view().tip.height;
        let metrics = hyperparameters
            .iter()
            .map(|(k, v)| Metric {
                name: format!("hp.{k}"),
                value: *v,
            })
            .collect();
        ctx.submit(tx(
            &ctx,
            &other,
            1,
            TxKind::Reveal {
                commitment,
                params_hash,
                params_size: trained.params.len() as u64,
                claim,
                salt,
                metrics,
            },
        ))
        .unwrap();
        let migrant =
            tokio::task::spawn_blocking(move || migrants.recv_timeout(Duration::from_secs(20)))
                .await
                .unwrap()
                .expect("the reveal was measured and migrated before its block");
        let Migration::Revealed(m) = migrant else {
            panic!("not a revealed migrant: {migrant:?}");
        };
        assert_eq!(ctx.view().tip.height, height, "no block was made");
        assert_eq!(m.hyperparameters, hyperparameters);
        assert!(
            (m.performance - claim).abs() < 0.5,
            "{} vs {claim}",
            m.performance
        );

        // The reveal's block draws the node: the measurement taken is voted at once.
        block_above(&ctx, height).await;
        let voted = || {
            ctx.mempool.lock().unwrap().candidates(100).iter().any(
                |t| matches!(t.body.kind, TxKind::Vote { commitment: c, .. } if c == commitment),
            )
        };
        for _ in 0..200 {
            if voted() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(voted(), "no vote after the reveal's block");
        let _ = stop.send(true);
    }
}
