//! Criterion benchmarks for the chain store (`doin_node::storage`):
//! - appending blocks of 100 transfers to a fresh store (goal >= 500 blocks/s);
//! - lookup latency by height, by hash, by transaction id and by account, on a store of
//!   3,000 blocks;
//! - restart (`Store::open` + `load_state`) of a store of 100,000 blocks (goal < 2 s).
//!
//! The fixtures are built once per run in temporary directories; their build times are
//! printed too. The whole run takes a few minutes at most.
//!
//! Run: `cargo bench -p doin-node --bench storage`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, Criterion, SamplingMode, Throughput};
use doin_core::amount::Amount;
use doin_core::block::Block;
use doin_core::fee::FeeBid;
use doin_core::identity::Keypair;
use doin_core::params::ChainParams;
use doin_core::state::{BlockReceipt, ChainState};
use doin_core::tx::{SignedTx, TxBody, TxKind};
use doin_node::storage::{Store, DEFAULT_SNAPSHOT_INTERVAL};
use tokio::runtime::Runtime;

/// Blocks appended per measured iteration of the append benchmark.
const APPEND_BLOCKS: usize = 200;
/// Transfers per block in the append benchmark.
const APPEND_TXS: usize = 100;
/// Blocks (and transfers per block) of the lookup fixture.
const LOOKUP_BLOCKS: usize = 3_000;
const LOOKUP_TXS: usize = 10;
/// Blocks of the restart fixture, genesis included.
const RESTART_BLOCKS: u64 = 100_000;

type Built = (Block, ChainState, BlockReceipt);

struct Chain {
    params: ChainParams,
    genesis: Block,
    genesis_state: ChainState,
    blocks: Vec<Built>,
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A chain of `blocks` blocks with `txs` transfers each, among 200 funded senders.
fn build_chain(blocks: usize, txs: usize) -> Chain {
    let senders: Vec<Keypair> = (0..200u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let mut params = ChainParams::dev("bench");
    params.genesis_allocations = senders
        .iter()
        .map(|k| (k.account(), Amount::from_doin(1_000_000)))
        .collect();
    let proposer = Keypair::from_seed([250; 32]);
    let (genesis, genesis_state) = ChainState::genesis(&params);
    let mut state = genesis_state.clone();
    let mut nonces = vec![0u64; senders.len()];
    let mut out = Vec::with_capacity(blocks);
    let mut next = 0usize;
    for _ in 0..blocks {
        let candidates: Vec<SignedTx> = (0..txs)
            .map(|_| {
                let s = next % senders.len();
                next += 1;
                let key = &senders[s];
                let tx = TxBody {
                    chain_id: params.chain_id.clone(),
                    sender: key.account(),
                    nonce: nonces[s],
                    fee: FeeBid {
                        max_fee: Amount(100_000),
                        tip: Amount(1),
                    },
                    kind: TxKind::Transfer {
                        to: senders[(s + 1) % senders.len()].account(),
                        amount: Amount(1_000),
                    },
                }
                .sign(key);
                nonces[s] += 1;
                tx
            })
            .collect();
        let ts = state.empty_block_allowed_from(&params);
        let built = state
            .build_block(&params, &proposer, ts, candidates)
            .unwrap();
        assert_eq!(built.block.txs.len(), txs, "{:?}", built.skipped);
        state = built.state.clone();
        out.push((built.block, built.state, built.receipt));
    }
    Chain {
        params,
        genesis,
        genesis_state,
        blocks: out,
    }
}

async fn fresh_store(path: &Path, chain: &Chain) -> Store {
    let store = Store::open(path, DEFAULT_SNAPSHOT_INTERVAL).await.unwrap();
    store
        .init(&chain.params, &chain.genesis, &chain.genesis_state)
        .await
        .unwrap();
    store
}

async fn append_all(store: &Store, blocks: &[Built]) {
    for (block, state, receipt) in blocks {
        store.append_block(block, state, receipt).await.unwrap();
    }
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let t = Instant::now();
    let chain = build_chain(APPEND_BLOCKS, APPEND_TXS);
    eprintln!(
        "fixture: built {APPEND_BLOCKS} blocks of {APPEND_TXS} transfers in {:.2?}",
        t.elapsed()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut run = 0u32;
    let mut timed = |iters: u64| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            run += 1;
            let path = dir.path().join(format!("append-{run}.sqlite"));
            total += rt.block_on(async {
                let store = fresh_store(&path, &chain).await;
                let t = Instant::now();
                append_all(&store, &chain.blocks).await;
                let elapsed = t.elapsed();
                store.close().await;
                elapsed
            });
        }
        total
    };
    let once = timed(1);
    eprintln!(
        "append: {APPEND_BLOCKS} blocks of {APPEND_TXS} transfers in {once:.2?} = {:.0} blocks/s \
         (goal >= 500)",
        APPEND_BLOCKS as f64 / once.as_secs_f64()
    );
    let mut group = c.benchmark_group("storage_append");
    // Each iteration is ~0.5 s of work: ten flat samples of one iteration.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(APPEND_BLOCKS as u64));
    group.bench_function("append_200_blocks_of_100_transfers", |b| {
        b.iter_custom(&mut timed)
    });
    group.finish();
}

fn bench_lookups(c: &mut Criterion) {
    let rt = runtime();
    let t = Instant::now();
    let chain = build_chain(LOOKUP_BLOCKS, LOOKUP_TXS);
    let built_in = t.elapsed();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        let store = fresh_store(&dir.path().join("lookup.sqlite"), &chain).await;
        append_all(&store, &chain.blocks).await;
        store
    });
    eprintln!(
        "fixture: built {LOOKUP_BLOCKS} blocks of {LOOKUP_TXS} transfers in {built_in:.2?}, \
         stored in {:.2?}",
        t.elapsed() - built_in
    );
    // A fixed pseudo-random walk over the chain, so every lookup hits a different block.
    let pick = |i: usize| (i.wrapping_mul(7_919) % LOOKUP_BLOCKS) + 1;
    let hashes: Vec<_> = chain.blocks.iter().map(|(b, _, _)| b.hash()).collect();
    let tx_ids: Vec<_> = chain.blocks.iter().map(|(b, _, _)| b.txs[3].id()).collect();
    let accounts: Vec<_> = chain.blocks[0]
        .0
        .txs
        .iter()
        .map(|tx| tx.body.sender)
        .collect();

    let mut group = c.benchmark_group("storage_lookup");
    let mut i = 0usize;
    group.bench_function("block_by_height", |b| {
        b.iter(|| {
            i += 1;
            black_box(rt.block_on(store.block_by_height(pick(i) as u64)).unwrap())
        })
    });
    group.bench_function("block_by_hash", |b| {
        b.iter(|| {
            i += 1;
            black_box(
                rt.block_on(store.block_by_hash(&hashes[pick(i) - 1]))
                    .unwrap(),
            )
        })
    });
    group.bench_function("tx_by_id", |b| {
        b.iter(|| {
            i += 1;
            black_box(rt.block_on(store.tx(&tx_ids[pick(i) - 1])).unwrap())
        })
    });
    group.bench_function("txs_by_account_20", |b| {
        b.iter(|| {
            i += 1;
            let account = &accounts[i % accounts.len()];
            black_box(rt.block_on(store.txs_by_account(account, 20)).unwrap())
        })
    });
    group.bench_function("tip", |b| {
        b.iter(|| black_box(rt.block_on(store.tip()).unwrap()))
    });
    group.finish();
    rt.block_on(store.close());
}

fn bench_restart(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("restart.sqlite");

    // Empty blocks, built and appended one at a time (as a node would): heights
    // 0..RESTART_BLOCKS, so the tip sits 99 blocks past the last snapshot (the worst case).
    let mut params = ChainParams::dev("bench-restart");
    params.genesis_allocations = Vec::new();
    let proposer = Keypair::from_seed([251; 32]);
    let (genesis, mut state) = ChainState::genesis(&params);
    let (mut build, mut append) = (Duration::ZERO, Duration::ZERO);
    rt.block_on(async {
        let store = Store::open(&path, DEFAULT_SNAPSHOT_INTERVAL).await.unwrap();
        store.init(&params, &genesis, &state).await.unwrap();
        for _ in 1..RESTART_BLOCKS {
            let t = Instant::now();
            let ts = state.empty_block_allowed_from(&params);
            let built = state
                .build_block(&params, &proposer, ts, Vec::new())
                .unwrap();
            build += t.elapsed();
            let t = Instant::now();
            store
                .append_block(&built.block, &built.state, &built.receipt)
                .await
                .unwrap();
            append += t.elapsed();
            state = built.state;
        }
        store.close().await;
    });
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    eprintln!(
        "fixture: {RESTART_BLOCKS} empty blocks built in {build:.2?}, appended in {append:.2?} \
         ({:.0} blocks/s), database {:.1} MiB",
        RESTART_BLOCKS as f64 / append.as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );

    let restart = || {
        rt.block_on(async {
            let store = Store::open(&path, DEFAULT_SNAPSHOT_INTERVAL).await.unwrap();
            let loaded = store.load_state(&params).await.unwrap();
            store.close().await;
            loaded
        })
    };
    let t = Instant::now();
    let loaded = restart();
    eprintln!(
        "restart: open + load_state at height {} in {:.2?} (goal < 2 s)",
        loaded.height,
        t.elapsed()
    );
    assert_eq!(loaded, state);

    let mut group = c.benchmark_group("storage_restart");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("open_and_load_state_100k_blocks", |b| {
        b.iter(|| black_box(restart()))
    });
    group.finish();
}

criterion_group!(benches, bench_append, bench_lookups, bench_restart);
/// The fixtures (up to 100,000 blocks) take minutes to build, so they are built only when
/// benchmarking for real: `cargo bench` passes `--bench`. A test runner that lists or
/// smoke-runs this binary (`cargo test --all-targets`, nextest) gets an empty run.
fn main() {
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
