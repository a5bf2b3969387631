//! What the crate's in-process tests share: a node context on a temporary store.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use doin_core::identity::Keypair;
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::ChainState;
use tokio::sync::{broadcast, Notify};

use crate::blobs::BlobStore;
use crate::context::{now_ms, ChainView, DomainRuntime, NetLink, NodeContext};
use crate::mempool::Mempool;
use crate::storage::Store;

/// A transfer of `amount` from `from` (with `nonce`) to a fixed third account, with a fee any
/// dev chain accepts.
pub(crate) fn transfer(
    ctx: &NodeContext,
    from: &Keypair,
    nonce: u64,
    amount: doin_core::amount::Amount,
) -> doin_core::tx::SignedTx {
    use doin_core::amount::Amount;
    doin_core::tx::TxBody {
        chain_id: ctx.params.chain_id.clone(),
        sender: from.account(),
        nonce,
        fee: doin_core::fee::FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(10),
        },
        kind: doin_core::tx::TxKind::Transfer {
            to: Keypair::from_seed([3; 32]).account(),
            amount,
        },
    }
    .sign(from)
}

/// A node context for `params` with `key`, its chain at genesis in `dir`, working on
/// `domains` (optimizing and evaluating).
pub(crate) async fn context(
    dir: &Path,
    params: ChainParams,
    key: Keypair,
    domains: &[DomainId],
) -> Arc<NodeContext> {
    params.validate().unwrap();
    let (genesis, state) = ChainState::genesis(&params);
    let store = Store::open(&dir.join("chain.db"), 100).await.unwrap();
    store.init(&params, &genesis, &state).await.unwrap();
    let blobs = BlobStore::open(&dir.join("params")).unwrap();
    Arc::new(NodeContext {
        params,
        key,
        store,
        blobs,
        chain: RwLock::new(ChainView {
            state: Arc::new(state),
            tip: genesis.header.clone(),
        }),
        mempool: Mutex::new(Mempool::new(1000)),
        domains: domains
            .iter()
            .map(|id| DomainRuntime {
                id: id.clone(),
                optimize: true,
                evaluate: true,
                target_performance: Some(-1.0),
                converged: AtomicBool::new(false),
                rounds: AtomicU64::new(3),
                search: Mutex::new(None),
            })
            .collect(),
        events: broadcast::channel(64).0,
        new_tx: Notify::new(),
        own_tx: Mutex::new(()),
        node_label: "test-node".into(),
        started_at_ms: now_ms(),
        net: NetLink::default(),
        parked: Default::default(),
        admitted_reveals: broadcast::channel(256).0,
    })
}
