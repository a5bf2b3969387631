//! `doin-train-eval`: scores hyperparameter points of a `Train` domain (ts-forecast) exactly as
//! DOIN's GA scores its candidates, for outside searches such as Optuna, and runs DOIN's own
//! engines with a per-round trace. `scripts/optuna-ts-forecast.sh` drives it.
//!
//! ```text
//! doin-train-eval space --config examples/ts-forecast.json --domain ts-forecast [--set K=V]
//! doin-train-eval serve --config examples/ts-forecast.json --domain ts-forecast [--set K=V]
//! doin-train-eval run   --config examples/ts-forecast.json --domain ts-forecast \
//!     --optimizer ga [--meta gp] --rounds 30 --seed 1 [--set K=V]
//! ```
//!
//! * `space` prints the search space as the GA sees it (the trainer's bounds narrowed by
//!   `param_bounds`, and the config's `integer_genes` / `log_genes` flags) as one JSON object:
//!   `{"domain": .., "space": [{"name", "low", "high", "integer", "log"}, ..]}`.
//! * `serve` is a persistent evaluator (libtorch loads once): one JSON request per stdin line,
//!   `{"hyperparameters": {"window": 48, ..}, "seed": 1}`, one JSON answer per stdout line,
//!   `{"performance": x, "seconds": s, "verified": v, "verify_seconds": t, "hyperparameters":
//!   {..}, "metrics": {..}}`, or `{"error": "..", "blames_params": b}`. The point is trained
//!   through the domain's `Train` capability with the seed the GA of run seed `seed` would use
//!   for it ([`doin_optimizer::ga::candidate_seed`]), so `performance` is bit for bit the claim
//!   DOIN's GA would make (and commit) for that point in that run. `{"space": true}` answers
//!   with the space, as `space` does.
//! * `run` runs one DOIN engine standalone exactly as `doin-optimizer --no-stop` does (same
//!   config, same engine, same run seed, so the same trajectory) and prints one JSON line per
//!   round (`{"round", "best", "verified", "seconds"}`), then `{"summary": {..}}` (with the
//!   best candidate's `best_hyperparameters`, as the plugin reports them). To get the
//!   parameters of every new best, the engine's commit bar is lowered to nothing (ε = 0, no
//!   baseline): the searches read neither, so the trajectory does not change.
//!
//! `verified` re-measures the current best on `--verify-seeds` evaluator datasets (default 5)
//! that no optimizer sees, with the evaluator's pipeline (size limit, `Evaluate`, finite
//! score), and reports their median: what the chain's evaluators would measure, free of the
//! optimistic bias of picking the best of many noisy claims. It is inference only
//! (milliseconds), and its time is left out of `seconds`.
//!
//! The domain's `target_performance` is cleared: every run spends its whole budget. (Note:
//! `doin-optimizer --no-stop` clears only the engine's target; the plugin's own target, which
//! ts-forecast takes from the config, still converges the engine once a claim reaches it.)

mod shared;

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use doin_core::config::DomainConfig;
use doin_core::hash::{Hash32, HashKind};
use doin_core::plugin::{checked_score, Dataset, DomainPlugin, PluginError, TrainRequest};
use doin_optimizer::ga::{self, GaConfig, GeneSpec, Genetic};
use doin_optimizer::{Engine, Step, StopSettings};
use serde::Deserialize;
use serde_json::{json, Value};

/// Scores hyperparameter points as DOIN's GA does (for Optuna) and traces DOIN's engines.
#[derive(Debug, Parser)]
#[command(name = "doin-train-eval", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the search space (names, bounds, integer and log flags) as JSON.
    Space(Common),
    /// Evaluate points read as JSON lines on stdin; answer JSON lines on stdout.
    Serve(Common),
    /// Run a DOIN engine standalone for --rounds, printing one JSON line per round.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Node configuration file (JSON), e.g. examples/ts-forecast.json.
    #[arg(long)]
    config: PathBuf,
    /// Domain id of the config (default: the first domain).
    #[arg(long)]
    domain: Option<String>,
    /// Overrides one optimization_config key, as `doin-optimizer --set` does. Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Held-out evaluator datasets the best is re-measured on (0: none).
    #[arg(long, default_value_t = 5)]
    verify_seeds: u32,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Search to run: `ga` or `random_step` (default: the config's).
    #[arg(long)]
    optimizer: Option<String>,
    /// L3 meta-optimizer for the GA: `gp` or `none` (default: the config's).
    #[arg(long)]
    meta: Option<String>,
    /// Rounds (candidate evaluations) to run.
    #[arg(long)]
    rounds: u64,
    /// Run seed, as `doin-optimizer --seed`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Space(common) => {
            let ctx = Bench::load(&common, &[])?;
            println!("{}", ctx.space_json()?);
            Ok(())
        }
        Command::Serve(common) => serve(&Bench::load(&common, &[])?),
        Command::Run(args) => {
            let mut overrides = Vec::new();
            if let Some(o) = &args.optimizer {
                overrides.push(("optimizer", Value::String(o.clone())));
            }
            if let Some(m) = &args.meta {
                overrides.push(("meta_optimizer", Value::String(m.clone())));
            }
            run(&Bench::load(&args.common, &overrides)?, &args)
        }
    }
}

/// The domain, its plugin and the held-out datasets.
struct Bench {
    domain: DomainConfig,
    plugin: Arc<dyn DomainPlugin>,
    verify: Vec<Dataset>,
}

impl Bench {
    fn load(common: &Common, overrides: &[(&str, Value)]) -> Result<Self> {
        let (_, mut domain) = shared::load_config_domain(&common.config, common.domain.as_deref())?;
        // Every run spends its budget: no target, neither the engine's nor the plugin's.
        domain.target_performance = None;
        for (k, v) in overrides {
            domain
                .optimization_config
                .insert((*k).to_string(), v.clone());
        }
        for kv in &common.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
            domain.optimization_config.insert(k.to_string(), value);
        }
        let plugin = doin_plugins::builtin_registry()
            .instantiate(&domain.optimization_plugin, &domain.plugin_setup())
            .with_context(|| format!("building domain {}", domain.domain_id))?;
        let verify = (0..common.verify_seeds)
            .map(|i| plugin.synthetic().generate(&verify_seed(i)))
            .collect::<Result<Vec<_>, _>>()
            .context("generating the held-out evaluator datasets")?;
        Ok(Bench {
            domain,
            plugin,
            verify,
        })
    }

    /// The GA's genes: the space an outside search must use to be comparable.
    fn space(&self) -> Result<Vec<GeneSpec>> {
        let setup = self.domain.optimizer_setup(0);
        let patience = StopSettings::from_domain_config(&self.domain)?.optimization_patience();
        let config = GaConfig::from_json(&setup.config, patience)?;
        let ga = Genetic::new(Arc::clone(&self.plugin), &setup, config)
            .context("building the GA (for its search space)")?;
        Ok(ga.search_space())
    }

    fn space_json(&self) -> Result<Value> {
        Ok(json!({
            "domain": self.domain.domain_id.as_str(),
            "space": self.space()?,
        }))
    }

    /// Median skill of `params` on the held-out datasets, as an evaluator measures it.
    fn verified(&self, params: &[u8]) -> Result<Option<f64>, PluginError> {
        if self.verify.is_empty() {
            return Ok(None);
        }
        let size = u64::try_from(params.len()).unwrap_or(u64::MAX);
        self.domain.resource_limits.check_params_size(size)?;
        let mut scores = self
            .verify
            .iter()
            .map(|data| checked_score(self.plugin.evaluator().evaluate(params, data)?))
            .collect::<Result<Vec<_>, _>>()?;
        scores.sort_by(f64::total_cmp);
        let n = scores.len();
        Ok(Some(if n % 2 == 1 {
            scores[n / 2]
        } else {
            (scores[n / 2 - 1] + scores[n / 2]) / 2.0
        }))
    }
}

/// The `i`-th held-out evaluator data seed (distinct from every optimizer's claim seed).
fn verify_seed(i: u32) -> Hash32 {
    let mut preimage = b"doin-train-eval/verify\0".to_vec();
    preimage.extend_from_slice(&i.to_le_bytes());
    HashKind::DataSeed.hash(&preimage)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    hyperparameters: BTreeMap<String, f64>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    space: bool,
}

fn serve(ctx: &Bench) -> Result<()> {
    let trainer = ctx
        .plugin
        .trainer()
        .context("this domain has no Train capability")?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({"error": format!("bad request: {e}"), "blames_params": false}),
            Ok(r) if r.space => ctx.space_json()?,
            Ok(r) => evaluate(ctx, trainer, &r),
        };
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Trains the point as the GA of run seed `r.seed` would, and scores it.
fn evaluate(ctx: &Bench, trainer: &dyn doin_core::plugin::Train, r: &Request) -> Value {
    let error =
        |e: PluginError| json!({"error": e.to_string(), "blames_params": e.blames_params()});
    let request = TrainRequest {
        hyperparameters: &r.hyperparameters,
        seed: ga::candidate_seed(r.seed, &r.hyperparameters),
        limits: &ctx.domain.resource_limits,
    };
    let start = Instant::now();
    let proposal = match trainer.train(&request) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let verified = match ctx.verified(&proposal.params) {
        Ok(v) => v,
        Err(e) => return error(e),
    };
    json!({
        "performance": proposal.claimed_performance,
        "seconds": seconds,
        "verified": verified,
        "verify_seconds": start.elapsed().as_secs_f64(),
        "hyperparameters": proposal.hyperparameters,
        "metrics": proposal.metrics,
    })
}

fn run(ctx: &Bench, args: &RunArgs) -> Result<()> {
    let stop = StopSettings::from_domain_config(&ctx.domain)?
        .with_target_performance(None)
        .with_min_improvement(0.0)
        .with_baseline_performance(Some(f64::MIN));
    let mut engine = Engine::new(
        Arc::clone(&ctx.plugin),
        ctx.domain.optimizer_setup(args.seed),
        stop,
    )
    .with_context(|| format!("building the optimizer of {}", ctx.domain.domain_id))?;
    let kind = engine.optimizer_kind();
    let mut stdout = std::io::stdout().lock();
    let mut search_seconds = 0.0;
    let mut verified = None;
    let mut best_hyperparameters = BTreeMap::new();
    let mut errors = 0u32;
    for _ in 0..args.rounds {
        let start = Instant::now();
        let step = engine.step();
        search_seconds += start.elapsed().as_secs_f64();
        match step {
            Ok(Step::Improved(p)) => {
                verified = ctx.verified(&p.params)?;
                best_hyperparameters = p.hyperparameters;
            }
            Ok(Step::NoImprovement) => {}
            Ok(Step::Converged) => bail!("the engine converged without a target"),
            Err(e) => {
                errors += 1;
                eprintln!("round failed: {e}");
                if errors >= 10 {
                    bail!("10 rounds failed; last: {e}");
                }
            }
        }
        let stats = engine.stats();
        writeln!(
            stdout,
            "{}",
            json!({
                "round": stats.rounds,
                "best": stats.best_performance,
                "verified": verified,
                "seconds": search_seconds,
            })
        )?;
        stdout.flush()?;
    }
    let stats = engine.stats();
    let summary = json!({"summary": {
        "domain": ctx.domain.domain_id.as_str(),
        "optimizer": kind,
        "seed": args.seed,
        "rounds": stats.rounds,
        "failed_rounds": errors,
        "best": stats.best_performance,
        "verified": verified,
        "best_hyperparameters": best_hyperparameters,
        "seconds": search_seconds,
        "ga": stats.ga,
    }});
    writeln!(stdout, "{summary}")?;
    Ok(())
}
