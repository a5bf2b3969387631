use super::*;
use doin_core::limits::ResourceLimits;
use doin_core::params::DomainId;
use doin_core::plugin::measure;
use params::{Activation, PARAMS_HEADER_BYTES};
use proptest::prelude::*;

// --- helpers ---

/// A small world: short series, short windows, few of them, so every test trains in well
/// under a second or two on one core.
fn small_config() -> Value {
    json!({
        "horizon": 8,
        "max_window": 32,
        "series_length": 200,
        "eval_series": 16,
        "train_series": 16,
        "early_patience": 3,
    })
}

fn domain(data_config: Value) -> TsForecast {
    let setup = PluginSetup {
        data_config,
        ..PluginSetup::new(DomainId::new("ts").unwrap())
    };
    TsForecast::new(&setup).unwrap()
}

fn small() -> TsForecast {
    domain(small_config())
}

fn data_seed(n: u64) -> Hash32 {
    HashKind::DataSeed.hash(&n.to_le_bytes())
}

fn small_hyper() -> Hyperparameters {
    Hyperparameters {
        window: 32,
        depth: 1,
        width: 32,
        activation: Activation::Relu,
        learning_rate: 3e-3,
        batch_size: 32,
        epochs: 20,
    }
}

fn train_small(d: &TsForecast, hyper: &Hyperparameters, seed: u64) -> Proposal {
    d.train(&TrainRequest {
        hyperparameters: &hyper.to_map(),
        seed,
        limits: &ResourceLimits::default(),
    })
    .unwrap()
}

/// Mean skill of `params` over evaluator datasets `seeds`.
fn mean_skill(d: &TsForecast, params: &[u8], seeds: std::ops::Range<u64>) -> f64 {
    let n = seeds.end - seeds.start;
    let total: f64 = seeds
        .map(|s| {
            let m = measure(d, params, &data_seed(s), &ResourceLimits::default()).unwrap();
            m.measured
        })
        .sum();
    total / n as f64
}

/// A model whose every output is 0: it forecasts the window's last value (naive).
fn naive_params(d: &TsForecast, window: usize) -> ModelParams {
    let hyper = Hyperparameters {
        window,
        ..small_hyper()
    };
    let layers = hyper
        .layer_shapes(d.config().horizon())
        .into_iter()
        .map(|(out, inp)| (vec![0.0; out * inp], vec![0.0; out]))
        .collect();
    ModelParams {
        hyper,
        horizon: d.config().horizon(),
        epochs_run: 0,
        train_seed: 0,
        layers,
    }
}

fn config_field(err: PluginError) -> String {
    match err {
        PluginError::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other}"),
    }
}

// --- synthetic data ---

#[test]
fn data_is_a_pure_function_of_the_seed() {
    let d = domain(json!({}));
    let a = d.generate(&data_seed(1)).unwrap();
    for _ in 0..3 {
        assert_eq!(a, d.generate(&data_seed(1)).unwrap());
    }
    // Another instance of the same config (another node) generates the same bytes.
    assert_eq!(
        a.hash(),
        domain(json!({})).generate(&data_seed(1)).unwrap().hash()
    );
    assert_ne!(a.hash(), d.generate(&data_seed(2)).unwrap().hash());
    let set = SeriesSet::decode(&a.bytes, 1).unwrap();
    assert_eq!(set.count(), DEFAULT_EVAL_SERIES);
    assert_eq!(set.length(), DEFAULT_SERIES_LENGTH);
    // Series within a dataset differ from each other.
    let series: Vec<&[f64]> = set.iter().collect();
    assert_ne!(series[0], series[1]);
}

#[test]
fn the_default_process_is_pinned() {
    // Changing the generator changes every measurement: bump VERSION and this hash together.
    let data = domain(json!({})).generate(&data_seed(7)).unwrap();
    assert_eq!(data.hash().to_string(), PINNED_DATA_HASH, "{}", data.hash());
}

const PINNED_DATA_HASH: &str = "06a6b99433faf42bbd08bbfadc0dd9b2a354578b01c6d56358ed545a451516eb";

#[test]
fn optimizer_training_series_never_equal_evaluator_series() {
    let d = small();
    let eval = d.config().eval_set(&data_seed(3));
    let (train, val) = d.config().training_sets(3, d.config().training());
    assert_eq!(train.count() + val.count(), 16);
    assert_eq!(val.count(), 4);
    for e in eval.iter() {
        assert!(train.iter().chain(val.iter()).all(|t| t != e));
    }
}

#[test]
fn the_process_has_its_ingredients() {
    // Regimes and level shifts only: the jumps of a shift-heavy process show up as large
    // one-step differences, absent when shifts are off.
    let max_jump = |config: Value| {
        let d = domain(config);
        let set = d.config().eval_set(&data_seed(11));
        set.iter()
            .flat_map(|s| s.windows(2).map(|w| (w[1] - w[0]).abs()))
            .fold(0.0f64, f64::max)
    };
    let calm = json!({"level_shift_prob": 0.0, "regime_switch_prob": 0.0, "amplitude": [0.0, 0.0], "noise_std": [0.01, 0.01]});
    let shifty = json!({"level_shift_prob": 0.2, "level_shift_size": [5.0, 5.0], "regime_switch_prob": 0.0, "amplitude": [0.0, 0.0], "noise_std": [0.01, 0.01]});
    assert!(max_jump(calm) < 0.5);
    assert!(max_jump(shifty) > 4.0);
}

#[test]
fn portable_sin_matches_the_platform_within_a_few_ulps() {
    for i in -20_000..20_000 {
        let x = f64::from(i) * 0.0137;
        let (ours, std) = (rng::portable_sin(x), x.sin());
        assert!((ours - std).abs() < 1e-12, "sin({x}) = {std}, ours {ours}");
    }
    assert!(rng::portable_sin(f64::NAN).is_nan());
}

#[test]
fn config_errors_name_the_field() {
    let setup = |data_config: Value| PluginSetup {
        data_config,
        ..PluginSetup::new(DomainId::new("ts").unwrap())
    };
    for (config, field) in [
        (json!({"horizon": 0}), "horizon"),
        (json!({"horizon": 65}), "horizon"),
        (json!({"max_window": 2}), "max_window"),
        (json!({"series_length": 50}), "series_length"),
        (json!({"eval_series": 0}), "eval_series"),
        (json!({"train_series": 1_000_000}), "train_series"),
        (json!({"early_patience": 0}), "early_patience"),
        (json!({"ar_phi1": [0.9, 1.2]}), "ar_phi2"),
        (json!({"ar_phi2": [0.5, 0.2]}), "ar_phi2"),
        (json!({"periods": []}), "periods"),
        (json!({"periods": [1.0]}), "periods"),
        (json!({"regime_switch_prob": 2}), "regime_switch_prob"),
        (json!({"seasonalities": 0}), "seasonalities"),
        (json!([]), "synthetic_data_config"),
    ] {
        let err = TsForecast::new(&setup(config.clone())).unwrap_err();
        assert_eq!(config_field(err), field, "{config}");
    }
    let local = PluginSetup {
        inference_config: json!({"device": "tpu"}),
        ..setup(json!({}))
    };
    assert_eq!(config_field(TsForecast::new(&local).unwrap_err()), "device");
    let threads = PluginSetup {
        inference_config: json!({"threads": 0}),
        ..setup(json!({}))
    };
    assert_eq!(
        config_field(TsForecast::new(&threads).unwrap_err()),
        "threads"
    );
}

#[test]
fn malformed_datasets_are_invalid_data() {
    let d = small();
    let params = naive_params(&d, 16).encode();
    let good = d.generate(&data_seed(1)).unwrap().bytes;
    let mut nan = good.clone();
    let at = nan.len() - 8;
    nan[at..].copy_from_slice(&f64::NAN.to_le_bytes());
    let mut short_series = good.clone();
    short_series[14..18].copy_from_slice(&10u32.to_le_bytes());
    let mut huge_count = good.clone();
    huge_count[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    for bytes in [
        vec![],
        good[..good.len() - 1].to_vec(),
        [good.as_slice(), &[0]].concat(),
        nan,
        short_series,
        huge_count,
        b"DOIN-TSX".to_vec(),
    ] {
        let err = d.evaluate(&params, &Dataset::new(bytes)).unwrap_err();
        assert!(matches!(err, PluginError::InvalidData { .. }), "{err}");
        assert!(!err.blames_params());
    }
}

// --- the metric ---

#[test]
fn a_model_that_outputs_zero_is_the_naive_forecast_with_skill_zero() {
    let d = small();
    let params = naive_params(&d, 16).encode();
    let skill = d
        .evaluate(&params, &d.generate(&data_seed(5)).unwrap())
        .unwrap();
    assert_eq!(skill, 0.0);
}

#[test]
fn skill_does_not_change_when_a_constant_is_added_to_every_series() {
    let d = small();
    let proposal = train_small(&d, &small_hyper(), 1);
    let set = d.config().eval_set(&data_seed(9));
    let shifted_bytes = {
        let mut bytes = set.encode();
        for chunk in bytes[18..].chunks_exact_mut(8) {
            let v = f64::from_le_bytes(chunk.try_into().unwrap()) + 100.0;
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        bytes
    };
    let a = d
        .evaluate(&proposal.params, &Dataset::new(set.encode()))
        .unwrap();
    let b = d
        .evaluate(&proposal.params, &Dataset::new(shifted_bytes))
        .unwrap();
    assert!((a - b).abs() < 1e-9, "{a} vs {b}");
}

// --- determinism ---

#[test]
fn training_is_deterministic_per_seed() {
    let d = small();
    let a = train_small(&d, &small_hyper(), 42);
    let b = train_small(&d, &small_hyper(), 42);
    assert_eq!(a.params, b.params, "same training seed, same bytes");
    assert_eq!(a.params_hash(), b.params_hash());
    assert_eq!(
        a.claimed_performance.to_bits(),
        b.claimed_performance.to_bits()
    );
    let c = train_small(&d, &small_hyper(), 43);
    assert_ne!(a.params, c.params);
}

#[test]
fn measurements_repeat_exactly() {
    let d = small();
    let params = train_small(&d, &small_hyper(), 1).params;
    let limits = ResourceLimits::default();
    let first = measure(&d, &params, &data_seed(3), &limits).unwrap();
    for _ in 0..5 {
        let again = measure(&d, &params, &data_seed(3), &limits).unwrap();
        assert_eq!(again.measured.to_bits(), first.measured.to_bits());
        assert_eq!(again.data_hash, first.data_hash);
    }
    let other = measure(&d, &params, &data_seed(4), &limits).unwrap();
    assert_ne!(other.data_hash, first.data_hash);
    // Another instance (another evaluator with the same config) measures the same.
    let twin = measure(&small(), &params, &data_seed(3), &limits).unwrap();
    assert_eq!(twin, first);
}

// --- parameters ---

#[test]
fn params_roundtrip() {
    let d = small();
    let proposal = train_small(&d, &small_hyper(), 7);
    let decoded = d.config().decode_params(&proposal.params).unwrap();
    assert_eq!(decoded.hyper, small_hyper());
    assert_eq!(decoded.horizon, 8);
    assert_eq!(decoded.train_seed, 7);
    assert!(decoded.epochs_run >= 1 && decoded.epochs_run <= 20);
    assert_eq!(decoded.encode(), proposal.params);
    assert_eq!(proposal.params.len(), small_hyper().params_bytes(8));
    assert_eq!(proposal.hyperparameters, small_hyper().to_map());
}

#[test]
fn malformed_params_blame_the_params() {
    let d = small();
    let good = naive_params(&d, 16);
    let bytes = good.encode();
    let data = d.generate(&data_seed(1)).unwrap();
    let mut blobs: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("magic", [b"NOT-TSF!".as_slice(), &bytes[8..]].concat()),
        ("truncated", bytes[..bytes.len() - 1].to_vec()),
        ("extra", [bytes.as_slice(), &[0]].concat()),
        ("header only", bytes[..PARAMS_HEADER_BYTES].to_vec()),
    ];
    let mut patch = |name: &'static str, at: usize, value: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + value.len()].copy_from_slice(value);
        blobs.push((name, b));
    };
    patch("version", 8, &2u16.to_le_bytes());
    patch("activation", 10, &[9]);
    patch("depth 0", 11, &[0]);
    patch("depth 9", 11, &[9]);
    patch("window beyond max_window", 12, &33u16.to_le_bytes());
    patch("width beyond MAX_WIDTH", 14, &u16::MAX.to_le_bytes());
    patch("horizon", 16, &5u16.to_le_bytes());
    patch("learning rate", 18, &f64::NAN.to_le_bytes());
    patch("epochs run > epochs", 34, &u32::MAX.to_le_bytes());
    patch("nan weight", PARAMS_HEADER_BYTES, &f32::NAN.to_le_bytes());
    patch("inf weight", bytes.len() - 4, &f32::INFINITY.to_le_bytes());
    for (name, blob) in blobs {
        let err = d.evaluate(&blob, &data).unwrap_err();
        assert!(err.blames_params(), "{name}: {err}");
        assert!(
            matches!(err, PluginError::InvalidParams { .. }),
            "{name}: {err}"
        );
        let err = d
            .infer(&blob, &json!({"window": vec![0.0; 16]}))
            .unwrap_err();
        assert!(err.blames_params(), "{name}: {err}");
    }
    // A valid blob of a domain with another horizon is invalid here.
    let other = domain(json!({"horizon": 4, "max_window": 32}));
    let err = other
        .evaluate(&bytes, &other.generate(&data_seed(1)).unwrap())
        .unwrap_err();
    assert!(err.blames_params(), "{err}");
}

// --- inference ---

#[test]
fn inference_forecasts_the_horizon() {
    let d = small();
    let params = train_small(&d, &small_hyper(), 1).params;
    let window: Vec<f64> = (0..32).map(|i| (f64::from(i) * 0.5).sin() + 3.0).collect();
    let answer = d.infer(&params, &json!({ "window": window })).unwrap();
    assert_eq!(answer["horizon"], json!(8));
    let forecast = answer["forecast"].as_array().unwrap();
    assert_eq!(forecast.len(), 8);
    assert!(forecast
        .iter()
        .all(|v| v.as_f64().is_some_and(f64::is_finite)));
    // The naive model forecasts the last value.
    let naive = naive_params(&d, 32).encode();
    let answer = d.infer(&naive, &json!({ "window": window })).unwrap();
    assert_eq!(answer["forecast"], json!(vec![window[31]; 8]));
    // Adding a constant to the window adds it to the forecast.
    let shifted: Vec<f64> = window.iter().map(|v| v + 10.0).collect();
    let a = d.infer(&params, &json!({ "window": window })).unwrap();
    let b = d.infer(&params, &json!({ "window": shifted })).unwrap();
    for (x, y) in a["forecast"]
        .as_array()
        .unwrap()
        .iter()
        .zip(b["forecast"].as_array().unwrap())
    {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!((y - x - 10.0).abs() < 1e-4, "{x} {y}");
    }
}

#[test]
fn bad_inference_input_is_invalid_input() {
    let d = small();
    let params = naive_params(&d, 16).encode();
    for input in [
        json!("hi"),
        json!({}),
        json!({"window": "x"}),
        json!({"window": vec![1.0; 15]}),
        json!({"window": vec![1.0; 17]}),
        json!({"window": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "16"]}),
        json!({"window": vec![1e300; 16]}),
        json!({"window": vec![1.0; 16], "extra": 1}),
    ] {
        let err = d.infer(&params, &input).unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidInput { .. }),
            "{input}: {err}"
        );
        assert!(!err.blames_params());
    }
    let err = d
        .infer(&params, &json!({"window": vec![1.0; 15]}))
        .unwrap_err();
    assert!(
        err.to_string().contains("15 values") && err.to_string().contains("16"),
        "{err}"
    );
}

// --- training and skill ---

#[test]
fn an_honest_model_beats_the_naive_forecast_on_unseen_series() {
    let d = small();
    let proposal = train_small(&d, &small_hyper(), 3);
    let unseen = mean_skill(&d, &proposal.params, 100..104);
    eprintln!("claim {} unseen {unseen}", proposal.claimed_performance);
    assert!(proposal.claimed_performance > 0.1, "{proposal:?}");
    assert!(unseen > 0.1, "unseen skill {unseen}");
    assert!(proposal.metrics.contains_key("val_mae"));
}

#[test]
fn a_memoriser_of_one_series_scores_worse_than_an_honest_model() {
    // The memoriser: a huge network (3 × 256), no early stopping, 200 epochs, on the
    // training windows of a single short series; it drives its training loss far below the
    // honest model's, and then forecasts unseen series worse.
    let d = small();
    let honest = train_small(&d, &small_hyper(), 3);

    let one = SeriesSet::generate(d.config().process(), TAG_TRAIN_SERIES, &[99], 1, 80);
    let none = SeriesSet::generate(d.config().process(), TAG_TRAIN_SERIES, &[99], 0, 80);
    let huge = Hyperparameters {
        window: 32,
        depth: 3,
        width: 256,
        activation: Activation::Relu,
        learning_rate: 3e-3,
        batch_size: 8,
        epochs: 200,
    };
    let settings = TrainSettings {
        early_patience: None,
        max_seconds: 60,
    };
    let memoriser = model::train(&huge, 8, &one, &none, &settings, 5, &d.compute()).unwrap();
    assert_eq!(memoriser.params.epochs_run, 200);
    let memorised = d.skill_on(&memoriser.params, &one).unwrap();
    let memoriser = memoriser.params.encode();

    let honest_unseen = mean_skill(&d, &honest.params, 200..204);
    let memoriser_unseen = mean_skill(&d, &memoriser, 200..204);
    eprintln!("memorised {memorised}, memoriser {memoriser_unseen}, honest {honest_unseen}");
    assert!(
        memorised > honest_unseen,
        "memorisation is real: {memorised}"
    );
    assert!(
        memoriser_unseen < honest_unseen - 0.05,
        "memoriser {memoriser_unseen} vs honest {honest_unseen} (on its own series: {memorised})"
    );
}

#[test]
fn the_claim_is_the_evaluators_metric_on_the_claim_dataset() {
    let d = small();
    let proposal = train_small(&d, &small_hyper(), 8);
    let claim_data = d.generate(&claim_seed(8)).unwrap();
    let recomputed = d.evaluate(&proposal.params, &claim_data).unwrap();
    assert_eq!(recomputed.to_bits(), proposal.claimed_performance.to_bits());
}

// --- the trainer ---

#[test]
fn trainer_respects_its_search_space_and_limits() {
    let d = small();
    let space = d.search_space();
    for name in params::HYPERPARAMETER_NAMES {
        assert!(space.0.contains_key(name), "{name}");
    }
    assert_eq!(space.0["window"], (4.0, 32.0));
    space.validate().unwrap();
    let limits = ResourceLimits::default();
    let request = |values: BTreeMap<String, f64>, limits: &ResourceLimits| {
        d.train(&TrainRequest {
            hyperparameters: &values,
            seed: 1,
            limits,
        })
    };
    let mut unknown = small_hyper().to_map();
    unknown.insert("dropout".into(), 0.1);
    assert!(matches!(
        request(unknown, &limits),
        Err(PluginError::InvalidInput { .. })
    ));
    let mut outside = small_hyper().to_map();
    outside.insert("window".into(), 33.0);
    let err = request(outside, &limits).unwrap_err();
    assert!(
        matches!(&err, PluginError::Limit(e) if e.field == "window"),
        "{err}"
    );
    let mut nan = small_hyper().to_map();
    nan.insert("learning_rate".into(), f64::NAN);
    assert!(request(nan, &limits).is_err());
    let few_epochs = ResourceLimits {
        max_epochs: 5,
        ..ResourceLimits::default()
    };
    let err = request(small_hyper().to_map(), &few_epochs).unwrap_err();
    assert!(
        matches!(&err, PluginError::Limit(e) if e.field == "epochs"),
        "{err}"
    );
    let small_blobs = ResourceLimits {
        max_params_bytes: 100,
        ..ResourceLimits::default()
    };
    let err = request(small_hyper().to_map(), &small_blobs).unwrap_err();
    assert!(matches!(&err, PluginError::Limit(_)), "{err}");
    // Absent names take the defaults (window clamped to the domain's max_window).
    let partial: BTreeMap<String, f64> = [("epochs".to_string(), 2.0)].into();
    let proposal = request(partial, &limits).unwrap();
    assert_eq!(proposal.hyperparameters["window"], 32.0);
    assert_eq!(proposal.hyperparameters["epochs"], 2.0);
}

// --- the optimizer ---

fn small_optimizer_setup(seed: u64) -> OptimizerSetup {
    OptimizerSetup {
        config: json!({
            "hyperparameters": {"window": 16, "depth": 1, "width": 16, "epochs": 10, "learning_rate": 0.01},
            "param_bounds": {"width": [4, 32], "epochs": [1, 10], "depth": [1, 2]},
        }),
        seed,
        ..OptimizerSetup::default()
    }
}

fn run_climber(d: &TsForecast, seed: u64, rounds: u64) -> Vec<Proposal> {
    let mut climber = d.new_optimizer(&small_optimizer_setup(seed)).unwrap();
    (0..rounds)
        .map(|round| {
            let ctx = ProposeContext {
                champion: None,
                seed: seed ^ round,
                round,
            };
            climber.propose(&ctx).unwrap()
        })
        .collect()
}

#[test]
fn climber_is_deterministic_and_its_claims_never_decrease() {
    let d = small();
    let first = run_climber(&d, 5, 4);
    let strip = |ps: &[Proposal]| -> Vec<(Vec<u8>, u64, BTreeMap<String, f64>)> {
        ps.iter()
            .map(|p| {
                (
                    p.params.clone(),
                    p.claimed_performance.to_bits(),
                    p.hyperparameters.clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&first), strip(&run_climber(&d, 5, 4)));
    let claims: Vec<f64> = first.iter().map(|p| p.claimed_performance).collect();
    assert!(claims.windows(2).all(|w| w[1] >= w[0]), "{claims:?}");
    // The first candidate is the configured start.
    assert_eq!(first[0].hyperparameters["window"], 16.0);
    assert_eq!(first[0].hyperparameters["width"], 16.0);
    // Every proposal stays inside the narrowed space, and its claim is the metric on the
    // climber's claim dataset.
    let claim_data = d.generate(&claim_seed(5)).unwrap();
    for p in &first {
        assert!(p.hyperparameters["width"] <= 32.0 && p.hyperparameters["epochs"] <= 10.0);
        let measured = d.evaluate(&p.params, &claim_data).unwrap();
        assert_eq!(measured.to_bits(), p.claimed_performance.to_bits());
        assert!(p.metrics.contains_key("accepted") && p.metrics.contains_key("round"));
    }
}

#[test]
fn climber_adopts_better_migrants_and_rejects_malformed_ones() {
    let d = small();
    let mut climber = d.climber(&small_optimizer_setup(1)).unwrap();
    let naive = Migrant {
        params: naive_params(&d, 16).encode(),
        performance: 0.99, // a lie: it is re-measured
        hyperparameters: BTreeMap::new(),
    };
    climber.inject(&naive).unwrap();
    assert_eq!(climber.best_performance(), Some(0.0));

    let strong = train_small(&d, &small_hyper(), 3);
    let measured = climber.claim_of(&strong.params).unwrap();
    assert!(measured > 0.0);
    climber.inject(&strong.to_migrant()).unwrap();
    assert_eq!(climber.best_performance(), Some(measured));
    // The naive model again is worse: not adopted.
    climber.inject(&naive).unwrap();
    assert_eq!(climber.best_performance(), Some(measured));
    // The champion in the context is adopted the same way, and proposals start from it.
    let proposal = climber
        .propose(&ProposeContext {
            champion: Some(&strong.to_migrant()),
            seed: 0,
            round: 0,
        })
        .unwrap();
    assert!(proposal.claimed_performance >= measured);

    let bad = Migrant {
        params: vec![1, 2, 3],
        ..naive
    };
    assert!(climber.inject(&bad).unwrap_err().blames_params());
}

#[test]
fn optimizer_config_errors_name_the_field() {
    let d = small();
    for (config, field) in [
        (json!({"early_patience": 0}), "early_patience"),
        (json!({"explore_prob": 2}), "explore_prob"),
        (
            json!({"hyperparameters": {"window": 1000}}),
            "hyperparameters",
        ),
        (json!({"hyperparameters": {"nope": 1}}), "hyperparameters"),
        (
            json!({"param_bounds": {"width": [1000, 2000]}}),
            "param_bounds.width",
        ),
        (json!({"param_bounds": 3}), "param_bounds"),
        (json!({"threads": "many"}), "threads"),
        (json!([]), "optimization_config"),
    ] {
        let setup = OptimizerSetup {
            config: config.clone(),
            ..OptimizerSetup::default()
        };
        let err = d.climber(&setup).unwrap_err();
        assert_eq!(config_field(err), field, "{config}");
    }
}

#[test]
fn unit_cube_encoding_roundtrips_the_recipe() {
    let space = search_space(96);
    let hyper = Hyperparameters {
        window: 33,
        depth: 2,
        width: 100,
        activation: Activation::Gelu,
        learning_rate: 1e-3,
        batch_size: 64,
        epochs: 40,
    };
    let genes = encode_unit(&space, &hyper);
    assert!(genes.iter().all(|g| (0.0..=1.0).contains(g)));
    let back = decode_unit(&space, |i, _| genes[i], &Hyperparameters::default());
    assert_eq!(back.window, 33);
    assert_eq!(back.width, 100);
    assert_eq!(back.batch_size, 64);
    assert_eq!(back.activation, Activation::Gelu);
    assert!((back.learning_rate - 1e-3).abs() < 1e-12);
}

// --- registry ---

#[test]
fn the_builtin_registry_builds_ts_forecast_under_both_names() {
    let registry = crate::builtin_registry();
    assert!(registry.contains(NAME) && registry.contains(ALIAS));
    let setup = PluginSetup {
        data_config: small_config(),
        target_performance: Some(0.3),
        ..PluginSetup::new(DomainId::new("ts-forecast").unwrap())
    };
    let a = registry.instantiate(NAME, &setup).unwrap();
    let b = registry.instantiate(ALIAS, &setup).unwrap();
    assert_eq!(a.info(), b.info());
    let info = a.info();
    assert_eq!(info.performance_metric, PERFORMANCE_METRIC);
    assert_eq!(info.baseline_performance, 0.0);
    assert!(info.reached_target(0.31) && !info.reached_target(0.2));
    assert!(a.inference().is_some() && a.trainer().is_some());
    let naive = naive_params(&small(), 16).encode();
    let m = measure(
        a.as_ref(),
        &naive,
        &data_seed(1),
        &ResourceLimits::default(),
    )
    .unwrap();
    assert_eq!(m.measured, 0.0);
}

#[test]
fn cuda_scores_agree_with_cpu_scores_within_tolerance() {
    // Device `auto` is the CPU without a GPU (then this checks only that), the GPU with one;
    // GPU kernels differ from CPU ones in the last bits, hence a tolerance.
    let cpu = small();
    let auto = TsForecast::new(&PluginSetup {
        data_config: small_config(),
        inference_config: json!({"device": "auto"}),
        ..PluginSetup::new(DomainId::new("ts").unwrap())
    })
    .unwrap();
    assert_eq!(
        auto.compute().device,
        crate::select_device(DevicePreference::Auto)
    );
    let params = train_small(&cpu, &small_hyper(), 2).params;
    let data = cpu.generate(&data_seed(6)).unwrap();
    let a = cpu.evaluate(&params, &data).unwrap();
    let b = auto.evaluate(&params, &data).unwrap();
    assert!(
        (a - b).abs() < 1e-4,
        "cpu {a} vs {:?} {b}",
        auto.compute().device
    );
    let trained_there = auto.train(&TrainRequest {
        hyperparameters: &small_hyper().to_map(),
        seed: 2,
        limits: &ResourceLimits::default(),
    });
    assert!(trained_there.unwrap().claimed_performance > 0.0);
}

#[test]
fn the_example_node_config_builds_the_domain_and_its_optimizer() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/ts-forecast.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (config, warnings) = doin_core::config::NodeConfig::from_json_str(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let domain_config = &config.domains[0];
    let registry = crate::builtin_registry();
    let domain = registry
        .instantiate(
            &domain_config.optimization_plugin,
            &domain_config.plugin_setup(),
        )
        .unwrap();
    // The example spells out the defaults: it generates exactly the default data.
    assert_eq!(
        domain
            .synthetic()
            .generate(&data_seed(7))
            .unwrap()
            .hash()
            .to_string(),
        PINNED_DATA_HASH
    );
    assert!(domain
        .new_optimizer(&domain_config.optimizer_setup(1))
        .is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_param_bytes_never_panic(blob in prop::collection::vec(any::<u8>(), 0..200)) {
        let d = small();
        let data = d.generate(&data_seed(0)).unwrap();
        match d.evaluate(&blob, &data) {
            Ok(score) => prop_assert!(score.is_finite()),
            Err(e) => prop_assert!(e.blames_params(), "{}", e),
        }
    }

    #[test]
    fn corrupted_valid_blobs_never_panic(at in 0usize..2_000, byte in any::<u8>(), cut in 0usize..2_000) {
        let d = small();
        let mut blob = naive_params(&d, 16).encode();
        let at = at % blob.len();
        blob[at] = byte;
        if cut < 200 {
            blob.truncate(blob.len().saturating_sub(cut));
        }
        let data = d.generate(&data_seed(0)).unwrap();
        match d.evaluate(&blob, &data) {
            Ok(score) => prop_assert!(score.is_finite()),
            Err(e) => prop_assert!(e.blames_params(), "{}", e),
        }
    }

    #[test]
    fn arbitrary_datasets_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let d = small();
        let params = naive_params(&d, 16).encode();
        let mut framed = b"DOIN-TSD".to_vec();
        framed.extend_from_slice(&bytes);
        for data in [bytes, framed] {
            if let Err(e) = d.evaluate(&params, &Dataset::new(data)) {
                prop_assert!(matches!(e, PluginError::InvalidData { .. }), "{}", e);
            }
        }
    }

    #[test]
    fn arbitrary_inference_input_never_panics(
        window in prop::collection::vec(prop::num::f64::ANY, 0..20),
        key in "[a-z]{1,9}",
    ) {
        let d = small();
        let params = naive_params(&d, 16).encode();
        let mut input = Map::new();
        input.insert(key, json!(window));
        match d.infer(&params, &Value::Object(input)) {
            Ok(answer) => prop_assert_eq!(answer["forecast"].as_array().map(Vec::len), Some(8)),
            Err(e) => prop_assert!(matches!(e, PluginError::InvalidInput { .. }), "{}", e),
        }
    }
}
