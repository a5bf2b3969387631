use std::sync::Arc;
use std::thread;

use doin_core::hash::HashKind;
use doin_core::optimae::{decide, CastVote, RejectReason, Verdict, VerdictRules};
use doin_core::params::DomainId;
use doin_core::plugin::{Dataset, DomainInfo, Evaluate, PluginResult, PluginSetup, SyntheticData};
use doin_plugins::quadratic::{self, encode_params, Quadratic};
use proptest::prelude::*;

use super::*;

// --- helpers ---

fn quadratic_domain() -> Arc<Quadratic> {
    let setup = PluginSetup::new(DomainId::new("quadratic").unwrap());
    Arc::new(Quadratic::new(&setup).unwrap())
}

fn evaluator() -> Evaluator {
    Evaluator::new(quadratic_domain(), ResourceLimits::default())
}

fn account(n: u8) -> AccountId {
    AccountId([n; 32])
}

fn quorum_seed(n: u8) -> Hash32 {
    HashKind::QuorumSeed.hash(&[n])
}

/// A point about 90 below the optimum: a typical claim on the way to −100/−50.
fn typical_point(domain: &Quadratic) -> Vec<u8> {
    let x: Vec<f64> = domain.config().target().iter().map(|t| t + 3.0).collect();
    encode_params(&x)
}

/// The dev chain's tolerance and ε, for a quorum of `k`.
fn rules(k: u32) -> VerdictRules {
    VerdictRules {
        quorum_size: k,
        tolerance_abs: 0.5,
        tolerance_rel: 0.05,
        min_improvement: 1e-3,
    }
}

fn votes_of(evaluator: &Evaluator, params: &[u8], quorum: &Hash32) -> Vec<CastVote> {
    (1..=3)
        .map(|n| {
            let vote = evaluator
                .evaluate(quorum, &account(n), params, &params_hash(params))
                .unwrap();
            CastVote {
                evaluator: account(n),
                measured: vote.measured,
            }
        })
        .collect()
}

/// A domain whose evaluation fails locally.
struct Broken {
    score: PluginResult<f64>,
}

impl SyntheticData for Broken {
    fn generate(&self, _: &Hash32) -> PluginResult<Dataset> {
        Ok(Dataset::default())
    }
}

impl Evaluate for Broken {
    fn evaluate(&self, _: &[u8], _: &Dataset) -> PluginResult<f64> {
        self.score.clone()
    }
}

impl DomainPlugin for Broken {
    fn info(&self) -> DomainInfo {
        DomainInfo {
            id: DomainId::new("broken").unwrap(),
            description: String::new(),
            performance_metric: "score".into(),
            version: 1,
            target_performance: None,
            baseline_performance: 0.0,
        }
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        self
    }
    fn evaluator(&self) -> &dyn Evaluate {
        self
    }
}

// --- tests ---

#[test]
fn a_vote_is_a_pure_function_of_its_inputs() {
    let evaluator = evaluator();
    let params = encode_params(&[1.0; 10]);
    let hash = params_hash(&params);
    let a = evaluator
        .evaluate(&quorum_seed(1), &account(1), &params, &hash)
        .unwrap();
    let b = evaluator
        .evaluate(&quorum_seed(1), &account(1), &params, &hash)
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.data_seed, data_seed(&quorum_seed(1), &account(1)));
    let data = quadratic_domain().generate(&a.data_seed).unwrap();
    assert_eq!(a.data_hash, data.hash());
}

#[test]
fn each_evaluator_gets_its_own_data() {
    let evaluator = evaluator();
    let params = encode_params(&[1.0; 10]);
    let hash = params_hash(&params);
    let votes: Vec<Vote> = (1..=5)
        .map(|n| {
            evaluator
                .evaluate(&quorum_seed(1), &account(n), &params, &hash)
                .unwrap()
        })
        .collect();
    for (i, a) in votes.iter().enumerate() {
        for b in &votes[i + 1..] {
            assert_ne!(a.data_seed, b.data_seed);
            assert_ne!(a.data_hash, b.data_hash);
            assert_ne!(a.measured, b.measured);
        }
    }
    // Another optimae (quorum seed) gives the same evaluator other data.
    let other = evaluator
        .evaluate(&quorum_seed(2), &account(1), &params, &hash)
        .unwrap();
    assert_ne!(other.data_seed, votes[0].data_seed);
}

#[test]
fn a_blob_that_does_not_match_its_hash_is_refused_without_a_vote() {
    let evaluator = evaluator();
    let params = encode_params(&[1.0; 10]);
    let other = encode_params(&[2.0; 10]);
    let err = evaluator
        .evaluate(&quorum_seed(1), &account(1), &params, &params_hash(&other))
        .unwrap_err();
    assert_eq!(
        err,
        EvalError::ParamsHashMismatch {
            expected: params_hash(&other),
            actual: params_hash(&params),
        }
    );
    assert_eq!(err.fault(), Fault::Transfer);
    assert!(!err.blames_params());
    assert_eq!(err.vote_score(), None);
}

#[test]
fn bad_params_earn_the_worst_finite_score() {
    let evaluator = evaluator();
    let mut outside = vec![0.0; 10];
    outside[0] = 11.0;
    for params in [
        vec![1, 2, 3],
        encode_params(&outside),
        encode_params(&[f64::NAN; 10]),
    ] {
        let err = evaluator
            .evaluate(&quorum_seed(1), &account(1), &params, &params_hash(&params))
            .unwrap_err();
        assert!(
            matches!(err, EvalError::BadParams(PluginError::InvalidParams { .. })),
            "{err}"
        );
        assert_eq!(err.fault(), Fault::Params);
        assert!(err.blames_params());
        assert_eq!(err.vote_score(), Some(BAD_PARAMS_SCORE));
    }
    assert!(BAD_PARAMS_SCORE.is_finite());

    let small = Evaluator::new(
        quadratic_domain(),
        ResourceLimits {
            max_params_bytes: 79,
            ..ResourceLimits::default()
        },
    );
    let params = encode_params(&[0.0; 10]);
    let err = small
        .evaluate(&quorum_seed(1), &account(1), &params, &params_hash(&params))
        .unwrap_err();
    assert!(
        matches!(err, EvalError::BadParams(PluginError::Limit(_))),
        "{err}"
    );
    assert_eq!(small.limits().max_params_bytes, 79);
}

#[test]
fn local_failures_are_not_voted_on() {
    for score in [
        Ok(f64::NAN),
        Err(PluginError::Failed("out of memory".into())),
    ] {
        let evaluator = Evaluator::new(Arc::new(Broken { score }), ResourceLimits::default());
        let err = evaluator
            .evaluate(&quorum_seed(1), &account(1), &[0], &params_hash(&[0]))
            .unwrap_err();
        assert!(matches!(err, EvalError::Local(_)), "{err}");
        assert_eq!(err.fault(), Fault::Local);
        assert!(!err.blames_params());
        assert_eq!(err.vote_score(), None);
    }
}

#[test]
fn an_honest_claim_is_reproduced_by_a_quorum_of_three() {
    let domain = quadratic_domain();
    let evaluator = Evaluator::new(domain.clone(), ResourceLimits::default());
    let params = typical_point(&domain);
    let claim = domain.config().performance_of(&params).unwrap();
    let champion = domain.info().baseline_performance;
    for seed in 0..10 {
        let votes = votes_of(&evaluator, &params, &quorum_seed(seed));
        let outcome = decide(&rules(3), claim, champion, &votes);
        assert!(outcome.corroborated, "{outcome:?}");
        assert!(outcome.verdict.is_accepted(), "{outcome:?}");
        assert_eq!(outcome.matched.len(), 3);
        let credit = outcome.verdict.credit().unwrap();
        assert!((credit - (claim - champion)).abs() < 0.5, "{credit}");
    }
}

#[test]
fn a_fake_claim_is_not_reproduced() {
    let domain = quadratic_domain();
    let evaluator = Evaluator::new(domain.clone(), ResourceLimits::default());
    let params = typical_point(&domain);
    let honest = domain.config().performance_of(&params).unwrap();
    let champion = domain.info().baseline_performance;
    // Claiming −50 for a point that is really at −90.
    for fake in [-50.0, honest + 6.0, 0.0] {
        let votes = votes_of(&evaluator, &params, &quorum_seed(1));
        let outcome = decide(&rules(3), fake, champion, &votes);
        assert!(
            matches!(
                outcome.verdict,
                Verdict::Rejected {
                    reason: RejectReason::ClaimNotReproduced,
                    ..
                }
            ),
            "{fake}: {outcome:?}"
        );
        assert!(!outcome.corroborated);
    }
}

#[test]
fn a_copy_of_the_champion_is_no_improvement_when_epsilon_exceeds_the_noise() {
    // The measurement noise (σ = 0.05, bounded by 6σ) can lift a copy's median above the
    // champion's performance: ε must be a few σ, or copies earn a little credit by luck.
    let domain = quadratic_domain();
    let evaluator = Evaluator::new(domain.clone(), ResourceLimits::default());
    let params = typical_point(&domain);
    let champion = domain.config().performance_of(&params).unwrap();
    let rules = VerdictRules {
        min_improvement: 5.0 * quadratic::DEFAULT_NOISE_STD,
        ..rules(3)
    };
    for seed in 0..20 {
        let votes = votes_of(&evaluator, &params, &quorum_seed(seed));
        let outcome = decide(&rules, champion, champion, &votes);
        assert!(outcome.corroborated);
        assert!(
            matches!(
                outcome.verdict,
                Verdict::Rejected {
                    reason: RejectReason::NoImprovement,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

#[test]
fn the_evaluator_is_a_shareable_role() {
    let role: Arc<dyn EvaluatorRole> = Arc::new(evaluator());
    assert_eq!(role.domain().id.as_str(), "quadratic");
    let params = encode_params(&[0.5; 10]);
    let hash = params_hash(&params);
    let expected = role
        .evaluate(&quorum_seed(9), &account(4), &params, &hash)
        .unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let role = Arc::clone(&role);
            let params = params.clone();
            thread::spawn(move || role.evaluate(&quorum_seed(9), &account(4), &params, &hash))
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().unwrap(), expected);
    }
    assert!(format!("{:?}", evaluator()).contains("quadratic"));
    let json = serde_json::to_value(expected).unwrap();
    assert_eq!(
        json["data_seed"],
        serde_json::json!(expected.data_seed.to_hex())
    );
}

#[test]
fn the_builtin_registry_domain_evaluates_the_same() {
    let setup = PluginSetup::new(DomainId::new("quadratic").unwrap());
    let from_registry = doin_plugins::builtin_registry()
        .instantiate(quadratic::NAME, &setup)
        .unwrap();
    let a = Evaluator::new(from_registry, ResourceLimits::default());
    let params = encode_params(&[0.0; 10]);
    let hash = params_hash(&params);
    assert_eq!(
        a.evaluate(&quorum_seed(3), &account(3), &params, &hash)
            .unwrap(),
        evaluator()
            .evaluate(&quorum_seed(3), &account(3), &params, &hash)
            .unwrap()
    );
}

proptest! {
    #[test]
    fn arbitrary_blobs_never_panic_and_are_judged_by_their_content(
        blob in prop::collection::vec(any::<u8>(), 0..120),
        seed in any::<[u8; 32]>(),
        key in any::<[u8; 32]>(),
    ) {
        let evaluator = evaluator();
        match evaluator.evaluate(&Hash32(seed), &AccountId(key), &blob, &params_hash(&blob)) {
            Ok(vote) => {
                prop_assert!(vote.measured.is_finite());
                prop_assert_eq!(blob.len(), 80);
            }
            Err(e) => prop_assert_eq!(e.fault(), Fault::Params, "{}", e),
        }
    }
}
