//! The optimae lifecycle end to end on an in-memory chain: commit, reveal, quorum, votes,
//! verdict, rewards; and the attacks the protocol must stop.

#![allow(clippy::unwrap_used)]

mod common;

use common::{key, network_params, quadratic, TestChain};
use doin_core::amount::Amount;
use doin_core::economics::block_subsidy;
use doin_core::hash::Hash32;
use doin_core::identity::Keypair;
use doin_core::optimae::{self, RejectReason, Verdict};
use doin_core::tx::{Metric, SignedTx, TxKind};

struct Optimae {
    commitment: Hash32,
    params_hash: Hash32,
    claim: f64,
    salt: [u8; 32],
}

fn commit(chain: &TestChain, optimizer: &Keypair, claim: f64, tag: u8) -> (Optimae, SignedTx) {
    let params_hash = Hash32([tag; 32]);
    let salt = [tag ^ 0x5a; 32];
    let commitment = optimae::commitment(
        &quadratic(),
        &optimizer.account(),
        &params_hash,
        claim,
        &salt,
    );
    let tx = chain.tx(
        optimizer,
        TxKind::Commit {
            domain: quadratic(),
            commitment,
            stake: Amount::from_doin(1),
        },
    );
    (
        Optimae {
            commitment,
            params_hash,
            claim,
            salt,
        },
        tx,
    )
}

fn reveal(chain: &TestChain, optimizer: &Keypair, o: &Optimae) -> SignedTx {
    chain.tx(
        optimizer,
        TxKind::Reveal {
            commitment: o.commitment,
            params_hash: o.params_hash,
            params_size: 1_000,
            claim: o.claim,
            salt: o.salt,
            metrics: vec![Metric {
                name: "rounds".into(),
                value: 3.0,
            }],
        },
    )
}

fn quorum(chain: &TestChain, o: &Optimae) -> Vec<Keypair> {
    let reveal = chain.state.optimae[&o.commitment].reveal.as_ref().unwrap();
    reveal
        .quorum
        .iter()
        .map(|a| (11..=14).map(key).find(|k| &k.account() == a).unwrap())
        .collect()
}

fn vote(chain: &TestChain, evaluator: &Keypair, o: &Optimae, measured: f64) -> SignedTx {
    chain.tx(
        evaluator,
        TxKind::Vote {
            commitment: o.commitment,
            measured,
            data_hash: Hash32([7; 32]),
        },
    )
}

/// Commits and reveals `claim` from `optimizer`, returning the optimae and its quorum.
fn commit_and_reveal(
    chain: &mut TestChain,
    optimizer: &Keypair,
    claim: f64,
    tag: u8,
) -> (Optimae, Vec<Keypair>) {
    let (o, tx) = commit(chain, optimizer, claim, tag);
    chain.mine_all(vec![tx]);
    let tx = reveal(chain, optimizer, &o);
    chain.mine_all(vec![tx]);
    let q = quorum(chain, &o);
    (o, q)
}

#[test]
fn honest_optimae_is_accepted_credited_and_rewarded() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let before = chain.balance(&opt.account());
    let (o, q) = commit_and_reveal(&mut chain, &opt, -10.0, 1);
    assert_eq!(q.len(), 3, "K evaluators drawn");
    assert!(
        q.iter().all(|k| k.account() != opt.account()),
        "never the optimizer"
    );

    let votes = vec![
        vote(&chain, &q[0], &o, -10.1),
        vote(&chain, &q[1], &o, -9.9),
        vote(&chain, &q[2], &o, -10.0),
    ];
    let receipt = chain.mine_all(votes);
    assert_eq!(receipt.verdicts.len(), 1);
    let record = &receipt.verdicts[0];
    let Verdict::Accepted { median, credit } = record.verdict else {
        panic!("{:?}", record.verdict)
    };
    assert_eq!(median, -10.0);
    assert_eq!(
        credit,
        -10.0 - -1000.0,
        "credit is the verified improvement over the baseline"
    );
    assert!(receipt.work > 0);
    let champion = &chain.state.champions[&quadratic()];
    assert_eq!(champion.performance, -10.0);
    assert_eq!(champion.commitment, o.commitment);

    // 65% of the subsidy to the only optimizer, 30% split between three evaluators.
    let subsidy = block_subsidy(chain.state.height);
    assert_eq!(receipt.payouts[&opt.account()], subsidy.mul_div(65, 100));
    let eval_pool = subsidy.mul_div(30, 100);
    for k in &q {
        assert!(receipt.payouts[&k.account()] >= eval_pool.mul_div(1, 3));
    }
    assert_eq!(receipt.minted, subsidy);
    // The stake came back; the optimizer paid three fees and earned the reward.
    let after = chain.balance(&opt.account());
    assert!(after > before, "{before} -> {after}");
    assert!(chain.state.account(&opt.account()).reputation > 0);
    assert!(chain.state.optimae.is_empty());
}

#[test]
fn fake_claim_is_rejected_stake_burned_and_reputation_lost() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, q) = commit_and_reveal(&mut chain, &opt, -5.0, 2);
    let burned_before = chain.state.burned;
    let votes = q.iter().map(|k| vote(&chain, k, &o, -300.0)).collect();
    let receipt = chain.mine_all(votes);
    let r = &receipt.verdicts[0];
    assert!(matches!(
        r.verdict,
        Verdict::Rejected {
            reason: RejectReason::ClaimNotReproduced,
            ..
        }
    ));
    assert_eq!(r.burned, Amount::from_doin(1).mul_div(20, 100));
    assert!(chain.state.burned > burned_before);
    assert!(!chain.state.champions.contains_key(&quadratic()));
    // Honest evaluators who contradicted the claim gained reputation.
    for k in &q {
        assert!(chain.state.account(&k.account()).reputation > chain.params.reputation.initial);
    }
}

#[test]
fn colluding_minority_cannot_flip_an_honest_verdict() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, q) = commit_and_reveal(&mut chain, &opt, -20.0, 3);
    let votes = vec![
        vote(&chain, &q[0], &o, -20.0),
        vote(&chain, &q[1], &o, -20.1),
        vote(&chain, &q[2], &o, -900.0),
    ];
    let receipt = chain.mine_all(votes);
    assert!(matches!(
        receipt.verdicts[0].verdict,
        Verdict::Accepted { .. }
    ));
    // The liar lost reputation three times faster than it could gain.
    let liar = chain.state.account(&q[2].account()).reputation;
    assert_eq!(
        liar,
        chain.params.reputation.initial - 3 * chain.params.reputation.evaluator_gain
    );
}

#[test]
fn copying_the_champion_earns_nothing() {
    let mut chain = TestChain::new(network_params());
    let (o, q) = commit_and_reveal(&mut chain, &key(1), -10.0, 4);
    let votes = q.iter().map(|k| vote(&chain, k, &o, -10.0)).collect();
    chain.mine_all(votes);
    // A second optimizer reveals a model of the same quality.
    let (o2, q2) = commit_and_reveal(&mut chain, &key(2), -10.0, 5);
    let votes = q2.iter().map(|k| vote(&chain, k, &o2, -10.0)).collect();
    let receipt = chain.mine_all(votes);
    assert!(matches!(
        receipt.verdicts[0].verdict,
        Verdict::Rejected {
            reason: RejectReason::NoImprovement,
            ..
        }
    ));
    assert_eq!(receipt.work, 0);
    assert_eq!(
        chain.state.champions[&quadratic()].optimizer,
        key(1).account()
    );
}

#[test]
fn withheld_reveal_burns_part_of_the_stake() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, tx) = commit(&chain, &opt, -1.0, 6);
    chain.mine_all(vec![tx]);
    let mut expired = Vec::new();
    // The commit was included at height 1; it may be revealed up to 1 + reveal_window.
    for _ in 0..=chain.params.reveal_window {
        let (receipt, _) = chain.mine(vec![]);
        expired.extend(receipt.expired);
    }
    assert_eq!(
        expired,
        vec![(o.commitment, Amount::from_doin(1).mul_div(20, 100))]
    );
    assert!(chain.state.optimae.is_empty());
    // Too late now.
    assert!(chain
        .try_apply(&reveal(&chain, &opt, &o))
        .unwrap_err()
        .contains("unknown"));
}

#[test]
fn reveal_rules_are_enforced() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, tx) = commit(&chain, &opt, -1.0, 7);
    // Reveal in the same block as the commit: the quorum seed is not fixed yet.
    let early = chain.tx_with_nonce(
        &opt,
        chain.nonce(&opt) + 1,
        TxKind::Reveal {
            commitment: o.commitment,
            params_hash: o.params_hash,
            params_size: 10,
            claim: o.claim,
            salt: o.salt,
            metrics: vec![],
        },
    );
    let (_, skipped) = chain.mine(vec![tx, early]);
    assert_eq!(skipped, 1);

    // Someone else cannot reveal it (front-running), and the claim cannot change.
    let thief = key(2);
    let stolen = chain.tx(
        &thief,
        TxKind::Reveal {
            commitment: o.commitment,
            params_hash: o.params_hash,
            params_size: 10,
            claim: o.claim,
            salt: o.salt,
            metrics: vec![],
        },
    );
    assert!(chain.try_apply(&stolen).unwrap_err().contains("optimizer"));
    let changed = chain.tx(
        &opt,
        TxKind::Reveal {
            commitment: o.commitment,
            params_hash: o.params_hash,
            params_size: 10,
            claim: 5.0,
            salt: o.salt,
            metrics: vec![],
        },
    );
    assert!(chain
        .try_apply(&changed)
        .unwrap_err()
        .contains("does not open"));
    let huge = chain.tx(
        &opt,
        TxKind::Reveal {
            commitment: o.commitment,
            params_hash: o.params_hash,
            params_size: u64::MAX,
            claim: o.claim,
            salt: o.salt,
            metrics: vec![],
        },
    );
    assert!(chain.try_apply(&huge).unwrap_err().contains("params_size"));
    chain.try_apply(&reveal(&chain, &opt, &o)).unwrap();
}

#[test]
fn votes_from_outside_the_quorum_and_double_votes_are_rejected() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, q) = commit_and_reveal(&mut chain, &opt, -10.0, 8);
    let outsider = (11..=14)
        .map(key)
        .find(|k| q.iter().all(|m| m.account() != k.account()))
        .unwrap();
    assert!(chain
        .try_apply(&vote(&chain, &outsider, &o, -10.0))
        .unwrap_err()
        .contains("not selected"));
    assert!(chain
        .try_apply(&vote(&chain, &opt, &o, -10.0))
        .unwrap_err()
        .contains("not selected"));
    chain.mine_all(vec![vote(&chain, &q[0], &o, -10.0)]);
    assert!(chain
        .try_apply(&vote(&chain, &q[0], &o, -10.0))
        .unwrap_err()
        .contains("already voted"));
}

#[test]
fn missing_votes_mean_no_quorum_and_a_refund() {
    let mut chain = TestChain::new(network_params());
    let opt = key(1);
    let (o, q) = commit_and_reveal(&mut chain, &opt, -10.0, 9);
    chain.mine_all(vec![vote(&chain, &q[0], &o, -10.0)]);
    let mut verdicts = Vec::new();
    for _ in 0..chain.params.vote_window {
        let (receipt, _) = chain.mine(vec![]);
        verdicts.extend(receipt.verdicts);
    }
    assert_eq!(verdicts.len(), 1);
    assert!(matches!(
        verdicts[0].verdict,
        Verdict::NoQuorum {
            votes: 1,
            needed: 2
        }
    ));
    assert_eq!(verdicts[0].burned, Amount::ZERO);
    // The absent evaluators lost reputation.
    assert!(chain.state.account(&q[1].account()).reputation < chain.params.reputation.initial);
}

#[test]
fn registered_evaluators_join_quorums() {
    let mut params = network_params();
    params.genesis_evaluators.clear();
    let mut chain = TestChain::new(params);
    let regs = (11..=13)
        .map(|n| {
            chain.tx(
                &key(n),
                TxKind::RegisterEvaluator {
                    domain: quadratic(),
                },
            )
        })
        .collect();
    chain.mine_all(regs);
    assert_eq!(
        chain
            .state
            .eligible_evaluators(&quadratic(), &chain.params)
            .len(),
        3
    );
    assert!(chain
        .try_apply(&chain.tx(
            &key(11),
            TxKind::RegisterEvaluator {
                domain: quadratic()
            }
        ))
        .unwrap_err()
        .contains("already registered"));
    let (_, q) = commit_and_reveal(&mut chain, &key(1), -10.0, 10);
    assert_eq!(q.len(), 3);
}

/// With fewer eligible evaluators than K, the quorum drawn is smaller, and the verdict needs
/// ⌈2k/3⌉ of the k drawn, not of K (which could never be reached: a network of three nodes
/// with K = 2 and one evaluator below the minimum reputation would decide nothing).
#[test]
fn a_smaller_drawn_quorum_decides_on_its_own_size() {
    let mut params = network_params();
    params.domains[0].quorum_size = 3;
    params.genesis_evaluators = vec![(quadratic(), key(11).account())];
    let mut chain = TestChain::new(params);
    let (o, q) = commit_and_reveal(&mut chain, &key(1), -10.0, 21);
    assert_eq!(q.len(), 1, "only one evaluator is eligible");
    let tx = vote(&chain, &q[0], &o, -10.0);
    let receipt = chain.mine_all(vec![tx]);
    assert!(
        matches!(receipt.verdicts[0].verdict, Verdict::Accepted { .. }),
        "{:?}",
        receipt.verdicts[0].verdict
    );
}

#[test]
fn solo_mode_lets_one_node_verify_its_own_work() {
    let mut params = doin_core::params::ChainParams::dev("solo");
    let me = key(1);
    params.genesis_allocations = vec![(me.account(), Amount::from_doin(100))];
    params.genesis_evaluators = vec![(quadratic(), me.account())];
    let mut chain = TestChain::new(params);
    let (o, tx) = commit(&chain, &me, -50.0, 11);
    chain.mine_all(vec![tx]);
    let tx = reveal(&chain, &me, &o);
    chain.mine_all(vec![tx]);
    let tx = vote(&chain, &me, &o, -50.0);
    let receipt = chain.mine_all(vec![tx]);
    assert!(matches!(
        receipt.verdicts[0].verdict,
        Verdict::Accepted { .. }
    ));
}
