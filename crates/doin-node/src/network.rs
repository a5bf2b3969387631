//! The node on the peer-to-peer network: `doin-net`'s swarm wired to the chain.
//!
//! - **Gossip in**: a transaction goes through the same checks as `POST /tx`
//!   ([`NodeContext::submit_from_peer`]); a block goes through [`crate::import`] (extends the
//!   tip, waits on a side branch, or wins fork choice and reorganizes the chain). The verdict
//!   goes back to gossipsub: only blocks that became the tip are forwarded; invalid ones cost
//!   their sender peer score.
//! - **Gossip out**: blocks this node proposes and transactions it accepted from its API and
//!   roles.
//! - **Sync**: when a peer connects, or announces a block whose parent this node lacks, the
//!   node asks for its status; if the peer's tip is better (fork choice), it fetches the
//!   peer's headers from just above its own finalized height (batches of at most
//!   [`MAX_SYNC_BATCH`]), skips those it already has, and fetches the rest
//!   ([`BLOCKS_PER_REQUEST`] per request), importing every block through the same path as
//!   gossip: a peer on another branch above finality leads to a reorganization once its
//!   branch has more work. One sync runs at a time; a request that arrives meanwhile is
//!   served after it, and a sync that fails goes on with another peer.
//! - **Serving**: status, header ranges, blocks by hash and parameter blobs by hash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use doin_core::block::BlockHash;
use doin_core::chain::{finalized_height, is_better_tip, TipInfo};
use doin_core::config::{NodeConfig, PeerAddr};
use doin_core::trials::SignedTrialReport;
use doin_core::wire::{GossipMessage, SyncRequest, SyncResponse, Topic, MAX_SYNC_BATCH};
use doin_net::{Acceptance, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId};
use tokio::sync::{broadcast, mpsc, watch};

use crate::context::{ChainEvent, NodeContext, SubmitError};
use crate::import::{import_block, ImportError, Imported};

/// Peers one sync round tries, one after another, before giving up until the next trigger.
const MAX_SYNC_PEERS: usize = 8;
/// Blocks asked for in one request (a block is at most 16 MiB; a response at most 65 MiB).
pub const BLOCKS_PER_REQUEST: usize = 64;
/// Most bytes of blocks put into one answer (bounded below the codec's response limit).
const MAX_BLOCKS_ANSWER_BYTES: usize = 48 << 20;

/// The network service, running (its swarm listens, dials and records libp2p's metrics) but
/// not yet wired to the chain: [`open`] makes it, [`start`] wires it.
#[derive(Debug)]
pub struct Opened {
    handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    addr_file: std::path::PathBuf,
}

/// Starts the swarm when the config asks for one (`p2p.listen` or `bootstrap_peers`),
/// recording libp2p's metrics into `registry` (the node's, before it is shared: see
/// [`crate::metrics`]); `None` otherwise. Its events wait (bounded) until [`start`]: no
/// gossip topic is subscribed and no request is answered before.
pub fn open(
    ctx: &NodeContext,
    config: &NodeConfig,
    registry: &mut prometheus_client::registry::Registry,
) -> anyhow::Result<Option<Opened>> {
    if config.p2p.listen.is_empty() && config.bootstrap_peers.is_empty() {
        return Ok(None);
    }
    let listen = if config.p2p.listen.is_empty() {
        vec!["/ip4/0.0.0.0/tcp/0".to_string()]
    } else {
        config.p2p.listen.clone()
    };
    let listen = listen
        .iter()
        .map(|a| {
            a.parse::<Multiaddr>()
                .with_context(|| format!("p2p.listen: {a:?} is not a multiaddr"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bootstrap = config
        .bootstrap_peers
        .iter()
        .map(bootstrap_addr)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let net_config = NetConfig {
        chain_id: ctx.params.chain_id.clone(),
        listen,
        bootstrap,
        mdns: config.p2p.mdns,
        max_peers: config.p2p.max_peers as usize,
        heartbeat: Duration::from_secs_f64(config.gossip_heartbeat_interval.clamp(0.05, 60.0)),
        request_timeout: Duration::from_secs(30),
    };
    let addr_file = config.data_dir.join("p2p.addr");
    let _ = std::fs::remove_file(&addr_file);
    let (handle, events) = doin_net::start_with_metrics(&ctx.key, net_config, registry)?;
    Ok(Some(Opened {
        handle,
        events,
        addr_file,
    }))
}

/// Wires an [`open`]ed network to the chain: subscribes to the chain's topics (and the
/// configured domains') and spawns the tasks that handle gossip, sync and requests.
pub async fn start(
    opened: Opened,
    ctx: Arc<NodeContext>,
    config: &NodeConfig,
    metrics: Arc<crate::metrics::Metrics>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Opened {
        handle,
        events,
        addr_file,
    } = opened;
    let _ = ctx.net.handle.set(handle.clone());
    handle.subscribe(&Topic::Blocks).await?;
    handle.subscribe(&Topic::Txs).await?;
    for d in &config.domains {
        handle
            .subscribe(&Topic::Domain(d.domain_id.clone()))
            .await?;
        // Other islands' trainings feed this node's optimizer only.
        if ctx.domain(&d.domain_id).is_some_and(|r| r.optimize) {
            handle
                .subscribe(&Topic::Trials(d.domain_id.clone()))
                .await?;
        }
    }
    tracing::info!("network: peer id {}", handle.local_peer_id());
    let service = Arc::new(Service {
        ctx,
        metrics,
        handle,
        syncing: AtomicBool::new(false),
        sync_wanted: std::sync::Mutex::new(None),
        addr_file,
    });
    tokio::spawn(Arc::clone(&service).inbound(events, stop.clone()));
    tokio::spawn(Arc::clone(&service).outbound(stop));
    Ok(())
}

/// A bootstrap peer as a multiaddr: `host:port` becomes `/ip4|ip6|dns/host/tcp/port`.
fn bootstrap_addr(peer: &PeerAddr) -> anyhow::Result<Multiaddr> {
    let text = match peer {
        PeerAddr::Multiaddr(m) => m.clone(),
        PeerAddr::HostPort { host, port } => {
            let proto = match host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(_)) => "ip4",
                Ok(std::net::IpAddr::V6(_)) => "ip6",
                Err(_) => "dns",
            };
            format!("/{proto}/{}/tcp/{port}", host.trim_matches(['[', ']']))
        }
    };
    text.parse()
        .with_context(|| format!("bootstrap_peers: {text:?} is not a usable address"))
}

struct Service {
    ctx: Arc<NodeContext>,
    metrics: Arc<crate::metrics::Metrics>,
    handle: NetHandle,
    syncing: AtomicBool,
    /// A peer that asked for a sync while one was running (the latest one).
    sync_wanted: std::sync::Mutex<Option<PeerId>>,
    addr_file: std::path::PathBuf,
}

impl Service {
    async fn inbound(
        self: Arc<Self>,
        mut events: mpsc::Receiver<NetEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(e) => e,
                    None => return,
                },
                _ = stop.changed() => return,
            };
            match event {
                NetEvent::Listening(addr) => self.listening(addr),
                NetEvent::PeerConnected(peer) => {
                    self.ctx.net.peers.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("network: connected to {peer}");
                    self.spawn_sync(peer);
                }
                NetEvent::PeerDisconnected(peer) => {
                    let _ = self.ctx.net.peers.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| n.checked_sub(1),
                    );
                    tracing::info!("network: disconnected from {peer}");
                }
                NetEvent::Gossip {
                    source,
                    id,
                    message,
                    topic,
                } => {
                    let service = Arc::clone(&self);
                    tokio::spawn(async move {
                        let verdict = service.on_gossip(source, message).await;
                        let kind = if topic.contains("/blocks/") {
                            "blocks"
                        } else if topic.contains("/txs/") {
                            "txs"
                        } else if topic.contains("/trials/") {
                            "trials"
                        } else {
                            "domain"
                        };
                        let result = match verdict {
                            Acceptance::Accept => "accepted",
                            Acceptance::Reject => "rejected",
                            Acceptance::Ignore => "ignored",
                        };
                        service.metrics.record_gossip(kind, result);
                        let _ = service.handle.validate(id, source, verdict).await;
                    });
                }
                NetEvent::Request { request, reply, .. } => {
                    let service = Arc::clone(&self);
                    tokio::spawn(async move {
                        let response = service.answer(request).await;
                        let _ = service.handle.respond(reply, response).await;
                    });
                }
            }
        }
    }

    /// Publishes the first listen address, with the peer id, for operators and tests.
    fn listening(&self, addr: Multiaddr) {
        let full = addr.with(libp2p_p2p(self.handle.local_peer_id()));
        tracing::info!("network: listening on {full}");
        // The first address is the one to publish (removed at start, so never stale).
        if !self.addr_file.exists() {
            if let Err(e) = std::fs::write(&self.addr_file, format!("{full}\n")) {
                tracing::warn!("network: writing {}: {e}", self.addr_file.display());
            }
        }
    }

    async fn on_gossip(self: &Arc<Self>, source: PeerId, message: GossipMessage) -> Acceptance {
        match message {
            GossipMessage::Trials(report) => self.on_trials(source, *report),
            GossipMessage::Tx(tx) => {
                let ctx = Arc::clone(&self.ctx);
                let submitted =
                    tokio::task::spawn_blocking(move || ctx.submit_from_peer(*tx)).await;
                match submitted {
                    Ok(Ok(_)) => Acceptance::Accept,
                    // Forged, malformed, for another chain, or provably dishonest (a vote from
                    // outside the quorum): the sender is at fault.
                    Ok(Err(SubmitError::Invalid(_))) => Acceptance::Reject,
                    Ok(Err(SubmitError::Rejected(e))) if e.is_misbehaviour() => Acceptance::Reject,
                    // Valid but not now (nonce, balance, duplicate, full pool): no blame.
                    Ok(Err(_)) | Err(_) => Acceptance::Ignore,
                }
            }
            GossipMessage::Block(block) => match import_block(&self.ctx, *block).await {
                Ok(Imported::Extended | Imported::Reorganized { .. }) => Acceptance::Accept,
                // A side block is only checked statelessly: not forwarded.
                Ok(Imported::Known | Imported::Side) => Acceptance::Ignore,
                Err(e @ ImportError::BeyondFinality { .. }) => {
                    tracing::info!("network: block from {source} refused: {e}");
                    Acceptance::Ignore
                }
                Err(ImportError::UnknownParent { .. }) => {
                    self.spawn_sync(source);
                    Acceptance::Ignore
                }
                Err(ImportError::Invalid(e)) => {
                    tracing::warn!("network: invalid block from {source}: {e}");
                    Acceptance::Reject
                }
                Err(e @ ImportError::Storage(_)) => {
                    tracing::error!("network: {e}");
                    Acceptance::Ignore
                }
            },
        }
    }

    /// Another island's trial report: forwarded (and handed to this node's optimizer) when it
    /// is well formed, signed by its reporter, for a domain this node optimizes, and from a
    /// bonded evaluator of that domain (a new identity costs a bond, so reports cannot be
    /// flooded from throwaway keys). The optimizer spot-checks the trials itself.
    fn on_trials(&self, source: PeerId, report: SignedTrialReport) -> Acceptance {
        if let Err(e) = report.verify(&self.ctx.params.chain_id) {
            tracing::debug!("network: invalid trial report from {source}: {e}");
            return Acceptance::Reject;
        }
        let r = &report.report;
        let optimized = self.ctx.domain(&r.domain).is_some_and(|d| d.optimize);
        if r.reporter == self.ctx.account() || !optimized {
            return Acceptance::Ignore;
        }
        let bonded = self
            .ctx
            .view()
            .state
            .evaluators
            .get(&r.domain)
            .is_some_and(|bonds| bonds.contains_key(&r.reporter));
        if !bonded {
            // Perhaps registering right now: no blame, but not forwarded either.
            return Acceptance::Ignore;
        }
        let _ = self.ctx.net.inbound_trials.send(Arc::new(report));
        Acceptance::Accept
    }

    /// Syncs from `peer` unless a sync is running; then the request is remembered and served
    /// when the running sync ends. A sync that fails goes on with another connected peer (at
    /// most [`MAX_SYNC_PEERS`] per round), from wherever this node's chain stands: a sync is
    /// resumable because it always starts from the local tip.
    fn spawn_sync(self: &Arc<Self>, peer: PeerId) {
        if self.syncing.swap(true, Ordering::AcqRel) {
            *self.sync_wanted.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
            return;
        }
        let service = Arc::clone(self);
        tokio::spawn(async move {
            let mut next = Some(peer);
            let mut tried = Vec::new();
            while let Some(peer) = next.take() {
                tried.push(peer);
                match service.sync_from(peer).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("network: synced {n} blocks from {peer}"),
                    Err(e) => {
                        tracing::warn!("network: sync from {peer} stopped: {e:#}");
                        if tried.len() < MAX_SYNC_PEERS {
                            let peers = service.handle.peers().await.unwrap_or_default();
                            next = peers
                                .into_iter()
                                .map(|p| p.peer_id)
                                .find(|p| !tried.contains(p));
                        }
                    }
                }
                if next.is_none() {
                    next = service
                        .sync_wanted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take();
                    if next.is_some() {
                        tried.clear();
                    }
                }
            }
            service.syncing.store(false, Ordering::Release);
            // A request that slipped in between the last check and the store above.
            let late = service
                .sync_wanted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(peer) = late {
                service.spawn_sync(peer);
            }
        });
    }

    /// Fetches and imports `peer`'s chain where it is better than this node's; returns the
    /// blocks imported.
    async fn sync_from(&self, peer: PeerId) -> anyhow::Result<u64> {
        let mut imported = 0;
        // Where the next header batch starts while our tip stays the same.
        let mut resume: Option<(BlockHash, u64, BlockHash)> = None;
        loop {
            let SyncResponse::Status {
                height,
                tip,
                cumulative_work,
            } = self.handle.request(peer, SyncRequest::Status).await?
            else {
                anyhow::bail!("unexpected answer to a status request");
            };
            let mine = self.ctx.view();
            let theirs = TipInfo {
                hash: tip,
                height,
                cumulative_work,
            };
            let ours = TipInfo {
                hash: mine.state.tip,
                height: mine.state.height,
                cumulative_work: mine.state.cumulative_work,
            };
            if !is_better_tip(&theirs, &ours) {
                return Ok(imported);
            }
            // Headers from just above our finalized height: the peer's branch must contain
            // our finalized block, and everything above it may differ. While our tip stays
            // the same (the peer's branch has not overtaken it yet), the next batch goes on
            // where the last one ended.
            let finalized = finalized_height(mine.state.height, self.ctx.params.finality_depth);
            let (from, mut parent) = match resume {
                Some((tip, next, parent)) if tip == mine.state.tip => (next, parent),
                _ => {
                    let hash = self
                        .ctx
                        .store
                        .hashes(finalized, finalized)
                        .await?
                        .first()
                        .map(|(_, h)| *h)
                        .context("our finalized block is missing")?;
                    (finalized + 1, hash)
                }
            };
            anyhow::ensure!(
                height >= from,
                "the peer's chain (tip {height}) does not reach height {from} above our finalized {finalized}"
            );
            let count = u32::try_from((height - from + 1).min(u64::from(MAX_SYNC_BATCH)))
                .unwrap_or(MAX_SYNC_BATCH);
            let SyncResponse::Headers(headers) = self
                .handle
                .request(peer, SyncRequest::Headers { from, count })
                .await?
            else {
                anyhow::bail!("unexpected answer to a headers request");
            };
            anyhow::ensure!(!headers.is_empty(), "the peer sent no headers from {from}");
            anyhow::ensure!(
                headers.len() <= count as usize,
                "the peer sent {} headers for {count} asked",
                headers.len()
            );
            // The headers must chain from our finalized block (or the last batch); the blocks
            // are validated in full on import.
            for (i, h) in headers.iter().enumerate() {
                anyhow::ensure!(
                    h.height == from + i as u64 && h.parent == parent,
                    "the peer's chain leaves ours below our finalized height, or does not chain (height {})",
                    from + i as u64
                );
                parent = h.hash();
            }
            resume = Some((mine.state.tip, from + headers.len() as u64, parent));
            // Skip what we already have, on the chain or aside.
            let last = from + headers.len() as u64 - 1;
            let mut have: std::collections::HashSet<_> = self
                .ctx
                .store
                .hashes(from, last)
                .await?
                .into_iter()
                .map(|(_, h)| h)
                .collect();
            {
                let writer = self.ctx.net.writer.lock().await;
                have.extend(
                    headers
                        .iter()
                        .map(|h| h.hash())
                        .filter(|h| writer.side.contains(h)),
                );
            }
            let hashes: Vec<_> = headers
                .iter()
                .map(|h| h.hash())
                .filter(|h| !have.contains(h))
                .collect();
            let before = mine.state.tip;
            let mut progress = false;
            for chunk in hashes.chunks(BLOCKS_PER_REQUEST) {
                let SyncResponse::Blocks(blocks) = self
                    .handle
                    .request(
                        peer,
                        SyncRequest::Blocks {
                            hashes: chunk.to_vec(),
                        },
                    )
                    .await?
                else {
                    anyhow::bail!("unexpected answer to a blocks request");
                };
                anyhow::ensure!(!blocks.is_empty(), "the peer sent no blocks");
                for (block, want) in blocks.into_iter().zip(chunk) {
                    anyhow::ensure!(&block.hash() == want, "the peer sent a block not asked for");
                    match import_block(&self.ctx, block).await {
                        Ok(Imported::Extended | Imported::Reorganized { .. }) => {
                            imported += 1;
                            progress = true;
                        }
                        Ok(Imported::Side) => progress = true,
                        Ok(Imported::Known) => {}
                        Err(e) => return Err(e).context("importing a synced block"),
                    }
                }
            }
            anyhow::ensure!(
                progress || hashes.is_empty() || self.ctx.view().state.tip != before,
                "the peer's blocks did not change anything"
            );
            anyhow::ensure!(
                last < height || self.ctx.view().state.tip != before,
                "the peer claims a better tip than its blocks show"
            );
        }
    }

    async fn answer(&self, request: SyncRequest) -> SyncResponse {
        let store = &self.ctx.store;
        let result: anyhow::Result<SyncResponse> = async {
            Ok(match request {
                SyncRequest::Status => {
                    let view = self.ctx.view();
                    SyncResponse::Status {
                        height: view.state.height,
                        tip: view.state.tip,
                        cumulative_work: view.state.cumulative_work,
                    }
                }
                SyncRequest::Headers { from, count } => {
                    let count = u64::from(count.min(MAX_SYNC_BATCH));
                    let to = from.saturating_add(count.saturating_sub(1));
                    let blocks = store.blocks(from, to).await?;
                    SyncResponse::Headers(blocks.into_iter().map(|b| b.header).collect())
                }
                SyncRequest::Blocks { hashes } => {
                    let mut blocks = Vec::new();
                    let mut bytes = 0;
                    for hash in hashes.iter().take(MAX_SYNC_BATCH as usize) {
                        let Some(block) = store.block_by_hash(hash).await? else {
                            break;
                        };
                        bytes += block.to_wire().len();
                        if bytes > MAX_BLOCKS_ANSWER_BYTES && !blocks.is_empty() {
                            break;
                        }
                        blocks.push(block);
                    }
                    SyncResponse::Blocks(blocks)
                }
                SyncRequest::Params { hash } => SyncResponse::Params(self.ctx.blobs.get(&hash)?),
            })
        }
        .await;
        result.unwrap_or_else(|e| {
            tracing::warn!("network: answering a request: {e:#}");
            SyncResponse::Error("internal error".into())
        })
    }

    /// Peers' transactions parked as "not yet" get another try after a new tip (off the
    /// writer lock and the async threads: each try checks the transaction against a copy of
    /// the state).
    fn retry_parked(&self) {
        let ctx = Arc::clone(&self.ctx);
        tokio::task::spawn_blocking(move || ctx.retry_parked(None));
    }

    async fn outbound(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut blocks = self.ctx.events.subscribe();
        let mut txs = self.ctx.net.outbound_txs.subscribe();
        let mut trials = self.ctx.net.outbound_trials.subscribe();
        let me = self.ctx.account();
        loop {
            tokio::select! {
                event = blocks.recv() => {
                    if matches!(event, Ok(ChainEvent::Block { .. }) | Err(broadcast::error::RecvError::Lagged(_))) {
                        self.retry_parked();
                    }
                    match event {
                    Ok(ChainEvent::Block { header, .. }) if header.proposer == me => {
                        match self.ctx.store.block_by_height(header.height).await {
                            Ok(Some(block)) => {
                                let message = GossipMessage::Block(Box::new(block));
                                if let Err(e) = self.handle.publish(&Topic::Blocks, &message).await {
                                    tracing::warn!("network: announcing block {}: {e}", header.height);
                                }
                            }
                            Ok(None) => {}
                            Err(e) => tracing::warn!("network: reading block {}: {e}", header.height),
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                    }
                },
                tx = txs.recv() => match tx {
                    Ok(tx) => {
                        let state = self.ctx.view().state;
                        let topic = Topic::for_tx(&tx, |c| state.optimae.get(c).map(|p| p.domain.clone()));
                        let message = GossipMessage::Tx(Box::new(tx));
                        if let Err(e) = self.handle.publish(&topic, &message).await {
                            tracing::debug!("network: announcing a transaction: {e}");
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("network: {n} transactions were not announced (queue full)");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                report = trials.recv() => match report {
                    Ok(report) => {
                        let topic = Topic::Trials(report.report.domain.clone());
                        let message = GossipMessage::Trials(Box::new(report));
                        if let Err(e) = self.handle.publish(&topic, &message).await {
                            tracing::debug!("network: announcing a trial report: {e}");
                        }
                    }
                    // Reports are advisory: a dropped one only means fewer records elsewhere.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.changed() => return,
            }
        }
    }
}

fn libp2p_p2p(peer: PeerId) -> doin_net::Protocol<'static> {
    doin_net::Protocol::P2p(peer)
}

/// Makes sure the blob store holds the parameter blob `hash`: if it does not, asks the
/// connected peers one after another (by request-response; model weights never travel by
/// gossip) and keeps the first answer that hashes to `hash` within `max_bytes`. Returns
/// whether the blob is there now. Without networking, only the local store counts.
pub async fn ensure_params(
    ctx: &NodeContext,
    hash: &doin_core::hash::Hash32,
    max_bytes: u64,
) -> bool {
    if ctx.blobs.contains(hash) {
        return true;
    }
    let Some(handle) = ctx.net.handle.get() else {
        return false;
    };
    let Ok(peers) = handle.peers().await else {
        return false;
    };
    for peer in peers {
        match handle
            .request(peer.peer_id, SyncRequest::Params { hash: *hash })
            .await
        {
            Ok(SyncResponse::Params(Some(bytes))) => {
                if doin_core::plugin::params_hash(&bytes) != *hash {
                    tracing::warn!(
                        "network: {} sent parameters that do not match {hash}",
                        peer.peer_id
                    );
                    continue;
                }
                match ctx.blobs.put(&bytes, max_bytes) {
                    Ok(_) => {
                        tracing::info!(
                            "network: fetched parameters {} ({} bytes) from {}",
                            &hash.to_hex()[..12],
                            bytes.len(),
                            peer.peer_id
                        );
                        return true;
                    }
                    Err(e) => tracing::warn!("network: storing parameters {hash}: {e}"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("network: asking {} for parameters: {e}", peer.peer_id),
        }
    }
    false
}
