//! Property tests across modules: encodings round-trip, arbitrary bytes never panic a
//! decoder, and random transaction sequences conserve coins exactly.

#![allow(clippy::unwrap_used)]

mod common;

use common::{key, network_params, TestChain};
use doin_core::amount::Amount;
use doin_core::block::Block;
use doin_core::channel::Voucher;
use doin_core::economics::MAX_SUPPLY;
use doin_core::encode::{decode_versioned, encode_versioned};
use doin_core::fee::FeeBid;
use doin_core::hash::Hash32;
use doin_core::params::DomainId;
use doin_core::tx::{Metric, SignedTx, TxBody, TxKind};
use doin_core::wire::{GossipMessage, SyncRequest, SyncResponse};
use proptest::prelude::*;

fn hash() -> impl Strategy<Value = Hash32> {
    any::<[u8; 32]>().prop_map(Hash32)
}

fn finite() -> impl Strategy<Value = f64> {
    -1e12f64..1e12
}

fn kind() -> impl Strategy<Value = TxKind> {
    let k = key(1);
    let domain = DomainId::new("quadratic").unwrap();
    prop_oneof![
        (any::<u8>(), 1..u64::MAX).prop_map(|(n, a)| TxKind::Transfer {
            to: key(n).account(),
            amount: Amount(a)
        }),
        Just(TxKind::RegisterEvaluator {
            domain: domain.clone()
        }),
        (hash(), 1..u64::MAX).prop_map(move |(c, s)| TxKind::Commit {
            domain: domain.clone(),
            commitment: c,
            stake: Amount(s)
        }),
        (
            hash(),
            hash(),
            any::<u64>(),
            finite(),
            any::<[u8; 32]>(),
            proptest::collection::vec(finite(), 0..4)
        )
            .prop_map(|(c, p, size, claim, salt, ms)| TxKind::Reveal {
                commitment: c,
                params_hash: p,
                params_size: size,
                claim,
                salt,
                metrics: ms
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Metric {
                        name: format!("m{i}"),
                        value: v
                    })
                    .collect(),
            }),
        (hash(), finite(), hash()).prop_map(|(c, m, d)| TxKind::Vote {
            commitment: c,
            measured: m,
            data_hash: d
        }),
        (1..u64::MAX, 1..u64::MAX).prop_map(|(d, l)| TxKind::ChannelOpen {
            provider: key(2).account(),
            deposit: Amount(d),
            lifetime: l
        }),
        hash().prop_map(|c| TxKind::ChannelClose { channel: c }),
        (hash(), any::<u64>()).prop_map(move |(c, a)| TxKind::ChannelSettle {
            voucher: Voucher::sign(&k, c, Amount(a))
        }),
        hash().prop_map(|c| TxKind::ChannelCollect { channel: c }),
    ]
}

fn signed(kind: TxKind, nonce: u64, max_fee: u64, tip: u64) -> SignedTx {
    let k = key(1);
    TxBody {
        chain_id: "test-net".into(),
        sender: k.account(),
        nonce,
        fee: FeeBid {
            max_fee: Amount(max_fee),
            tip: Amount(tip),
        },
        kind,
    }
    .sign(&k)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn transactions_round_trip_and_verify(kind in kind(), nonce: u64, max_fee: u64, tip: u64) {
        let tx = signed(kind, nonce, max_fee, tip);
        let decoded = SignedTx::from_wire(&tx.to_wire()).unwrap();
        prop_assert_eq!(&decoded, &tx);
        prop_assert_eq!(decoded.id(), tx.id());
        // Signature and fields hold for every generated kind.
        let params = network_params();
        tx.verify_stateless(&params).unwrap();
    }

    #[test]
    fn gossip_round_trips(kind in kind()) {
        let msg = GossipMessage::Tx(Box::new(signed(kind, 0, 1, 1)));
        prop_assert_eq!(GossipMessage::from_wire(&msg.to_wire()).unwrap(), msg);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = SignedTx::from_wire(&bytes);
        let _ = Block::from_wire(&bytes);
        let _ = GossipMessage::from_wire(&bytes);
        let _ = decode_versioned::<SyncRequest>(&bytes);
        let _ = decode_versioned::<SyncResponse>(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_input(kind in kind(), pos in any::<prop::sample::Index>(), byte: u8) {
        let mut wire = signed(kind, 3, 100, 1).to_wire();
        let i = pos.index(wire.len());
        wire[i] = byte;
        if let Ok(tx) = SignedTx::from_wire(&wire) {
            let _ = tx.verify_stateless(&network_params());
        }
        let _ = decode_versioned::<SyncResponse>(&encode_versioned(&SyncResponse::Params(Some(wire))));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random transfers, channel opens and collects between five funded accounts, some of
    /// them invalid: after every block, coins held equal coins issued minus burned, and the
    /// supply stays under the cap.
    #[test]
    fn random_blocks_conserve_coins(ops in proptest::collection::vec((1u8..=5, 1u8..=5, 0u64..2_000_000_000_000, 0u8..4), 1..40)) {
        let mut chain = TestChain::new(network_params());
        for chunk in ops.chunks(5) {
            let mut txs = Vec::new();
            let mut nonces: std::collections::BTreeMap<u8, u64> = Default::default();
            for &(from, to, amount, what) in chunk {
                let k = key(from);
                let nonce = *nonces.entry(from).or_insert_with(|| chain.nonce(&k));
                let kind = match what {
                    0 | 1 => TxKind::Transfer { to: key(to).account(), amount: Amount(amount.max(1)) },
                    2 => TxKind::ChannelOpen { provider: key(to).account(), deposit: Amount(amount.max(1)), lifetime: 3 },
                    _ => match chain.state.channels.keys().next() {
                        Some(c) => TxKind::ChannelCollect { channel: *c },
                        None => TxKind::Transfer { to: key(to).account(), amount: Amount(1) },
                    },
                };
                txs.push(chain.tx_with_nonce(&k, nonce, kind));
                nonces.insert(from, nonce + 1);
            }
            chain.mine(txs); // conservation is asserted inside for every block
            prop_assert!(chain.state.supply() <= MAX_SUPPLY);
        }
    }
}
