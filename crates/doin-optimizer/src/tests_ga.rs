//! The GA island, migration, patience stages and the L3 surrogate, on the quadratic domain.

use std::collections::BTreeMap;
use std::sync::Arc;

use doin_core::params::DomainId;
use doin_core::plugin::{
    params_hash, DomainInfo, DomainPlugin, Evaluate, Migrant, Optimize, OptimizerSetup,
    PluginSetup, ProposeContext, SyntheticData, Train,
};
use doin_plugins::quadratic::{encode_params, Quadratic};
use serde_json::{json, Value};

use super::*;

fn quadratic() -> Arc<Quadratic> {
    Arc::new(Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap())
}

fn setup(seed: u64, config: Value) -> OptimizerSetup {
    OptimizerSetup {
        seed,
        config,
        ..OptimizerSetup::default()
    }
}

fn engine(seed: u64, config: Value, target: Option<f64>) -> Engine {
    let stop = StopSettings::default().with_target_performance(target);
    Engine::new(quadratic(), setup(seed, config), stop).unwrap()
}

/// Rounds until the best claim reaches `target` (`max` + 1 when it never does).
fn rounds_to(config: Value, seed: u64, target: f64, max: u64) -> u64 {
    let mut e = engine(seed, config, Some(target));
    for _ in 0..max {
        if e.step().unwrap() == Step::Converged {
            break;
        }
        if e.stats().best_performance.is_some_and(|b| b >= target) {
            return e.stats().rounds;
        }
    }
    if e.stats().best_performance.is_some_and(|b| b >= target) {
        e.stats().rounds
    } else {
        max + 1
    }
}

fn median(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

fn median_rounds(config: Value, target: f64, seeds: u64) -> f64 {
    median(
        (1..=seeds)
            .map(|s| rounds_to(config.clone(), s, target, 2_000))
            .collect(),
    )
}

fn point_hyper(x: &[f64]) -> BTreeMap<String, f64> {
    x.iter()
        .enumerate()
        .map(|(i, v)| (format!("x{i}"), *v))
        .collect()
}

fn migrant_at(x: &[f64], performance: f64) -> Migrant {
    Migrant {
        params: encode_params(x),
        performance,
        hyperparameters: point_hyper(x),
    }
}

fn ga(seed: u64, config: Value) -> Genetic {
    let c = GaConfig::from_json(&config, 5).unwrap();
    Genetic::new(quadratic(), &setup(seed, config), c).unwrap()
}

fn fill(ga: &mut Genetic) {
    let n = ga.config().population as u64;
    for round in 0..n {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        ga.propose(&ctx).unwrap();
    }
}

// --- selection ---

#[test]
fn the_optimizer_is_chosen_by_config_and_the_default_is_unchanged() {
    assert_eq!(
        engine(1, json!({}), None).optimizer_kind(),
        OptimizerKind::RandomStep
    );
    assert!(engine(1, json!({}), None).stats().ga.is_none());
    for name in ["random_step", "plugin"] {
        let e = engine(1, json!({ "optimizer": name }), None);
        assert_eq!(e.optimizer_kind(), OptimizerKind::RandomStep);
    }
    let e = engine(1, json!({"optimizer": "ga"}), None);
    assert_eq!(e.optimizer_kind(), OptimizerKind::Ga);
    assert_eq!(e.migration(), MigrationPolicy::ReplaceWorst);
    assert!(e.stats().ga.is_some());
    for (config, field) in [
        (json!({"optimizer": "hill"}), "optimizer"),
        (json!({"migration": "ring"}), "migration"),
        (
            json!({"optimizer": "ga", "integer_genes": ["nope"]}),
            "integer_genes",
        ),
        (
            json!({"optimizer": "ga", "stages": [["x0"], ["y"]]}),
            "stages",
        ),
        (
            json!({"optimizer": "ga", "log_genes": ["x0"]}),
            "log_genes", // bounds [-10, 10] are not positive
        ),
        (
            json!({"optimizer": "ga", "population": 3, "elitism": 3}),
            "elitism",
        ),
    ] {
        let stop = StopSettings::default();
        let err = Engine::new(quadratic(), setup(1, config.clone()), stop).unwrap_err();
        assert!(err.to_string().contains(field), "{config}: {err}");
    }
}

/// The quadratic without its own optimizer: only `Train`.
struct TrainOnly(Quadratic);

impl DomainPlugin for TrainOnly {
    fn info(&self) -> DomainInfo {
        self.0.info()
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        &self.0
    }
    fn evaluator(&self) -> &dyn Evaluate {
        &self.0
    }
    fn trainer(&self) -> Option<&dyn Train> {
        Some(&self.0)
    }
}

#[test]
fn a_domain_with_only_train_gets_the_ga() {
    let q = Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap();
    let mut e = Engine::new(
        Arc::new(TrainOnly(q)),
        setup(3, json!({})),
        StopSettings::default().with_target_performance(Some(-100.0)),
    )
    .unwrap();
    assert_eq!(e.optimizer_kind(), OptimizerKind::Ga);
    while e.step().unwrap() != Step::Converged {}
    assert!(e.stats().best_performance.unwrap() >= -100.0);
}

// --- search ---

#[test]
fn a_ga_run_reproduces_from_its_seed() {
    let run = |seed| {
        let mut e = engine(
            seed,
            json!({"optimizer": "ga", "meta_optimizer": "gp"}),
            None,
        );
        (0..60)
            .map(|_| match e.step().unwrap() {
                Step::Improved(p) => Some(p),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn claims_never_decrease_and_the_best_member_is_never_lost() {
    let mut g = ga(4, json!({"population": 6}));
    let mut last_claim = f64::NEG_INFINITY;
    let mut last_best = f64::NEG_INFINITY;
    for round in 0..200 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        let p = g.propose(&ctx).unwrap();
        assert!(p.claimed_performance >= last_claim);
        last_claim = p.claimed_performance;
        let best = g.fitnesses()[0];
        assert!(best >= last_best, "elitism lost the best");
        last_best = best;
        // The proposal is the island's own best candidate, with its hyperparameters.
        assert_eq!(p.claimed_performance, best);
        assert_eq!(p.hyperparameters.len(), 10);
        assert_eq!(p.metrics["round"], round as f64);
    }
    assert!(last_claim > -20.0, "{last_claim}");
    assert_eq!(g.stats().evaluations, 200);
    assert_eq!(g.stats().generation, 200 / 6);
}

#[test]
fn the_ga_beats_the_random_step_on_the_quadratic() {
    let seeds = 15;
    let ga = median_rounds(json!({"optimizer": "ga"}), -100.0, seeds);
    let rs = median_rounds(json!({}), -100.0, seeds);
    eprintln!("median rounds to -100 over {seeds} seeds: GA {ga}, random step {rs}");
    assert!(ga < 0.7 * rs, "GA {ga} vs random step {rs}");
}

#[test]
fn the_gp_meta_optimizer_beats_the_plain_ga_at_equal_evaluations() {
    let seeds = 15;
    let plain = median_rounds(json!({"optimizer": "ga"}), -50.0, seeds);
    let meta = median_rounds(
        json!({"optimizer": "ga", "meta_optimizer": "gp"}),
        -50.0,
        seeds,
    );
    eprintln!("median rounds to -50 over {seeds} seeds: GA+GP {meta}, GA {plain}");
    assert!(meta < 0.9 * plain, "GA+GP {meta} vs GA {plain}");
}

#[test]
fn ga_plus_gp_needs_a_third_of_the_random_steps_rounds_at_both_targets() {
    // Issue 6's goal. On this separable quadratic the surrogate's trend is exactly right, so
    // its optimum is the target's as soon as the trend is determined.
    let seeds = 15;
    for target in [-100.0, -50.0] {
        let rs = median_rounds(json!({}), target, seeds);
        let meta = median_rounds(
            json!({"optimizer": "ga", "meta_optimizer": "gp"}),
            target,
            seeds,
        );
        eprintln!("median rounds to {target} over {seeds} seeds: GA+GP {meta}, random step {rs}");
        assert!(3.0 * meta <= rs, "GA+GP {meta} vs random step {rs}");
    }
}

#[test]
fn the_surrogates_optimum_is_proposed_and_reproduces_from_the_seed() {
    let run = |seed| {
        let mut g = ga(seed, json!({"meta_optimizer": "gp"}));
        let candidates: Vec<f64> = (0..20)
            .map(|round| {
                let ctx = ProposeContext {
                    champion: None,
                    seed: round,
                    round,
                };
                g.propose(&ctx).unwrap().metrics["candidate_performance"]
            })
            .collect();
        (candidates, g.stats())
    };
    let (candidates, stats) = run(3);
    assert_eq!(candidates, run(3).0);
    assert_ne!(candidates, run(4).0);
    assert!(stats.surrogate_optima > 0, "{stats:?}");
    assert!(stats.surrogate_optima <= stats.surrogate_rounds);
    let best = candidates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(best > -1.0, "{candidates:?}");
}

#[test]
fn the_surrogates_optimum_snaps_integer_genes_and_keeps_frozen_ones() {
    let plugin = Arc::new(Recording {
        inner: Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap(),
        requests: Default::default(),
    });
    let config = json!({
        "population": 6,
        "meta_optimizer": "gp",
        "integer_genes": ["x0", "x3"],
        "stages": [["x0", "x1", "x2", "x3", "x4"], ["x5", "x6", "x7", "x8", "x9"]],
        "hyperparameters": {"x7": 2.5},
    });
    // Patience long enough that the first stage lasts the whole run.
    let c = GaConfig::from_json(&config, 1_000).unwrap();
    let mut g = Genetic::new(plugin.clone(), &setup(8, config), c).unwrap();
    for round in 0..40 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        g.propose(&ctx).unwrap();
    }
    assert_eq!(g.stats().stage, 0);
    assert!(g.stats().surrogate_optima > 0, "{:?}", g.stats());
    let requests = plugin.requests.lock().unwrap();
    for (_, h) in requests.iter() {
        for name in ["x0", "x3"] {
            assert_eq!(h[name], h[name].round(), "{name} in {h:?}");
        }
        for name in ["x5", "x6", "x8", "x9"] {
            assert_eq!(h[name], 0.0, "{name} in {h:?}");
        }
        assert_eq!(h["x7"], 2.5);
    }
    // No candidate was trained twice.
    for (i, (_, a)) in requests.iter().enumerate() {
        assert!(requests[..i].iter().all(|(_, b)| a != b), "{a:?} twice");
    }
}

#[test]
fn integer_genes_take_integer_values() {
    let mut e = engine(
        2,
        json!({"optimizer": "ga", "integer_genes": ["x0", "x3"]}),
        None,
    );
    for _ in 0..40 {
        if let Step::Improved(p) = e.step().unwrap() {
            for name in ["x0", "x3"] {
                let v = p.hyperparameters[name];
                assert_eq!(v, v.round(), "{name} = {v}");
            }
        }
    }
}

// --- L2 patience and stages ---

#[test]
fn stages_freeze_later_genes_until_patience_advances_the_stage() {
    let config = json!({
        "population": 4,
        "stages": [["x0", "x1"], ["x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9"]],
        "hyperparameters": {"x5": 1.5},
    });
    let c = GaConfig::from_json(&config, 2).unwrap();
    let mut g = Genetic::new(quadratic(), &setup(5, config), c).unwrap();
    let mut advanced_at = None;
    for round in 0..400 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        let p = g.propose(&ctx).unwrap();
        if g.stats().stage == 0 {
            // Frozen genes: the configured value, else the middle of [-10, 10].
            assert_eq!(p.hyperparameters["x5"], 1.5);
            assert_eq!(p.hyperparameters["x9"], 0.0);
        } else if advanced_at.is_none() {
            advanced_at = Some(round);
        }
    }
    assert_eq!(g.stats().stages, 2);
    assert_eq!(g.stats().stage, 1, "{:?}", g.stats());
    assert!(advanced_at.is_some());
}

#[test]
fn patience_in_the_last_stage_reports_a_stall() {
    let mut e = engine(
        6,
        json!({"optimizer": "ga", "population": 3, "optimization_patience": 1}),
        None,
    );
    let stop = StopSettings::from_domain_config(&{
        let mut d = doin_core::config::DomainConfig::new(DomainId::new("q").unwrap());
        d.optimization_config
            .insert("optimization_patience".into(), json!(1));
        d
    })
    .unwrap();
    assert_eq!(stop.optimization_patience(), 1);
    let mut stalled = false;
    for _ in 0..3_000 {
        e.step().unwrap();
        stalled |= e.stats().stalled;
    }
    assert!(stalled, "{:?}", e.stats());
}

// --- migration ---

#[test]
fn a_migrant_replaces_exactly_the_worst_member() {
    let mut g = ga(7, json!({"population": 5}));
    fill(&mut g);
    let before = g.fitnesses();
    let domain = quadratic();
    let target = domain.config().target().to_vec();
    g.inject(&migrant_at(&target, 0.0)).unwrap();
    let after = g.fitnesses();
    assert_eq!(after[0], 0.0);
    assert_eq!(&after[1..], &before[..4], "only the worst was replaced");
    assert_eq!(g.stats().migrants_in, 1);
    // A migrant worse than every member changes nothing.
    g.inject(&migrant_at(&[10.0; 10], -5_000.0)).unwrap();
    assert_eq!(g.fitnesses(), after);
    // A migrant without hyperparameters cannot be placed.
    let bare = Migrant {
        params: encode_params(&target),
        performance: 0.0,
        hyperparameters: BTreeMap::new(),
    };
    assert!(g.inject(&bare).is_err());
}

#[test]
fn provisional_migrants_are_confirmed_or_discarded() {
    let mut g = ga(8, json!({"population": 5, "provisional_rounds": 3}));
    fill(&mut g);
    let x = vec![1.0; 10];
    let claimed = migrant_at(&x, -1.0);
    g.inject_provisional(&claimed).unwrap();
    assert_eq!(g.stats().provisional, 1);
    assert_eq!(g.fitnesses()[0], -1.0);
    // Accepted with its verified (median) performance: the member is confirmed in place.
    g.inject(&Migrant {
        performance: -1.2,
        ..claimed.clone()
    })
    .unwrap();
    assert_eq!(g.stats().provisional, 0);
    assert_eq!(g.fitnesses()[0], -1.2);

    // Rejected: the member drops to the bottom.
    let y = vec![2.0; 10];
    let fake = migrant_at(&y, 5.0);
    g.inject_provisional(&fake).unwrap();
    assert!(g.reject(&params_hash(&fake.params)));
    assert_eq!(*g.fitnesses().last().unwrap(), f64::NEG_INFINITY);
    assert!(!g.reject(&params_hash(&fake.params)));

    // Never confirmed: discarded after `provisional_rounds`.
    let z = vec![3.0; 10];
    g.inject_provisional(&migrant_at(&z, 4.0)).unwrap();
    assert_eq!(g.fitnesses()[0], 4.0);
    for round in 100..104 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        g.propose(&ctx).unwrap();
    }
    assert!(g.fitnesses()[0] < 4.0, "{:?}", g.fitnesses());
}

#[test]
fn the_engine_routes_reveals_verdicts_and_records() {
    let mut e = engine(9, json!({"optimizer": "ga", "population": 4}), None);
    for _ in 0..4 {
        e.step().unwrap();
    }
    let bar = e.stats().champion_performance;
    let x = vec![0.5; 10];
    let revealed = migrant_at(&x, -1.0);
    e.observe_revealed(revealed.clone()).unwrap();
    // A reveal is not a verdict: the commit bar stays.
    assert_eq!(e.stats().champion_performance, bar);
    assert_eq!(e.stats().ga.unwrap().provisional, 1);
    assert!(e.observe_rejected(&params_hash(&revealed.params)));
    assert_eq!(e.stats().ga.unwrap().provisional, 0);
    assert!(e
        .observe_revealed(Migrant {
            performance: f64::NAN,
            ..revealed.clone()
        })
        .is_err());

    let records = e.stats().ga.unwrap().records;
    e.observe_record(&point_hyper(&x), -3.0);
    e.observe_record(&point_hyper(&x), f64::INFINITY);
    assert_eq!(e.stats().ga.unwrap().records, records + 1);

    // Through the role trait too.
    let mut role: Box<dyn OptimizerRole> = Box::new(e);
    role.observe_revealed(migrant_at(&[0.25; 10], -2.0))
        .unwrap();
    assert_eq!(role.stats().ga.unwrap().provisional, 1);
}

#[test]
fn migration_none_keeps_the_island_isolated() {
    let domain = quadratic();
    let target = domain.config().target().to_vec();
    let config = json!({"optimizer": "ga", "population": 4, "migration": "none"});
    let mut e = engine(10, config, Some(-1e-9));
    assert_eq!(e.migration(), MigrationPolicy::None);
    for _ in 0..4 {
        e.step().unwrap();
    }
    e.observe_revealed(migrant_at(&target, 0.0)).unwrap();
    e.observe_champion(migrant_at(&[1.0; 10], -50.0)).unwrap();
    let stats = e.stats();
    assert_eq!(stats.ga.unwrap().migrants_in, 0);
    assert_eq!(stats.champion_performance, -50.0, "the bar still rises");
}

// --- stop criterion ---

#[test]
fn a_converged_ga_stops_using_compute() {
    let mut e = engine(11, json!({"optimizer": "ga"}), Some(-100.0));
    let mut improved_at_target = false;
    loop {
        match e.step().unwrap() {
            Step::Improved(p) => improved_at_target |= p.claimed_performance >= -100.0,
            Step::NoImprovement => {}
            Step::Converged => break,
        }
    }
    assert!(
        improved_at_target,
        "the candidate reaching the target is committed"
    );
    let stats = e.stats();
    assert!(stats.converged);
    for _ in 0..10 {
        assert_eq!(e.step().unwrap(), Step::Converged);
    }
    assert_eq!(e.stats().rounds, stats.rounds, "no more rounds are run");
    assert_eq!(
        e.stats().ga.unwrap().evaluations,
        stats.ga.unwrap().evaluations
    );
}

#[test]
fn an_accepted_champion_at_the_target_converges_the_ga() {
    let domain = quadratic();
    let mut e = engine(12, json!({"optimizer": "ga"}), Some(-1.0));
    e.observe_champion(migrant_at(domain.config().target(), 0.0))
        .unwrap();
    assert_eq!(e.step().unwrap(), Step::Converged);
    assert_eq!(e.stats().rounds, 0);
}

// --- outside searches scoring a point as the GA does ---

/// The quadratic, recording every training request's seed and hyperparameters.
struct Recording {
    inner: Quadratic,
    requests: std::sync::Mutex<Vec<(u64, BTreeMap<String, f64>)>>,
}

impl Train for Recording {
    fn search_space(&self) -> doin_core::limits::ParamBounds {
        self.inner.search_space()
    }
    fn train(
        &self,
        request: &doin_core::plugin::TrainRequest<'_>,
    ) -> doin_core::plugin::PluginResult<doin_core::plugin::Proposal> {
        self.requests
            .lock()
            .unwrap()
            .push((request.seed, request.hyperparameters.clone()));
        self.inner.train(request)
    }
}

impl DomainPlugin for Recording {
    fn info(&self) -> DomainInfo {
        self.inner.info()
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        &self.inner
    }
    fn evaluator(&self) -> &dyn Evaluate {
        &self.inner
    }
    fn trainer(&self) -> Option<&dyn Train> {
        Some(self)
    }
}

#[test]
fn the_ga_trains_every_candidate_with_its_candidate_seed() {
    let plugin = Arc::new(Recording {
        inner: Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap(),
        requests: Default::default(),
    });
    let config = json!({"population": 4, "meta_optimizer": "gp"});
    let c = GaConfig::from_json(&config, 5).unwrap();
    let mut g = Genetic::new(plugin.clone(), &setup(21, config), c).unwrap();
    for round in 0..12 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        g.propose(&ctx).unwrap();
    }
    let requests = plugin.requests.lock().unwrap();
    assert_eq!(requests.len(), 12);
    for (seed, hyper) in requests.iter() {
        assert_eq!(*seed, ga::candidate_seed(21, hyper));
        assert_ne!(*seed, ga::candidate_seed(22, hyper));
    }
}

/// The quadratic, refusing (over a limit, say) every candidate within distance 5 of its
/// target, where the surrogate's optimum and its favourite offspring lie.
struct RefusesNearTheOptimum(Recording);

impl Train for RefusesNearTheOptimum {
    fn search_space(&self) -> doin_core::limits::ParamBounds {
        self.0.search_space()
    }
    fn train(
        &self,
        request: &doin_core::plugin::TrainRequest<'_>,
    ) -> doin_core::plugin::PluginResult<doin_core::plugin::Proposal> {
        let distance: f64 = self
            .0
            .inner
            .config()
            .target()
            .iter()
            .enumerate()
            .map(|(i, t)| (request.hyperparameters[&format!("x{i}")] - t).powi(2))
            .sum();
        if distance < 25.0 {
            self.0
                .requests
                .lock()
                .unwrap()
                .push((request.seed, request.hyperparameters.clone()));
            return Err(doin_core::plugin::PluginError::InvalidParams {
                reason: "near the optimum".into(),
            });
        }
        self.0.train(request)
    }
}

impl DomainPlugin for RefusesNearTheOptimum {
    fn info(&self) -> DomainInfo {
        self.0.info()
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        self.0.synthetic()
    }
    fn evaluator(&self) -> &dyn Evaluate {
        self.0.evaluator()
    }
    fn trainer(&self) -> Option<&dyn Train> {
        Some(self)
    }
}

#[test]
fn after_a_refusal_the_round_goes_on_with_plain_offspring() {
    let plugin = Arc::new(RefusesNearTheOptimum(Recording {
        inner: Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap(),
        requests: Default::default(),
    }));
    let config = json!({"meta_optimizer": "gp"});
    let c = GaConfig::from_json(&config, 5).unwrap();
    let mut g = Genetic::new(plugin.clone(), &setup(12, config), c).unwrap();
    for round in 0..40 {
        let ctx = ProposeContext {
            champion: None,
            seed: round,
            round,
        };
        let p = g.propose(&ctx).unwrap();
        assert!(p.claimed_performance < -25.0);
    }
    let refusals = plugin.0.requests.lock().unwrap().len();
    // The surrogate aimed at the optimum, and every round still trained a candidate (with
    // the surrogate choosing again after every refusal, some rounds ran out of attempts).
    assert!(refusals > 0);
    assert_eq!(g.stats().evaluations, 40);
}

#[test]
fn the_search_space_reports_narrowed_bounds_and_gene_flags() {
    let g = ga(
        1,
        json!({"param_bounds": {"x2": [0.5, 4.0]}, "integer_genes": ["x1"], "log_genes": ["x2"]}),
    );
    let space = g.search_space();
    assert_eq!(space.len(), 10);
    let gene = |name: &str| space.iter().find(|s| s.name == name).unwrap().clone();
    assert_eq!(
        gene("x1"),
        ga::GeneSpec {
            name: "x1".into(),
            low: -10.0,
            high: 10.0,
            integer: true,
            log: false
        }
    );
    let x2 = gene("x2");
    assert_eq!(
        (x2.low, x2.high, x2.integer, x2.log),
        (0.5, 4.0, false, true)
    );
}
