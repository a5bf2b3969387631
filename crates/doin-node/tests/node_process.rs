//! The real `doin-node` binary on a temporary data directory and a free loopback port:
//! it mines, verifies its own optimae in solo mode, conserves coins, survives restarts and
//! `kill -9`, and refuses a bad config before touching anything.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{write_solo_config, Node, BIN};

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
    let config = write_solo_config(dir.path(), serde_json::json!({}));
    let node = Node::start(&config);
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
    let config = write_solo_config(dir.path(), serde_json::json!({}));
    let mut last_height = 0;
    let mut last_tip = String::new();
    for round in 0..4 {
        let node = Node::start(&config);
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
