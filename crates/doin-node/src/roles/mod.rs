//! The node's roles: the optimizer (commit, reveal, follow the verdict) and the evaluator
//! (measure the optimae it was drawn for and vote). Both drive engines from other crates
//! through trait objects: `doin_optimizer::OptimizerRole` and `doin_evaluator::EvaluatorRole`.

pub mod evaluator;
pub mod optimizer;

use std::time::Duration;

use tokio::sync::broadcast;

use crate::context::{ChainEvent, NodeContext};

/// Waits for blocks until `check` returns a value, for at most `max_blocks` blocks (and a
/// generous wall-clock bound). `check` also runs once before the first block, so a condition
/// that already holds returns at once. Lagging behind the event stream is harmless: `check`
/// reads the shared chain view, not the events.
pub async fn wait_for_blocks<T>(
    ctx: &NodeContext,
    events: &mut broadcast::Receiver<ChainEvent>,
    max_blocks: u64,
    mut check: impl FnMut(&NodeContext, Option<&ChainEvent>) -> Option<T>,
) -> Option<T> {
    if let Some(found) = check(ctx, None) {
        return Some(found);
    }
    let start = ctx.view().tip.height;
    let deadline = Duration::from_millis(
        ctx.params
            .max_block_interval_ms
            .saturating_mul(max_blocks + 2),
    );
    let waited = tokio::time::timeout(deadline, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = check(ctx, Some(&event)) {
                        return Some(found);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(found) = check(ctx, None) {
                        return Some(found);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
            if ctx.view().tip.height >= start + max_blocks {
                return None;
            }
        }
    })
    .await;
    waited.ok().flatten()
}
