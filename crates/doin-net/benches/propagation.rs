//! Gossip propagation across in-process nodes on loopback: how long a block-sized message
//! takes from its publisher to every other node, each hop waiting for its application's
//! verdict (as a node validating blocks does, here with an instant "accept").
//!
//! `cargo bench -p doin-net --bench propagation` (NODES, MESSAGES, PAYLOAD_KB env vars).
//! Prints p50, p99 and max over all (message, receiving node) pairs. Goal: p99 < 500 ms.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use doin_core::identity::Keypair;
use doin_core::wire::{GossipMessage, Topic};
use doin_net::{Acceptance, NetConfig, NetEvent, NetHandle};
use libp2p::multiaddr::Protocol;

const CHAIN: &str = "bench";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A message: a signed transfer padded into a block-sized payload would not decode, so the
/// payload is a real transaction whose memo-free body is repeated through distinct nonces;
/// `PAYLOAD_KB` pads with a batch of them encoded as a block.
fn message(nonce: u64, txs_per_message: usize) -> GossipMessage {
    use doin_core::amount::Amount;
    use doin_core::fee::FeeBid;
    use doin_core::tx::{TxBody, TxKind};
    let key = Keypair::from_seed([7; 32]);
    let txs: Vec<_> = (0..txs_per_message as u64)
        .map(|i| {
            TxBody {
                chain_id: CHAIN.into(),
                sender: key.account(),
                nonce: nonce * 10_000 + i,
                fee: FeeBid {
                    max_fee: Amount(1_000),
                    tip: Amount(1),
                },
                kind: TxKind::Transfer {
                    to: key.account(),
                    amount: Amount(1),
                },
            }
            .sign(&key)
        })
        .collect();
    let params = doin_core::params::ChainParams::dev(CHAIN);
    let (genesis, _) = doin_core::state::ChainState::genesis(&params);
    let mut header = genesis.header.clone();
    header.height = nonce + 1;
    GossipMessage::Block(Box::new(doin_core::block::Block::seal(header, txs, &key)))
}

fn main() {
    let nodes = env("NODES", 20);
    let messages = env("MESSAGES", 30);
    let txs_per_message = env("TXS_PER_MESSAGE", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let arrivals: Arc<Mutex<HashMap<Vec<u8>, Vec<Instant>>>> = Arc::default();
        let mut handles: Vec<NetHandle> = Vec::new();
        let mut first_addr: Option<libp2p::Multiaddr> = None;
        for i in 0..nodes {
            let mut config = NetConfig::loopback(CHAIN);
            // Each node knows the first node and its predecessor: a connected graph that
            // peer exchange fills in.
            if let Some(a) = &first_addr {
                config.bootstrap.push(a.clone());
            }
            if let Some(prev) = handles.last() {
                let prev: &NetHandle = prev;
                for a in prev.listen_addrs().await.expect("addrs") {
                    config.bootstrap.push(a.with(Protocol::P2p(prev.local_peer_id())));
                }
            }
            let key = Keypair::from_seed([i as u8 + 1; 32]);
            let (handle, mut events) = doin_net::start(&key, config).expect("start");
            let addr = loop {
                if let Some(NetEvent::Listening(a)) = events.recv().await {
                    break a.with(Protocol::P2p(handle.local_peer_id()));
                }
            };
            first_addr.get_or_insert(addr);
            handle.subscribe(&Topic::Blocks).await.expect("subscribe");
            let (h, arrivals) = (handle.clone(), Arc::clone(&arrivals));
            tokio::spawn(async move {
                while let Some(ev) = events.recv().await {
                    if let NetEvent::Gossip { source, id, .. } = ev {
                        arrivals.lock().expect("lock").entry(id.0.clone()).or_default().push(Instant::now());
                        let _ = h.validate(id, source, Acceptance::Accept).await;
                    }
                }
            });
            handles.push(handle);
        }
        // Let the mesh form (a few heartbeats).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let size = message(0, txs_per_message).to_wire().len();
        let mut latencies = Vec::new();
        let mut incomplete = 0;
        for m in 0..messages {
            let publisher = &handles[m % nodes];
            let msg = message(m as u64, txs_per_message);
            let id = blake3::hash(&msg.to_wire()).as_bytes().to_vec();
            let sent = Instant::now();
            publisher.publish(&Topic::Blocks, &msg).await.expect("publish");
            let deadline = sent + Duration::from_secs(5);
            loop {
                let n = arrivals.lock().expect("lock").get(&id).map_or(0, Vec::len);
                if n >= nodes - 1 || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let times = arrivals.lock().expect("lock").remove(&id).unwrap_or_default();
            if times.len() < nodes - 1 {
                incomplete += 1;
            }
            latencies.extend(times.iter().map(|t| t.duration_since(sent)));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        latencies.sort();
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize];
        println!(
            "gossip propagation, {nodes} in-process nodes, {messages} messages of {} KB: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} deliveries; {incomplete} messages missed a node (goal p99 < 500 ms)",
            size / 1024,
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            latencies.len(),
        );
    });
}
