//! Transfers, fees, channels and block validation on an in-memory chain.

#![allow(clippy::unwrap_used)]

mod common;

use common::{key, network_params, TestChain};
use doin_core::amount::Amount;
use doin_core::block::{Block, BlockError};
use doin_core::channel::{channel_id, Voucher};
use doin_core::encode::Encode;
use doin_core::fee::FeeBid;
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair, Signature};
use doin_core::schedule;
use doin_core::state::{BuildError, ChainState};
use doin_core::tx::{SignedTx, TxBody, TxKind};

#[test]
fn transfer_moves_coins_burns_the_base_fee_and_tips_the_proposer() {
    let mut chain = TestChain::new(network_params());
    let (a, b) = (key(1), key(2));
    let base_fee = chain.state.base_fee;
    let (a0, b0) = (chain.balance(&a.account()), chain.balance(&b.account()));
    let tx = chain.tx(
        &a,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount::from_doin(5),
        },
    );
    let receipt = chain.mine_all(vec![tx]);
    assert_eq!(
        chain.balance(&b.account()),
        b0.checked_add(Amount::from_doin(5)).unwrap()
    );
    let paid = Amount::from_doin(5)
        .checked_add(base_fee)
        .unwrap()
        .checked_add(Amount(10))
        .unwrap();
    assert_eq!(chain.balance(&a.account()), a0.checked_sub(paid).unwrap());
    assert_eq!(receipt.burned, base_fee);
    assert_eq!(receipt.tips, Amount(10));
    assert_eq!(chain.state.account(&a.account()).nonce, 1);
    // The proposer got its 5% of the subsidy (pools without recipients are not minted) + tip.
    let proposer_got = receipt.payouts[&chain.proposer.account()];
    assert!(proposer_got > Amount(10));
    assert_eq!(
        receipt.minted.checked_add(receipt.tips).unwrap(),
        receipt.payouts.values().copied().sum()
    );
}

#[test]
fn replays_nonce_gaps_and_overdrafts_are_rejected_without_effect() {
    let mut chain = TestChain::new(network_params());
    let (a, b) = (key(1), key(2));
    let tx = chain.tx(
        &a,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount(1),
        },
    );
    chain.mine_all(vec![tx.clone()]);
    let before = chain.state.clone();
    assert!(
        chain.try_apply(&tx).unwrap_err().contains("nonce"),
        "replay"
    );
    let gap = chain.tx_with_nonce(
        &a,
        5,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount(1),
        },
    );
    assert!(chain.try_apply(&gap).unwrap_err().contains("nonce"));
    let overdraft = chain.tx(
        &a,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount::from_doin(1_000_000),
        },
    );
    assert!(chain.try_apply(&overdraft).unwrap_err().contains("balance"));
    let zero = chain.tx(
        &a,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount(0),
        },
    );
    assert!(chain.try_apply(&zero).unwrap_err().contains("amount"));
    let max = chain.tx(
        &a,
        TxKind::Transfer {
            to: b.account(),
            amount: Amount(u64::MAX),
        },
    );
    assert!(chain.try_apply(&max).unwrap_err().contains("balance"));
    // A block builder skips all of them and the state moves only by the empty block.
    let (_, skipped) = chain.mine(vec![tx, gap, overdraft, max]);
    assert_eq!(skipped, 4);
    assert_eq!(
        chain.balance(&a.account()),
        before.account(&a.account()).balance
    );
}

#[test]
fn fee_below_the_base_fee_and_wrong_chain_are_rejected() {
    let chain = TestChain::new(network_params());
    let a = key(1);
    let cheap = TxBody {
        chain_id: chain.params.chain_id.clone(),
        sender: a.account(),
        nonce: 0,
        fee: FeeBid {
            max_fee: Amount(chain.state.base_fee.0 - 1),
            tip: Amount(0),
        },
        kind: TxKind::Transfer {
            to: key(2).account(),
            amount: Amount(1),
        },
    }
    .sign(&a);
    assert!(chain.try_apply(&cheap).unwrap_err().contains("base fee"));
    let mut other = chain
        .tx(
            &a,
            TxKind::Transfer {
                to: key(2).account(),
                amount: Amount(1),
            },
        )
        .body;
    other.chain_id = "another-chain".into();
    let other = other.sign(&a);
    assert!(chain.try_apply(&other).unwrap_err().contains("chain"));
}

#[test]
fn forged_signatures_are_rejected() {
    let chain = TestChain::new(network_params());
    let (a, mallory) = (key(1), key(5));
    let body = chain
        .tx(
            &a,
            TxKind::Transfer {
                to: mallory.account(),
                amount: Amount(1),
            },
        )
        .body;
    let forged = SignedTx {
        signature: mallory.sign(body.id().as_bytes()),
        body,
    };
    assert!(chain.try_apply(&forged).unwrap_err().contains("signature"));
}

#[test]
fn paid_channel_end_to_end_pays_exactly_what_was_spent() {
    let mut chain = TestChain::new(network_params());
    let (client, provider) = (key(3), key(4));
    let (c0, p0) = (
        chain.balance(&client.account()),
        chain.balance(&provider.account()),
    );
    let deposit = Amount::from_doin(10);
    let open_nonce = chain.nonce(&client);
    let open = chain.tx(
        &client,
        TxKind::ChannelOpen {
            provider: provider.account(),
            deposit,
            lifetime: 1_000,
        },
    );
    let fee_open = chain.state.base_fee.checked_add(Amount(10)).unwrap();
    chain.mine_all(vec![open]);
    let id = channel_id(&client.account(), open_nonce);
    assert_eq!(chain.state.channels[&id].deposit, deposit);

    // 100 queries at 0.01 DOIN each: the provider keeps only the highest voucher.
    let price = Amount(1_000_000);
    let mut best = None;
    for i in 1..=100u64 {
        let v = Voucher::sign(&client, id, Amount(price.0 * i));
        v.verify(&client.account()).unwrap();
        best = Some(v);
    }
    let best = best.unwrap();
    let fee_settle = chain.state.base_fee.checked_add(Amount(10)).unwrap();
    let settle = chain.tx(&provider, TxKind::ChannelSettle { voucher: best });
    chain.mine_all(vec![settle.clone()]);
    // Settling twice, with the same or a lower voucher, is refused.
    assert!(chain
        .try_apply(&chain.tx(&provider, TxKind::ChannelSettle { voucher: best }))
        .unwrap_err()
        .contains("not above"));
    let low = Voucher::sign(&client, id, Amount(price.0 * 50));
    assert!(chain
        .try_apply(&chain.tx(&provider, TxKind::ChannelSettle { voucher: low }))
        .is_err());
    // Collect before the window ends is refused.
    assert!(chain
        .try_apply(&chain.tx(&client, TxKind::ChannelCollect { channel: id }))
        .unwrap_err()
        .contains("too early"));
    for _ in 0..chain.params.channels.settle_window {
        chain.mine(vec![]);
    }
    let fee_collect = chain.state.base_fee.checked_add(Amount(10)).unwrap();
    let collect = chain.tx(&client, TxKind::ChannelCollect { channel: id });
    chain.mine_all(vec![collect]);
    assert!(chain.state.channels.is_empty());
    let paid = Amount(price.0 * 100);
    let client_spent = paid
        .checked_add(fee_open)
        .unwrap()
        .checked_add(fee_collect)
        .unwrap();
    assert_eq!(
        chain.balance(&client.account()),
        c0.checked_sub(client_spent).unwrap()
    );
    assert_eq!(
        chain.balance(&provider.account()),
        p0.checked_add(paid)
            .unwrap()
            .checked_sub(fee_settle)
            .unwrap()
    );
    // Collecting twice finds nothing.
    assert!(chain
        .try_apply(&chain.tx(&client, TxKind::ChannelCollect { channel: id }))
        .unwrap_err()
        .contains("unknown channel"));
}

fn two_block_chain() -> (TestChain, ChainState, Block) {
    let mut chain = TestChain::new(network_params());
    let parent = chain.state.clone();
    let tx = chain.tx(
        &key(1),
        TxKind::Transfer {
            to: key(2).account(),
            amount: Amount(1),
        },
    );
    chain.mine_all(vec![tx]);
    let block = chain.blocks.last().unwrap().clone();
    (chain, parent, block)
}

fn reseal(chain: &TestChain, mut block: Block, edit: impl FnOnce(&mut Block)) -> Block {
    edit(&mut block);
    Block::seal(block.header, block.txs, &chain.proposer)
}

#[test]
fn blocks_with_wrong_claims_are_rejected_whoever_signs_them() {
    let (chain, parent, block) = two_block_chain();
    let now = Some(block.header.timestamp_ms);
    parent.apply_block(&chain.params, &block, now).unwrap();
    let cases: Vec<(&str, Block)> = vec![
        (
            "state_root",
            reseal(&chain, block.clone(), |b| {
                b.header.state_root = Hash32([1; 32])
            }),
        ),
        (
            "minted",
            reseal(&chain, block.clone(), |b| {
                b.header.minted = Amount(b.header.minted.0 + 1)
            }),
        ),
        (
            "work",
            reseal(&chain, block.clone(), |b| b.header.work += 1),
        ),
        (
            "difficulty",
            reseal(&chain, block.clone(), |b| b.header.difficulty += 1),
        ),
        (
            "base_fee",
            reseal(&chain, block.clone(), |b| b.header.base_fee = Amount(1)),
        ),
        (
            "cumulative_work",
            reseal(&chain, block.clone(), |b| b.header.cumulative_work += 1),
        ),
        (
            "tx_root",
            reseal(&chain, block.clone(), |b| b.header.tx_root = Hash32::ZERO),
        ),
        (
            "parent",
            reseal(&chain, block.clone(), |b| b.header.parent = Hash32([3; 32])),
        ),
        (
            "height",
            reseal(&chain, block.clone(), |b| b.header.height = 5),
        ),
        (
            "timestamp",
            reseal(&chain, block.clone(), |b| {
                b.header.timestamp_ms = chain.params.genesis_time_ms
            }),
        ),
        ("signature", {
            let mut b = block.clone();
            b.signature = Signature([0; 64]);
            b
        }),
        ("proposer", {
            let mut b = block.clone();
            b.header.proposer = key(50).account();
            b
        }),
    ];
    for (what, bad) in cases {
        let err = parent
            .apply_block(&chain.params, &bad, now)
            .expect_err(what);
        let text = err.to_string();
        assert!(!text.is_empty(), "{what}: {text}");
    }
}

#[test]
fn timestamps_far_in_the_future_are_rejected() {
    let (chain, parent, block) = two_block_chain();
    let early_clock = block.header.timestamp_ms - chain.params.max_future_drift_ms - 1;
    let err = parent
        .apply_block(&chain.params, &block, Some(early_clock))
        .unwrap_err();
    assert!(matches!(err, BlockError::Timestamp(_)), "{err}");
}

#[test]
fn a_block_without_work_is_refused_before_the_interval() {
    let chain = TestChain::new(network_params());
    // After the proposer's turn in the schedule, before the empty-block interval.
    let rank = schedule::proposer_rank(&chain.state, &chain.proposer.account());
    let too_soon = schedule::earliest_timestamp(&chain.state, &chain.params, rank) + 1;
    assert!(too_soon < chain.state.empty_block_allowed_from(&chain.params));
    let err = chain
        .state
        .build_block(&chain.params, &chain.proposer, too_soon, vec![])
        .unwrap_err();
    assert!(err.to_string().contains("below the difficulty"), "{err}");
}

#[test]
fn every_flipped_bit_of_a_block_is_rejected() {
    let (chain, parent, block) = two_block_chain();
    let wire = block.to_wire();
    let now = Some(block.header.timestamp_ms);
    // One bit per byte (rotating through the bit positions) keeps this fast in debug builds;
    // the transaction test below flips every bit.
    for byte in 0..wire.len() {
        let bit = byte % 8;
        let mut bad = wire.clone();
        bad[byte] ^= 1 << bit;
        let accepted = Block::from_wire(&bad)
            .ok()
            .and_then(|b| parent.apply_block(&chain.params, &b, now).ok());
        assert!(
            accepted.is_none(),
            "flip of bit {bit} in byte {byte} accepted"
        );
    }
}

#[test]
fn every_flipped_bit_of_a_transaction_is_rejected() {
    let chain = TestChain::new(network_params());
    let tx = chain.tx(
        &key(1),
        TxKind::Transfer {
            to: key(2).account(),
            amount: Amount(7),
        },
    );
    let wire = tx.to_wire();
    for byte in 0..wire.len() {
        for bit in 0..8 {
            let mut bad = wire.clone();
            bad[byte] ^= 1 << bit;
            if let Ok(decoded) = SignedTx::from_wire(&bad) {
                assert!(
                    decoded.verify_stateless(&chain.params).is_err(),
                    "bit {bit} of byte {byte}"
                );
            }
        }
    }
}

#[test]
fn chains_are_deterministic() {
    let build = || {
        let mut chain = TestChain::new(network_params());
        for i in 0..5u64 {
            let tx = chain.tx(
                &key(1),
                TxKind::Transfer {
                    to: key(2).account(),
                    amount: Amount(i + 1),
                },
            );
            chain.mine_all(vec![tx]);
        }
        (
            chain.state.state_root(),
            chain.blocks.last().unwrap().hash(),
        )
    };
    assert_eq!(build(), build());
}

#[test]
fn genesis_commits_to_the_parameters() {
    let a = network_params();
    let mut b = a.clone();
    b.vote_window += 1;
    let (ga, _) = ChainState::genesis(&a);
    let (gb, _) = ChainState::genesis(&b);
    assert_ne!(ga.hash(), gb.hash());
    assert_eq!(ga.header.parent, a.hash());
    // Encodings are stable: the same block encodes to the same bytes.
    assert_eq!(ga.to_bytes(), ChainState::genesis(&a).0.to_bytes());
}

/// The proposer schedule: the primary may propose at once, the next in line only after one
/// timeout, an account outside the producer set after every member; a block before its
/// proposer's turn is refused whoever sends it.
#[test]
fn proposers_take_turns_and_fall_back_after_timeouts() {
    let chain = TestChain::new(network_params());
    let (params, parent) = (&chain.params, &chain.state);
    let order = schedule::schedule(parent);
    assert_eq!(order.len(), 4, "the four genesis evaluators");
    let at_interval = parent.empty_block_allowed_from(params);
    let timeout = params.proposer_timeout_ms;
    let keys: Vec<Keypair> = (11..=14).map(key).collect();
    let signer = |account: &AccountId| keys.iter().find(|k| &k.account() == account).unwrap();

    // The primary's empty block at the interval is valid.
    let primary = signer(&order[0]);
    let built = parent
        .build_block(params, primary, at_interval, vec![])
        .unwrap();
    parent.apply_block(params, &built.block, None).unwrap();

    // Rank 2 needs two timeouts after the parent: one millisecond earlier, building fails
    // and a block signed anyway is refused.
    let third = signer(&order[2]);
    let outsider_rank = schedule::proposer_rank(parent, &key(99).account());
    assert_eq!(outsider_rank, 4);
    let earliest = schedule::earliest_timestamp(parent, params, 2);
    assert_eq!(earliest, parent.tip_time_ms + 2 * timeout);
    let err = parent
        .build_block(params, third, earliest - 1, vec![])
        .unwrap_err();
    assert!(
        matches!(err, BuildError::NotYourTurn { rank: 2, earliest_ms } if earliest_ms == earliest),
        "{err}"
    );
    let mut early = built.block.clone();
    early.header.proposer = third.account();
    early.header.timestamp_ms = earliest - 1;
    let early = Block::seal(early.header, early.txs, third);
    let err = parent.apply_block(params, &early, None).unwrap_err();
    assert!(
        matches!(err, BlockError::BeforeTurn { rank: 2, .. }),
        "{err}"
    );

    // The next height has the next primary.
    let next = schedule::schedule(&built.state);
    assert_eq!(next[0], order[1]);
}
