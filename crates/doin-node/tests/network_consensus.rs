//! Several block producers on one network, as real `doin-node` processes on loopback.
//!
//! - Four producers, all bonded evaluators at genesis, find each other from one bootstrap
//!   address, take turns proposing (the round-robin schedule, with fallbacks), run the whole
//!   optimae pipeline with quorums drawn across nodes, and agree on one chain; every node's
//!   stored chain re-executes from genesis with coins exactly conserved.
//! - Partition and heal: one of three producers is cut off (restarted on a new port with no
//!   peers) and goes on alone; the two others go on together. When it reconnects, it
//!   reorganizes to the heavier chain, and no block that was final before the partition
//!   changed on any node.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{p2p_addr, wait_for, Node, BIN};
use doin_core::identity::Keypair;
use serde_json::{json, Value};

/// The network's parameters: `n` funded producers, each a genesis evaluator of the quadratic
/// domain (so each is in the producer set), quorums of 3 drawn across nodes.
fn genesis(root: &Path, n: usize, finality_depth: u64) -> (PathBuf, Vec<PathBuf>) {
    common::network_genesis(
        root,
        "doin-consensus-test",
        n,
        |_| Keypair::generate(),
        |params| {
            params.target_block_time_ms = 400;
            params.max_block_interval_ms = 800;
            params.proposer_timeout_ms = 500;
            params.finality_depth = finality_depth;
            params.domains[0].quorum_size = 3;
            params.domains[0].baseline_performance = -1_000.0;
        },
    )
}

fn write_config(dir: &Path, genesis: &Path, optimize: bool, bootstrap: Option<&str>) -> PathBuf {
    common::write_network_config(
        dir,
        genesis,
        bootstrap,
        json!({
            "domain_id": "quadratic", "optimize": optimize, "evaluate": true,
            "optimization_plugin": "quadratic", "target_performance": -5.0,
            "optimization_config": {"n_params": 4, "step_size": 0.5}
        }),
    )
}

fn get(node: &Node, path: &str) -> Value {
    common::get_json(node.port, path)
}

fn height(node: &Node) -> u64 {
    get(node, "/status")["chain_height"].as_u64().unwrap()
}

fn hash_at(node: &Node, h: u64) -> Value {
    get(node, &format!("/chain/block/{h}"))["hash"].clone()
}

/// Re-executes a stopped node's whole stored chain from genesis and checks conservation.
fn verify_stored_chain(dir: &Path, config: &Path) -> String {
    let out = std::process::Command::new(BIN)
        .args(["--config"])
        .arg(config)
        .arg("inspect")
        .arg(dir.join("data"))
        .arg("--verify")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}: inspect --verify failed: {text}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Every node holds the same block at every height up to `upto`.
fn assert_one_chain(nodes: &[&Node], upto: u64) {
    for h in 1..=upto {
        let first = hash_at(nodes[0], h);
        for node in &nodes[1..] {
            assert_eq!(hash_at(node, h), first, "nodes disagree at height {h}");
        }
    }
}

#[test]
fn four_producers_take_turns_and_agree_on_one_chain() {
    let root = tempfile::tempdir().unwrap();
    let (genesis, dirs) = genesis(root.path(), 4, 6);
    let configs: Vec<PathBuf> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| write_config(d, &genesis, i < 2, None))
        .collect();
    let first = Node::start(&configs[0]);
    let bootstrap = p2p_addr(&dirs[0]);
    let mut nodes = vec![first];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let config = write_config(dir, &genesis, i < 2, Some(&bootstrap));
        nodes.push(Node::start(&config));
    }
    wait_for("every node to see 3 peers", Duration::from_secs(60), || {
        nodes.iter().all(|n| get(n, "/status")["peers"] == 3)
    });

    // Mine until an optimae of another node has been accepted by a cross-node quorum and
    // the chain is 30 blocks long on every node.
    let start = height(&nodes[0]);
    wait_for("30 blocks and a champion", Duration::from_secs(180), || {
        nodes.iter().all(|n| height(n) >= start + 30)
            && get(&nodes[0], "/domains")["domains"][0]["champion"].is_object()
    });
    let refs: Vec<&Node> = nodes.iter().collect();
    let common = nodes.iter().map(height).min().unwrap();
    // Gossip takes a moment: compare below the lowest tip.
    wait_for("one chain on every node", Duration::from_secs(30), || {
        let h = common - 1;
        let first = hash_at(&nodes[0], h);
        nodes.iter().all(|n| hash_at(n, h) == first)
    });
    assert_one_chain(&refs, common - 1);

    // The schedule rotates: every producer proposed blocks.
    let mut proposers = BTreeSet::new();
    for h in 1..common {
        let block = get(&nodes[0], &format!("/chain/block/{h}"));
        proposers.insert(block["header"]["proposer"].as_str().unwrap().to_string());
    }
    assert_eq!(proposers.len(), 4, "proposers: {proposers:?}");

    // The champion's quorum is drawn across nodes: voters other than its optimizer.
    let champion = get(&nodes[0], "/domains")["domains"][0]["champion"].clone();
    let optimizer = champion["optimizer"].as_str().unwrap().to_string();
    let accounts: Vec<String> = nodes
        .iter()
        .map(|n| get(n, "/status")["account"].as_str().unwrap().to_string())
        .collect();
    assert!(accounts[..2].contains(&optimizer), "{champion}");

    // Every node's stored chain re-executes from genesis, rewards included, with coins
    // exactly conserved (balances + bonds + stakes + deposits = issued − burned).
    // Islands: an optimizing node adopted the other's revealed candidates before their
    // verdicts (optimistic migration).
    let mut migrated = false;
    for (node, (dir, config)) in nodes.into_iter().zip(dirs.iter().zip(&configs)) {
        let log = node.stop();
        assert!(!log.contains("panicked"), "{log}");
        migrated |= log.contains("revealed candidate");
        let report = verify_stored_chain(dir, config);
        assert!(report.contains("verified: all"), "{report}");
    }
    assert!(migrated, "no island adopted another's revealed candidate");
}

#[test]
fn a_partitioned_producer_rejoins_the_heavier_chain() {
    let root = tempfile::tempdir().unwrap();
    let (genesis, dirs) = genesis(root.path(), 3, 20);
    let a = Node::start(&write_config(&dirs[0], &genesis, false, None));
    let bootstrap = p2p_addr(&dirs[0]);
    let b = Node::start(&write_config(&dirs[1], &genesis, false, Some(&bootstrap)));
    let c = Node::start(&write_config(&dirs[2], &genesis, false, Some(&bootstrap)));
    wait_for("three connected producers", Duration::from_secs(60), || {
        [&a, &b, &c].iter().all(|n| get(n, "/status")["peers"] == 2)
    });
    wait_for("10 blocks everywhere", Duration::from_secs(60), || {
        [&a, &b, &c].iter().all(|n| height(n) >= 10)
    });
    let before = [&a, &b, &c].iter().map(|n| height(n)).min().unwrap() - 1;
    wait_for(
        "one chain before the partition",
        Duration::from_secs(30),
        || {
            let h = hash_at(&a, before);
            hash_at(&b, before) == h && hash_at(&c, before) == h
        },
    );
    let final_before: Vec<Value> = (1..=before).map(|h| hash_at(&a, h)).collect();

    // Partition: C restarts alone (no bootstrap peer, a new port the others do not know).
    c.kill9();
    let c_alone = Node::start(&write_config(&dirs[2], &genesis, false, None));
    let cut = height(&c_alone);
    wait_for("both sides to progress", Duration::from_secs(90), || {
        height(&c_alone) >= cut + 3 && height(&a) >= cut + 10
    });
    assert_eq!(get(&c_alone, "/status")["peers"], 0);
    let c_side = hash_at(&c_alone, cut + 1);
    assert_ne!(c_side, hash_at(&a, cut + 1), "the two sides forked");

    // Heal: C reconnects and switches to the heavier chain.
    c_alone.kill9();
    let c = Node::start(&write_config(&dirs[2], &genesis, false, Some(&bootstrap)));
    wait_for(
        "C to rejoin the chain of A and B",
        Duration::from_secs(90),
        || {
            let h = height(&c).min(height(&a)).saturating_sub(1);
            h > cut + 3 && hash_at(&c, h) == hash_at(&a, h) && hash_at(&b, h) == hash_at(&a, h)
        },
    );
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", c.port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let reorgs: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("doin_chain_reorgs_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(reorgs >= 1.0, "{metrics}");
    // Nothing that was final before the partition changed, on any node.
    for (i, want) in final_before.iter().enumerate() {
        let h = i as u64 + 1;
        for node in [&a, &b, &c] {
            assert_eq!(&hash_at(node, h), want, "block {h} changed");
        }
    }
    let log = c.stop();
    assert!(log.contains("reorganized"), "{log}");
}
