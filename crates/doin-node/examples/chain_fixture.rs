//! Writes a node directory holding a long, valid chain, for benchmarks that need one (the
//! dashboard's first render with 10,000 blocks, `scripts/bench-dashboard.sh`).
//!
//! Mining that many blocks with a real node takes minutes; here blocks are built and stored
//! directly with `doin-core` and the node's [`Store`], with timestamps spread over the past,
//! so a node started on the directory just loads them. Every few blocks the node's account
//! runs one optimae through commit, reveal and its own vote (the chain is in solo mode, so
//! it is the whole quorum): the chain carries a real history of accepted and rejected
//! verdicts for the dashboard's chart. Nothing is faked: the node re-validates the blocks
//! after the latest snapshot when it starts.
//!
//! Usage: `cargo run --release -p doin-node --example chain_fixture -- DIR BLOCKS PORT`
//! writes `DIR/genesis.json`, `DIR/config.json` (HTTP on 127.0.0.1:PORT) and `DIR/data/`,
//! then prints the height reached. Start the node with `doin-node --config DIR/config.json`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use doin_core::amount::Amount;
use doin_core::fee::suggested_bid;
use doin_core::hash::Hash32;
use doin_core::identity::Keypair;
use doin_core::optimae;
use doin_core::params::ChainParams;
use doin_core::state::ChainState;
use doin_core::tx::{SignedTx, TxBody, TxKind};
use doin_node::storage::Store;

/// Blocks between two optimae: one commit, reveal and vote cycle each.
const CYCLE_BLOCKS: u64 = 20;
/// Spacing of the generated blocks; the chain ends about now.
const BLOCK_SPACING_MS: u64 = 2_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: chain_fixture DIR BLOCKS PORT";
    let dir = PathBuf::from(args.next().ok_or_else(|| anyhow::anyhow!(usage))?);
    let blocks: u64 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let port: u16 = args.next().ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let key = Keypair::load_or_generate(&data.join("identity.key"))?;
    let me = key.account();

    let now = doin_node::context::now_ms();
    let mut params = ChainParams::dev("doin-bench");
    params.genesis_time_ms = now - (blocks + 10) * BLOCK_SPACING_MS;
    params.target_block_time_ms = BLOCK_SPACING_MS / 2;
    params.max_block_interval_ms = BLOCK_SPACING_MS;
    params.genesis_allocations = vec![(me, Amount::from_doin(1_000))];
    let domain = params.domains[0].id.clone();
    params.genesis_evaluators = vec![(domain.clone(), me)];
    params.validate()?;
    std::fs::write(
        dir.join("genesis.json"),
        serde_json::to_vec_pretty(&params)?,
    )?;
    let config = serde_json::json!({
        "node_label": "bench",
        "host": "127.0.0.1",
        "port": port,
        "data_dir": data,
        "chain": {"genesis_file": dir.join("genesis.json")},
        "domains": [{"domain_id": domain.as_str(), "optimize": false, "evaluate": false,
                     "optimization_plugin": "quadratic", "target_performance": -20.0}]
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let started = Instant::now();
        let store = Store::open(&data.join("chain.db"), 100).await?;
        let (genesis, mut state) = ChainState::genesis(&params);
        store.init(&params, &genesis, &state).await?;
        let min_stake = params.domains[0].min_stake;
        let mut claim = -300.0_f64;
        let mut pending: Option<(Hash32, Hash32, f64, [u8; 32])> = None;
        for height in 1..=blocks {
            let phase = height % CYCLE_BLOCKS;
            let nonce = state.account(&me).nonce;
            let fee = suggested_bid(state.base_fee, Amount(100));
            let sign = |kind: TxKind| -> SignedTx {
                TxBody {
                    chain_id: params.chain_id.clone(),
                    sender: me,
                    nonce,
                    fee,
                    kind,
                }
                .sign(&key)
            };
            let mut txs = Vec::new();
            // The claims close in on 0 (the quadratic's optimum) by 1.5% a cycle, until the
            // step falls under the domain's ε: then the domain has converged.
            let step = claim.abs() * 0.015;
            if phase == 1 && step >= 0.3 {
                // Every seventh optimae claims no real improvement: a rejected verdict.
                let cycle = height / CYCLE_BLOCKS;
                let next = if cycle % 7 == 3 {
                    claim + 0.01
                } else {
                    claim + step
                };
                let params_hash = doin_core::hash::HashKind::Params.hash(&height.to_le_bytes());
                let salt = [(height % 251) as u8; 32];
                let commitment = optimae::commitment(&domain, &me, &params_hash, next, &salt);
                txs.push(sign(TxKind::Commit {
                    domain: domain.clone(),
                    commitment,
                    stake: min_stake,
                }));
                pending = Some((commitment, params_hash, next, salt));
            } else if phase == 2 {
                if let Some((commitment, params_hash, c, salt)) = pending {
                    txs.push(sign(TxKind::Reveal {
                        commitment,
                        params_hash,
                        params_size: 32,
                        claim: c,
                        salt,
                        metrics: Vec::new(),
                    }));
                }
            } else if phase == 3 {
                if let Some((commitment, _, c, _)) = pending.take() {
                    txs.push(sign(TxKind::Vote {
                        commitment,
                        measured: c,
                        data_hash: Hash32::ZERO,
                    }));
                }
            }
            let ts = state
                .empty_block_allowed_from(&params)
                .max(params.genesis_time_ms + height * BLOCK_SPACING_MS);
            let built = state.build_block(&params, &key, ts, txs)?;
            if let Some(v) = built.receipt.verdicts.first() {
                if let doin_core::optimae::Verdict::Accepted { median, .. } = v.verdict {
                    claim = median;
                }
            }
            store
                .append_block(&built.block, &built.state, &built.receipt)
                .await?;
            state = built.state;
        }
        store.close().await;
        eprintln!(
            "chain_fixture: {} blocks in {:.1} s; champion {:?}",
            state.height,
            started.elapsed().as_secs_f64(),
            state.champions.get(&domain).map(|c| c.performance)
        );
        println!("{}", state.height);
        anyhow::Ok(())
    })
}
