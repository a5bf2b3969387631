//! The real `doin-node` binary on a temporary data directory and a free loopback port:
//! it mines, verifies its own optimae in solo mode, conserves coins, survives restarts and
//! `kill -9`, and refuses a bad config before touching anything.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_doin-node");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let config = serde_json::json!({
        "node_label": "test",
        "host": "127.0.0.1",
        "port": port,
        "data_dir": dir.join("data"),
        "storage_backend": "sqlite",
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
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

struct Node {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Node {
    /// Starts the binary; its log goes to a file next to the config (a pipe could fill up
    /// and block the node).
    fn start(config: &Path, port: u16) -> Node {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = config.with_extension(format!("{n}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start doin-node");
        Node { child, port, log }
    }

    fn status(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        ureq::get(&url)
            .timeout(Duration::from_secs(2))
            .call()
            .ok()?
            .into_json()
            .ok()
    }

    /// Waits until the chain height reaches `height` (bounded).
    fn wait_height(&self, height: u64, limit: Duration) -> serde_json::Value {
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

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) -> String {
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

fn inspect_verify(data: &Path) -> String {
    let out = Command::new(BIN)
        .arg("inspect")
        .arg(data)
        .arg("--verify")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inspect --verify failed: {text}");
    text
}

#[test]
fn solo_node_mines_verifies_its_work_and_conserves_coins() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let node = Node::start(&config, port);
    let first = node.wait_height(2, Duration::from_secs(60));
    let start_balance = first["balance"].as_u64().unwrap();
    // Wait for the optimizer's work to be verified: a champion on chain.
    let start = Instant::now();
    let status = loop {
        let s = node.wait_height(1, Duration::from_secs(5));
        if !s["domains"][0]["best_performance"].is_null() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no verified champion: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status["balance"].as_u64().unwrap() > start_balance,
        "rewards were paid: {status}"
    );
    // The optimizer logs the verdict when it sees the block, which can be just after
    // /status shows the champion: wait for the line (bounded) before stopping.
    let start = Instant::now();
    while !std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .contains("accepted")
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.stop();
    assert!(
        log.contains("committed") && log.contains("revealed") && log.contains("accepted"),
        "{log}"
    );
    let report = inspect_verify(&dir.path().join("data"));
    assert!(report.contains("champion: quadratic"), "{report}");
}

#[test]
fn restart_and_kill_9_keep_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let mut last_height = 0;
    let mut last_tip = String::new();
    for round in 0..4 {
        let node = Node::start(&config, port);
        let status = node.wait_height(last_height + 3, Duration::from_secs(60));
        let height = status["chain_height"].as_u64().unwrap();
        assert!(
            height >= last_height,
            "round {round}: chain went back from {last_height} to {height}"
        );
        last_height = height;
        last_tip = status["tip_hash"].as_str().unwrap().to_string();
        // Kill at an arbitrary moment, often in the middle of mining.
        std::thread::sleep(Duration::from_millis(37 * (round + 1)));
        if round % 2 == 0 {
            node.kill9();
        } else {
            node.stop();
        }
    }
    let report = inspect_verify(&dir.path().join("data"));
    assert!(report.contains("verified: all"), "{report}");
    assert!(!last_tip.is_empty());
}

#[test]
fn a_bad_config_fails_fast_naming_the_key_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("bad.json");
    std::fs::write(
        &config,
        serde_json::json!({"data_dir": data, "quorum_fraction": 7, "domains": []}).to_string(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("quorum_fraction"), "{err}");
    assert!(!data.exists(), "the data directory must not be created");

    std::fs::write(&config, r#"{"port": 8470, "domains": [ }"#).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
