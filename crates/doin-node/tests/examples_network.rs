//! The three-node example network in `examples/network` stays honest, without starting it:
//!
//! - the demo keys are the documented fixed seeds, in the key file format;
//! - `genesis.json` is exactly what the generator below writes (`ChainParams::dev` with the
//!   example's changes), validates, and funds and bonds exactly the three demo accounts;
//! - every node config passes the real binary's `check-config` from the repository root,
//!   without writing anything, and the configs describe one loopback network: distinct
//!   ports, node 2 and 3 bootstrapping from node 1's p2p port, paths that resolve from the
//!   repository root;
//! - the README lists the demo accounts.
//!
//! The files are generated, not written by hand: after a change to the generator (or to
//! `ChainParams`), run this test with `DOIN_BLESS_EXAMPLE_NETWORK=1` to rewrite the missing
//! key files and `genesis.json`, and commit them.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use doin_core::amount::Amount;
use doin_core::config::{NodeConfig, PeerAddr};
use doin_core::identity::Keypair;
use doin_core::params::{ChainParams, DomainId};

const BIN: &str = env!("CARGO_BIN_EXE_doin-node");
/// The repository root: the example is run from there.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const EXAMPLE: &str = "examples/network";
/// Set to rewrite the generated files instead of comparing them.
const BLESS: &str = "DOIN_BLESS_EXAMPLE_NETWORK";

const CHAIN_ID: &str = "doin-example-net";
/// 2026-01-01T00:00:00Z: fixed, in the past.
const GENESIS_TIME_MS: u64 = 1_767_225_600_000;
const FUNDS: Amount = Amount::from_doin(1_000);
const NODES: [u32; 3] = [1, 2, 3];
/// The config that restarts node 3 cut off from the others (README: a partition).
const ALONE: &str = "node3-alone";

fn root() -> PathBuf {
    PathBuf::from(ROOT)
}

fn example(file: &str) -> PathBuf {
    root().join(EXAMPLE).join(file)
}

fn blessing() -> bool {
    std::env::var_os(BLESS).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The demo key of node `n`: its secret seed is the 32 ASCII bytes
/// `"doin-example-net demo key node n"` (public; never use it for anything real).
fn demo_key(n: u32) -> Keypair {
    let seed: [u8; 32] = format!("doin-example-net demo key node {n}")
        .into_bytes()
        .try_into()
        .unwrap();
    Keypair::from_seed(seed)
}

fn config(name: &str) -> NodeConfig {
    let text = std::fs::read_to_string(example(&format!("{name}.json"))).unwrap();
    let (config, warnings) = NodeConfig::from_json_str(&text).unwrap();
    assert!(warnings.is_empty(), "{name}.json: {warnings:?}");
    config
}

/// The generator: the network's rules.
fn generated_genesis() -> ChainParams {
    let mut params = ChainParams::dev(CHAIN_ID);
    params.solo_mode = false;
    params.genesis_time_ms = GENESIS_TIME_MS;
    params.target_block_time_ms = 2_000;
    params.max_block_interval_ms = 6_000;
    params.proposer_timeout_ms = 1_000;
    // A node cut off for a while must still be able to rejoin: it refuses to reorganize below
    // its own finalized height, and alone it makes a block about every 7 s.
    params.finality_depth = 20;
    // Three evaluators, the optimizer never in its own quorum: every quorum is the two
    // other nodes.
    params.domains[0].quorum_size = 2;
    // The baseline the quadratic plugin reports for the nodes' domain config (what a
    // development chain would take).
    let domain = &config("node1").domains[0];
    let plugin = doin_plugins::builtin_registry()
        .instantiate("quadratic", &domain.plugin_setup())
        .unwrap();
    params.domains[0].baseline_performance = plugin.info().baseline_performance;
    let quadratic = DomainId::new("quadratic").unwrap();
    for n in NODES {
        let account = demo_key(n).account();
        params.genesis_allocations.push((account, FUNDS));
        params.genesis_evaluators.push((quadratic.clone(), account));
    }
    params.validate().unwrap();
    params
}

#[test]
fn demo_keys_are_the_documented_seeds() {
    for n in NODES {
        let path = example(&format!("keys/node{n}.key"));
        let key = demo_key(n);
        if blessing() && !path.exists() {
            key.save(&path).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "doin-ed25519-secret-v1\n{}\n",
                hex::encode(key.secret_bytes())
            ),
            "{}",
            path.display()
        );
        assert_eq!(Keypair::load(&path).unwrap().account(), key.account());
    }
}

#[test]
fn genesis_is_generated_valid_and_bonds_the_three_demo_accounts() {
    let path = example("genesis.json");
    let generated = generated_genesis();
    let bytes = serde_json::to_vec_pretty(&generated).unwrap();
    if blessing() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let text = std::fs::read(&path).unwrap();
    let params: ChainParams = serde_json::from_slice(&text).unwrap();
    params.validate().unwrap();
    assert_eq!(
        params, generated,
        "genesis.json is not what the generator writes: rerun with {BLESS}=1"
    );
    assert_eq!(
        text,
        serde_json::to_vec_pretty(&params).unwrap(),
        "genesis.json is not serde_json::to_vec_pretty(&ChainParams)"
    );

    assert_eq!(params.chain_id, CHAIN_ID);
    assert!(!params.solo_mode);
    assert!(params.genesis_time_ms < doin_node::context::now_ms());
    assert_eq!(params.domains.len(), 1);
    assert_eq!(params.domains[0].quorum_size, 2);
    let accounts: Vec<_> = NODES.iter().map(|n| demo_key(*n).account()).collect();
    let funded: Vec<_> = params.genesis_allocations.iter().map(|(a, _)| *a).collect();
    assert_eq!(funded, accounts);
    assert!(params.genesis_allocations.iter().all(|(_, f)| *f == FUNDS));
    let quadratic = DomainId::new("quadratic").unwrap();
    let bonded: Vec<_> = accounts.iter().map(|a| (quadratic.clone(), *a)).collect();
    assert_eq!(params.genesis_evaluators, bonded);
}

/// `doin-node check-config <config>` in `dir`; returns stdout, failing on an error.
fn check_config(dir: &Path, config: &Path) -> String {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(config)
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "check-config {} failed: {stdout}{}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_node_config_passes_check_config_and_writes_nothing() {
    let data = root().join("doin-net-data");
    let data_existed = data.exists();
    let empty = tempfile::tempdir().unwrap();
    for name in ["node1", "node2", "node3", ALONE] {
        // From the repository root, as README.md and start.sh run it.
        let relative = PathBuf::from(format!("{EXAMPLE}/{name}.json"));
        let out = check_config(&root(), &relative);
        assert_eq!(out, format!("{}: ok\n", relative.display()), "no warnings");
        // From an empty directory: nothing appears there (no data dir, no key, no database).
        check_config(empty.path(), &example(&format!("{name}.json")));
        let left: Vec<_> = std::fs::read_dir(empty.path()).unwrap().collect();
        assert!(left.is_empty(), "check-config wrote {left:?}");
    }
    if !data_existed {
        assert!(!data.exists(), "check-config created {}", data.display());
    }
}

/// The p2p port of a `/ip4/127.0.0.1/tcp/<port>` listen address.
fn p2p_port(config: &NodeConfig) -> u16 {
    assert_eq!(config.p2p.listen.len(), 1);
    let port = config.p2p.listen[0]
        .strip_prefix("/ip4/127.0.0.1/tcp/")
        .unwrap();
    port.parse().unwrap()
}

#[test]
fn the_configs_describe_one_loopback_network() {
    let genesis = generated_genesis();
    let quadratic = DomainId::new("quadratic").unwrap();
    let node1_p2p = p2p_port(&config("node1"));
    let mut ports = BTreeSet::new();
    let mut data_dirs = BTreeSet::new();
    for n in NODES {
        let c = config(&format!("node{n}"));
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.port, 8480 + n as u16);
        assert_eq!(p2p_port(&c), 9480 + n as u16);
        assert!(ports.insert(c.port) && ports.insert(p2p_port(&c)), "ports");
        assert!(!c.p2p.mdns);
        assert!(c.produce_blocks);
        // Relative paths resolve from the current directory: the repository root.
        assert_eq!(
            c.data_dir,
            PathBuf::from(format!("./doin-net-data/node{n}"))
        );
        assert!(data_dirs.insert(c.data_dir.clone()));
        let key = c.identity_file.clone().unwrap();
        assert!(key.is_relative());
        assert_eq!(
            Keypair::load(&root().join(&key)).unwrap().account(),
            demo_key(n).account()
        );
        let genesis_file = c.chain.genesis_file.clone().unwrap();
        assert!(genesis_file.is_relative());
        assert_eq!(
            std::fs::canonicalize(root().join(&genesis_file)).unwrap(),
            std::fs::canonicalize(example("genesis.json")).unwrap()
        );
        assert!(!c.chain.has_overrides());
        // Every node optimizes and evaluates the one domain, as a bonded evaluator.
        assert_eq!(c.domains.len(), 1);
        let d = &c.domains[0];
        assert!(d.domain_id == quadratic && d.optimize && d.evaluate);
        assert!(genesis
            .genesis_evaluators
            .contains(&(quadratic.clone(), demo_key(n).account())));
        // Node 1 is the bootstrap; 2 and 3 know only its p2p address.
        let expected = if n == 1 {
            vec![]
        } else {
            vec![PeerAddr::HostPort {
                host: "127.0.0.1".into(),
                port: node1_p2p,
            }]
        };
        assert_eq!(c.bootstrap_peers, expected, "node{n}");
    }
    assert_eq!(ports.len(), 6);

    // Node 3 alone: the same node (key, data, network), no peers, a p2p port nobody knows.
    let node3 = config("node3");
    let alone = config(ALONE);
    assert!(alone.bootstrap_peers.is_empty());
    assert!(!ports.contains(&p2p_port(&alone)));
    assert!(!alone.p2p.mdns);
    assert_eq!(alone.port, node3.port);
    assert_eq!(alone.data_dir, node3.data_dir);
    assert_eq!(alone.identity_file, node3.identity_file);
    assert_eq!(alone.chain, node3.chain);
    assert_eq!(alone.domains, node3.domains);
}

#[test]
fn the_readme_lists_the_demo_accounts_and_warns() {
    let readme = std::fs::read_to_string(example("README.md")).unwrap();
    for n in NODES {
        let account = demo_key(n).account().to_hex();
        assert!(
            readme.contains(&format!("| node {n} | `{account}` |")),
            "README.md: node {n} is {account}"
        );
    }
    assert!(readme.contains("public demo keys"));
}
