//! Criterion benchmarks for the goals of the doin-core issue:
//! - signed-transaction verification per second on one core (goal >= 20,000/s);
//! - validation of a 1,000-transaction block (goal < 100 ms);
//! - merkle root of 10,000 ids (goal < 5 ms).
//!
//! Run: `cargo bench -p doin-core --bench core`.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use doin_core::amount::Amount;
use doin_core::fee::FeeBid;
use doin_core::hash::{merkle_root, Hash32, HashKind};
use doin_core::identity::Keypair;
use doin_core::params::ChainParams;
use doin_core::state::ChainState;
use doin_core::tx::{SignedTx, TxBody, TxKind};

fn params(senders: &[Keypair]) -> ChainParams {
    let mut p = ChainParams::dev("bench");
    p.genesis_allocations = senders
        .iter()
        .map(|k| (k.account(), Amount::from_doin(1_000)))
        .collect();
    p
}

fn transfers(params: &ChainParams, senders: &[Keypair], n: usize) -> Vec<SignedTx> {
    (0..n)
        .map(|i| {
            let k = &senders[i % senders.len()];
            TxBody {
                chain_id: params.chain_id.clone(),
                sender: k.account(),
                nonce: (i / senders.len()) as u64,
                fee: FeeBid {
                    max_fee: Amount(10_000),
                    tip: Amount(1),
                },
                kind: TxKind::Transfer {
                    to: senders[(i + 1) % senders.len()].account(),
                    amount: Amount(1_000),
                },
            }
            .sign(k)
        })
        .collect()
}

fn bench_tx_verification(c: &mut Criterion) {
    let senders: Vec<Keypair> = (0..100u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let params = params(&senders);
    let txs = transfers(&params, &senders, 1_000);
    let mut group = c.benchmark_group("tx");
    group.throughput(Throughput::Elements(txs.len() as u64));
    group.bench_function("verify_stateless_1000", |b| {
        b.iter(|| {
            for tx in &txs {
                black_box(tx.verify_stateless(&params).unwrap());
            }
        })
    });
    group.finish();
}

fn bench_block_validation(c: &mut Criterion) {
    let senders: Vec<Keypair> = (0..200u8).map(|i| Keypair::from_seed([i; 32])).collect();
    let params = params(&senders);
    let (_, genesis) = ChainState::genesis(&params);
    let txs = transfers(&params, &senders, 1_000);
    let proposer = Keypair::from_seed([250; 32]);
    let ts = genesis.empty_block_allowed_from(&params);
    let built = genesis.build_block(&params, &proposer, ts, txs).unwrap();
    assert_eq!(built.block.txs.len(), 1_000, "all transactions included");
    let mut group = c.benchmark_group("block");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("apply_block_1000_transfers", |b| {
        b.iter(|| {
            black_box(
                genesis
                    .apply_block(&params, &built.block, Some(ts))
                    .unwrap(),
            )
        })
    });
    group.bench_function("decode_block_1000_transfers", |b| {
        let wire = built.block.to_wire();
        b.iter(|| black_box(doin_core::block::Block::from_wire(&wire).unwrap()))
    });
    group.finish();
}

fn bench_merkle(c: &mut Criterion) {
    let ids: Vec<Hash32> = (0..10_000u32)
        .map(|i| HashKind::Tx.hash(&i.to_le_bytes()))
        .collect();
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("root_10000", |b| {
        b.iter_batched(
            || ids.clone(),
            |ids| black_box(merkle_root(&ids)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_tx_verification,
    bench_block_validation,
    bench_merkle
);
criterion_main!(benches);
