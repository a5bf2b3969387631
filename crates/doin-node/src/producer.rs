//! The block producer, and [`commit`], which every new tip goes through.
//!
//! The producer builds a block from the mempool whenever the candidate block carries enough
//! verified work, or once the empty-block interval has passed, and only in its turn of the
//! proposer schedule (`doin_core::schedule`): the primary at once, a fallback of rank `r`
//! once the block has been ready for `r × proposer_timeout_ms` on this node's clock without
//! anyone else's block arriving. Peers' blocks come in through [`crate::import`]. Either way,
//! under the one writer lock ([`crate::context::NetLink::writer`]), the block is stored in
//! one database transaction, then the shared chain view is swapped and the block announced.
//! A block is stored before anyone can see it, so a crash never exposes a block that a
//! restart would not find.

use std::sync::Arc;
use std::time::Duration;

use doin_core::block::Block;
use doin_core::schedule;
use doin_core::state::{BlockReceipt, BuildError, ChainState};
use tokio::sync::watch;

use crate::context::{now_ms, ChainEvent, ChainView, NodeContext};

/// How often the producer looks for a block when nothing wakes it.
fn poll_interval(ctx: &NodeContext) -> Duration {
    Duration::from_millis((ctx.params.target_block_time_ms / 4).clamp(20, 250))
}

/// Runs until `shutdown` flips to true.
pub async fn run(ctx: Arc<NodeContext>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let poll = poll_interval(&ctx);
    loop {
        if *shutdown.borrow() {
            return Ok(());
        }
        if let Err(err) = produce_once(&ctx).await {
            // A storage failure is fatal: the node must not go on with a chain it cannot keep.
            tracing::error!("block production stopped: {err:#}");
            return Err(err);
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = ctx.new_tx.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Tries to produce one block now. Returns Ok whether or not a block was due.
pub async fn produce_once(ctx: &Arc<NodeContext>) -> anyhow::Result<()> {
    let mut writer = ctx.net.writer.lock().await;
    let view = ctx.view();
    let now = now_ms();
    let rank = schedule::proposer_rank(&view.state, &ctx.account());
    if now < schedule::earliest_timestamp(&view.state, &ctx.params, rank) {
        return Ok(());
    }
    let pending = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner()).len();
    let interval_passed = now >= view.state.empty_block_allowed_from(&ctx.params);
    // Not before the target block time, unless transactions wait and may carry work.
    if now < view.state.tip_time_ms + ctx.params.target_block_time_ms && !interval_passed {
        return Ok(());
    }
    if pending == 0 && !interval_passed {
        return Ok(());
    }
    let candidates = ctx
        .mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .candidates(ctx.params.max_block_txs as usize);
    let build_ctx = Arc::clone(ctx);
    let state = Arc::clone(&view.state);
    let timestamp = now.max(view.state.tip_time_ms + 1);
    let built = tokio::task::spawn_blocking(move || {
        state.build_block(&build_ctx.params, &build_ctx.key, timestamp, candidates)
    })
    .await?;
    let built = match built {
        Ok(built) => built,
        Err(BuildError::NotReady { .. } | BuildError::NotYourTurn { .. }) => return Ok(()),
        Err(err @ BuildError::Timestamp(_)) => {
            tracing::warn!("cannot build a block yet: {err}");
            return Ok(());
        }
    };
    if rank > 0 {
        // A fallback: wait for the ones before us, counted from when the block was ready.
        let ready_since = match writer.ready {
            Some((tip, since)) if tip == view.state.tip => since,
            _ => {
                writer.ready = Some((view.state.tip, now));
                now
            }
        };
        let turn = ready_since.saturating_add(rank.saturating_mul(ctx.params.proposer_timeout_ms));
        if now < turn {
            return Ok(());
        }
        tracing::info!(
            "proposing block {} as fallback of rank {rank}: nobody before us did within {} ms",
            view.state.height + 1,
            now - ready_since
        );
    }
    for skipped in &built.skipped {
        tracing::debug!("left out transaction {}: {}", skipped.id, skipped.reason);
    }
    commit(ctx, &built.block, built.state, built.receipt, "mined").await?;
    let mut pool = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner());
    for s in &built.skipped {
        // Transactions that can never apply (bad nonce aside) are dropped.
        if !matches!(s.reason, doin_core::state::ApplyError::Nonce { .. }) {
            pool.remove(&s.id);
        }
    }
    Ok(())
}

/// Stores a block that is valid on top of the current tip, makes it the tip and announces
/// it. The caller holds the writer lock.
pub(crate) async fn commit(
    ctx: &NodeContext,
    block: &Block,
    state: ChainState,
    receipt: BlockReceipt,
    how: &str,
) -> anyhow::Result<()> {
    ctx.store.append_block(block, &state, &receipt).await?;
    let header = block.header.clone();
    let state = Arc::new(state);
    {
        let mut pool = ctx.mempool.lock().unwrap_or_else(|e| e.into_inner());
        pool.prune(|a| state.account(a).nonce);
    }
    *ctx.chain.write().unwrap_or_else(|e| e.into_inner()) = ChainView {
        state: Arc::clone(&state),
        tip: header.clone(),
    };
    log_block(ctx, &header, &receipt, block.txs.len(), how);
    let _ = ctx.events.send(ChainEvent::Block {
        header,
        receipt: Arc::new(receipt),
        tx_count: block.txs.len(),
    });
    Ok(())
}

fn log_block(
    ctx: &NodeContext,
    header: &doin_core::block::BlockHeader,
    receipt: &BlockReceipt,
    txs: usize,
    how: &str,
) {
    let mine = receipt
        .payouts
        .get(&ctx.account())
        .copied()
        .unwrap_or_default();
    tracing::info!(
        "block {} {how}: {} txs, work {}, minted {}, my reward {}, hash {}",
        header.height,
        txs,
        header.work,
        receipt.minted,
        mine,
        &header.hash().to_hex()[..16]
    );
}
