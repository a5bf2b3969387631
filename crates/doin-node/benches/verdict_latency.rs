//! Reveal → verdict latency on a network of 4 block producers: real `doin-node` processes on
//! loopback (the networking issue's goal: under 1 s from reveal to accepted verdict,
//! evaluation cost excluded).
//!
//! Each run starts 4 nodes on one multi-producer genesis (as `tests/network_consensus.rs`):
//! all four are funded genesis evaluators of the `quadratic` domain (so all four are in the
//! proposer round robin), quorums of 3; two of them optimize, all four evaluate. The quadratic
//! domain evaluates in microseconds, so evaluation is excluded in effect: what is measured is
//! gossip, vote inclusion and block timing.
//!
//! It runs until `DOIN_BENCH_VERDICTS` (default 20) accepted verdicts, or
//! `DOIN_BENCH_LIMIT_S` (default 120) seconds, whichever first, then stops its nodes (they are
//! also killed when the bench panics: `common::Node` kills its process on drop). Only optimae
//! revealed after all four nodes were connected count. Per optimae it reports:
//!
//! - **chain**: block timestamp of the verdict block − that of the block that included the
//!   reveal (proposers stamp blocks from their own clocks; here they share one machine), and
//!   the same in blocks;
//! - **seen**: wall clock, on the optimizer's own node, from the arrival of the reveal's block
//!   to the arrival of the verdict's block (`GET /events`, server-sent events);
//! - **submitted**: wall clock, on the optimizer's node, from the reveal's submission to the
//!   arrival of the verdict's block. The optimizer submits its reveal as soon as its commit's
//!   block arrives, so that arrival stands for the submission.
//!
//! and, for the verdict blocks, whether they carried enough verified work to come at the
//! target block time (else they waited for the empty-block interval) and whether the
//! scheduled primary proposed them.
//!
//! Two block-timing settings are run, a deployment-like one and a faster one (`SETTINGS`).
//!
//! What bounds the figures (see `producer.rs` and `ChainState::build_block`): a block comes
//! `target_block_time_ms` after its parent only if it carries at least the difficulty in
//! verified work, else `max_block_interval_ms` after it. The verdict block of an accepted
//! optimae carries its work, so the reveal's block → verdict block is one target block time
//! (plus up to a producer poll, `target / 4`); a rejected verdict or a credit below the
//! difficulty waits for the interval. The reveal's own block carries no work (unless it also
//! holds another verdict), so "submitted" adds up to one `max_block_interval_ms`. Longer
//! tails come from votes the next proposer dropped; the report counts the votes that missed
//! the block after the reveal, and whether their voter had proposed the reveal's block (its
//! vote can overtake that block) or had sent another transaction just before (the two can
//! be admitted out of nonce order).
//!
//! Run: `cargo bench -p doin-node --bench verdict_latency` (about 2 minutes);
//! `DOIN_BENCH_VERBOSE=1` also prints every decided optimae, `DOIN_BENCH_KEEP=1` keeps the
//! nodes' directories and logs, `DOIN_BENCH_ONLY=fast` runs one setting.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{get_json, p2p_addr, wait_for, Node};
use doin_core::identity::Keypair;
use doin_node::context::now_ms;
use serde_json::{json, Value};

/// Block producers (all evaluators), of which the first `OPTIMIZERS` also optimize.
const NODES: usize = 4;
const OPTIMIZERS: usize = 2;
const QUORUM: u32 = 3;

/// Block timing of one run.
#[derive(Debug, Clone, Copy)]
struct Setting {
    name: &'static str,
    target_block_time_ms: u64,
    max_block_interval_ms: u64,
    proposer_timeout_ms: u64,
}

const SETTINGS: [Setting; 2] = [
    Setting {
        name: "deployment",
        target_block_time_ms: 500,
        max_block_interval_ms: 1_000,
        proposer_timeout_ms: 500,
    },
    Setting {
        name: "fast",
        target_block_time_ms: 200,
        max_block_interval_ms: 400,
        proposer_timeout_ms: 200,
    },
];

/// The quadratic domain, as every node runs it. A tiny step in 50 dimensions makes the
/// random-step climber improve slowly and steadily, by a few units per optimae (with larger
/// steps it reaches the optimum within seconds and stops producing optimae); the target is
/// one no run reaches. The chain's baseline stays `ChainParams::dev`'s −10,000, below any
/// starting point.
const N_PARAMS: u64 = 50;
const STEP_SIZE: f64 = 2e-6;
const TARGET_PERFORMANCE: f64 = -0.5;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let want: usize = env_or("DOIN_BENCH_VERDICTS", 20);
    let limit = Duration::from_secs(env_or("DOIN_BENCH_LIMIT_S", 120));
    println!(
        "verdict_latency: {NODES} producers on loopback, {OPTIMIZERS} optimizing, all \
         evaluating; quadratic domain ({N_PARAMS} params, evaluation takes microseconds), \
         quorum {QUORUM}; until {want} accepted verdicts or {limit:?}"
    );
    let only = std::env::var("DOIN_BENCH_ONLY").ok();
    for setting in SETTINGS {
        if only.as_deref().is_some_and(|o| o != setting.name) {
            continue;
        }
        let run = run(setting, want, limit);
        report(setting, &run);
    }
}

// === the network ===

fn genesis(root: &Path, setting: Setting) -> (PathBuf, Vec<PathBuf>) {
    common::network_genesis(
        root,
        "doin-verdict-latency",
        NODES,
        |_| Keypair::generate(),
        |params| {
            params.target_block_time_ms = setting.target_block_time_ms;
            params.max_block_interval_ms = setting.max_block_interval_ms;
            params.proposer_timeout_ms = setting.proposer_timeout_ms;
            params.domains[0].quorum_size = QUORUM;
        },
    )
}

fn write_config(dir: &Path, genesis: &Path, optimize: bool, bootstrap: Option<&str>) -> PathBuf {
    common::write_network_config(
        dir,
        genesis,
        bootstrap,
        json!({
            "domain_id": "quadratic", "optimize": optimize, "evaluate": true,
            "optimization_plugin": "quadratic", "target_performance": TARGET_PERFORMANCE,
            "optimization_config": {"n_params": N_PARAMS, "step_size": STEP_SIZE}
        }),
    )
}

// === following the chain live ===

/// A block as one node's `GET /events` delivered it.
#[derive(Debug, Clone)]
struct Seen {
    height: u64,
    hash: String,
    /// Wall clock (Unix ms) when the event was read.
    at_ms: u64,
    /// Accepted verdicts in the block.
    accepted: usize,
}

/// Reads a node's server-sent events into `seen` until the stream ends (the node stops).
fn follow(port: u16, seen: Arc<Mutex<Vec<Seen>>>, ready: Arc<AtomicBool>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(response) = ureq::get(&format!("http://127.0.0.1:{port}/events")).call() else {
            return;
        };
        let reader = std::io::BufReader::new(response.into_reader());
        let mut event = String::new();
        for line in reader.lines() {
            let Ok(line) = line else { return };
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                ready.store(true, Ordering::Relaxed);
                if event != "block" {
                    continue;
                }
                let at_ms = now_ms();
                let Ok(block) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                let accepted = block["verdicts"].as_array().map_or(0, |v| {
                    v.iter().filter(|v| v["verdict"] == "accepted").count()
                });
                seen.lock().unwrap().push(Seen {
                    height: block["height"].as_u64().unwrap_or(0),
                    hash: block["hash"].as_str().unwrap_or("").to_string(),
                    at_ms,
                    accepted,
                });
            }
        }
    })
}

// === one run ===

/// A block of the final chain, as far as this bench cares.
#[derive(Debug, Clone)]
struct ChainBlock {
    hash: String,
    timestamp_ms: u64,
    proposer: String,
    work: u64,
    difficulty: u64,
}

/// One decided optimae.
#[derive(Debug, Clone)]
struct Decided {
    /// The commitment's first 12 hex digits, as the nodes' logs show it.
    id: String,
    verdict: String,
    /// Verified improvement (accepted only).
    credit: f64,
    commit_height: u64,
    reveal_height: u64,
    verdict_height: u64,
    chain_ms: u64,
    /// Wall clock on the optimizer's node: reveal block → verdict block.
    seen_ms: Option<u64>,
    /// Wall clock on the optimizer's node: reveal submitted → verdict block.
    submitted_ms: Option<u64>,
    /// Reveal submitted → its block arrived (same node).
    inclusion_ms: Option<u64>,
    /// The verdict block met the work threshold (so could come at the target block time).
    enough_work: bool,
    /// Rank of the verdict block's proposer in the schedule (0: primary).
    proposer_rank: u64,
    /// Votes that missed the block after the reveal.
    late_votes: usize,
    /// Of those, votes that came in a block their voter proposed.
    late_votes_in_own_block: usize,
    /// Of those, votes of the evaluator that proposed the reveal's block (it votes as soon as
    /// it has built the block, racing the block to its peers).
    late_votes_by_reveal_proposer: usize,
    /// Of those, votes sent right after another transaction of the same voter (nonce − 1)
    /// that was not yet in a block when the reveal's block arrived.
    late_votes_after_own_pending_tx: usize,
}

#[derive(Debug, Default)]
struct Run {
    decided: Vec<Decided>,
    elapsed: Duration,
    blocks: u64,
    start_height: u64,
    end_height: u64,
    /// Block intervals (chain time) over the measured window.
    intervals_ms: Vec<u64>,
    /// Blocks of the window that met the work threshold.
    blocks_with_work: u64,
    final_difficulty: u64,
}

fn run(setting: Setting, want: usize, limit: Duration) -> Run {
    let root = tempfile::tempdir().unwrap();
    let (genesis, dirs) = genesis(root.path(), setting);
    let first = Node::start(&write_config(&dirs[0], &genesis, OPTIMIZERS > 0, None));
    let bootstrap = p2p_addr(&dirs[0]);
    let mut nodes = vec![first];
    for (i, dir) in dirs.iter().enumerate().skip(1) {
        let config = write_config(dir, &genesis, i < OPTIMIZERS, Some(&bootstrap));
        nodes.push(Node::start(&config));
    }
    wait_for("every node to see 3 peers", Duration::from_secs(60), || {
        nodes
            .iter()
            .all(|n| get_json(n.port, "/status")["peers"] == (NODES - 1) as u64)
    });
    let accounts: Vec<String> = nodes
        .iter()
        .map(|n| {
            get_json(n.port, "/status")["account"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();

    let seen: Vec<Arc<Mutex<Vec<Seen>>>> = (0..NODES).map(|_| Arc::default()).collect();
    let ready: Vec<Arc<AtomicBool>> = (0..NODES).map(|_| Arc::default()).collect();
    let followers: Vec<JoinHandle<()>> = nodes
        .iter()
        .zip(seen.iter().zip(&ready))
        .map(|(n, (s, r))| follow(n.port, Arc::clone(s), Arc::clone(r)))
        .collect();
    wait_for("event streams", Duration::from_secs(10), || {
        ready.iter().all(|r| r.load(Ordering::Relaxed))
    });
    let start_height = get_json(nodes[0].port, "/status")["chain_height"]
        .as_u64()
        .unwrap();
    let start = Instant::now();
    // The first accepted verdict may be of an optimae revealed before the start: one more.
    while start.elapsed() < limit {
        let accepted: usize = seen[0].lock().unwrap().iter().map(|s| s.accepted).sum();
        if accepted > want {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let elapsed = start.elapsed();
    // Let the last blocks reach everyone, then read the chain as node 0 holds it.
    std::thread::sleep(Duration::from_millis(setting.max_block_interval_ms));
    let end_height = get_json(nodes[0].port, "/status")["chain_height"]
        .as_u64()
        .unwrap();
    let from = start_height.saturating_sub(30).max(1);
    let blocks: BTreeMap<u64, Value> = (from..=end_height)
        .map(|h| (h, get_json(nodes[0].port, &format!("/chain/block/{h}"))))
        .collect();
    for node in nodes {
        let log = node.stop();
        assert!(!log.contains("panicked"), "a node panicked:\n{log}");
    }
    for f in followers {
        let _ = f.join();
    }
    let seen: Vec<Vec<Seen>> = seen
        .iter()
        .map(|s| std::mem::take(&mut *s.lock().unwrap()))
        .collect();
    let mut run = analyse(&blocks, &accounts, &seen, start_height, end_height);
    run.elapsed = elapsed;
    if std::env::var_os("DOIN_BENCH_KEEP").is_some() {
        println!(
            "(kept the nodes' directories and logs in {})",
            root.keep().display()
        );
    }
    run
}

fn analyse(
    blocks: &BTreeMap<u64, Value>,
    accounts: &[String],
    seen: &[Vec<Seen>],
    start_height: u64,
    end_height: u64,
) -> Run {
    let mut chain: BTreeMap<u64, ChainBlock> = BTreeMap::new();
    let mut commits: BTreeMap<String, u64> = BTreeMap::new();
    let mut reveals: BTreeMap<String, u64> = BTreeMap::new();
    // (height, commitment, verdict, optimizer, credit)
    let mut verdicts: Vec<(u64, String, String, String, f64)> = Vec::new();
    // commitment → (height of the block carrying the vote, voter, nonce)
    let mut votes: BTreeMap<String, Vec<(u64, String, u64)>> = BTreeMap::new();
    // (sender, nonce) → height, for every transaction
    let mut included: BTreeMap<(String, u64), u64> = BTreeMap::new();
    for (&h, block) in blocks {
        let header = &block["header"];
        chain.insert(
            h,
            ChainBlock {
                hash: block["hash"].as_str().unwrap().to_string(),
                timestamp_ms: header["timestamp_ms"].as_u64().unwrap(),
                proposer: header["proposer"].as_str().unwrap().to_string(),
                work: header["work"].as_u64().unwrap(),
                difficulty: header["difficulty"].as_u64().unwrap(),
            },
        );
        for tx in block["txs"].as_array().into_iter().flatten() {
            let body = &tx["tx"]["body"];
            let kind = &body["kind"];
            let commitment = kind["commitment"].as_str().unwrap_or("").to_string();
            let sender = body["sender"].as_str().unwrap_or("").to_string();
            let nonce = body["nonce"].as_u64().unwrap_or(0);
            included.insert((sender.clone(), nonce), h);
            match kind["type"].as_str() {
                Some("commit") => {
                    commits.insert(commitment, h);
                }
                Some("reveal") => {
                    reveals.insert(commitment, h);
                }
                Some("vote") => votes
                    .entry(commitment)
                    .or_default()
                    .push((h, sender, nonce)),
                _ => {}
            }
        }
        for v in block["receipt"]["verdicts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let verdict = match &v["verdict"] {
                Value::Object(o) => o.keys().next().cloned().unwrap_or_default(),
                other => other.to_string(),
            };
            verdicts.push((
                h,
                v["commitment"].as_str().unwrap().to_string(),
                verdict,
                v["optimizer"].as_str().unwrap().to_string(),
                v["verdict"]["Accepted"]["credit"].as_f64().unwrap_or(0.0),
            ));
        }
    }
    let mut producers = accounts.to_vec();
    producers.sort();
    let arrival = |node: usize, h: u64| -> Option<u64> {
        let hash = &chain.get(&h)?.hash;
        seen[node]
            .iter()
            .find(|s| s.height == h && &s.hash == hash)
            .map(|s| s.at_ms)
    };
    let mut decided = Vec::new();
    for (v_height, commitment, verdict, optimizer, credit) in verdicts {
        let Some(&r_height) = reveals.get(&commitment) else {
            continue;
        };
        if r_height <= start_height {
            continue;
        }
        let Some(&c_height) = commits.get(&commitment) else {
            continue;
        };
        let (r, v) = (&chain[&r_height], &chain[&v_height]);
        let node = accounts.iter().position(|a| *a == optimizer);
        let at = |h: u64| node.and_then(|n| arrival(n, h));
        let index = producers.iter().position(|p| *p == v.proposer).unwrap() as u64;
        let n = producers.len() as u64;
        let cast = votes.get(&commitment).cloned().unwrap_or_default();
        // Votes that missed the block after the reveal.
        let late: Vec<&(u64, String, u64)> =
            cast.iter().filter(|(h, ..)| *h > r_height + 1).collect();
        decided.push(Decided {
            id: commitment.chars().take(12).collect(),
            verdict,
            credit,
            commit_height: c_height,
            reveal_height: r_height,
            verdict_height: v_height,
            chain_ms: v.timestamp_ms.saturating_sub(r.timestamp_ms),
            seen_ms: at(r_height)
                .zip(at(v_height))
                .map(|(a, b)| b.saturating_sub(a)),
            submitted_ms: at(c_height)
                .zip(at(v_height))
                .map(|(a, b)| b.saturating_sub(a)),
            inclusion_ms: at(c_height)
                .zip(at(r_height))
                .map(|(a, b)| b.saturating_sub(a)),
            enough_work: v.work >= v.difficulty,
            proposer_rank: (index + n - v_height % n) % n,
            late_votes: late.len(),
            late_votes_in_own_block: late
                .iter()
                .filter(|(h, voter, _)| chain[h].proposer == *voter)
                .count(),
            late_votes_by_reveal_proposer: late
                .iter()
                .filter(|(_, voter, _)| *voter == r.proposer)
                .count(),
            late_votes_after_own_pending_tx: late
                .iter()
                .filter(|(_, voter, nonce)| {
                    nonce.checked_sub(1).is_some_and(|prev| {
                        included
                            .get(&(voter.clone(), prev))
                            .is_some_and(|&h| h > r_height)
                    })
                })
                .count(),
        });
    }
    let window: Vec<&ChainBlock> = chain
        .range(start_height..=end_height)
        .map(|(_, b)| b)
        .collect();
    Run {
        decided,
        blocks: end_height - start_height,
        start_height,
        end_height,
        intervals_ms: window
            .windows(2)
            .map(|w| w[1].timestamp_ms.saturating_sub(w[0].timestamp_ms))
            .collect(),
        blocks_with_work: window
            .iter()
            .skip(1)
            .filter(|b| b.work >= b.difficulty)
            .count() as u64,
        final_difficulty: chain.get(&end_height).map_or(0, |b| b.difficulty),
        ..Run::default()
    }
}

// === the report ===

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn row(label: &str, values: impl IntoIterator<Item = u64>) {
    let mut v: Vec<u64> = values.into_iter().collect();
    v.sort_unstable();
    if v.is_empty() {
        println!("  {label:<52} {:>5}", 0);
        return;
    }
    println!(
        "  {label:<52} {:>5} {:>6} {:>6} {:>6} {:>6}",
        v.len(),
        percentile(&v, 50.0),
        percentile(&v, 90.0),
        percentile(&v, 99.0),
        v[v.len() - 1]
    );
}

fn report(setting: Setting, run: &Run) {
    println!();
    println!(
        "== {}: target_block_time_ms {}, max_block_interval_ms {}, proposer_timeout_ms {} ==",
        setting.name,
        setting.target_block_time_ms,
        setting.max_block_interval_ms,
        setting.proposer_timeout_ms
    );
    println!(
        "measured {:.1} s: heights {}..{} ({} blocks), {} optimae revealed and decided in it",
        run.elapsed.as_secs_f64(),
        run.start_height,
        run.end_height,
        run.blocks,
        run.decided.len()
    );
    let accepted: Vec<&Decided> = run
        .decided
        .iter()
        .filter(|d| d.verdict == "Accepted")
        .collect();
    let others: Vec<&Decided> = run
        .decided
        .iter()
        .filter(|d| d.verdict != "Accepted")
        .collect();
    println!(
        "  {:<52} {:>5} {:>6} {:>6} {:>6} {:>6}",
        "accepted verdicts", "count", "p50", "p90", "p99", "max"
    );
    row(
        "reveal block -> verdict block, chain time (ms)",
        accepted.iter().map(|d| d.chain_ms),
    );
    row(
        "reveal block -> verdict block (blocks)",
        accepted.iter().map(|d| d.verdict_height - d.reveal_height),
    );
    row(
        "reveal block seen -> verdict block seen, wall (ms)",
        accepted.iter().filter_map(|d| d.seen_ms),
    );
    row(
        "reveal submitted -> verdict block seen, wall (ms)",
        accepted.iter().filter_map(|d| d.submitted_ms),
    );
    row(
        "  of which reveal submitted -> its block seen (ms)",
        accepted.iter().filter_map(|d| d.inclusion_ms),
    );
    row(
        "commit block -> reveal block (blocks)",
        accepted.iter().map(|d| d.reveal_height - d.commit_height),
    );
    row(
        "  verdict block met the work threshold: chain ms",
        accepted
            .iter()
            .filter(|d| d.enough_work)
            .map(|d| d.chain_ms),
    );
    row(
        "  verdict block below the threshold: chain ms",
        accepted
            .iter()
            .filter(|d| !d.enough_work)
            .map(|d| d.chain_ms),
    );
    row(
        "  all votes in the block after the reveal: chain ms",
        accepted
            .iter()
            .filter(|d| d.late_votes == 0)
            .map(|d| d.chain_ms),
    );
    row(
        "  a vote missed that block: chain ms",
        accepted
            .iter()
            .filter(|d| d.late_votes > 0)
            .map(|d| d.chain_ms),
    );
    let credits = accepted.iter().map(|d| d.credit);
    println!(
        "  credit of the accepted optimae: {:.2} to {:.2}; verdict blocks meeting the work \
         threshold: {} of {}; proposed by the scheduled primary: {}",
        credits.clone().fold(f64::INFINITY, f64::min),
        credits.fold(0.0, f64::max),
        accepted.iter().filter(|d| d.enough_work).count(),
        accepted.len(),
        accepted.iter().filter(|d| d.proposer_rank == 0).count(),
    );
    row(
        "rejected / no-quorum verdicts: chain ms",
        others.iter().map(|d| d.chain_ms),
    );
    let late: usize = run.decided.iter().map(|d| d.late_votes).sum();
    let own: usize = run.decided.iter().map(|d| d.late_votes_in_own_block).sum();
    let after: usize = run
        .decided
        .iter()
        .map(|d| d.late_votes_after_own_pending_tx)
        .sum();
    let by_proposer: usize = run
        .decided
        .iter()
        .map(|d| d.late_votes_by_reveal_proposer)
        .sum();
    println!(
        "  votes (all verdicts) that missed the block after the reveal: {late}; of which cast \
         by the reveal block's proposer: {by_proposer}, sent right after the voter's own \
         still-pending transaction: {after}; included in a block their voter proposed: {own}"
    );
    row(
        "all block intervals in the window (ms)",
        run.intervals_ms.iter().copied(),
    );
    println!(
        "  blocks meeting the work threshold: {} of {}; difficulty at the end: {}",
        run.blocks_with_work, run.blocks, run.final_difficulty
    );
    if std::env::var_os("DOIN_BENCH_VERBOSE").is_some() {
        for d in &run.decided {
            println!("    {} {d:?}", d.id);
        }
    }
}
