//! What the node's services share: chain parameters, identity, storage, the current chain
//! view, the mempool, per-domain status and the event stream.
//!
//! Only the block producer ([`crate::producer`]) replaces the chain view; everyone else reads
//! it. Reads are cheap: the view holds the state behind an `Arc`, swapped once per block.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use doin_core::amount::Amount;
use doin_core::block::BlockHeader;
use doin_core::fee::suggested_bid;
use doin_core::identity::{AccountId, Keypair};
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::{ApplyError, BlockReceipt, ChainState};
use doin_core::trials::SignedTrialReport;
use doin_core::tx::{SignedTx, TxBody, TxError, TxId, TxKind};
use thiserror::Error;
use tokio::sync::{broadcast, Notify};

use crate::blobs::BlobStore;
use crate::mempool::{Mempool, MempoolError};
use crate::storage::Store;

/// Tip the node adds to its own transactions (commits, reveals, votes).
const OWN_TIP: Amount = Amount(100);

/// The chain as of the latest block.
#[derive(Debug, Clone)]
pub struct ChainView {
    pub state: Arc<ChainState>,
    pub tip: BlockHeader,
}

/// Something that happened, for the roles, the logs and (later) the dashboard.
#[derive(Debug, Clone)]
pub enum ChainEvent {
    Block {
        header: BlockHeader,
        receipt: Arc<BlockReceipt>,
        tx_count: usize,
    },
    /// The node switched to a branch with more work: the `depth` blocks above `fork_height`
    /// were replaced. A `Block` event follows for each block of the new branch.
    Reorg {
        fork_height: u64,
        depth: u64,
        old_tip: doin_core::block::BlockHash,
        new_tip: doin_core::block::BlockHash,
    },
}

/// A domain this node works on, as shown by `/status`.
#[derive(Debug)]
pub struct DomainRuntime {
    pub id: DomainId,
    pub optimize: bool,
    pub evaluate: bool,
    pub target_performance: Option<f64>,
    /// Set once the domain reached its target: the optimizer stops; evaluation goes on.
    pub converged: AtomicBool,
    /// Rounds the local optimizer has run.
    pub rounds: AtomicU64,
    /// The local optimizer's counters after its latest round (`None` before the first), for
    /// `GET /domains`: its levels, surrogate and trial reports at a glance.
    pub search: Mutex<Option<doin_optimizer::EngineStats>>,
}

/// Why a submitted transaction was refused. Nothing changed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SubmitError {
    #[error("invalid transaction: {0}")]
    Invalid(#[from] TxError),
    #[error("transaction does not apply to the current state: {0}")]
    Rejected(#[from] ApplyError),
    #[error("mempool: {0}")]
    Mempool(#[from] MempoolError),
}

impl SubmitError {
    /// Whether the same transaction may be admitted a little later (see
    /// `ApplyError::may_apply_later`; a nonce gap closes when the missing nonce arrives).
    pub fn may_succeed_later(&self) -> bool {
        match self {
            SubmitError::Rejected(e) => e.may_apply_later(),
            SubmitError::Mempool(MempoolError::NonceGap { .. }) => true,
            _ => false,
        }
    }
}

/// Most transactions parked at once (the oldest go first).
pub const MAX_PARKED: usize = 1_024;
/// Blocks a parked transaction waits before it is dropped.
pub const PARK_BLOCKS: u64 = 5;

/// Peers' transactions refused only for now, waiting for a retry. Bounded: at most
/// [`MAX_PARKED`] entries, each for at most [`PARK_BLOCKS`] blocks.
#[derive(Debug, Default)]
pub struct Parked {
    /// (transaction, height when parked), oldest first.
    txs: std::collections::VecDeque<(SignedTx, u64)>,
}

impl Parked {
    fn park(&mut self, tx: SignedTx, height: u64) {
        if self.txs.iter().any(|(t, _)| t == &tx) {
            return;
        }
        if self.txs.len() >= MAX_PARKED {
            self.txs.pop_front();
        }
        self.txs.push_back((tx, height));
    }

    /// Takes the entries to retry now (all, or `sender`'s), in nonce order per sender, with
    /// the height each was parked at; drops the expired ones.
    fn take(&mut self, sender: Option<&AccountId>, height: u64) -> Vec<(SignedTx, u64)> {
        // The common case on every admission: nothing parked for this sender.
        if let Some(s) = sender {
            if !self.txs.iter().any(|(tx, _)| &tx.body.sender == s) {
                return Vec::new();
            }
        }
        self.txs
            .retain(|(_, parked)| height <= parked.saturating_add(PARK_BLOCKS));
        let (mut due, rest): (Vec<_>, Vec<_>) = self
            .txs
            .drain(..)
            .partition(|(tx, _)| sender.is_none_or(|s| &tx.body.sender == s));
        self.txs = rest.into();
        due.sort_by_key(|(tx, _)| (tx.body.sender, tx.body.nonce));
        due
    }

    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }
}

/// Shared by every service of one node.
#[derive(Debug)]
pub struct NodeContext {
    pub params: ChainParams,
    pub key: Keypair,
    pub store: Store,
    pub blobs: BlobStore,
    pub chain: RwLock<ChainView>,
    pub mempool: Mutex<Mempool>,
    pub domains: Vec<DomainRuntime>,
    pub events: broadcast::Sender<ChainEvent>,
    /// Wakes the block producer when a transaction arrives.
    pub new_tx: Notify,
    /// Serializes the node's own transactions (nonce choice, signing, submission).
    pub own_tx: Mutex<()>,
    pub node_label: String,
    pub started_at_ms: u64,
    /// The chain's single writer lock and the link to the peer-to-peer network.
    pub net: NetLink,
    /// Peers' transactions that may apply a little later.
    pub parked: Mutex<Parked>,
    /// Reveals admitted to the mempool (this node's and peers'), for the evaluator role to
    /// measure before their block arrives.
    pub admitted_reveals: broadcast::Sender<SignedTx>,
}

/// What block production, block import and the network service share.
#[derive(Debug)]
pub struct NetLink {
    /// Held while a block is built or imported, stored and made the tip: one writer at a
    /// time, whether the block is this node's or a peer's.
    pub writer: tokio::sync::Mutex<crate::import::ChainWriter>,
    /// Transactions accepted from this node's API and roles, for the network to gossip
    /// (transactions that came from peers are not re-announced: gossip forwards them).
    pub outbound_txs: broadcast::Sender<SignedTx>,
    /// The network service, once started (absent on a node without `p2p.listen`).
    pub handle: std::sync::OnceLock<doin_net::NetHandle>,
    /// Connected peers, kept by the network service (read by `/status` and the metrics).
    pub peers: std::sync::atomic::AtomicUsize,
    /// This node's signed trial reports, for the network to gossip (see
    /// `doin_optimizer::reports`).
    pub outbound_trials: broadcast::Sender<SignedTrialReport>,
    /// Other nodes' trial reports that passed the network's checks, for the optimizer
    /// threads (which read them without blocking; a full queue drops the oldest).
    pub inbound_trials: broadcast::Sender<Arc<SignedTrialReport>>,
}

impl Default for NetLink {
    fn default() -> Self {
        NetLink {
            writer: tokio::sync::Mutex::new(crate::import::ChainWriter::default()),
            outbound_txs: broadcast::channel(1024).0,
            handle: std::sync::OnceLock::new(),
            peers: std::sync::atomic::AtomicUsize::new(0),
            outbound_trials: broadcast::channel(64).0,
            inbound_trials: broadcast::channel(256).0,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl NodeContext {
    pub fn account(&self) -> AccountId {
        self.key.account()
    }

    /// A consistent snapshot of the chain view.
    pub fn view(&self) -> ChainView {
        self.chain.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn domain(&self, id: &DomainId) -> Option<&DomainRuntime> {
        self.domains.iter().find(|d| &d.id == id)
    }

    /// Verifies a transaction, checks it against the state the next block starts from, and
    /// queues it. The same path serves `POST /tx` and the node's own roles.
    pub fn submit(&self, tx: SignedTx) -> Result<TxId, SubmitError> {
        let announce = tx.clone();
        let sender = tx.body.sender;
        let id = self.admit(tx)?;
        self.retry_parked(Some(&sender));
        // No network, or nobody listening: nothing to announce to.
        let _ = self.net.outbound_txs.send(announce);
        Ok(id)
    }

    /// [`NodeContext::submit`] for a transaction gossiped by a peer: the same checks, but not
    /// announced again (gossip forwards it once the node accepts it).
    ///
    /// A transaction refused only for now (a nonce gap, a commitment or reveal still on its
    /// way: gossip does not deliver in order) is also kept aside and retried when the
    /// sender's previous nonce arrives and after each block (see [`Parked`]).
    pub fn submit_from_peer(&self, tx: SignedTx) -> Result<TxId, SubmitError> {
        let sender = tx.body.sender;
        let result = self.admit(tx.clone());
        match &result {
            Ok(_) => self.retry_parked(Some(&sender)),
            Err(e) if e.may_succeed_later() => self
                .parked
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .park(tx, self.view().state.height),
            Err(_) => {}
        }
        result
    }

    /// Retries the parked transactions (of `sender` only, when given): those that now go in
    /// leave the lot, those parked for more than [`PARK_BLOCKS`] blocks are dropped. The
    /// network service calls it after every new tip; an admission calls it for its sender.
    pub fn retry_parked(&self, sender: Option<&AccountId>) {
        let height = self.view().state.height;
        let due = self
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take(sender, height);
        for (tx, parked_at) in due {
            match self.admit(tx.clone()) {
                Ok(_) => {}
                Err(e) if e.may_succeed_later() => self
                    .parked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .park(tx, parked_at),
                Err(_) => {}
            }
        }
    }

    /// The checks and the admission shared by every way in.
    fn admit(&self, tx: SignedTx) -> Result<TxId, SubmitError> {
        let id = tx.verify_stateless(&self.params)?;
        let view = self.view();
        let account_nonce = view.state.account(&tx.body.sender).nonce;
        // Only a sender's next transaction can be checked against the state exactly; later
        // nonces are checked when the block is built. The trial runs outside the mempool
        // lock: it copies the state, and readers of the pool must not wait for that.
        if tx.body.nonce == account_nonce {
            let mut next = view.state.for_next_block();
            next.apply_tx(&self.params, &tx, view.state.height + 1)?;
        }
        let reveal = matches!(tx.body.kind, TxKind::Reveal { .. }).then(|| tx.clone());
        self.mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx, account_nonce)?;
        self.new_tx.notify_one();
        if let Some(reveal) = reveal {
            // Nobody subscribed (no evaluator role): nothing to tell.
            let _ = self.admitted_reveals.send(reveal);
        }
        Ok(id)
    }

    /// Signs and submits a transaction of the node's own, with the next free nonce (after
    /// its pending ones) and a fee bid with headroom over the current base fee.
    pub fn submit_own(&self, kind: TxKind) -> Result<TxId, SubmitError> {
        let _guard = self.own_tx.lock().unwrap_or_else(|e| e.into_inner());
        let view = self.view();
        let me = self.account();
        let mut nonce = view.state.account(&me).nonce;
        {
            let pool = self.mempool.lock().unwrap_or_else(|e| e.into_inner());
            while pool.has_nonce(&me, nonce) {
                nonce += 1;
            }
        }
        let tx = TxBody {
            chain_id: self.params.chain_id.clone(),
            sender: me,
            nonce,
            fee: suggested_bid(view.state.base_fee, OWN_TIP),
            kind,
        }
        .sign(&self.key);
        self.submit(tx)
    }

    pub fn mark_converged(&self, id: &DomainId) {
        if let Some(d) = self.domain(id) {
            d.converged.store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use doin_core::fee::FeeBid;

    use super::*;
    use crate::test_support::transfer;

    fn alice() -> Keypair {
        Keypair::from_seed([2; 32])
    }

    async fn node(dir: &std::path::Path) -> std::sync::Arc<NodeContext> {
        let mut params = ChainParams::dev("parked");
        params.genesis_allocations = vec![(alice().account(), Amount::from_doin(100))];
        crate::test_support::context(dir, params, Keypair::from_seed([1; 32]), &[]).await
    }

    /// Gossip delivers out of order: nonce 1 before nonce 0. The early one waits aside and
    /// goes in as soon as nonce 0 arrives; nothing is lost.
    #[tokio::test]
    async fn a_peer_transaction_ahead_of_its_nonce_waits_and_goes_in_after_the_gap_closes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = node(dir.path()).await;
        let (first, second) = (
            transfer(&ctx, &alice(), 0, Amount(1_000)),
            transfer(&ctx, &alice(), 1, Amount(1_000)),
        );
        let err = ctx.submit_from_peer(second.clone()).unwrap_err();
        assert!(err.may_succeed_later(), "{err}");
        assert_eq!(ctx.parked.lock().unwrap().len(), 1);
        ctx.submit_from_peer(first.clone()).unwrap();
        let pool = ctx.mempool.lock().unwrap();
        assert!(pool.contains(&first.id()) && pool.contains(&second.id()));
        assert!(ctx.parked.lock().unwrap().is_empty());
    }

    /// A refusal that time cannot fix (a forged signature, a replayed nonce) is not kept.
    #[tokio::test]
    async fn permanent_refusals_are_not_parked() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = node(dir.path()).await;
        let mut forged = transfer(&ctx, &alice(), 0, Amount(1_000));
        forged.body.nonce = 5;
        assert!(!ctx
            .submit_from_peer(forged)
            .unwrap_err()
            .may_succeed_later());
        assert!(ctx.parked.lock().unwrap().is_empty());
    }

    /// A parked transaction is retried on every block and dropped after PARK_BLOCKS blocks.
    #[test]
    fn parked_transactions_expire() {
        let key = alice();
        let tx = |nonce| {
            TxBody {
                chain_id: "p".into(),
                sender: key.account(),
                nonce,
                fee: FeeBid {
                    max_fee: Amount(1),
                    tip: Amount(1),
                },
                kind: TxKind::Transfer {
                    to: key.account(),
                    amount: Amount(1),
                },
            }
            .sign(&key)
        };
        let mut parked = Parked::default();
        parked.park(tx(3), 10);
        parked.park(tx(3), 10); // the same one again: kept once
        parked.park(tx(2), 12);
        assert_eq!(parked.len(), 2);
        let due = parked.take(None, 12);
        assert_eq!(
            due.iter().map(|(t, _)| t.body.nonce).collect::<Vec<_>>(),
            vec![2, 3],
            "in nonce order"
        );
        for (t, at) in due {
            parked.park(t, at);
        }
        assert_eq!(
            parked.take(None, 10 + PARK_BLOCKS + 1).len(),
            1,
            "nonce 3 expired"
        );
        for _ in 0..MAX_PARKED + 10 {
            parked.park(tx(parked.len() as u64 + 100), 0);
        }
        assert_eq!(parked.len(), MAX_PARKED, "bounded");
    }
}
