//! The `doin-optimizer` binary's flags and the errors a user can act on, without a node: a
//! standalone run, `--attach` without `--key`, an unreachable node, and a node of another
//! chain (a one-request HTTP stub). The worker against a real node is tested in doin-node's
//! `tests/optimizer_attach.rs`.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_doin-optimizer");
const QUICKSTART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/quickstart.json"
);

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--config", QUICKSTART])
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn standalone_runs_and_prints_a_json_summary() {
    let out = run(&["--rounds", "30", "--seed", "3", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["domain"], "quadratic");
    assert_eq!(summary["rounds"], 30);
}

/// `--no-stop` runs every round even past the target (quickstart's −50 is reached within
/// a few hundred rounds); without it the run stops there.
#[test]
fn no_stop_runs_past_the_target() {
    let rounds = |extra: &[&str]| {
        let mut args = vec!["--rounds", "3000", "--seed", "3", "--json"];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        summary["rounds"].as_u64().unwrap()
    };
    assert!(rounds(&[]) < 3000, "stops at the target");
    assert_eq!(rounds(&["--no-stop"]), 3000);
}

#[test]
fn attach_needs_a_key_and_a_key_needs_attach() {
    let out = run(&["--attach", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--attach needs --key FILE"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--key", "worker.key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("add --attach URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unreachable_node_is_reported_as_such_and_the_key_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("worker.key");
    // A port nobody listens on: bind one, then free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = run(&["--attach", &url, "--key", key.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the node at {url}")) && err.contains("is it running"),
        "{err}"
    );
    assert!(key.exists(), "the worker's key is created on first use");
}

#[test]
fn a_node_of_another_chain_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("worker.key");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    // Answers one request, whatever it is, with the status of a node on chain "other".
    let stub = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = conn.read(&mut buf).unwrap();
        let body = serde_json::json!({
            "chain_id": "other", "chain_height": 5, "finalized_height": 0, "base_fee": 1000,
            "account": "00".repeat(32),
        })
        .to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let out = run(&["--attach", &url, "--key", key.to_str().unwrap()]);
    stub.join().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(r#"runs chain "other", not "doin-dev""#) && err.contains("--chain-id other"),
        "{err}"
    );
}
