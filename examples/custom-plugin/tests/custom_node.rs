//! The `custom-node` binary (stock node + the `cubic_root` domain) on a temporary data
//! directory and a free loopback port: its optimizer's work on the custom domain is verified
//! and accepted on chain, and `check-config` validates against the same registry.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_custom-node");
/// How long the node may take to get a custom-domain optimae accepted.
const ACCEPT_LIMIT: Duration = Duration::from_secs(60);

/// The port the node bound (the config asks for any free one, port 0, so that parallel
/// tests never race for a port); `None` until the node has written it.
fn bound_port(dir: &Path) -> Option<u16> {
    std::fs::read_to_string(dir.join("data").join("http.addr"))
        .ok()?
        .trim()
        .rsplit(':')
        .next()?
        .parse()
        .ok()
}

fn write_config(dir: &Path, port: u16, plugin: &str) -> PathBuf {
    let config = json!({
        "node_label": "custom-test",
        "host": "127.0.0.1",
        "port": port,
        "data_dir": dir.join("data"),
        "chain": {"solo_mode": true, "target_block_time_ms": 150, "max_block_interval_ms": 300},
        "domains": [{
            "domain_id": "cubic-root",
            "optimize": true,
            "evaluate": true,
            "optimization_plugin": plugin,
            "target_performance": -0.01,
            "optimization_config": {"noise": 0.001}
        }]
    });
    let path = dir.join(format!("{plugin}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn get(port: u16, path: &str) -> Option<Value> {
    ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .call()
        .ok()?
        .into_json()
        .ok()
}

/// The child node, killed on drop so that a failed assertion leaves nothing running.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(config: &Path) -> Node {
        let log = config.with_extension("log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start custom-node");
        Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then up to 10 s for a clean exit.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str], config: &Path) -> Output {
    Command::new(BIN).args(args).arg(config).output().unwrap()
}

#[test]
fn custom_node_gets_an_optimae_of_its_own_domain_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), 0, custom_plugin::NAME);
    let mut node = Node::start(&config);

    let start = Instant::now();
    let (status, domains) = loop {
        assert!(
            start.elapsed() < ACCEPT_LIMIT,
            "no accepted optimae of the custom domain within {ACCEPT_LIMIT:?}; log:\n{}",
            node.log()
        );
        if let Ok(Some(exit)) = node.child.try_wait() {
            panic!("custom-node exited ({exit}); log:\n{}", node.log());
        }
        std::thread::sleep(Duration::from_millis(200));
        let Some(port) = bound_port(dir.path()) else {
            continue;
        };
        let (Some(status), Some(domains)) = (get(port, "/status"), get(port, "/domains")) else {
            continue;
        };
        if !status["domains"][0]["best_performance"].is_null() {
            break (status, domains);
        }
    };
    assert_eq!(status["domains"][0]["domain_id"], "cubic-root", "{status}");
    let best = status["domains"][0]["best_performance"].as_f64().unwrap();
    // Better than the domain's baseline (x = 0: −25) by at least the chain's ε.
    assert!(best > -25.0, "{status}");
    let entry = &domains["domains"][0];
    assert_eq!(entry["domain_id"], "cubic-root", "{domains}");
    assert_eq!(entry["params"]["baseline_performance"], -25.0, "{domains}");
    assert!(entry["champion"].is_object(), "{domains}");
    node.stop();
}

#[test]
fn check_config_knows_the_custom_domain() {
    let dir = tempfile::tempdir().unwrap();
    let ok = write_config(dir.path(), 0, custom_plugin::NAME);
    let out = run(&["check-config"], &ok);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));

    let unknown = write_config(dir.path(), 0, "no_such_domain");
    let out = run(&["check-config"], &unknown);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown plugin \"no_such_domain\"") && err.contains(custom_plugin::NAME),
        "{err}"
    );
}
