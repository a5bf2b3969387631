//! Helpers shared by the tests that run the real `doin-node` binary.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `promtool check metrics`, shared with the library's metrics test.
mod promtool;

pub const BIN: &str = env!("CARGO_BIN_EXE_doin-node");

/// Writes the config of a fast solo node (blocks every 150-300 ms, any free port) on the
/// quadratic domain (4 dimensions, target −5) in `dir`, with the top-level keys of `extra` added or replaced;
/// returns its path.
pub fn write_solo_config(dir: &Path, extra: serde_json::Value) -> PathBuf {
    let mut config = serde_json::json!({
        "node_label": "test",
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": dir.join("data"),
        "snapshot_interval": 10,
        "chain": {"solo_mode": true, "target_block_time_ms": 150, "max_block_interval_ms": 300},
        "domains": [{
            "domain_id": "quadratic",
            "optimize": true,
            "evaluate": true,
            "optimization_plugin": "quadratic",
            "target_performance": -5.0,
            "optimization_config": {"n_params": 4, "step_size": 0.5}
        }]
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

pub struct Node {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Node {
    /// Starts the binary; its log goes to a file next to the config (a pipe could fill up
    /// and block the node). The node's port is read from `<data_dir>/http.addr`, which it
    /// writes once bound: configs use port 0, so parallel tests never race for a port.
    pub fn start(config: &Path) -> Node {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parsed: serde_json::Value =
            serde_json::from_slice(&std::fs::read(config).unwrap()).unwrap();
        let addr_file = PathBuf::from(parsed["data_dir"].as_str().unwrap()).join("http.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = config.with_extension(format!("{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .args(["--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start doin-node");
        let start = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&addr_file)
                .ok()
                .and_then(|a| a.trim().rsplit(':').next()?.parse::<u16>().ok())
            {
                break port;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "doin-node exited ({status}) before listening; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "doin-node did not write {} within 60 s",
                addr_file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Node { child, port, log }
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_json()
            .ok()
    }

    /// Waits until the chain height reaches `height` (bounded).
    pub fn wait_height(&self, height: u64, limit: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(status) = self.status() {
                if status["chain_height"].as_u64().unwrap_or(0) >= height {
                    return status;
                }
            }
            assert!(
                start.elapsed() < limit,
                "height {height} not reached within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                self.child.kill().unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut log = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut log);
        }
        log
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `doin-node wallet …`; returns stdout, failing the test on a non-zero exit.
pub fn wallet(port: u16, key: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("wallet")
        .args(["--node", &format!("http://127.0.0.1:{port}")])
        .arg("--key")
        .arg(key)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "wallet {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `GET path` on the node at `port`, as JSON (a failure fails the test).
pub fn get_json(port: u16, path: &str) -> serde_json::Value {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

/// Polls `ready` every 100 ms until it holds; fails the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[allow(unused_imports)] // each test binary uses a part
pub use promtool::{assert_promtool_accepts, REQUIRE_TOOLS_ENV};

/// The value of the first sample named `name` (in a Prometheus text scrape) whose labels
/// include every one of `labels` (`key="value"`, as written).
pub fn metric_sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A multi-producer network's genesis in `root`: `n` nodes' data directories
/// (`root/node{i}/data`, each holding its key `key(i)`), every account funded with 1,000 DOIN
/// and bonded at genesis as an evaluator of the quadratic domain (so all take turns
/// proposing and quorums are drawn across nodes), solo mode off, genesis a minute ago;
/// `tweak` sets the rest. Writes `root/genesis.json`; returns its path and the node
/// directories.
pub fn network_genesis(
    root: &Path,
    chain_id: &str,
    n: usize,
    key: impl Fn(usize) -> doin_core::identity::Keypair,
    tweak: impl FnOnce(&mut doin_core::params::ChainParams),
) -> (PathBuf, Vec<PathBuf>) {
    let mut params = doin_core::params::ChainParams::dev(chain_id);
    params.solo_mode = false;
    params.genesis_time_ms = doin_node::context::now_ms() - 60_000;
    let quadratic = doin_core::params::DomainId::new("quadratic").unwrap();
    let mut dirs = Vec::new();
    for i in 0..n {
        let dir = root.join(format!("node{i}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let key = key(i);
        key.save(&dir.join("data").join("identity.key")).unwrap();
        params
            .genesis_allocations
            .push((key.account(), doin_core::amount::Amount::from_doin(1_000)));
        params
            .genesis_evaluators
            .push((quadratic.clone(), key.account()));
        dirs.push(dir);
    }
    tweak(&mut params);
    params.validate().unwrap();
    let path = root.join("genesis.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&params).unwrap()).unwrap();
    (path, dirs)
}

/// The config of a node of the network `genesis` in `dir` (any free ports, p2p on loopback
/// without mDNS, `bootstrap` as its one bootstrap address), working on `domain` (one entry
/// of `domains`); written to `dir/config.json`.
pub fn write_network_config(
    dir: &Path,
    genesis: &Path,
    bootstrap: Option<&str>,
    domain: serde_json::Value,
) -> PathBuf {
    let config = serde_json::json!({
        "node_label": dir.file_name().unwrap().to_string_lossy(),
        "host": "127.0.0.1",
        "port": 0,
        "data_dir": dir.join("data"),
        "snapshot_interval": 10,
        "chain": {"genesis_file": genesis},
        "p2p": {"listen": ["/ip4/127.0.0.1/tcp/0"], "mdns": false},
        "bootstrap_peers": bootstrap.map_or(vec![], |a| vec![a.to_string()]),
        "domains": [domain],
    });
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

/// The p2p address (with peer id) the node in `dir` published, once it is there.
pub fn p2p_addr(dir: &Path) -> String {
    let file = dir.join("data").join("p2p.addr");
    wait_for("a p2p address", Duration::from_secs(30), || file.exists());
    std::fs::read_to_string(&file).unwrap().trim().to_string()
}
