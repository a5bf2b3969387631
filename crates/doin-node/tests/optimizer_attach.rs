//! A remote worker (`doin-optimizer --attach`) against the real `doin-node` binary: a solo
//! node that only evaluates (`optimize: false`) verifies the worker's optimae, which becomes
//! the champion, credited to the worker's own account.
//!
//! The worker runs in process through `doin_optimizer::attach::run`, the function the
//! `doin-optimizer` binary is a thin wrapper around (flags, progress bar, Ctrl-C): a test of
//! this crate cannot get the path of another package's binary (`CARGO_BIN_EXE_*` names only
//! this package's), and building it from the test would race the build that runs the test.
//! The binary's own flag handling and error messages are tested in doin-optimizer's
//! `tests/cli.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{get_json, wallet, write_solo_config, Node};
use doin_core::config::NodeConfig;
use doin_core::identity::Keypair;
use doin_optimizer::attach::{self, AttachError, AttachOptions, Event, Outcome, StopReason};
use serde_json::json;

/// The quadratic domain as the node's config has it (4 dimensions, target −5), with its
/// plugin, and options for a worker of `port` with `key`.
fn worker_options(config: &std::path::Path, port: u16, key: &std::path::Path) -> AttachOptions {
    let text = std::fs::read_to_string(config).unwrap();
    let (config, _) = NodeConfig::from_json_str(&text).unwrap();
    let domain = config.domains[0].clone();
    let plugin = doin_plugins::builtin_registry()
        .instantiate(&domain.optimization_plugin, &domain.plugin_setup())
        .unwrap();
    let mut opts = AttachOptions::new(
        &format!("http://127.0.0.1:{port}"),
        key.to_path_buf(),
        domain,
        plugin,
    );
    opts.chain_id = Some(config.chain.chain_id().to_string());
    opts.seed = 7;
    opts.rounds = 3_000;
    opts
}

#[test]
fn an_attached_worker_commits_reveals_and_becomes_champion_with_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_solo_config(
        dir.path(),
        json!({"domains": [{
            "domain_id": "quadratic",
            "optimize": false,
            "evaluate": true,
            "optimization_plugin": "quadratic",
            "target_performance": -5.0,
            "optimization_config": {"n_params": 4, "step_size": 0.5}
        }]}),
    );
    let node = Node::start(&config);
    let port = node.port;
    node.wait_height(1, Duration::from_secs(60));
    let domains = get_json(port, "/domains");
    assert!(domains["domains"][0]["champion"].is_null(), "{domains}");

    // An unfunded worker is told how to fund itself, before any work is done.
    let key_path = dir.path().join("worker.key");
    let err = attach::run(worker_options(&config, port, &key_path), &mut |_| {}).unwrap_err();
    assert!(matches!(err, AttachError::NoFunds { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("doin-node wallet") && text.contains("transfer --to"),
        "{text}"
    );
    // The key was created on that first run; fund its account from the node's.
    let worker = Keypair::load(&key_path).unwrap().account();
    assert!(text.contains(&worker.to_hex()), "{text}");
    let node_key = dir.path().join("data").join("identity.key");
    let out = wallet(
        port,
        &node_key,
        &["transfer", "--to", &worker.to_hex(), "--amount", "5"],
    );
    assert!(out.contains("sent 5 DOIN"), "{out}");

    // Another chain's node is refused.
    let mut wrong = worker_options(&config, port, &key_path);
    wrong.chain_id = Some("another-chain".into());
    let err = attach::run(wrong, &mut |_| {}).unwrap_err();
    assert!(matches!(err, AttachError::WrongChain { .. }), "{err}");

    // The worker, bounded in rounds and (by a watchdog that stops it) in time.
    let opts = worker_options(&config, port, &key_path);
    let stop = Arc::clone(&opts.stop);
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (stop, finished) = (Arc::clone(&stop), Arc::clone(&finished));
        std::thread::spawn(move || {
            for _ in 0..1200 {
                if finished.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            stop.store(true, Ordering::Relaxed);
            true
        })
    };
    let mut events = Vec::new();
    let result = attach::run(opts, &mut |e: &Event| {
        if !matches!(e, Event::Progress { .. }) {
            eprintln!("worker: {e}");
            events.push(e.clone());
        }
    });
    finished.store(true, Ordering::Relaxed);
    let timed_out = watchdog.join().unwrap();
    let summary = result.unwrap_or_else(|e| {
        panic!(
            "worker failed: {e}\nnode log:\n{}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        )
    });
    eprintln!("{summary}");
    assert!(
        !timed_out,
        "the worker did not finish within 120 s: {summary}"
    );
    assert!(
        matches!(
            summary.stopped,
            StopReason::TargetReached | StopReason::Rounds
        ),
        "{summary}"
    );
    assert!(summary.commits >= 1 && summary.accepted >= 1, "{summary}");
    assert!(summary.credit > 0.0 && summary.work > 0, "{summary}");
    assert!(summary.rounds > 0 && summary.rounds <= 3_000, "{summary}");
    assert!(summary.fees_paid.units() > 0, "{summary}");
    assert_eq!(
        summary.stakes_locked.units(),
        summary.commits * 10_000,
        "min_stake per commit: {summary}"
    );
    assert!(summary.champion_is_ours, "{summary}");
    // The summary the binary prints.
    let text = summary.to_string();
    assert!(text.contains("accepted"), "{text}");
    assert!(text.contains("credit"), "{text}");
    // Every step was reported.
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Attached { account, .. } if *account == worker)));
    assert!(events.iter().any(|e| matches!(e, Event::Committed { .. })));
    assert!(events.iter().any(|e| matches!(e, Event::Revealed { .. })));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Verdict {
            outcome: Outcome::Accepted { .. },
            ..
        }
    )));

    // On chain: the champion is the worker's optimae, verified by the node's evaluator, and
    // the node serves its parameters.
    let domains = get_json(port, "/domains");
    let champion = &domains["domains"][0]["champion"];
    assert_eq!(champion["optimizer"], worker.to_hex(), "{domains}");
    let accepted = summary
        .optimae
        .iter()
        .find(|o| matches!(o.outcome, Outcome::Accepted { .. }))
        .unwrap();
    let decided = get_json(port, &format!("/optimae/{}", accepted.commitment));
    assert_eq!(decided["status"], "decided", "{decided}");
    assert_eq!(decided["record"]["optimizer"], worker.to_hex());
    assert!(
        decided["record"]["verdict"]["Accepted"].is_object(),
        "{decided}"
    );
    let params_hash = champion["params_hash"].as_str().unwrap();
    let bytes = ureq::get(&format!("http://127.0.0.1:{port}/params/{params_hash}"))
        .call()
        .unwrap();
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut bytes.into_reader(), &mut body).unwrap();
    assert_eq!(
        doin_core::plugin::params_hash(&body).to_hex(),
        params_hash,
        "the champion's parameters, served by hash"
    );
    assert_eq!(body.len() as u64, champion["params_size"].as_u64().unwrap());
    // A worker started once the champion is at the target has nothing to do.
    let again = attach::run(worker_options(&config, port, &key_path), &mut |_| {}).unwrap();
    assert_eq!(again.stopped, StopReason::TargetReached, "{again}");
    assert_eq!((again.rounds, again.commits), (0, 0), "{again}");
    // The worker's account paid the stake and fees and got the accepted stake back.
    let account = get_json(port, &format!("/account/{worker}?limit=0"));
    assert_eq!(
        account["balance"].as_u64(),
        summary.balance_end.map(|b| b.units()),
        "{account}"
    );
    node.stop();
}
