//! A hostile peer against a real `doin-node` process: it gossips transactions with forged
//! signatures and blocks with a wrong state root on top of the node's tip, and replays an
//! honest transaction. The node applies none of it, keeps producing its own chain, and
//! drops the peer once its score sinks; the replay is ignored without blame and applied
//! once.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{write_solo_config, Node};
use doin_core::amount::Amount;
use doin_core::block::{Block, BlockHeader};
use doin_core::fee::FeeBid;
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use doin_core::tx::{SignedTx, TxBody, TxKind};
use doin_core::wire::{GossipMessage, Topic};
use doin_net::{Multiaddr, NetConfig, NetEvent};
use serde_json::{json, Value};

fn get(node: &Node, path: &str) -> Value {
    common::get_json(node.port, path)
}

/// A transfer "from" `victim` signed by `forger`: its signature cannot verify.
fn forged_transfer(chain_id: &str, victim: AccountId, forger: &Keypair, nonce: u64) -> SignedTx {
    let mut tx = TxBody {
        chain_id: chain_id.into(),
        sender: forger.account(),
        nonce,
        fee: FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(100),
        },
        kind: TxKind::Transfer {
            to: forger.account(),
            amount: Amount::from_doin(1),
        },
    }
    .sign(forger);
    tx.body.sender = victim;
    tx
}

/// A block on top of the node's tip, signed by `attacker`, whose state root is made up.
fn bad_block(node: &Node, attacker: &Keypair) -> Block {
    let latest = get(node, "/chain/block/latest");
    let tip: BlockHeader = serde_json::from_value(latest["header"].clone()).unwrap();
    let mut header = tip.clone();
    header.height = tip.height + 1;
    header.parent = tip.hash();
    header.timestamp_ms = tip.timestamp_ms + 1_000;
    header.proposer = attacker.account();
    header.state_root = Hash32([0xab; 32]);
    Block::seal(header, Vec::new(), attacker)
}

#[test]
fn forged_transactions_and_bad_blocks_are_rejected_and_the_sender_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&write_solo_config(
        dir.path(),
        json!({
            "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": false},
            "chain": {"solo_mode": true, "target_block_time_ms": 500, "max_block_interval_ms": 1000},
            "domains": []
        }),
    ));
    let addr_file = dir.path().join("data").join("p2p.addr");
    let start = Instant::now();
    while !addr_file.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no p2p.addr");
        std::thread::sleep(Duration::from_millis(50));
    }
    let node_addr: Multiaddr = std::fs::read_to_string(&addr_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = get(&node, "/status");
    let chain_id = status["chain_id"].as_str().unwrap().to_string();
    let node_account = AccountId::from_hex(status["account"].as_str().unwrap()).unwrap();
    let node_key = Keypair::load(&dir.path().join("data").join("identity.key")).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let attacker = Keypair::from_seed([66; 32]);
    let mut config = NetConfig::loopback(&chain_id);
    config.bootstrap = vec![node_addr];
    let (handle, mut events) = runtime
        .block_on(async { doin_net::start(&attacker, config) })
        .unwrap();
    runtime.block_on(async {
        handle.subscribe(&Topic::Blocks).await.unwrap();
        handle.subscribe(&Topic::Txs).await.unwrap();
    });
    // Connected, and the node is in the attacker's mesh (a heartbeat or two).
    let start = Instant::now();
    runtime.block_on(async {
        loop {
            if let Ok(Some(NetEvent::PeerConnected(_))) =
                tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "never connected");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    });

    // An honest transfer, then the same transaction replayed by the attacker.
    let honest = TxBody {
        chain_id: chain_id.clone(),
        sender: node_account,
        nonce: status["pending_nonce"].as_u64().unwrap_or(0),
        fee: FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(100),
        },
        kind: TxKind::Transfer {
            to: attacker.account(),
            amount: Amount::from_doin(2),
        },
    }
    .sign(&node_key);
    let resp = ureq::post(&format!("http://127.0.0.1:{}/tx", node.port))
        .send_json(serde_json::to_value(&honest).unwrap())
        .unwrap();
    assert_eq!(resp.status(), 200);
    let start = Instant::now();
    while get(&node, &format!("/account/{}", attacker.account()))["balance"]
        != Amount::from_doin(2).units()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the honest transfer never landed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Now the attack: replays, forged transactions and bad blocks until the node hangs up.
    let dropped = runtime.block_on(async {
        let start = Instant::now();
        let mut nonce = 0;
        while start.elapsed() < Duration::from_secs(40) {
            let replay = GossipMessage::Tx(Box::new(honest.clone()));
            let _ = handle.publish(&Topic::Txs, &replay).await;
            let forged = forged_transfer(&chain_id, node_account, &attacker, nonce);
            nonce += 1;
            let _ = handle
                .publish(&Topic::Txs, &GossipMessage::Tx(Box::new(forged)))
                .await;
            let block = tokio::task::block_in_place(|| bad_block(&node, &attacker));
            let _ = handle
                .publish(&Topic::Blocks, &GossipMessage::Block(Box::new(block)))
                .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if handle.peers().await.unwrap().is_empty() {
                return true;
            }
        }
        false
    });
    assert!(
        dropped,
        "the node never disconnected the attacker; log:\n{}",
        std::fs::read_to_string(&node.log).unwrap_or_default()
    );

    // Nothing of the attack is on chain: every block is the node's own, the replay did not
    // pay twice, and the node keeps producing.
    let height = get(&node, "/status")["chain_height"].as_u64().unwrap();
    for h in 1..=height {
        let b = get(&node, &format!("/chain/block/{h}"));
        assert_eq!(b["header"]["proposer"], node_account.to_hex(), "block {h}");
    }
    assert_eq!(
        get(&node, &format!("/account/{}", attacker.account()))["balance"],
        Amount::from_doin(2).units()
    );
    let start = Instant::now();
    while get(&node, "/status")["chain_height"].as_u64().unwrap() <= height {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the node stopped producing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.stop();
    assert!(log.contains("invalid block from"), "{log}");
}
