use std::collections::BTreeMap;
use std::sync::Arc;

use doin_core::config::DomainConfig;
use doin_core::hash::Hash32;
use doin_core::limits::ResourceLimits;
use doin_core::params::DomainId;
use doin_core::plugin::{
    Dataset, DomainInfo, DomainPlugin, Evaluate, Migrant, Optimize, OptimizerSetup, PluginError,
    PluginResult, PluginSetup, Proposal, ProposeContext, SyntheticData,
};
use doin_plugins::quadratic::{self, encode_params, Quadratic};
use proptest::prelude::*;
use serde_json::json;

use super::*;

// --- helpers ---

fn quadratic_domain() -> Arc<Quadratic> {
    Arc::new(Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap())
}

fn setup(seed: u64) -> OptimizerSetup {
    OptimizerSetup {
        seed,
        ..OptimizerSetup::default()
    }
}

fn engine(seed: u64, stop: StopSettings) -> Engine {
    Engine::new(quadratic_domain(), setup(seed), stop).unwrap()
}

fn with_target(target: f64) -> StopSettings {
    StopSettings::default().with_target_performance(Some(target))
}

/// Steps until `Converged` (at most `max` rounds); the claims of the `Improved` steps.
fn run_to_convergence(engine: &mut Engine, max: u64) -> Vec<f64> {
    let mut committed = Vec::new();
    for _ in 0..max {
        match engine.step().unwrap() {
            Step::Improved(p) => committed.push(p.claimed_performance),
            Step::NoImprovement => {}
            Step::Converged => return committed,
        }
    }
    panic!("not converged after {max} rounds: {:?}", engine.stats());
}

fn optimum_migrant(domain: &Quadratic, performance: f64) -> Migrant {
    Migrant {
        params: encode_params(domain.config().target()),
        performance,
        hyperparameters: BTreeMap::new(),
    }
}

// --- a scripted plugin for the failure paths ---

/// A domain whose optimizer claims whatever it is told to, with a blob of a given size.
struct Scripted {
    claim: f64,
    params_len: usize,
    has_optimizer: bool,
}

struct ScriptedOptimizer {
    claim: f64,
    params_len: usize,
}

impl SyntheticData for Scripted {
    fn generate(&self, _: &Hash32) -> PluginResult<Dataset> {
        Ok(Dataset::default())
    }
}

impl Evaluate for Scripted {
    fn evaluate(&self, _: &[u8], _: &Dataset) -> PluginResult<f64> {
        Ok(0.0)
    }
}

impl DomainPlugin for Scripted {
    fn info(&self) -> DomainInfo {
        DomainInfo {
            id: DomainId::new("scripted").unwrap(),
            description: String::new(),
            performance_metric: "score".into(),
            version: 1,
            target_performance: None,
            baseline_performance: -10.0,
        }
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        self
    }
    fn evaluator(&self) -> &dyn Evaluate {
        self
    }
    fn new_optimizer(&self, setup: &OptimizerSetup) -> PluginResult<Box<dyn Optimize>> {
        if !self.has_optimizer {
            return Err(PluginError::Unsupported {
                capability: "optimizer",
            });
        }
        let _ = setup;
        Ok(Box::new(ScriptedOptimizer {
            claim: self.claim,
            params_len: self.params_len,
        }))
    }
}

impl Optimize for ScriptedOptimizer {
    fn propose(&mut self, _: &ProposeContext<'_>) -> PluginResult<Proposal> {
        Ok(Proposal {
            params: vec![0; self.params_len],
            claimed_performance: self.claim,
            ..Proposal::default()
        })
    }
    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
        if migrant.params.is_empty() {
            return Err(PluginError::InvalidParams {
                reason: "empty".into(),
            });
        }
        Ok(())
    }
}

fn scripted(claim: f64, params_len: usize) -> Arc<dyn DomainPlugin> {
    Arc::new(Scripted {
        claim,
        params_len,
        has_optimizer: true,
    })
}

// --- tests ---

#[test]
fn improvements_beat_the_last_commit_and_the_champion_by_epsilon() {
    let epsilon = 0.5;
    let mut engine = engine(11, StopSettings::default().with_min_improvement(epsilon));
    let baseline = engine.domain().baseline_performance;
    let mut bar = baseline;
    let mut improved = 0;
    for _ in 0..300 {
        if let Step::Improved(p) = engine.step().unwrap() {
            assert!(
                p.claimed_performance >= bar + epsilon,
                "{} < {bar} + ε",
                p.claimed_performance
            );
            bar = p.claimed_performance;
            improved += 1;
        }
    }
    let stats = engine.stats();
    assert_eq!(stats.rounds, 300);
    assert_eq!(stats.improvements, improved);
    assert!(improved > 5, "{improved}");
    assert_eq!(stats.champion_performance, baseline);
    assert_eq!(stats.best_performance, Some(bar));
    assert!(!stats.converged);
}

#[test]
fn a_run_reproduces_from_its_seed() {
    let steps = |seed: u64| {
        let mut engine = engine(seed, StopSettings::default());
        (0..100).map(|_| engine.step().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(steps(5), steps(5));
    assert_ne!(steps(5), steps(6));
    assert_ne!(round_seed(5, 0), round_seed(5, 1));
    assert_ne!(round_seed(5, 0), round_seed(6, 0));
}

#[test]
fn reaching_the_target_commits_then_converges_and_stops_proposing() {
    let mut engine = engine(2024, with_target(-100.0));
    let committed = run_to_convergence(&mut engine, 1_000);
    let last = *committed.last().unwrap();
    assert!(last >= -100.0, "{last}");
    assert!(committed[..committed.len() - 1].iter().all(|&c| c < -100.0));
    let stats = engine.stats();
    assert!(stats.converged);
    for _ in 0..10 {
        assert_eq!(engine.step().unwrap(), Step::Converged);
    }
    assert_eq!(
        engine.stats().rounds,
        stats.rounds,
        "a converged engine proposes nothing"
    );
}

#[test]
fn a_resumed_engine_searches_on_when_its_candidate_cannot_become_champion() {
    // The candidate at the target claims −0.9; the chain verified an earlier candidate of
    // this node a little above what it claimed, at −1.2, which is below the target −1.0, and
    // −0.9 < −1.2 + ε: the chain would reject it for no improvement.
    let stop = with_target(-1.0).with_min_improvement(0.5);
    let mut engine = Engine::new(scripted(-0.9, 8), setup(1), stop).unwrap();
    assert!(matches!(engine.step().unwrap(), Step::Improved(_)));
    assert!(engine.stats().converged);
    let verified = Migrant {
        params: vec![1; 8],
        performance: -1.2,
        hyperparameters: BTreeMap::new(),
    };
    engine.observe_champion(verified).unwrap();
    assert_eq!(engine.step().unwrap(), Step::Converged, "not resumed yet");

    engine.resume();
    assert!(!engine.stats().converged);
    // Before `resume` existed the engine converged again on the same candidate and stopped
    // for good; now it goes on (this optimizer never finds better, so no improvement).
    for _ in 0..3 {
        assert_eq!(engine.step().unwrap(), Step::NoImprovement);
    }
    assert!(!engine.stats().converged);
}

#[test]
fn a_resumed_engine_recommits_a_candidate_that_was_never_decided() {
    let mut engine = engine(2024, with_target(-100.0));
    let committed = run_to_convergence(&mut engine, 1_000);
    let at_target = *committed.last().unwrap();
    // The chain's champion is still the baseline: the commit bar drops to it, so the same
    // candidate goes out again.
    engine.resume();
    match engine.step().unwrap() {
        Step::Improved(p) => assert!(p.claimed_performance >= at_target),
        other => panic!("expected the candidate again, got {other:?}"),
    }
    assert!(engine.stats().converged);
}

#[test]
fn resume_keeps_an_engine_converged_by_a_champion_at_the_target() {
    let domain = quadratic_domain();
    let mut engine = Engine::new(domain.clone(), setup(1), with_target(-1.0)).unwrap();
    engine
        .observe_champion(optimum_migrant(&domain, 0.0))
        .unwrap();
    engine.resume();
    assert!(engine.stats().converged);
    assert_eq!(engine.step().unwrap(), Step::Converged);
}

#[test]
fn the_plugin_target_applies_when_the_settings_have_none() {
    let setup = PluginSetup {
        target_performance: Some(-50.0),
        ..PluginSetup::new(DomainId::new("quadratic").unwrap())
    };
    let plugin = quadratic::factory(&setup).unwrap();
    let mut engine = Engine::new(plugin, self::setup(1), StopSettings::default()).unwrap();
    assert_eq!(engine.target_performance(), Some(-50.0));
    run_to_convergence(&mut engine, 1_000);
    assert!(engine.stats().best_performance.unwrap() >= -50.0);
}

#[test]
fn a_champion_at_the_target_converges_the_engine() {
    let domain = quadratic_domain();
    let mut engine = Engine::new(domain.clone(), setup(1), with_target(-1.0)).unwrap();
    engine
        .observe_champion(optimum_migrant(&domain, 0.0))
        .unwrap();
    let stats = engine.stats();
    assert!(stats.converged);
    assert_eq!(stats.champion_performance, 0.0);
    assert_eq!(engine.step().unwrap(), Step::Converged);
    assert_eq!(engine.stats().rounds, 0);
}

#[test]
fn a_baseline_at_the_target_starts_converged() {
    let stop = with_target(-100.0).with_baseline_performance(Some(-99.0));
    let mut engine = engine(1, stop);
    assert!(engine.stats().converged);
    assert_eq!(engine.step().unwrap(), Step::Converged);
}

#[test]
fn a_better_champion_raises_the_bar_and_is_adopted_without_being_recommitted() {
    let domain = quadratic_domain();
    let mut engine = Engine::new(domain.clone(), setup(3), StopSettings::default()).unwrap();
    // A champion 1.0 away from the optimum in one coordinate: performance −1.
    let mut x = domain.config().target().to_vec();
    x[0] += 1.0;
    let champion = Migrant {
        params: encode_params(&x),
        performance: -1.0,
        hyperparameters: BTreeMap::new(),
    };
    engine.observe_champion(champion).unwrap();
    assert_eq!(engine.stats().champion_performance, -1.0);
    // The optimizer adopted it: its claims start at −1 and every commit beats −1 by ε.
    for _ in 0..200 {
        if let Step::Improved(p) = engine.step().unwrap() {
            assert!(p.claimed_performance >= -1.0 + DEFAULT_MIN_IMPROVEMENT);
        }
    }
    assert!(engine.stats().best_performance.unwrap() >= -1.0);
    // A worse champion never lowers the bar.
    let worse = Migrant {
        params: encode_params(&[0.0; 10]),
        performance: -500.0,
        hyperparameters: BTreeMap::new(),
    };
    engine.observe_champion(worse).unwrap();
    assert_eq!(engine.stats().champion_performance, -1.0);
}

#[test]
fn islands_that_share_champions_converge_sooner() {
    let alone = {
        let mut engine = engine(2024, with_target(-50.0));
        run_to_convergence(&mut engine, 1_000);
        engine.stats().rounds
    };
    let mut a = engine(2024, with_target(-50.0));
    let mut b = engine(99, with_target(-50.0));
    let mut rounds = 0;
    while !a.stats().converged && rounds < 1_000 {
        rounds += 1;
        let steps = [a.step().unwrap(), b.step().unwrap()];
        for (i, step) in steps.into_iter().enumerate() {
            if let Step::Improved(p) = step {
                let other = if i == 0 { &mut b } else { &mut a };
                other.observe_champion(p.to_migrant()).unwrap();
            }
        }
    }
    eprintln!("rounds to -50: one island {alone}, two sharing champions {rounds}");
    assert!(a.stats().converged && b.stats().converged);
    assert!(rounds < alone, "two islands: {rounds} rounds, one: {alone}");
}

#[test]
fn patience_reports_a_stall_and_progress_clears_it() {
    let domain = quadratic_domain();
    let stop = StopSettings::default().with_optimization_patience(3);
    let mut stuck = Engine::new(domain.clone(), setup(1), stop).unwrap();
    // At the optimum nothing can improve any more.
    stuck
        .observe_champion(optimum_migrant(&domain, 0.0))
        .unwrap();
    stuck.step().unwrap(); // the first claim is progress over nothing
    for expected in 1..=5u64 {
        assert_eq!(stuck.step().unwrap(), Step::NoImprovement);
        let stats = stuck.stats();
        assert_eq!(stats.stalled_rounds, expected);
        assert_eq!(stats.stalled, expected >= 3);
    }

    // A climbing engine stalls now and then, and its next progress clears the stall.
    let mut climbing = engine(8, StopSettings::default().with_optimization_patience(2));
    let mut cleared = false;
    let mut was_stalled = false;
    for _ in 0..300 {
        climbing.step().unwrap();
        let stats = climbing.stats();
        if was_stalled && stats.stalled_rounds == 0 {
            cleared = true;
            assert!(!stats.stalled);
        }
        was_stalled = stats.stalled;
    }
    assert!(cleared);
}

#[test]
fn the_round_interval_is_read_from_the_domain_config_and_bounded() {
    let mut domain = DomainConfig::new(DomainId::new("quadratic").unwrap());
    assert_eq!(
        crate::round_interval(&domain).unwrap(),
        std::time::Duration::ZERO
    );
    domain
        .optimization_config
        .insert("round_interval_ms".into(), json!(250));
    assert_eq!(
        crate::round_interval(&domain).unwrap(),
        std::time::Duration::from_millis(250)
    );
    for bad in [json!(-1), json!(1.5), json!("fast"), json!(60_001)] {
        domain
            .optimization_config
            .insert("round_interval_ms".into(), bad.clone());
        let err = crate::round_interval(&domain).unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidSetting { field, .. } if field == "round_interval_ms"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn settings_are_read_from_the_domain_config_and_validated() {
    let mut domain = DomainConfig::new(DomainId::new("quadratic").unwrap());
    domain.target_performance = Some(-50.0);
    domain
        .optimization_config
        .insert("optimization_patience".into(), json!(12));
    let stop = StopSettings::from_domain_config(&domain).unwrap();
    assert_eq!(stop.target_performance(), Some(-50.0));
    assert_eq!(stop.optimization_patience(), 12);
    assert_eq!(stop.min_improvement(), DEFAULT_MIN_IMPROVEMENT);

    for bad in [json!(0), json!(-1), json!(2.5), json!("five")] {
        domain
            .optimization_config
            .insert("optimization_patience".into(), bad.clone());
        let err = StopSettings::from_domain_config(&domain).unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidSetting { field, .. } if field == "optimization_patience"),
            "{bad}: {err}"
        );
    }

    let cases = [
        (
            StopSettings::default().with_optimization_patience(0),
            "optimization_patience",
        ),
        (
            StopSettings::default().with_min_improvement(-1.0),
            "min_improvement",
        ),
        (
            StopSettings::default().with_min_improvement(f64::NAN),
            "min_improvement",
        ),
        (
            StopSettings::default().with_target_performance(Some(f64::INFINITY)),
            "target_performance",
        ),
        (
            StopSettings::default().with_baseline_performance(Some(f64::NAN)),
            "baseline_performance",
        ),
    ];
    for (stop, field) in cases {
        let err = Engine::new(quadratic_domain(), setup(1), stop).unwrap_err();
        assert!(
            matches!(&err, EngineError::InvalidSetting { field: f, .. } if f == field),
            "{err}"
        );
    }
}

#[test]
fn optimizer_config_errors_surface_as_plugin_errors() {
    let bad = OptimizerSetup {
        config: json!({"step_size": -1}),
        ..setup(1)
    };
    let err = Engine::new(quadratic_domain(), bad, StopSettings::default()).unwrap_err();
    assert!(err.to_string().contains("step_size"), "{err}");

    let none: Arc<dyn DomainPlugin> = Arc::new(Scripted {
        claim: 0.0,
        params_len: 1,
        has_optimizer: false,
    });
    let err = Engine::new(none, setup(1), StopSettings::default()).unwrap_err();
    assert_eq!(
        err,
        EngineError::Plugin(PluginError::Unsupported {
            capability: "optimizer"
        })
    );
}

#[test]
fn non_finite_claims_and_oversized_params_are_never_committed() {
    let mut nan = Engine::new(scripted(f64::NAN, 8), setup(1), StopSettings::default()).unwrap();
    assert!(matches!(
        nan.step(),
        Err(EngineError::NonFiniteClaim { .. })
    ));
    assert_eq!(nan.stats().rounds, 1);
    assert_eq!(nan.stats().improvements, 0);

    let limits = ResourceLimits {
        max_params_bytes: 16,
        ..ResourceLimits::default()
    };
    let big = OptimizerSetup { limits, ..setup(1) };
    let mut engine = Engine::new(scripted(5.0, 17), big.clone(), StopSettings::default()).unwrap();
    let err = engine.step().unwrap_err();
    assert!(
        matches!(err, EngineError::Plugin(PluginError::Limit(_))),
        "{err}"
    );
    let mut fits = Engine::new(scripted(5.0, 16), big, StopSettings::default()).unwrap();
    assert!(matches!(fits.step().unwrap(), Step::Improved(_)));
}

#[test]
fn bad_migrants_are_reported() {
    let mut engine = Engine::new(scripted(-20.0, 8), setup(1), StopSettings::default()).unwrap();
    let err = engine
        .observe_champion(Migrant {
            performance: f64::NAN,
            ..Migrant::default()
        })
        .unwrap_err();
    assert!(matches!(err, EngineError::NonFiniteChampion { .. }));
    assert_eq!(engine.stats().champion_performance, -10.0);

    // Parameters the optimizer rejects: the error blames them, yet the bar is the champion's.
    let err = engine
        .observe_champion(Migrant {
            params: vec![],
            performance: -5.0,
            ..Migrant::default()
        })
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Plugin(e) if e.blames_params()),
        "{err}"
    );
    assert_eq!(engine.stats().champion_performance, -5.0);
    assert_eq!(engine.step().unwrap(), Step::NoImprovement);
}

#[test]
fn the_engine_is_an_optimizer_role() {
    fn sendable<T: Send>(_: &T) {}
    let mut role: Box<dyn OptimizerRole> = Box::new(engine(4, with_target(-100.0)));
    sendable(&role);
    while role.step().unwrap() != Step::Converged {}
    let stats = role.stats();
    assert!(stats.converged && stats.improvements >= 1);
    role.observe_champion(optimum_migrant(&quadratic_domain(), 0.0))
        .unwrap();
    assert_eq!(role.stats().champion_performance, 0.0);
    let json = serde_json::to_value(stats).unwrap();
    assert_eq!(json["converged"], json!(true));
    assert!(format!("{:?}", engine(4, StopSettings::default())).contains("quadratic"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn commits_are_increasing_by_epsilon_and_stop_at_the_target(
        seed in any::<u64>(),
        epsilon in 0.0f64..5.0,
        target in -150.0f64..-20.0,
    ) {
        let stop = with_target(target).with_min_improvement(epsilon);
        let mut engine = engine(seed, stop);
        let committed = run_to_convergence(&mut engine, 5_000);
        let baseline = engine.domain().baseline_performance;
        let mut bar = baseline;
        for &claim in &committed {
            prop_assert!(claim >= bar + epsilon && claim > bar);
            bar = claim;
        }
        let stats = engine.stats();
        prop_assert!(stats.converged);
        prop_assert!(stats.best_performance.unwrap() >= target);
        prop_assert_eq!(stats.improvements, committed.len() as u64);
    }
}
