//! The evaluator role, and the champion feed to the local optimizers.
//!
//! After every block it looks for revealed optimae whose quorum drew this node and that it
//! has not voted on, measures each on its own synthetic data (off the async threads) and
//! votes. It also feeds the optimizer engines of its domains (the island model): another
//! node's revealed candidate it measured and found to reproduce its claim, provisionally;
//! champions accepted on chain, for good; rejected ones, to drop their provisional copy.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use doin_core::hash::Hash32;
use doin_core::optimae::Verdict;
use doin_core::params::DomainId;
use doin_core::plugin::Migrant;
use doin_core::tx::TxKind;
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

/// Runs until shutdown.
pub async fn run(
    ctx: Arc<NodeContext>,
    evaluators: BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: Vec<OptimizerHandle>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = ctx.events.subscribe();
    let mut attempted: HashSet<Hash32> = HashSet::new();
    vote_where_drawn(&ctx, &evaluators, &optimizers, &mut attempted);
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
        }
        vote_where_drawn(&ctx, &evaluators, &optimizers, &mut attempted);
    }
}

fn vote_where_drawn(
    ctx: &Arc<NodeContext>,
    evaluators: &BTreeMap<DomainId, Arc<dyn EvaluatorRole>>,
    optimizers: &[OptimizerHandle],
    attempted: &mut HashSet<Hash32>,
) {
    let view = ctx.view();
    let me = ctx.account();
    attempted.retain(|c| view.state.optimae.contains_key(c));
    for (commitment, pending) in &view.state.optimae {
        let Some(reveal) = &pending.reveal else {
            continue;
        };
        let Some(evaluator) = evaluators.get(&pending.domain) else {
            continue;
        };
        if !reveal.quorum.contains(&me)
            || reveal.votes.contains_key(&me)
            || !attempted.insert(*commitment)
        {
            continue;
        }
        let (ctx, evaluator, commitment) = (Arc::clone(ctx), Arc::clone(evaluator), *commitment);
        let (seed, params_hash, domain) = (
            reveal.quorum_seed,
            reveal.params_hash,
            pending.domain.clone(),
        );
        // Another island's candidate that this node verifies goes to its own optimizer too,
        // provisionally (if the measurement reproduces the claim).
        let island = (pending.optimizer != me)
            .then(|| optimizers.iter().find(|h| h.domain == domain))
            .flatten()
            .map(|h| h.migrants.clone());
        let rules = ctx
            .params
            .domain(&domain)
            .map(doin_core::optimae::VerdictRules::from);
        let (claim, hyperparameters) = (reveal.claim, hyperparameters_of(&reveal.metrics));
        let max_bytes = ctx
            .params
            .domain(&domain)
            .map_or(0, |d| d.limits.max_params_bytes);
        tokio::spawn(async move {
            // Another node's reveal: its parameters come from the peers that have them.
            crate::network::ensure_params(&ctx, &params_hash, max_bytes).await;
            let blobs = ctx.blobs.clone();
            let measured = tokio::task::spawn_blocking(move || {
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
            match measured {
                Ok(Ok(((measured, data_hash), params))) => {
                    let reproduced =
                        rules.is_some_and(|r| doin_core::optimae::agrees(&r, claim, measured));
                    if let (Some(island), true) = (&island, reproduced) {
                        let _ = island.send(Migration::Revealed(Migrant {
                            params,
                            performance: measured,
                            hyperparameters,
                        }));
                    }
                    match ctx.submit_own(TxKind::Vote {
                        commitment,
                        measured,
                        data_hash,
                    }) {
                        Ok(_) => tracing::info!(
                            "{domain}: evaluated {} on my own synthetic data: {measured:.4}; voted",
                            &commitment.to_hex()[..12]
                        ),
                        Err(err) => tracing::warn!("{domain}: vote not submitted: {err}"),
                    }
                }
                Ok(Err(reason)) => {
                    tracing::warn!("{domain}: cannot evaluate: {reason}; not voting")
                }
                Err(join) => tracing::error!("{domain}: evaluation task failed: {join}"),
            }
        });
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
