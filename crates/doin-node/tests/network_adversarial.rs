//! A hostile peer against a real `doin-node` process.
//!
//! - It gossips transactions with forged signatures and blocks with a wrong state root or a
//!   reward it paid itself on top of the node's tip, and replays an honest transaction. The node applies none of it,
//!   keeps producing its own chain, and drops the peer once its score sinks; the replay is
//!   ignored without blame and applied once.
//! - It attacks the optimae lifecycle: a fake performance claim, a withheld reveal and a vote
//!   from outside the quorum. Each costs it stake, reputation or peer score; nobody is crowned.

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
use doin_core::wire::{GossipMessage, SyncRequest, SyncResponse, Topic};
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

/// An empty block on top of the node's tip, signed by `attacker`, right in every header field
/// up to the one it lies about: a made-up state root, or (with `greedy`) twice the reward.
/// The next difficulty and base fee come from the node's API, read at one height.
fn bad_block(node: &Node, attacker: &Keypair, greedy: bool) -> Block {
    let (tip, difficulty, base_fee) = loop {
        let latest = get(node, "/chain/block/latest");
        let difficulty = get(node, "/chain/difficulty");
        let status = get(node, "/status");
        let tip: BlockHeader = serde_json::from_value(latest["header"].clone()).unwrap();
        if difficulty["height"] == tip.height && status["chain_height"] == tip.height {
            let base_fee: Amount = serde_json::from_value(status["base_fee"].clone()).unwrap();
            break (tip, difficulty["threshold"].as_u64().unwrap(), base_fee);
        }
    };
    let mut header = tip.clone();
    header.height = tip.height + 1;
    header.parent = tip.hash();
    header.timestamp_ms = tip.timestamp_ms + 1_000;
    header.proposer = attacker.account();
    header.tx_root = doin_core::hash::merkle_root(&[]);
    header.work = 0;
    header.difficulty = difficulty;
    header.base_fee = base_fee;
    header.cumulative_work = tip.cumulative_work + 1;
    // An empty block without verdicts mints what the tip minted (the test chain has no
    // domains, so no block carries verdicts).
    if greedy {
        header.minted = Amount(tip.minted.0 * 2);
    } else {
        header.state_root = Hash32([0xab; 32]);
    }
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
            let block = tokio::task::block_in_place(|| bad_block(&node, &attacker, nonce % 2 == 0));
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
    assert!(log.contains("minted: header says"), "{log}");
    assert!(log.contains("state_root: header says"), "{log}");
}

/// `GET /tx/{id}`'s status (`pending`, `confirmed`), or `unknown` for a 404.
fn tx_status(node: &Node, id: &str) -> String {
    match ureq::get(&format!("http://127.0.0.1:{}/tx/{id}", node.port)).call() {
        Ok(resp) => resp.into_json::<Value>().unwrap()["status"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        Err(ureq::Error::Status(404, _)) => "unknown".into(),
        Err(e) => panic!("GET /tx/{id}: {e}"),
    }
}

/// Signs a transaction of the attacker's with `nonce` and a fee it can pay.
fn attacker_tx(chain_id: &str, attacker: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
    TxBody {
        chain_id: chain_id.into(),
        sender: attacker.account(),
        nonce,
        fee: FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(100),
        },
        kind,
    }
    .sign(attacker)
}

/// The optimae attacks of a hostile peer, over gossip against a real node: a commitment
/// revealed with a fake performance claim, a commitment never revealed, and a vote from an
/// account its quorum did not draw. The node's evaluator fetches the revealed parameters from
/// the attacker by hash and measures them. The fake claim is rejected and part of its stake
/// burned, the withheld reveal expires with the same burn, the attacker earns no reputation,
/// the vote is refused as misbehaviour (it costs peer score), and no champion is crowned.
#[test]
fn optimae_attacks_from_a_peer_cost_the_attacker_and_crown_nobody() {
    let dir = tempfile::tempdir().unwrap();
    // Blocks at least 1.5 s apart: the attacker's vote arrives while its optimae is still
    // open (the node's own vote decides it in the block after the reveal).
    let node = Node::start(&write_solo_config(
        dir.path(),
        json!({
            "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": false},
            "chain": {"solo_mode": true, "target_block_time_ms": 1500, "max_block_interval_ms": 3000},
            "domains": [{
                "domain_id": "quadratic", "optimize": false, "evaluate": true,
                "optimization_plugin": "quadratic", "target_performance": -5.0,
                "optimization_config": {"n_params": 4, "step_size": 0.5}
            }]
        }),
    ));
    let addr_file = dir.path().join("data").join("p2p.addr");
    common::wait_for("the node's p2p address", Duration::from_secs(30), || {
        addr_file.exists()
    });
    let node_addr: Multiaddr = std::fs::read_to_string(&addr_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let status = get(&node, "/status");
    let chain_id = status["chain_id"].as_str().unwrap().to_string();
    let node_key = Keypair::load(&dir.path().join("data").join("identity.key")).unwrap();
    let params = get(&node, "/chain/params");
    let min_stake = Amount(params["domains"][0]["min_stake"].as_u64().unwrap());
    let burn_percent = params["stake_burn_percent"].as_u64().unwrap();
    let quadratic = doin_core::params::DomainId::new("quadratic").unwrap();
    let domain_topic = Topic::Domain(quadratic.clone());

    // The attacker joins with a funded account and serves its parameters on request.
    let attacker = Keypair::from_seed([77; 32]);
    let blob = doin_plugins::quadratic::encode_params(&[4.5, -4.5, 4.5, -4.5]);
    let blob_hash = doin_core::plugin::params_hash(&blob);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = NetConfig::loopback(&chain_id);
    config.bootstrap = vec![node_addr];
    let (handle, mut events) = runtime
        .block_on(async { doin_net::start(&attacker, config) })
        .unwrap();
    let (connected_tx, connected_rx) = std::sync::mpsc::channel();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let handle = handle.clone();
        let blob = blob.clone();
        let served = std::sync::Arc::clone(&served);
        runtime.spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    NetEvent::PeerConnected(_) => {
                        let _ = connected_tx.send(());
                    }
                    NetEvent::Request { request, reply, .. } => {
                        let response = match request {
                            SyncRequest::Params { hash } if hash == blob_hash => {
                                served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                SyncResponse::Params(Some(blob.clone()))
                            }
                            SyncRequest::Params { .. } => SyncResponse::Params(None),
                            _ => SyncResponse::Error("not serving".into()),
                        };
                        let _ = handle.respond(reply, response).await;
                    }
                    _ => {}
                }
            }
        });
    }
    runtime.block_on(async {
        handle.subscribe(&Topic::Txs).await.unwrap();
        handle.subscribe(&domain_topic).await.unwrap();
    });
    connected_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(2)); // into each other's mesh

    let funds = Amount::from_doin(100);
    let funding = TxBody {
        chain_id: chain_id.clone(),
        sender: node_key.account(),
        nonce: status["pending_nonce"].as_u64().unwrap_or(0),
        fee: FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(100),
        },
        kind: TxKind::Transfer {
            to: attacker.account(),
            amount: funds,
        },
    }
    .sign(&node_key);
    ureq::post(&format!("http://127.0.0.1:{}/tx", node.port))
        .send_json(serde_json::to_value(&funding).unwrap())
        .unwrap();
    let account = |node: &Node| get(node, &format!("/account/{}", attacker.account()));
    common::wait_for("the attacker's funds", Duration::from_secs(30), || {
        account(&node)["balance"] == funds.units()
    });
    let reputation_before = account(&node)["reputation"].as_u64().unwrap();

    let publish = |tx: SignedTx, topic: &Topic| {
        runtime
            .block_on(handle.publish(topic, &GossipMessage::Tx(Box::new(tx))))
            .unwrap();
    };
    let included = |id: &str| tx_status(&node, id) == "confirmed";
    let wait_included = |tx: &SignedTx| {
        let id = tx.id().to_hex();
        common::wait_for(
            "an attacker's transaction on chain",
            Duration::from_secs(30),
            || included(&id),
        );
    };

    // Two commitments: one to reveal with a fake claim (a perfect score the parameters do not
    // reach), one never revealed.
    let fake_claim = 0.0;
    let salt = [5u8; 32];
    let fake = doin_core::optimae::commitment(
        &quadratic,
        &attacker.account(),
        &blob_hash,
        fake_claim,
        &salt,
    );
    let withheld = doin_core::optimae::commitment(
        &quadratic,
        &attacker.account(),
        &blob_hash,
        -1.0,
        &[6u8; 32],
    );
    let commit = |nonce, commitment| {
        attacker_tx(
            &chain_id,
            &attacker,
            nonce,
            TxKind::Commit {
                domain: quadratic.clone(),
                commitment,
                stake: min_stake,
            },
        )
    };
    let (commit_fake, commit_withheld) = (commit(0, fake), commit(1, withheld));
    publish(commit_fake.clone(), &domain_topic);
    publish(commit_withheld.clone(), &domain_topic);
    wait_included(&commit_withheld);
    wait_included(&commit_fake);

    let reveal = attacker_tx(
        &chain_id,
        &attacker,
        2,
        TxKind::Reveal {
            commitment: fake,
            params_hash: blob_hash,
            params_size: blob.len() as u64,
            claim: fake_claim,
            salt,
            metrics: Vec::new(),
        },
    );
    publish(reveal.clone(), &domain_topic);
    wait_included(&reveal);

    // A vote on its own optimae: the attacker is not in the quorum (and never could be).
    let vote = attacker_tx(
        &chain_id,
        &attacker,
        3,
        TxKind::Vote {
            commitment: fake,
            measured: fake_claim,
            data_hash: Hash32([1; 32]),
        },
    );
    publish(vote.clone(), &domain_topic);

    let decided = |id: &Hash32| get(&node, &format!("/optimae/{}", id.to_hex()));
    common::wait_for("the fake claim's verdict", Duration::from_secs(60), || {
        decided(&fake)["status"] == "decided"
    });
    common::wait_for(
        "the withheld reveal's expiry",
        Duration::from_secs(60),
        || decided(&withheld)["status"] == "expired",
    );

    let burn = min_stake.mul_div(burn_percent, 100);
    let verdict = decided(&fake);
    assert!(
        verdict["record"]["verdict"]["Rejected"].is_object(),
        "{verdict}"
    );
    assert_eq!(verdict["burned"], burn.units(), "{verdict}");
    assert_eq!(decided(&withheld)["burned"], burn.units());
    assert!(
        served.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "params fetched from the attacker"
    );

    // The vote never made it: not on chain, and refused as misbehaviour.
    assert_eq!(tx_status(&node, &vote.id().to_hex()), "unknown");
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", node.port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("doin_gossip_messages_total{topic=\"domain\",result=\"rejected\"}"),
        "{metrics}"
    );

    // The attacker paid: two burns, fees. A fresh account has no reputation to lose (scores
    // floor at 0; the 3× penalty itself is tested in doin-core), and it earned none.
    let after = account(&node);
    let balance = after["balance"].as_u64().unwrap();
    assert!(
        balance <= funds.0 - 2 * burn.0,
        "balance {balance} of {}",
        funds.0
    );
    assert!(
        after["reputation"].as_u64().unwrap() <= reputation_before,
        "{after}"
    );
    assert!(get(&node, "/domains")["domains"][0]["champion"].is_null());
    let log = node.stop();
    assert!(log.contains("fetched parameters"), "{log}");
}
