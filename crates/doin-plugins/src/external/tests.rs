//! The bridge against real child processes: the Python example domain for the round trip,
//! and small misbehaving Python scripts for the failure paths. Every test is bounded by the
//! bridge's own deadlines; each skips (with a printed reason) when `python3` is absent.

use super::*;
use doin_core::hash::HashKind;
use doin_core::params::DomainId;
use doin_core::plugin::measure;
use std::path::{Path, PathBuf};
use std::time::Instant;

// --- helpers ---

const PYTHON: &str = "python3";

/// Whether `python3` runs; prints why a test is skipped when it does not.
fn have_python() -> bool {
    let ok = std::process::Command::new(PYTHON)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: {PYTHON} is not installed");
    }
    ok
}

fn example_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/python/doin_domain.py")
}

fn setup(domain: &str, data_config: Value) -> PluginSetup {
    PluginSetup {
        data_config,
        target_performance: Some(-0.05),
        ..PluginSetup::new(DomainId::new(domain).unwrap())
    }
}

fn example_setup(extra: Value) -> PluginSetup {
    let mut config = json!({
        "command": [PYTHON, example_script()],
        "startup_timeout_ms": 30_000,
        "timeout_ms": 30_000,
        "n_features": 3,
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    setup("linreg", config)
}

fn example_domain() -> ExternalDomain {
    ExternalDomain::new(&example_setup(json!({}))).unwrap()
}

fn seed(n: u64) -> Hash32 {
    HashKind::DataSeed.hash(&n.to_le_bytes())
}

fn params(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A Python script that speaks the protocol correctly except where `mode` says otherwise.
const MISBEHAVING: &str = r#"
import json, sys, time
mode = sys.argv[1]
if mode == "exit_at_start":
    print("cannot import torch", file=sys.stderr)
    sys.exit(2)
def send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
for line in sys.stdin:
    req = json.loads(line)
    rid, method = req["id"], req["method"]
    if method == "describe":
        if mode == "silent":
            time.sleep(60)
        result = {"protocol": 2 if mode == "bad_protocol" else 1, "name": "fake",
                  "performance_metric": "neg_loss", "baseline_performance": -1.0,
                  "capabilities": []}
        if mode == "lower_is_better":
            result["higher_is_better"] = False
        send({"id": rid, "result": result})
    elif method == "synthesize":
        send({"id": rid, "result": {"dataset": "AQID"}})
    elif method == "evaluate":
        if mode == "crash":
            print("Traceback: boom", file=sys.stderr)
            sys.stderr.flush()
            sys.exit(3)
        elif mode == "garbage":
            print("epoch 1/10 loss=0.3")
            sys.stdout.flush()
        elif mode == "sleep":
            time.sleep(60)
        elif mode == "oversized":
            sys.stdout.write("x" * (3 << 20) + "\n")
            sys.stdout.flush()
        elif mode == "wrong_id":
            send({"id": rid + 1, "result": {"score": 1.0}})
        elif mode == "no_score":
            send({"id": rid, "result": {"value": 1.0}})
        elif mode == "error_reply":
            send({"id": rid, "error": {"kind": "invalid_params", "message": "expected 40 bytes"}})
        else:
            send({"id": rid, "result": {"score": -0.5}})
    else:
        send({"id": rid, "error": {"kind": "unsupported", "message": method}})
"#;

/// Writes the misbehaving script into `dir` and returns a setup that runs it in `mode`.
fn misbehaving(dir: &Path, mode: &str, extra: Value) -> PluginSetup {
    let script = dir.join("fake_domain.py");
    std::fs::write(&script, MISBEHAVING).unwrap();
    let mut config = json!({
        "command": [PYTHON, script, mode],
        "startup_timeout_ms": 20_000,
        "timeout_ms": 20_000,
        "max_line_bytes": 1 << 20,
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    setup("fake", config)
}

fn fake_domain(dir: &Path, mode: &str, extra: Value) -> ExternalDomain {
    ExternalDomain::new(&misbehaving(dir, mode, extra)).unwrap()
}

/// Evaluates through the typed API, checking that the call came back within `limit`.
fn timed_score(domain: &ExternalDomain, limit: Duration) -> ExternalResult<f64> {
    let start = Instant::now();
    let result = domain.score(&[0; 8], &Dataset::new(vec![1, 2, 3]));
    assert!(start.elapsed() < limit, "took {:?}", start.elapsed());
    result
}

/// After a fatal error, the next call runs in a fresh process.
fn assert_restarts(domain: &ExternalDomain) {
    let before = domain.generation();
    let data = domain.synthesize(&seed(1)).unwrap();
    assert_eq!(data.bytes, vec![1, 2, 3]);
    assert_eq!(domain.generation(), before + 1);
}

// --- the Python example domain ---

#[test]
fn python_domain_round_trips_through_the_registry() {
    if !have_python() {
        return;
    }
    let registry = crate::builtin_registry();
    assert!(registry.contains(NAME));
    let domain = registry
        .instantiate(NAME, &example_setup(json!({})))
        .unwrap();
    let info = domain.info();
    assert_eq!(info.id.as_str(), "linreg");
    assert_eq!(info.performance_metric, "neg_mse");
    assert_eq!(info.version, 1);
    assert_eq!(info.target_performance, Some(-0.05));
    assert!(info.baseline_performance < -0.5, "{info:?}");

    // generate and evaluate
    let limits = ResourceLimits::default();
    let zero = params(&[0.0; 4]);
    let a = measure(domain.as_ref(), &zero, &seed(1), &limits).unwrap();
    assert_eq!(
        a,
        measure(domain.as_ref(), &zero, &seed(1), &limits).unwrap()
    );
    let b = measure(domain.as_ref(), &zero, &seed(2), &limits).unwrap();
    assert_ne!(a.data_hash, b.data_hash);
    // 256 samples of 3 features and a target
    assert_eq!(
        domain.synthetic().generate(&seed(1)).unwrap().bytes.len(),
        256 * 4 * 8
    );

    // propose: the optimizer improves and its claims hold on evaluator data
    let setup = OptimizerSetup {
        seed: 7,
        ..OptimizerSetup::default()
    };
    let mut optimizer = domain.new_optimizer(&setup).unwrap();
    let mut last = f64::NEG_INFINITY;
    let mut proposal = Proposal::default();
    for round in 0..5 {
        let ctx = ProposeContext {
            champion: None,
            seed: 1,
            round,
        };
        proposal = optimizer.propose(&ctx).unwrap();
        assert!(proposal.claimed_performance >= last);
        last = proposal.claimed_performance;
    }
    assert!(last > -0.05, "{last}");
    assert!(last > info.baseline_performance);
    let measured = measure(domain.as_ref(), &proposal.params, &seed(3), &limits)
        .unwrap()
        .measured;
    assert!(
        (measured - last).abs() < 0.05,
        "claim {last}, measured {measured}"
    );
    assert_eq!(proposal.hyperparameters["learning_rate"], 0.3);

    // infer
    let answer = domain
        .inference()
        .unwrap()
        .infer(&proposal.params, &json!({"features": [0.0, 0.0, 0.0]}))
        .unwrap();
    assert!(answer["prediction"].as_f64().is_some(), "{answer}");
    let err = domain
        .inference()
        .unwrap()
        .infer(&proposal.params, &json!({"features": "x"}))
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidInput { .. }), "{err}");

    // train
    let trainer = domain.trainer().unwrap();
    assert_eq!(
        trainer.search_space().0.keys().collect::<Vec<_>>(),
        ["learning_rate", "steps"]
    );
    let hyper: BTreeMap<String, f64> = [
        ("learning_rate".to_string(), 0.3),
        ("steps".to_string(), 40.0),
    ]
    .into();
    let request = TrainRequest {
        hyperparameters: &hyper,
        seed: 5,
        limits: &limits,
    };
    let trained = trainer.train(&request).unwrap();
    assert_eq!(trained, trainer.train(&request).unwrap());
    assert!(trained.claimed_performance > -0.05, "{trained:?}");
    let outside: BTreeMap<String, f64> = [
        ("learning_rate".to_string(), 5.0),
        ("steps".to_string(), 1.0),
    ]
    .into();
    let err = trainer
        .train(&TrainRequest {
            hyperparameters: &outside,
            ..request
        })
        .unwrap_err();
    assert!(matches!(err, PluginError::Limit(_)), "{err}");
    assert_eq!(
        domain
            .as_ref()
            .evaluator()
            .evaluate(
                &trained.params,
                &domain.synthetic().generate(&seed(4)).unwrap()
            )
            .map(f64::is_finite),
        Ok(true)
    );
}

#[test]
fn python_domain_is_deterministic_by_seed_across_processes() {
    if !have_python() {
        return;
    }
    let one = example_domain();
    let two = example_domain();
    for n in 0..3 {
        let a = one.synthesize(&seed(n)).unwrap();
        assert_eq!(a, two.synthesize(&seed(n)).unwrap());
        let p = params(&[1.0, -2.0, 0.5, 0.25]);
        assert_eq!(
            one.score(&p, &a).unwrap().to_bits(),
            two.score(&p, &a).unwrap().to_bits()
        );
    }
    assert_ne!(
        one.synthesize(&seed(0)).unwrap(),
        one.synthesize(&seed(1)).unwrap()
    );
    // The target comes from the config: another target seed is another function.
    let other = ExternalDomain::new(&example_setup(json!({"target_seed": 9}))).unwrap();
    assert_ne!(
        other.synthesize(&seed(0)).unwrap(),
        one.synthesize(&seed(0)).unwrap()
    );
    let optimizer_run = |domain: &ExternalDomain| {
        let mut opt = domain
            .new_optimizer(&OptimizerSetup {
                seed: 3,
                ..OptimizerSetup::default()
            })
            .unwrap();
        (0..3)
            .map(|round| {
                opt.propose(&ProposeContext {
                    champion: None,
                    seed: 0,
                    round,
                })
                .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(optimizer_run(&one), optimizer_run(&two));
}

#[test]
fn bad_params_blame_the_params_and_keep_the_process() {
    if !have_python() {
        return;
    }
    let domain = example_domain();
    let data = domain.synthesize(&seed(1)).unwrap();
    for blob in [vec![], vec![0; 7], params(&[f64::NAN, 0.0, 0.0, 0.0])] {
        let err = domain.evaluator().evaluate(&blob, &data).unwrap_err();
        assert!(err.blames_params(), "{err}");
    }
    let err = domain
        .evaluator()
        .evaluate(&params(&[0.0; 4]), &Dataset::new(vec![1, 2, 3]))
        .unwrap_err();
    assert!(matches!(err, PluginError::InvalidData { .. }), "{err}");
    assert_eq!(domain.generation(), 1, "error replies do not restart");
}

#[test]
fn optimizer_is_recreated_after_the_process_dies() {
    if !have_python() {
        return;
    }
    let domain = example_domain();
    let mut optimizer = domain
        .new_optimizer(&OptimizerSetup {
            seed: 11,
            ..OptimizerSetup::default()
        })
        .unwrap();
    let ctx = |round| ProposeContext {
        champion: None,
        seed: 0,
        round,
    };
    let before = optimizer.propose(&ctx(0)).unwrap();
    domain.kill_process();
    let after = optimizer.propose(&ctx(1)).unwrap();
    assert_eq!(domain.generation(), 2);
    // The best proposal was injected into the new process: no progress lost.
    assert!(after.claimed_performance >= before.claimed_performance);
    // And a migrant from outside is accepted.
    optimizer.inject(&after.to_migrant()).unwrap();
    let bad = Migrant {
        params: vec![1],
        ..Migrant::default()
    };
    assert!(optimizer.inject(&bad).unwrap_err().blames_params());
}

// --- misbehaving processes ---

#[test]
fn a_crash_is_reported_with_its_stderr_and_the_next_call_restarts() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "crash", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    match &err {
        ExternalError::Exited {
            method,
            status,
            stderr_tail,
        } => {
            assert_eq!(*method, Method::Evaluate);
            assert!(status.contains('3'), "{status}");
            assert!(stderr_tail.contains("Traceback: boom"), "{stderr_tail}");
        }
        other => panic!("expected Exited, got {other}"),
    }
    assert!(err.is_fatal());
    let plugin = PluginError::from(err);
    assert!(!plugin.blames_params(), "a crash is this node's problem");
    assert!(plugin.to_string().contains("exited"), "{plugin}");
    assert_restarts(&domain);
}

#[test]
fn garbage_on_stdout_is_bad_json() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "garbage", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(&err, ExternalError::BadJson { line, .. } if line.contains("epoch 1/10")),
        "{err}"
    );
    assert!(err.to_string().contains("log to stderr"), "{err}");
    assert_restarts(&domain);
}

#[test]
fn a_hung_call_times_out_and_the_process_is_replaced() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "sleep", json!({"timeout_ms": 300}));
    let err = timed_score(&domain, Duration::from_secs(5)).unwrap_err();
    assert_eq!(
        err,
        ExternalError::Timeout {
            method: Method::Evaluate,
            timeout_ms: 300
        }
    );
    assert_restarts(&domain);
}

#[test]
fn an_oversized_line_is_refused_without_reading_it_whole() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "oversized", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        err,
        ExternalError::LineTooLong {
            method: Method::Evaluate,
            limit: 1 << 20
        }
    );
    assert_restarts(&domain);
}

#[test]
fn a_response_to_another_request_is_wrong_id() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "wrong_id", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    assert!(matches!(err, ExternalError::WrongId { .. }), "{err}");
    assert_restarts(&domain);
}

#[test]
fn malformed_results_and_error_replies_keep_the_process() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "no_score", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(&err, ExternalError::BadResponse { reason, .. } if reason.contains("score")),
        "{err}"
    );
    assert!(!err.is_fatal());
    assert_eq!(domain.generation(), 1);

    let domain = fake_domain(dir.path(), "error_reply", json!({}));
    let err = timed_score(&domain, Duration::from_secs(10)).unwrap_err();
    assert_eq!(
        err,
        ExternalError::Reply {
            method: Method::Evaluate,
            kind: ReplyKind::InvalidParams,
            field: None,
            message: "expected 40 bytes".into()
        }
    );
    assert!(PluginError::from(err).blames_params());
    assert_eq!(domain.generation(), 1);
    // Capabilities the program did not declare are absent, not errors at call time.
    assert!(domain.inference().is_none() && domain.trainer().is_none());
    assert_eq!(
        domain.new_optimizer(&OptimizerSetup::default()).err(),
        Some(PluginError::Unsupported {
            capability: "optimizer"
        })
    );
}

#[test]
fn a_request_over_the_line_limit_is_not_sent() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let domain = fake_domain(dir.path(), "ok", json!({"max_line_bytes": 4096}));
    let err = domain
        .score(&[0; 4096], &Dataset::new(vec![1]))
        .unwrap_err();
    assert!(
        matches!(err, ExternalError::RequestTooLarge { limit: 4096, .. }),
        "{err}"
    );
    assert_eq!(domain.score(&[0; 8], &Dataset::new(vec![1])), Ok(-0.5));
    assert_eq!(domain.generation(), 1);
}

#[test]
fn start_up_failures_are_typed() {
    if !have_python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let start = |mode: &str, extra: Value| {
        let started = Instant::now();
        let result = ExternalDomain::new(&misbehaving(dir.path(), mode, extra));
        assert!(started.elapsed() < Duration::from_secs(15), "{mode}");
        result.err().unwrap()
    };
    let err = start("exit_at_start", json!({}));
    assert!(
        matches!(&err, ExternalError::Exited { method: Method::Describe, stderr_tail, .. }
            if stderr_tail.contains("cannot import torch")),
        "{err}"
    );
    assert_eq!(
        start("bad_protocol", json!({})),
        ExternalError::Protocol { got: "2".into() }
    );
    assert!(matches!(
        start("silent", json!({"startup_timeout_ms": 300})),
        ExternalError::Timeout {
            method: Method::Describe,
            timeout_ms: 300
        }
    ));
    let err = start("lower_is_better", json!({}));
    assert!(err.to_string().contains("higher_is_better"), "{err}");

    // Through the registry, the node sees a plugin error naming the cause.
    let err = crate::builtin_registry()
        .instantiate(NAME, &misbehaving(dir.path(), "bad_protocol", json!({})))
        .err()
        .unwrap();
    assert!(err.to_string().contains("protocol version 2"), "{err}");
}

#[test]
fn a_missing_program_is_a_spawn_error() {
    let config = json!({"command": ["/nonexistent/doin-plugin-program"]});
    let err = ExternalDomain::new(&setup("x", config)).unwrap_err();
    assert!(
        matches!(&err, ExternalError::Spawn { program, .. } if program.contains("nonexistent")),
        "{err}"
    );
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (json!({}), "command"),
        (json!({"command": []}), "command"),
        (json!({"command": "python3 x.py"}), "command"),
        (json!({"command": [""]}), "command"),
        (json!({"command": ["python3", 3]}), "command"),
        (json!({"command": ["p"], "timeout_ms": 0}), "timeout_ms"),
        (json!({"command": ["p"], "timeout_ms": -5}), "timeout_ms"),
        (
            json!({"command": ["p"], "startup_timeout_ms": MAX_TIMEOUT_MS + 1}),
            "startup_timeout_ms",
        ),
        (
            json!({"command": ["p"], "train_timeout_ms": "1s"}),
            "train_timeout_ms",
        ),
        (
            json!({"command": ["p"], "max_line_bytes": 100}),
            "max_line_bytes",
        ),
        (json!({"command": ["p"], "working_dir": 3}), "working_dir"),
    ];
    for (config, key) in cases {
        let err = ExternalConfig::from_json(&config).unwrap_err();
        assert!(
            matches!(&err, ExternalError::Config { field, .. } if field == key),
            "{config}: {err}"
        );
        let plugin = PluginError::from(err);
        assert!(
            matches!(&plugin, PluginError::InvalidConfig { field, .. } if field == key),
            "{plugin}"
        );
    }
    let config = ExternalConfig::from_json(&json!({"command": ["p", "a"]})).unwrap();
    assert_eq!(config.command(), ["p", "a"]);
    assert_eq!(config.timeout(), Duration::from_millis(DEFAULT_TIMEOUT_MS));
    assert_eq!(config.max_line_bytes(), DEFAULT_MAX_LINE_BYTES);
    let limits = ResourceLimits {
        max_training_seconds: 90,
        ..ResourceLimits::default()
    };
    assert_eq!(config.train_timeout(&limits), Duration::from_secs(90));
}

#[test]
fn the_command_may_sit_in_the_inference_config() {
    let setup = PluginSetup {
        inference_config: json!({"command": ["/nonexistent/x"]}),
        ..PluginSetup::new(DomainId::new("x").unwrap())
    };
    assert_eq!(
        ExternalConfig::from_setup(&setup).unwrap().command(),
        ["/nonexistent/x"]
    );
}

#[test]
fn describe_results_are_checked() {
    let ok = json!({"protocol": 1, "baseline_performance": -1.0});
    let d = Description::parse(&ok).unwrap();
    assert_eq!(d.name, NAME);
    assert_eq!(d.version, 1);
    assert!(!d.infer && !d.optimize && !d.train);
    let bad = [
        json!({"baseline_performance": -1.0}),
        json!({"protocol": 1}),
        json!({"protocol": 1, "baseline_performance": "low"}),
        json!({"protocol": 1, "baseline_performance": -1.0, "version": -1}),
        json!({"protocol": 1, "baseline_performance": -1.0, "capabilities": ["train"]}),
        json!({"protocol": 1, "baseline_performance": -1.0, "search_space": {"lr": [1, 0]}}),
        json!({"protocol": 1, "baseline_performance": -1.0, "name": 5}),
    ];
    for result in bad {
        assert!(Description::parse(&result).is_err(), "{result}");
    }
    let first = Description::parse(&ok).unwrap();
    let changed =
        Description::parse(&json!({"protocol": 1, "baseline_performance": -2.0})).unwrap();
    assert_eq!(changed.changed_from(&first), Some("baseline_performance"));
    assert_eq!(first.changed_from(&first), None);
}
