//! Known-answer vectors: consensus values pinned so that any change to an encoding, a hash
//! context or a rule that alters them is caught. Changing one of these is a hard fork: update
//! the vector only together with a protocol version bump.

#![allow(clippy::unwrap_used)]

use doin_core::amount::Amount;
use doin_core::channel::channel_id;
use doin_core::economics::{block_subsidy, scheduled_issuance};
use doin_core::fee::FeeBid;
use doin_core::hash::{merkle_root, Hash32, HashKind};
use doin_core::identity::Keypair;
use doin_core::optimae::{self, QuorumCandidate};
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::ChainState;
use doin_core::tx::{TxBody, TxKind};

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn vectors() -> Vec<(&'static str, String)> {
    let ids: Vec<Hash32> = (1..=3u8).map(|n| Hash32([n; 32])).collect();
    let tx = TxBody {
        chain_id: "kat".into(),
        sender: key(1).account(),
        nonce: 7,
        fee: FeeBid {
            max_fee: Amount(2_000),
            tip: Amount(5),
        },
        kind: TxKind::Transfer {
            to: key(2).account(),
            amount: Amount::from_doin(3),
        },
    }
    .sign(&key(1));
    let domain = DomainId::new("quadratic").unwrap();
    let commitment = optimae::commitment(
        &domain,
        &key(1).account(),
        &Hash32([9; 32]),
        -42.5,
        &[3; 32],
    );
    let seed = optimae::quorum_seed(&Hash32([4; 32]), &commitment);
    let candidates: Vec<QuorumCandidate> = (10..20u8)
        .map(|n| QuorumCandidate {
            account: key(n).account(),
            reputation: u64::from(n) * 100,
        })
        .collect();
    let quorum = optimae::select_quorum(&seed, &candidates, &key(1).account(), 3, false);
    let quorum_pos: Vec<String> = quorum
        .iter()
        .map(|a| {
            (10..20u8)
                .find(|n| &key(*n).account() == a)
                .unwrap()
                .to_string()
        })
        .collect();
    let params = ChainParams::dev("kat");
    let (genesis, _) = ChainState::genesis(&params);
    vec![
        ("hash_tx_empty", HashKind::Tx.hash(b"").to_hex()),
        ("merkle_3", merkle_root(&ids).to_hex()),
        ("account_1", key(1).account().to_hex()),
        ("tx_id", tx.id().to_hex()),
        ("tx_wire", hex::encode(tx.to_wire())),
        ("commitment", commitment.to_hex()),
        ("quorum_seed", seed.to_hex()),
        (
            "data_seed",
            optimae::data_seed(&seed, &key(11).account()).to_hex(),
        ),
        ("quorum_of_10_to_19", quorum_pos.join(",")),
        ("channel_id", channel_id(&key(1).account(), 0).to_hex()),
        ("dev_params_hash", params.hash().to_hex()),
        ("dev_genesis_hash", genesis.hash().to_hex()),
        ("subsidy_210001", block_subsidy(210_001).units().to_string()),
        (
            "issuance_1000000",
            scheduled_issuance(1_000_000).units().to_string(),
        ),
    ]
}

#[test]
fn known_answers() {
    let expected: &[(&str, &str)] = &[
        ("hash_tx_empty", "c6bb7a729255e5386dd8db615c4ead7dc5dae8705268bbacd7ab415c26a22f3b"),
        ("merkle_3", "442f6c2c76051561d802f6e719a1a84357f17aeb36709b6443d8f7e165d3eff2"),
        ("account_1", "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"),
        ("tx_id", "d847990a386bebb2079f1802b8c8a164f1fe70b2f3b989287e6827d4863c5e64"),
        ("tx_wire", "01030000006b61748a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0700000000000000d0070000000000000500000000000000008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39400a3e11100000000c134773158f82473f5a1d3d6bca23b003f23e106888366a3b7e9d537c8363c444f91391287becaec26abc748e5929b57bc3cb7bd030dddbec0664afa15465b0a"),
        ("commitment", "568da5f243b0a3342f33b14ef232535d6a2d3b25fcaea59d11676732310ce078"),
        ("quorum_seed", "56ecbe4f4c9b5220fb8086fbae861a95346b30c5d016c8fa664a7bca84d00630"),
        ("data_seed", "5a75f7a56592d40c0cd5929171ba16ff091b22b67b4e5bb07d007bbf73d308b9"),
        ("quorum_of_10_to_19", "10,14,15"),
        ("channel_id", "bdf5cae0ed5789cc0101b588b7e6c8ce3c1ee607629a3991525ac0913d513a7e"),
        ("dev_params_hash", "50a0c6be10944e3e6c6e509026e388fb166eb027540bf38863e64378b1f56439"),
        ("dev_genesis_hash", "d1bb8efce1b98aebe160ffce308a282c69ebe971119ac0c9c56efeee3273c3c1"),
        ("subsidy_210001", "2500000000"),
        ("issuance_1000000", "2018750000000000"),
    ];
    let actual = vectors();
    for (name, value) in &actual {
        println!("{name} {value}");
    }
    assert_eq!(actual.len(), expected.len());
    for ((name, value), (exp_name, exp_value)) in actual.iter().zip(expected) {
        assert_eq!(name, exp_name);
        assert_eq!(
            value, exp_value,
            "{name} changed: this is a consensus change"
        );
    }
}
