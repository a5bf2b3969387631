//! Two real `doin-node` processes on loopback: a late joiner finds the producer from one
//! bootstrap address, syncs its 1,200-block chain over request-response (validating every
//! block), then follows new blocks by gossip; `GET /peers` shows the link, and `GET /metrics`
//! the node's and libp2p's metrics of it, in a scrape `promtool check metrics` accepts.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{wait_for, Node};
use doin_core::amount::Amount;
use doin_core::identity::Keypair;
use doin_core::params::ChainParams;
use doin_core::state::ChainState;
use doin_node::storage::Store;
use serde_json::{json, Value};

const BLOCKS: u64 = 1_200;
const SPACING_MS: u64 = 1_000;

/// Writes a chain of `BLOCKS` empty blocks, spaced in the past, into `data` (the producer's
/// data directory, with its key) and the chain parameters to `genesis`.
async fn write_chain(data: &Path, genesis: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let key = Keypair::load_or_generate(&data.join("identity.key")).unwrap();
    let now = doin_node::context::now_ms();
    let mut params = ChainParams::dev("doin-net-test");
    params.genesis_time_ms = now - (BLOCKS + 5) * SPACING_MS;
    params.target_block_time_ms = SPACING_MS / 2;
    params.max_block_interval_ms = SPACING_MS;
    params.genesis_allocations = vec![(key.account(), Amount::from_doin(1_000))];
    params.validate().unwrap();
    std::fs::write(genesis, serde_json::to_vec_pretty(&params).unwrap()).unwrap();
    let store = Store::open(&data.join("chain.db"), 100).await.unwrap();
    let (block, mut state) = ChainState::genesis(&params);
    store.init(&params, &block, &state).await.unwrap();
    for _ in 0..BLOCKS {
        let ts = state.empty_block_allowed_from(&params);
        let built = state.build_block(&params, &key, ts, Vec::new()).unwrap();
        store
            .append_block(&built.block, &built.state, &built.receipt)
            .await
            .unwrap();
        state = built.state;
    }
    store.close().await;
}

fn write_config(dir: &Path, genesis: &Path, extra: Value) -> PathBuf {
    let mut config = json!({
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": dir.join("data"),
        "chain": {"genesis_file": genesis},
        "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": false},
    });
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn get(node: &Node, path: &str) -> Value {
    common::get_json(node.port, path)
}

#[test]
fn a_late_joiner_syncs_a_long_chain_and_follows_by_gossip() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    let genesis = root.path().join("genesis.json");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(write_chain(&a_dir.join("data"), &genesis));

    let producer = Node::start(&write_config(&a_dir, &genesis, json!({})));
    let addr_file = a_dir.join("data").join("p2p.addr");
    wait_for(
        "the producer's p2p address",
        Duration::from_secs(30),
        || addr_file.exists(),
    );
    let producer_addr = std::fs::read_to_string(&addr_file)
        .unwrap()
        .trim()
        .to_string();
    let producer_height = get(&producer, "/status")["chain_height"].as_u64().unwrap();
    assert!(producer_height >= BLOCKS);

    let started = Instant::now();
    let joiner = Node::start(&write_config(
        &b_dir,
        &genesis,
        json!({"produce_blocks": false, "bootstrap_peers": [producer_addr]}),
    ));
    wait_for("the joiner to sync", Duration::from_secs(120), || {
        get(&joiner, "/status")["chain_height"].as_u64().unwrap() >= producer_height
    });
    eprintln!(
        "synced {producer_height} blocks in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let at = |node: &Node, h: u64| get(node, &format!("/chain/block/{h}"))["hash"].clone();
    assert_eq!(at(&joiner, BLOCKS), at(&producer, BLOCKS), "one chain");

    // New blocks reach the joiner by gossip (the producer makes one a second).
    let target = get(&producer, "/status")["chain_height"].as_u64().unwrap() + 3;
    wait_for(
        "the joiner to follow new blocks",
        Duration::from_secs(60),
        || get(&joiner, "/status")["chain_height"].as_u64().unwrap() >= target,
    );
    assert_eq!(at(&joiner, target), at(&producer, target));

    let peers = get(&joiner, "/peers");
    assert_eq!(peers["networked"], true);
    let producer_id = producer_addr.rsplit('/').next().unwrap();
    assert!(
        peers["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer_id"] == producer_id),
        "{peers}"
    );
    assert_eq!(get(&joiner, "/status")["peers"], 1);
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", joiner.port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(metrics.contains("doin_peers 1"), "{metrics}");
    assert!(
        metrics
            .lines()
            .any(|l| l
                .starts_with("doin_gossip_messages_total{topic=\"blocks\",result=\"accepted\"}")),
        "{metrics}"
    );
    // libp2p's own metrics, in the same registry: the joiner dialed the producer, identify
    // ran, blocks came by gossip, and the synced chain came in over TCP (1,200 blocks: far
    // more than 100 kB).
    let libp2p = [
        (
            "doin_libp2p_swarm_connections_established_total",
            &["role=\"Dialer\""][..],
            1.0,
        ),
        ("doin_libp2p_identify_received_total", &[], 1.0),
        ("doin_libp2p_gossipsub_messages_total", &[], 1.0),
        (
            "doin_libp2p_kad_routing_updated_total",
            &["action=\"Added\""],
            1.0,
        ),
        (
            "doin_libp2p_bandwidth_bytes_total",
            &["direction=\"Inbound\""],
            100_000.0,
        ),
        (
            "doin_libp2p_bandwidth_bytes_total",
            &["direction=\"Outbound\""],
            1_000.0,
        ),
    ];
    for (name, labels, at_least) in libp2p {
        let value = common::metric_sample(&metrics, name, labels);
        assert!(
            value.is_some_and(|v| v >= at_least),
            "{name}{labels:?} is {value:?}, expected at least {at_least}:\n{metrics}"
        );
    }
    common::assert_promtool_accepts(&metrics);
    let log = joiner.stop();
    assert!(log.contains("imported"), "{log}");
    producer.stop();
}

#[test]
fn another_nodes_optimae_is_verified_by_the_networks_evaluator() {
    let root = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (root.path().join("a"), root.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    // The producer evaluates but does not optimize; the other node optimizes only.
    let producer = Node::start(&common::write_solo_config(
        &a_dir,
        json!({
            "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": false},
            "domains": [{
                "domain_id": "quadratic", "optimize": false, "evaluate": true,
                "optimization_plugin": "quadratic", "target_performance": -5.0,
                "optimization_config": {"n_params": 4, "step_size": 0.5}
            }]
        }),
    ));
    let addr_file = a_dir.join("data").join("p2p.addr");
    wait_for(
        "the producer's p2p address",
        Duration::from_secs(30),
        || addr_file.exists(),
    );
    let genesis = root.path().join("genesis.json");
    std::fs::write(&genesis, get(&producer, "/chain/params").to_string()).unwrap();
    let addr = std::fs::read_to_string(&addr_file)
        .unwrap()
        .trim()
        .to_string();
    let optimizer = Node::start(&write_config(
        &b_dir,
        &genesis,
        json!({
            "produce_blocks": false,
            "bootstrap_peers": [addr],
            "domains": [{
                "domain_id": "quadratic", "optimize": true, "evaluate": false,
                "optimization_plugin": "quadratic", "target_performance": -5.0,
                "optimization_config": {"n_params": 4, "step_size": 0.5}
            }]
        }),
    ));
    // Fund the optimizer's stake from the producer's genesis coins.
    let b_account = get(&optimizer, "/status")["account"]
        .as_str()
        .unwrap()
        .to_string();
    let a_key = a_dir.join("data").join("identity.key");
    common::wallet(
        producer.port,
        &a_key,
        &["transfer", "--to", &b_account, "--amount", "100"],
    );
    // The optimizer's commit and reveal travel by gossip, the producer's evaluator fetches
    // the parameters from it by request-response, votes, and the verdict crowns it.
    wait_for(
        "an optimae of the other node accepted",
        Duration::from_secs(120),
        || {
            let domains = get(&producer, "/domains");
            domains["domains"][0]["champion"]["optimizer"] == b_account.as_str()
        },
    );
    let log = producer.stop();
    assert!(log.contains("fetched parameters"), "{log}");
    optimizer.stop();
}
