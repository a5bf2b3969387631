//! Trial reports between islands, against a real `doin-node` process: the node gossips its
//! GA's trainings signed by its key; it takes a bonded peer's honest report, refutes a lying
//! one by a spot check, rejects a forged signature and ignores an unbonded reporter.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{metric_sample, network_genesis, p2p_addr, write_network_config, Node};
use doin_core::identity::Keypair;
use doin_core::params::DomainId;
use doin_core::plugin::{PluginSetup, TrainRequest};
use doin_core::trials::{SignedTrialReport, Trial, TrialReport};
use doin_core::wire::{GossipMessage, Topic};
use doin_net::{Multiaddr, NetConfig, NetEvent};
use serde_json::json;

fn key(i: usize) -> Keypair {
    Keypair::from_seed([40 + i as u8; 32])
}

fn gossip_count(node: &Node, result: &str) -> f64 {
    let text = ureq::get(&format!("http://127.0.0.1:{}/metrics", node.port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    metric_sample(
        &text,
        "doin_gossip_messages_total",
        &["topic=\"trials\"", &format!("result=\"{result}\"")],
    )
    .unwrap_or(0.0)
}

/// Trials trained for real with the quadratic domain's trainer (so they reproduce).
fn honest_trials(seeds: std::ops::Range<u64>) -> Vec<Trial> {
    let mut setup = PluginSetup::new(DomainId::new("quadratic").unwrap());
    setup.data_config = json!({"n_params": 4});
    let plugin = doin_plugins::quadratic::factory(&setup).unwrap();
    let trainer = plugin.trainer().unwrap();
    let limits = doin_core::limits::ResourceLimits::default();
    seeds
        .map(|seed| {
            let hyperparameters = (0..4)
                .map(|i| (format!("x{i}"), (seed as f64 + i as f64) / 10.0))
                .collect();
            let request = TrainRequest {
                hyperparameters: &hyperparameters,
                seed,
                limits: &limits,
            };
            let performance = trainer.train(&request).unwrap().claimed_performance;
            Trial {
                hyperparameters,
                seed,
                performance,
            }
        })
        .collect()
}

fn report(chain_id: &str, reporter: &Keypair, sequence: u64, trials: Vec<Trial>) -> GossipMessage {
    let report = TrialReport {
        chain_id: chain_id.to_string(),
        domain: DomainId::new("quadratic").unwrap(),
        reporter: reporter.account(),
        sequence,
        trials,
    };
    GossipMessage::Trials(Box::new(report.sign(reporter)))
}

#[test]
fn trial_reports_flow_between_islands_and_lies_and_forgeries_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let chain_id = "doin-trials-test";
    // Node 0 runs as a process; node 1's bonded key is the in-process peer's.
    let (genesis, dirs) = network_genesis(root.path(), chain_id, 2, key, |_| {});
    let domain = json!({
        "domain_id": "quadratic",
        "optimize": true,
        "evaluate": true,
        "optimization_plugin": "quadratic",
        "synthetic_data_config": {"n_params": 4},
        "optimization_config": {
            "n_params": 4, "optimizer": "ga", "meta_optimizer": "gp",
            "round_interval_ms": 100, "trial_spot_checks": 1.0
        }
    });
    let node = Node::start(&write_network_config(&dirs[0], &genesis, None, domain));
    let node_addr: Multiaddr = p2p_addr(&dirs[0]).parse().unwrap();
    let node_account = key(0).account();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer = key(1);
    let mut config = NetConfig::loopback(chain_id);
    config.bootstrap = vec![node_addr];
    let (handle, mut events) = runtime
        .block_on(async { doin_net::start(&peer, config) })
        .unwrap();
    let topic = Topic::Trials(DomainId::new("quadratic").unwrap());
    runtime.block_on(async { handle.subscribe(&topic).await.unwrap() });

    // The node's own reports arrive, signed by its key, in increasing sequence.
    let received: Vec<SignedTrialReport> = runtime.block_on(async {
        let start = Instant::now();
        let mut received = Vec::new();
        while received.len() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no trial reports from the node; log:\n{}",
                std::fs::read_to_string(&node.log).unwrap_or_default()
            );
            if let Ok(Some(NetEvent::Gossip {
                message: GossipMessage::Trials(report),
                ..
            })) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
            {
                received.push(*report);
            }
        }
        received
    });
    for r in &received {
        r.verify(chain_id).unwrap();
        assert_eq!(r.report.reporter, node_account);
        assert!(!r.report.trials.is_empty());
    }
    assert!(received
        .windows(2)
        .all(|w| w[0].report.sequence < w[1].report.sequence));

    // The peer's reports. Every report is spot-checked (`trial_spot_checks: 1.0`).
    let outsider = Keypair::from_seed([99; 32]);
    let mut forged = match report(chain_id, &peer, 1, honest_trials(0..2)) {
        GossipMessage::Trials(r) => *r,
        _ => unreachable!(),
    };
    forged.report.trials[0].performance += 1.0;
    let mut lie = honest_trials(10..13);
    lie.iter_mut().for_each(|t| t.performance += 5.0);
    let attempts = [
        // Honest, from a bonded evaluator: accepted and adopted.
        (report(chain_id, &peer, 1, honest_trials(0..3)), "accepted"),
        // Not signed by its reporter: rejected (the sender is at fault).
        (GossipMessage::Trials(Box::new(forged)), "rejected"),
        // Well signed, but by no evaluator of the domain: ignored.
        (
            report(chain_id, &outsider, 1, honest_trials(3..5)),
            "ignored",
        ),
        // Well signed and bonded but false: forwarded, then refuted by the node's spot check.
        (report(chain_id, &peer, 2, lie), "accepted"),
    ];
    for (message, result) in attempts {
        let before = gossip_count(&node, result);
        let start = Instant::now();
        runtime.block_on(async {
            while gossip_count(&node, result) <= before {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "no {result} trial report counted"
                );
                let _ = handle.publish(&topic, &message).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    }
    let start = Instant::now();
    while !std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .contains("refuted by a spot check")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the lie was never refuted; log:\n{}",
            std::fs::read_to_string(&node.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The engine's own account of it: the honest trials joined its surrogate's records and
    // were dropped again with the reporter's refutation.
    let ga =
        || common::get_json(node.port, "/domains")["domains"][0]["local"]["search"]["ga"].clone();
    common::wait_for(
        "the refutation in the engine's stats",
        Duration::from_secs(10),
        || ga()["refuted_reporters"] == 1,
    );
    let ga = ga();
    assert_eq!(ga["reported_records"], 0, "{ga}");
    assert!(ga["spot_checks"].as_u64().unwrap() >= 2, "{ga}");
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", node.port))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let quadratic = ["domain=\"quadratic\""];
    assert_eq!(
        metric_sample(
            &metrics,
            "doin_optimizer_refuted_reporters_total",
            &quadratic
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric_sample(&metrics, "doin_optimizer_spot_checks_total", &quadratic) >= Some(2.0),
        "{metrics}"
    );
    let log = node.stop();
    assert!(log.contains("spot check reproduced"), "{log}");
}
