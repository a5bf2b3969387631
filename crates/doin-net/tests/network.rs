//! Real libp2p swarms on loopback: discovery from one bootstrap address, validated gossip,
//! a parameter blob of several MB by request-response, and a peer that sends garbage gets
//! penalized and disconnected while honest traffic goes on, and libp2p's metrics record what
//! happened. Every wait is bounded.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use doin_core::amount::Amount;
use doin_core::fee::FeeBid;
use doin_core::identity::Keypair;
use doin_core::plugin::params_hash;
use doin_core::tx::{TxBody, TxKind};
use doin_core::wire::{GossipMessage, SyncRequest, SyncResponse, Topic};
use doin_net::{Acceptance, Multiaddr, NetConfig, NetEvent, NetHandle, PeerId};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::time::timeout;

const CHAIN: &str = "net-test";
const WAIT: Duration = Duration::from_secs(20);

struct Node {
    handle: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    addr: Multiaddr,
}

async fn node(seed: u8, bootstrap: Vec<Multiaddr>) -> Node {
    node_with(seed, bootstrap, None).await
}

/// A node that records libp2p's metrics into `registry`, if given.
async fn node_with(seed: u8, bootstrap: Vec<Multiaddr>, registry: Option<&mut Registry>) -> Node {
    let mut config = NetConfig::loopback(CHAIN);
    config.bootstrap = bootstrap;
    let key = Keypair::from_seed([seed; 32]);
    let (handle, mut events) = match registry {
        Some(registry) => doin_net::start_with_metrics(&key, config, registry),
        None => doin_net::start(&key, config),
    }
    .unwrap();
    let addr = timeout(WAIT, async {
        loop {
            if let Some(NetEvent::Listening(a)) = events.recv().await {
                return a;
            }
        }
    })
    .await
    .unwrap();
    let addr = addr.with(libp2p_p2p(handle.local_peer_id()));
    Node {
        handle,
        events,
        addr,
    }
}

fn libp2p_p2p(peer: PeerId) -> libp2p::multiaddr::Protocol<'static> {
    libp2p::multiaddr::Protocol::P2p(peer)
}

fn tx(nonce: u64) -> GossipMessage {
    let key = Keypair::from_seed([99; 32]);
    GossipMessage::Tx(Box::new(
        TxBody {
            chain_id: CHAIN.into(),
            sender: key.account(),
            nonce,
            fee: FeeBid {
                max_fee: Amount(1_000),
                tip: Amount(10),
            },
            kind: TxKind::Transfer {
                to: Keypair::from_seed([98; 32]).account(),
                amount: Amount(5),
            },
        }
        .sign(&key),
    ))
}

/// Publishes fresh messages (content-addressed ids: a repeat would be a duplicate) until
/// one reaches `to` (the mesh forms a heartbeat or two after subscribing); `to` accepts it.
async fn publish_until_received(from: &Node, to: &mut Node, first_nonce: u64) -> GossipMessage {
    for nonce in first_nonce..first_nonce + 40 {
        let message = tx(nonce);
        from.handle.publish(&Topic::Txs, &message).await.unwrap();
        let got = timeout(Duration::from_millis(500), async {
            loop {
                match to.events.recv().await {
                    Some(NetEvent::Gossip {
                        message,
                        id,
                        source,
                        ..
                    }) => return Some((message, id, source)),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await;
        if let Ok(Some((got, id, source))) = got {
            to.handle
                .validate(id, source, Acceptance::Accept)
                .await
                .unwrap();
            return got;
        }
    }
    panic!("no message arrived");
}

/// Plays the application of a relay node: accepts every message, so it is forwarded.
fn accept_everything(mut node: Node) -> tokio::task::JoinHandle<Vec<GossipMessage>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(ev) = node.events.recv().await {
            if let NetEvent::Gossip {
                source,
                id,
                message,
                ..
            } = ev
            {
                seen.push(message);
                let _ = node.handle.validate(id, source, Acceptance::Accept).await;
            }
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_find_each_other_from_one_address_and_gossip_validated_messages() {
    let a = node(1, Vec::new()).await;
    let b = node(2, vec![a.addr.clone()]).await;
    let mut c = node(3, vec![a.addr.clone()]).await;
    for n in [&a, &b, &c] {
        n.handle.subscribe(&Topic::Txs).await.unwrap();
    }
    let a_handle = a.handle.clone();
    let relay = accept_everything(a);
    // b and c only know a's address. A message from b reaches c: through a, which forwards
    // only what its application accepted, or directly once peer exchange connected them.
    let got = publish_until_received(&b, &mut c, 0).await;
    assert!(matches!(got, GossipMessage::Tx(_)));
    let b_id = b.handle.local_peer_id();
    let c_peers = timeout(WAIT, async {
        loop {
            let peers = c.handle.peers().await.unwrap();
            if peers.iter().any(|p| p.peer_id == b_id) {
                return peers;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("c discovers b through a (kademlia / identify)");
    assert!(c_peers.iter().all(|p| p.address.is_some()), "{c_peers:?}");
    let a_peers = a_handle.peers().await.unwrap();
    assert_eq!(a_peers.len(), 2, "{a_peers:?}");
    relay.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_several_mb_blob_travels_by_request_response_and_matches_its_hash() {
    let mut a = node(11, Vec::new()).await;
    let b = node(12, vec![a.addr.clone()]).await;
    let blob: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = params_hash(&blob);
    let served = blob.clone();
    let a_handle = a.handle.clone();
    let server = tokio::spawn(async move {
        loop {
            match a.events.recv().await {
                Some(NetEvent::Request { request, reply, .. }) => {
                    let response = match request {
                        SyncRequest::Params { hash: h } if h == hash => {
                            SyncResponse::Params(Some(served.clone()))
                        }
                        SyncRequest::Params { .. } => SyncResponse::Params(None),
                        _ => SyncResponse::Error("not served in this test".into()),
                    };
                    a_handle.respond(reply, response).await.unwrap();
                }
                Some(_) => continue,
                None => return,
            }
        }
    });
    let a_id = a_handle_peer(&b, 11).await;
    let response = timeout(WAIT, b.handle.request(a_id, SyncRequest::Params { hash }))
        .await
        .unwrap()
        .unwrap();
    let SyncResponse::Params(Some(got)) = response else {
        panic!("unexpected {response:?}");
    };
    assert_eq!(params_hash(&got), hash);
    assert_eq!(got.len(), blob.len());
    let missing = b
        .handle
        .request(
            a_id,
            SyncRequest::Params {
                hash: doin_core::hash::Hash32([0; 32]),
            },
        )
        .await
        .unwrap();
    assert_eq!(missing, SyncResponse::Params(None));
    server.abort();
}

/// The peer id of the node made from `seed`, once `node` is connected to it.
async fn a_handle_peer(node: &Node, seed: u8) -> PeerId {
    let want = doin_net::libp2p_keypair(&Keypair::from_seed([seed; 32]))
        .unwrap()
        .public()
        .to_peer_id();
    timeout(WAIT, async {
        loop {
            if node
                .handle
                .peers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.peer_id == want)
            {
                return want;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("connected")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_penalized_and_dropped() {
    let mut honest = node(21, Vec::new()).await;
    let mut liar = node(22, vec![honest.addr.clone()]).await;
    for n in [&honest, &liar] {
        n.handle.subscribe(&Topic::Txs).await.unwrap();
    }
    // First a valid message, so the mesh is up.
    publish_until_received(&liar, &mut honest, 0).await;
    let liar_id = liar.handle.local_peer_id();
    // Then garbage: it never reaches the application, and the sender's score sinks.
    let dropped = timeout(WAIT, async {
        let mut i = 0u8;
        loop {
            let _ = liar
                .handle
                .publish_bytes(&Topic::Txs, vec![0xff, i, 1, 2, 3])
                .await;
            i = i.wrapping_add(1);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let peers = honest.handle.peers().await.unwrap();
            if !peers.iter().any(|p| p.peer_id == liar_id) {
                return;
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the liar is still connected");
    while let Ok(ev) = honest.events.try_recv() {
        assert!(
            !matches!(ev, NetEvent::Gossip { .. }),
            "garbage reached the application: {ev:?}"
        );
    }
    let _ = &mut liar;
}

/// The value of the first sample named `name` whose labels contain every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libp2p_metrics_record_connections_gossip_identify_and_bytes() {
    let mut registry = Registry::with_prefix("doin");
    let mut a = node_with(31, Vec::new(), Some(&mut registry)).await;
    let b = node(32, vec![a.addr.clone()]).await;
    for n in [&a, &b] {
        n.handle.subscribe(&Topic::Txs).await.unwrap();
    }
    publish_until_received(&b, &mut a, 0).await;
    // Every sample that must be there (name, labels that must be among its labels).
    let wanted: &[(&str, &[&str])] = &[
        // a listened and b connected to it.
        ("doin_libp2p_swarm_new_listen_addr_total", &[]),
        (
            "doin_libp2p_swarm_connections_established_total",
            &["role=\"Listener\"", "protocols=\"/ip4/tcp\""],
        ),
        // The message a received.
        ("doin_libp2p_gossipsub_messages_total", &[]),
        // Identify ran over the connection, both ways.
        ("doin_libp2p_identify_received_total", &[]),
        ("doin_libp2p_identify_sent_total", &[]),
        // b entered a's routing table.
        (
            "doin_libp2p_kad_routing_updated_total",
            &["action=\"Added\""],
        ),
        // Bytes counted by the transport, both ways.
        (
            "doin_libp2p_bandwidth_bytes_total",
            &["direction=\"Inbound\""],
        ),
        (
            "doin_libp2p_bandwidth_bytes_total",
            &["direction=\"Outbound\""],
        ),
    ];
    let missing = |text: &str| {
        wanted
            .iter()
            .filter(|(name, labels)| !sample(text, name, labels).is_some_and(|v| v >= 1.0))
            .map(|(name, labels)| format!("{name}{labels:?}"))
            .collect::<Vec<_>>()
    };
    // Some are recorded a moment after the message arrived (identify, the routing table).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let missing = missing(&text);
        if missing.is_empty() {
            assert!(text.trim_end().ends_with("# EOF"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "missing {missing:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
