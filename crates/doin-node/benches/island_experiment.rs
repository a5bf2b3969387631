//! The optimizer issue's experiment, with real nodes: does a network of N islands reach a
//! target in fewer rounds than one node, when every result is verified on chain?
//!
//! Quadratic domain, n = 10, one shared target; the easy target −100 and the hard target −50;
//! the random-step climber (the original's algorithm) and the GA; 1, 2 and 4 `doin-node`
//! processes on loopback with the full commit → reveal → quorum vote → verdict pipeline
//! (one node: solo mode, as the original ran it; more: quorums drawn from the other nodes).
//! Champions accepted on chain (and, provisionally, revealed ones) migrate into every
//! island. Each round is paced to `ROUND_MS` of "training" (the quadratic itself takes
//! microseconds; without pacing the chain's latency would look free).
//!
//! For each target it records the wall seconds from start and the rounds of the node whose
//! optimae first took the champion to the target, counted when the verdict was on chain.
//!
//! ```sh
//! cargo bench -p doin-node --bench island_experiment              # 20 seeds
//! cargo bench -p doin-node --bench island_experiment -- --quick   # 2 seeds, < 2 minutes
//! cargo bench -p doin-node --bench island_experiment -- --nodes 2,4  # some node counts
//! cargo bench -p doin-node --bench island_experiment -- --seeds 10 --round-ms 300 --optimizers ga
//! ```
//! (`scripts/island-experiment.sh` runs the same.) Every run is bounded in time and kills
//! its processes.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Node;
use doin_core::identity::Keypair;
use serde_json::{json, Value};

const TARGETS: [f64; 2] = [-100.0, -50.0];
/// Target block time: commit, reveal and votes each take about one block, so a champion is
/// verified a few hundred milliseconds after it was found.
const BLOCK_MS: u64 = 100;
/// Longest a run may take before it counts as not reaching the hard target.
const RUN_LIMIT: Duration = Duration::from_secs(90);

struct Settings {
    seeds: u64,
    round_ms: u64,
    node_counts: Vec<usize>,
    optimizers: Vec<&'static str>,
}

/// The optimizers compared (`optimization_config.optimizer`; `ga_gp`: the GA with L3).
const OPTIMIZERS: [&str; 3] = ["random_step", "ga", "ga_gp"];

/// One line of the table: the seeds of one optimizer and node count that reached `target`.
struct Row {
    optimizer: &'static str,
    nodes: usize,
    target: f64,
    /// Sorted, one per seed that reached the target.
    rounds: Vec<f64>,
    seconds: Vec<f64>,
    missed: usize,
}

/// One run's result: per target, (rounds, seconds) when reached.
type Hits = [Option<(u64, f64)>; 2];

/// The shared target vector, fixed for every run (as in scripts/optimizer-experiment.sh).
fn target_vector() -> Vec<f64> {
    (0..10)
        .map(|i| {
            let h = seeded(&format!("island-experiment target {i}"));
            let unit =
                f64::from(u32::from_le_bytes(h[..4].try_into().unwrap())) / f64::from(u32::MAX);
            unit * 10.0 - 5.0
        })
        .collect()
}

/// 32 bytes derived from `label` (reproducible runs).
fn seeded(label: &str) -> [u8; 32] {
    doin_core::hash::HashKind::DataSeed.hash(label.as_bytes()).0
}

fn key_for(seed: u64, node: usize) -> Keypair {
    Keypair::from_seed(seeded(&format!(
        "island-experiment seed {seed} node {node}"
    )))
}

/// The domain entry of every node's config.
fn domain_config(optimizer: &str, round_ms: u64) -> Value {
    json!({
        "domain_id": "quadratic", "optimize": true, "evaluate": true,
        "optimization_plugin": "quadratic",
        "synthetic_data_plugin": "quadratic",
        "inference_plugin": "quadratic",
        "target_performance": TARGETS[1],
        "synthetic_data_config": {"n_params": 10, "target": target_vector()},
        "optimization_config": optimization_config(optimizer, round_ms)
    })
}

/// `ga_gp` is the GA with its L3 meta-optimizer (`meta_optimizer: "gp"`).
fn optimization_config(optimizer: &str, round_ms: u64) -> Value {
    let mut config = json!({"n_params": 10, "step_size": 0.5, "round_interval_ms": round_ms});
    match optimizer {
        "ga_gp" => {
            config["optimizer"] = json!("ga");
            config["meta_optimizer"] = json!("gp");
        }
        other => config["optimizer"] = json!(other),
    }
    config
}

/// One network of `n` nodes running `optimizer` with `seed`; stops itself.
fn run(n: usize, optimizer: &str, seed: u64, round_ms: u64) -> Hits {
    let root = tempfile::tempdir().unwrap();
    let (genesis, dirs) = common::network_genesis(
        root.path(),
        "doin-island-experiment",
        n,
        |i| key_for(seed, i),
        |params| {
            // One node runs as the original did: solo, verifying its own work.
            params.solo_mode = n == 1;
            params.target_block_time_ms = BLOCK_MS;
            params.max_block_interval_ms = 2 * BLOCK_MS;
            params.proposer_timeout_ms = BLOCK_MS;
            params.domains[0].quorum_size = if n == 1 { 1 } else { (n as u32 - 1).min(3) };
            params.domains[0].baseline_performance = -1_000.0;
        },
    );
    let accounts: Vec<String> = (0..n)
        .map(|i| key_for(seed, i).account().to_hex())
        .collect();
    let mut nodes = Vec::new();
    let mut bootstrap: Option<String> = None;
    for dir in &dirs {
        let config = common::write_network_config(
            dir,
            &genesis,
            bootstrap.as_deref(),
            domain_config(optimizer, round_ms),
        );
        nodes.push(Node::start(&config));
        if bootstrap.is_none() {
            bootstrap = Some(common::p2p_addr(dir));
        }
    }
    let start = Instant::now();
    let mut hits: Hits = [None, None];
    while start.elapsed() < RUN_LIMIT && hits[1].is_none() {
        let statuses: Vec<Value> = nodes
            .iter()
            .map(|node| common::get_json(node.port, "/status"))
            .collect();
        let domain = &statuses[0]["domains"][0];
        if let Some(best) = domain["best_performance"].as_f64() {
            let holder = domain["champion"]["optimizer"].as_str().unwrap_or_default();
            let rounds = accounts
                .iter()
                .position(|a| a == holder)
                .and_then(|i| statuses[i]["domains"][0]["rounds"].as_u64())
                .unwrap_or(0);
            for (hit, target) in hits.iter_mut().zip(TARGETS) {
                if hit.is_none() && best >= target {
                    *hit = Some((rounds, start.elapsed().as_secs_f64()));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if hits[1].is_none() {
        // A run that missed: what each node was doing at the end.
        for (i, node) in nodes.iter().enumerate() {
            let log = std::fs::read_to_string(&node.log).unwrap_or_default();
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .filter(|l| !l.contains("mined: 0 txs"))
                .take(30)
                .collect();
            eprintln!("--- node {i}, last lines of its log (empty blocks left out):");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
    drop(nodes); // kills the processes
    hits
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[idx]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--flag value` options, to rerun part of the experiment (the "vs 1" column needs the
    // 1-node rows in the same run).
    let option = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let list = |flag: &str| {
        option(flag).map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .collect::<Vec<_>>()
        })
    };
    let first_seed: u64 = option("--first-seed")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut settings = if quick {
        Settings {
            seeds: 2,
            round_ms: 100,
            node_counts: vec![1, 2, 4],
            optimizers: OPTIMIZERS.to_vec(),
        }
    } else {
        Settings {
            seeds: 20,
            round_ms: 300,
            node_counts: vec![1, 2, 4],
            optimizers: OPTIMIZERS.to_vec(),
        }
    };
    if let Some(nodes) = list("--nodes") {
        settings.node_counts = nodes.iter().filter_map(|n| n.parse().ok()).collect();
    }
    if let Some(seeds) = option("--seeds").and_then(|s| s.parse().ok()) {
        settings.seeds = seeds;
    }
    if let Some(ms) = option("--round-ms").and_then(|s| s.parse().ok()) {
        settings.round_ms = ms;
    }
    if let Some(names) = list("--optimizers") {
        settings.optimizers = OPTIMIZERS
            .iter()
            .copied()
            .filter(|o| names.iter().any(|n| n == o))
            .collect();
    }
    println!(
        "island experiment: quadratic n=10, {} seeds, rounds paced to {} ms, blocks every {BLOCK_MS} ms",
        settings.seeds, settings.round_ms
    );
    let mut table: Vec<Row> = Vec::new();
    for &optimizer in &settings.optimizers {
        for &n in &settings.node_counts {
            let mut results: Vec<Hits> = Vec::new();
            for seed in first_seed..first_seed + settings.seeds {
                let hits = run(n, optimizer, seed, settings.round_ms);
                eprintln!("{optimizer} n={n} seed {seed}: {hits:?}");
                results.push(hits);
            }
            for (t, target) in TARGETS.iter().enumerate() {
                let mut rounds: Vec<f64> = results
                    .iter()
                    .filter_map(|h| h[t].map(|(r, _)| r as f64))
                    .collect();
                let mut seconds: Vec<f64> = results
                    .iter()
                    .filter_map(|h| h[t].map(|(_, s)| s))
                    .collect();
                rounds.sort_by(f64::total_cmp);
                seconds.sort_by(f64::total_cmp);
                let missed = results.iter().filter(|h| h[t].is_none()).count();
                table.push(Row {
                    optimizer,
                    nodes: n,
                    target: *target,
                    rounds,
                    seconds,
                    missed,
                });
            }
        }
    }
    println!(
        "\n{:<12} {:>5} {:>7} | {:>8} {:>15} {:>8} | {:>8} {:>15} {:>8} | {:>6}",
        "optimizer",
        "nodes",
        "target",
        "rounds",
        "p10-p90",
        "vs 1",
        "seconds",
        "p10-p90",
        "vs 1",
        "missed"
    );
    for row in &table {
        let median = |v: &[f64]| percentile(v, 0.5);
        let base = table
            .iter()
            .find(|b| b.optimizer == row.optimizer && b.nodes == 1 && b.target == row.target);
        let ratio = |pick: fn(&Row) -> &Vec<f64>, v: &[f64]| {
            base.map_or(f64::NAN, |b| median(v) / median(pick(b)))
        };
        let (rounds, seconds) = (&row.rounds, &row.seconds);
        println!(
            "{:<12} {:>5} {:>7} | {:>8.1} {:>7.1}-{:<7.1} {:>7.2}x | {:>8.2} {:>7.2}-{:<7.2} {:>7.2}x | {:>6}",
            row.optimizer,
            row.nodes,
            row.target,
            median(rounds),
            percentile(rounds, 0.1),
            percentile(rounds, 0.9),
            ratio(|b| &b.rounds, rounds),
            median(seconds),
            percentile(seconds, 0.1),
            percentile(seconds, 0.9),
            ratio(|b| &b.seconds, seconds),
            row.missed
        );
    }
}
