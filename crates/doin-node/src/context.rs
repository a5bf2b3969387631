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
}

impl Default for NetLink {
    fn default() -> Self {
        NetLink {
            writer: tokio::sync::Mutex::new(crate::import::ChainWriter::default()),
            outbound_txs: broadcast::channel(1024).0,
            handle: std::sync::OnceLock::new(),
            peers: std::sync::atomic::AtomicUsize::new(0),
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
        let id = self.submit_from_peer(tx)?;
        // No network, or nobody listening: nothing to announce to.
        let _ = self.net.outbound_txs.send(announce);
        Ok(id)
    }

    /// [`NodeContext::submit`] for a transaction gossiped by a peer: the same checks, but not
    /// announced again (gossip forwards it once the node accepts it).
    pub fn submit_from_peer(&self, tx: SignedTx) -> Result<TxId, SubmitError> {
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
        self.mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx, account_nonce)?;
        self.new_tx.notify_one();
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
