//! Block import and fork choice: how a peer's block becomes part of this node's chain.
//!
//! - A block that **extends the tip** is re-validated in full
//!   ([`ChainState::apply_block`]) and committed like a block of our own.
//! - A block that builds on **another known block** (an older canonical block or a block of a
//!   side branch) passes the stateless checks (size, signatures, tx root) and waits in
//!   [`SideBlocks`]. When the branch it ends has more cumulative work than the tip (ties: the
//!   lower hash; `doin_core::chain::compare_tips`), the node **reorganizes**: it rebuilds the
//!   state at the fork point from storage, re-executes every block of the branch, and swaps
//!   the stored chain in one database transaction (`Store::reorganize`). State rolls back
//!   exactly because it is rebuilt, never patched: balances, reputation, champions, channels
//!   and pending optimae are whatever the fork point's state and the new blocks make them.
//! - A branch that forks **below the finalized height** is refused, however much work it shows.
//! - The blocks that fell off the chain go to [`SideBlocks`] (the node can switch back), and
//!   their transactions return to the mempool when they still apply.
//!
//! Everything here runs under the chain's writer lock ([`crate::context::NetLink::writer`]),
//! whose guarded value is the [`ChainWriter`]: side blocks cannot be touched without it.

use std::collections::HashMap;
use std::sync::Arc;

use doin_core::block::{Block, BlockError, BlockHash};
use doin_core::chain::{check_reorg, is_better_tip, ReorgError, TipInfo};
use doin_core::state::{BlockReceipt, ChainState};
use thiserror::Error;

use crate::context::{now_ms, ChainEvent, ChainView, NodeContext};
use crate::producer::commit;

/// Most blocks kept off the main chain (side branches and blocks that fell off in a
/// reorganization). The oldest go first.
pub const MAX_SIDE_BLOCKS: usize = 1_024;

/// What the chain's single writer owns besides the right to write.
#[derive(Debug, Default)]
pub struct ChainWriter {
    pub side: SideBlocks,
    /// The tip for which this node's next block became ready, and when (local clock): a
    /// fallback proposer waits its rank's timeouts from then.
    pub ready: Option<(BlockHash, u64)>,
}

/// Blocks known to this node but not on its chain, bounded by [`MAX_SIDE_BLOCKS`].
#[derive(Debug, Default)]
pub struct SideBlocks {
    blocks: HashMap<BlockHash, Block>,
}

impl SideBlocks {
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.blocks.contains_key(hash)
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    fn insert(&mut self, block: Block) {
        while self.blocks.len() >= MAX_SIDE_BLOCKS {
            let Some(oldest) = self
                .blocks
                .iter()
                .min_by_key(|(hash, b)| (b.header.height, **hash))
                .map(|(hash, _)| *hash)
            else {
                break;
            };
            self.blocks.remove(&oldest);
        }
        self.blocks.insert(block.hash(), block);
    }

    fn remove(&mut self, hash: &BlockHash) -> Option<Block> {
        self.blocks.remove(hash)
    }

    /// Forgets the blocks at or below `height` (they can never be switched to).
    fn forget_up_to(&mut self, height: u64) {
        self.blocks.retain(|_, b| b.header.height > height);
    }

    /// The side blocks from the one that builds on a non-side block up to `tip`, oldest
    /// first (`tip` included; it must be a side block).
    fn branch_to(&self, tip: &BlockHash) -> Vec<&Block> {
        let mut branch = Vec::new();
        let mut cursor = *tip;
        while let Some(block) = self.blocks.get(&cursor) {
            branch.push(block);
            cursor = block.header.parent;
        }
        branch.reverse();
        branch
    }
}

/// What became of a peer's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// It extended the tip and is now the tip.
    Extended,
    /// It ends a branch with more work: the node switched to it, dropping `depth` blocks.
    Reorganized { depth: u64 },
    /// It builds on a known block but its branch has no more work than the tip: kept aside.
    Side,
    /// This node already has it.
    Known,
}

/// Why a peer's block was not imported.
#[derive(Debug, Error)]
pub enum ImportError {
    /// The block is invalid: its sender is at fault.
    #[error("invalid block: {0}")]
    Invalid(#[from] BlockError),
    /// The block builds on a block this node does not have: sync first.
    #[error("block {height} builds on {parent}, which this node does not have (tip {tip})")]
    UnknownParent {
        height: u64,
        parent: BlockHash,
        tip: u64,
    },
    /// Its branch leaves the chain below the finalized height: refused for good.
    #[error("block {height}: {source}")]
    BeyondFinality { height: u64, source: ReorgError },
    #[error("storing the block: {0:#}")]
    Storage(anyhow::Error),
}

fn storage(e: impl Into<anyhow::Error>) -> ImportError {
    ImportError::Storage(e.into())
}

/// Imports a peer's block: extends the tip, keeps it on a side branch, or reorganizes to the
/// branch it ends (see the module documentation).
pub async fn import_block(ctx: &Arc<NodeContext>, block: Block) -> Result<Imported, ImportError> {
    let mut writer = ctx.net.writer.lock().await;
    let view = ctx.view();
    let hash = block.hash();
    let header = &block.header;
    if hash == view.state.tip || writer.side.contains(&hash) {
        return Ok(Imported::Known);
    }
    if header.parent == view.state.tip {
        let (block, state, receipt) = validate_on(ctx, Arc::clone(&view.state), block).await?;
        commit(ctx, &block, state, receipt, "imported")
            .await
            .map_err(ImportError::Storage)?;
        writer
            .side
            .forget_up_to(finalized(ctx, block.header.height));
        return Ok(Imported::Extended);
    }
    let height = header.height;
    if height == 0 || canonical_hash(ctx, height).await? == Some(hash) {
        return Ok(Imported::Known);
    }
    let parent_known = writer.side.contains(&header.parent)
        || canonical_hash(ctx, height - 1).await? == Some(header.parent);
    if !parent_known {
        return Err(ImportError::UnknownParent {
            height,
            parent: header.parent,
            tip: view.state.height,
        });
    }
    block.verify_stateless(&ctx.params)?;
    let candidate = TipInfo {
        hash,
        height,
        cumulative_work: header.cumulative_work,
    };
    writer.side.insert(block);

    // The branch this block ends, and where it leaves the chain.
    let branch: Vec<Block> = writer.side.branch_to(&hash).into_iter().cloned().collect();
    let fork_height = branch[0].header.height - 1;
    if canonical_hash(ctx, fork_height).await? != Some(branch[0].header.parent) {
        // It hangs off a block that is no longer on the chain (or never was).
        return Err(ImportError::UnknownParent {
            height: branch[0].header.height,
            parent: branch[0].header.parent,
            tip: view.state.height,
        });
    }
    if let Err(e) = check_reorg(fork_height, view.state.height, ctx.params.finality_depth) {
        for b in &branch {
            writer.side.remove(&b.hash());
        }
        return Err(ImportError::BeyondFinality { height, source: e });
    }
    let current = TipInfo {
        hash: view.state.tip,
        height: view.state.height,
        cumulative_work: view.state.cumulative_work,
    };
    if !is_better_tip(&candidate, &current) {
        return Ok(Imported::Side);
    }
    reorganize(ctx, &mut writer, &view, fork_height, branch).await
}

/// Re-executes `branch` on the state at `fork_height` and, when every block is valid, makes it
/// the chain. The claimed cumulative work was checked on the way (a block whose header lies
/// about it is invalid), so the branch is really better than the tip.
async fn reorganize(
    ctx: &Arc<NodeContext>,
    writer: &mut ChainWriter,
    view: &ChainView,
    fork_height: u64,
    branch: Vec<Block>,
) -> Result<Imported, ImportError> {
    let base = ctx
        .store
        .state_at(&ctx.params, fork_height)
        .await
        .map_err(storage)?;
    let check_ctx = Arc::clone(ctx);
    let (branch, applied) = tokio::task::spawn_blocking(move || {
        let mut state = base;
        let mut applied = Vec::with_capacity(branch.len());
        for (i, block) in branch.iter().enumerate() {
            match state.apply_block(&check_ctx.params, block, Some(now_ms())) {
                Ok((next, receipt)) => {
                    applied.push((block.clone(), next.clone(), receipt));
                    state = next;
                }
                Err(e) => return (branch, Err((i, e))),
            }
        }
        (branch, Ok(applied))
    })
    .await
    .map_err(|e| storage(anyhow::anyhow!("validation task: {e}")))?;
    let applied: Vec<(Block, ChainState, BlockReceipt)> = match applied {
        Ok(applied) => applied,
        Err((bad, e)) => {
            // The invalid block and everything built on it can never be switched to.
            for b in &branch[bad..] {
                writer.side.remove(&b.hash());
            }
            return Err(ImportError::Invalid(e));
        }
    };
    let removed = ctx
        .store
        .reorganize(fork_height, &applied)
        .await
        .map_err(storage)?;
    let depth = removed.len() as u64;
    let Some((last_block, last_state, _)) = applied.last() else {
        return Ok(Imported::Known);
    };
    let new_state = Arc::new(last_state.clone());
    *ctx.chain.write().unwrap_or_else(|e| e.into_inner()) = ChainView {
        state: Arc::clone(&new_state),
        tip: last_block.header.clone(),
    };
    tracing::warn!(
        "reorganized: {depth} blocks above height {fork_height} replaced by {} (new tip {} at {}, was {} at {})",
        applied.len(),
        &last_block.hash().to_hex()[..16],
        last_block.header.height,
        &view.state.tip.to_hex()[..16],
        view.state.height,
    );
    for (block, _, _) in &applied {
        writer.side.remove(&block.hash());
    }
    requeue(ctx, &removed, &applied);
    for block in removed {
        writer.side.insert(block);
    }
    writer.side.forget_up_to(finalized(ctx, new_state.height));
    let _ = ctx.events.send(ChainEvent::Reorg {
        fork_height,
        depth,
        old_tip: view.state.tip,
        new_tip: new_state.tip,
    });
    for (block, _, receipt) in applied {
        let _ = ctx.events.send(ChainEvent::Block {
            header: block.header.clone(),
            receipt: Arc::new(receipt),
            tx_count: block.txs.len(),
        });
    }
    Ok(Imported::Reorganized { depth })
}

/// Puts the transactions of the blocks that fell off back into the mempool (those the new
/// chain did not include and that still apply), then drops what the new chain included.
fn requeue(ctx: &NodeContext, removed: &[Block], applied: &[(Block, ChainState, BlockReceipt)]) {
    let included: std::collections::HashSet<_> = applied
        .iter()
        .flat_map(|(b, _, _)| b.txs.iter().map(doin_core::tx::SignedTx::id))
        .collect();
    let mut back = 0;
    for tx in removed.iter().flat_map(|b| b.txs.iter()) {
        if !included.contains(&tx.id()) && ctx.submit_from_peer(tx.clone()).is_ok() {
            back += 1;
        }
    }
    let state = ctx.view().state;
    ctx.mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .prune(|a| state.account(a).nonce);
    if back > 0 {
        tracing::info!("reorganization: {back} transactions back in the mempool");
    }
}

/// Validates `block` on top of `parent` (off the async runtime).
async fn validate_on(
    ctx: &Arc<NodeContext>,
    parent: Arc<ChainState>,
    block: Block,
) -> Result<(Block, ChainState, BlockReceipt), ImportError> {
    let check_ctx = Arc::clone(ctx);
    let (block, applied) = tokio::task::spawn_blocking(move || {
        let applied = parent.apply_block(&check_ctx.params, &block, Some(now_ms()));
        (block, applied)
    })
    .await
    .map_err(|e| storage(anyhow::anyhow!("validation task: {e}")))?;
    let (state, receipt) = applied?;
    Ok((block, state, receipt))
}

/// The hash of this node's block at `height`, if it has one.
pub async fn canonical_hash(
    ctx: &NodeContext,
    height: u64,
) -> Result<Option<BlockHash>, ImportError> {
    Ok(ctx
        .store
        .hashes(height, height)
        .await
        .map_err(storage)?
        .first()
        .map(|(_, h)| *h))
}

fn finalized(ctx: &NodeContext, tip_height: u64) -> u64 {
    doin_core::chain::finalized_height(tip_height, ctx.params.finality_depth)
}

#[cfg(test)]
mod tests {
    use doin_core::amount::Amount;
    use doin_core::hash::Hash32;
    use doin_core::identity::Keypair;
    use doin_core::params::ChainParams;
    use doin_core::tx::SignedTx;

    use super::*;

    fn node_key() -> Keypair {
        Keypair::from_seed([1; 32])
    }
    fn other_key() -> Keypair {
        Keypair::from_seed([9; 32])
    }
    fn alice() -> Keypair {
        Keypair::from_seed([2; 32])
    }

    /// A dev chain where alice holds 100 DOIN and nobody is bonded (everyone may propose).
    async fn node(dir: &std::path::Path) -> Arc<NodeContext> {
        let mut params = ChainParams::dev("reorg");
        params.genesis_allocations = vec![(alice().account(), Amount::from_doin(100))];
        crate::test_support::context(dir, params, node_key(), &[]).await
    }

    /// Blocks built by `key` on top of `state`, each carrying the matching entry of `txs`.
    fn branch(
        ctx: &NodeContext,
        mut state: ChainState,
        key: &Keypair,
        txs: Vec<Vec<SignedTx>>,
    ) -> (Vec<Block>, ChainState) {
        let mut blocks = Vec::new();
        for block_txs in txs {
            let ts = state.empty_block_allowed_from(&ctx.params);
            let built = state.build_block(&ctx.params, key, ts, block_txs).unwrap();
            blocks.push(built.block);
            state = built.state;
        }
        (blocks, state)
    }

    /// The node's own chain: `txs` blocks produced and committed by the node.
    async fn grow(ctx: &Arc<NodeContext>, txs: Vec<Vec<SignedTx>>) {
        let (blocks, _) = branch(ctx, (*ctx.view().state).clone(), &ctx.key, txs);
        for block in blocks {
            assert_eq!(import_block(ctx, block).await.unwrap(), Imported::Extended);
        }
    }

    #[tokio::test]
    async fn a_branch_with_more_work_replaces_the_tip_and_rolls_the_state_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = node(dir.path()).await;
        let mut events = ctx.events.subscribe();
        grow(&ctx, vec![vec![], vec![]]).await;
        let fork_state = (*ctx.view().state).clone();
        // Our chain moves 5 DOIN at height 3.
        let moved = crate::test_support::transfer(&ctx, &alice(), 0, Amount::from_doin(5));
        grow(&ctx, vec![vec![moved.clone()], vec![], vec![]]).await;
        assert_eq!(ctx.view().state.height, 5);

        // A competing branch from height 2, one block longer, without the transfer.
        let (blocks, expected) = branch(&ctx, fork_state, &other_key(), vec![vec![]; 4]);
        let mut outcomes = Vec::new();
        for block in blocks.clone() {
            outcomes.push(import_block(&ctx, block).await.unwrap());
        }
        assert_eq!(&outcomes[..2], &[Imported::Side, Imported::Side]);
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Imported::Reorganized { depth: 3 })),
            "{outcomes:?}"
        );

        // The state is the branch's, to the last field; storage agrees; the transfer is
        // pending again.
        let view = ctx.view();
        assert_eq!(*view.state, expected);
        assert_eq!(view.tip, blocks[3].header);
        assert_eq!(ctx.store.load_state(&ctx.params).await.unwrap(), expected);
        assert_eq!(
            ctx.store.block_by_height(3).await.unwrap().unwrap().hash(),
            blocks[0].hash()
        );
        assert_eq!(
            view.state.account(&alice().account()).balance,
            Amount::from_doin(100)
        );
        assert!(ctx.mempool.lock().unwrap().contains(&moved.id()));

        let mut reorgs = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let ChainEvent::Reorg {
                fork_height, depth, ..
            } = event
            {
                reorgs.push((fork_height, depth));
            }
        }
        assert_eq!(reorgs, vec![(2, 3)]);

        // The replaced blocks are kept aside: the old branch is known, not invalid.
        let writer = ctx.net.writer.lock().await;
        assert_eq!(writer.side.len(), 3);
    }

    #[tokio::test]
    async fn a_branch_leaving_below_the_finalized_height_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = node(dir.path()).await;
        grow(&ctx, vec![vec![]; 2]).await;
        let fork_state = (*ctx.view().state).clone();
        grow(&ctx, vec![vec![]; 8]).await;
        let tip = ctx.view().tip;
        // Forks at 2; finalized is 10 - 6 = 4. Twelve blocks of "work" change nothing.
        let (blocks, _) = branch(&ctx, fork_state, &other_key(), vec![vec![]; 12]);
        let err = import_block(&ctx, blocks[0].clone()).await.unwrap_err();
        assert!(
            matches!(err, ImportError::BeyondFinality { height: 3, .. }),
            "{err}"
        );
        for block in blocks.into_iter().skip(1) {
            assert!(import_block(&ctx, block).await.is_err());
        }
        assert_eq!(ctx.view().tip, tip);
        assert!(ctx.net.writer.lock().await.side.is_empty());
    }

    #[tokio::test]
    async fn a_branch_with_an_invalid_block_is_dropped_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = node(dir.path()).await;
        grow(&ctx, vec![vec![]; 2]).await;
        let fork_state = (*ctx.view().state).clone();
        grow(&ctx, vec![vec![]; 2]).await;
        let before = ctx.view();
        // A longer branch whose second block lies about its state root (properly signed).
        let (mut blocks, _) = branch(&ctx, fork_state, &other_key(), vec![vec![]; 4]);
        let mut header = blocks[1].header.clone();
        header.state_root = Hash32([7; 32]);
        blocks[1] = Block::seal(header, Vec::new(), &other_key());
        let mut parent = blocks[1].hash();
        for block in &mut blocks[2..] {
            let mut header = block.header.clone();
            header.parent = parent;
            *block = Block::seal(header, Vec::new(), &other_key());
            parent = block.hash();
        }
        let mut outcomes = Vec::new();
        for block in blocks {
            outcomes.push(import_block(&ctx, block).await);
        }
        // Found invalid when the branch is re-executed (when it first outweighs the tip);
        // what builds on the invalid block then has no known parent.
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, Err(ImportError::Invalid(_)))),
            "{outcomes:?}"
        );
        assert!(outcomes
            .iter()
            .all(|o| !matches!(o, Ok(Imported::Extended | Imported::Reorganized { .. }))));
        let after = ctx.view();
        assert_eq!(after.tip, before.tip);
        assert_eq!(*after.state, *before.state);
        assert_eq!(
            ctx.store.tip().await.unwrap(),
            Some((before.tip.height, before.tip.hash()))
        );
    }
}
