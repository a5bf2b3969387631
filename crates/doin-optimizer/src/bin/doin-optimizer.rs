//! `doin-optimizer`: run one domain's optimizer engine on its own, or as a remote worker of a
//! node, from a node config file.
//!
//! ```text
//! doin-optimizer --config examples/quickstart.json --domain quadratic --rounds 2000 \
//!     --seed 7 --optimizer ga [--meta gp] [--target -50] [--set population=12] [--json]
//! doin-optimizer --config examples/quickstart.json --domain quadratic \
//!     --attach http://127.0.0.1:8470 --key worker.key [--rounds N] [--seed S] [--target T]
//! ```
//!
//! Standalone mode (no network): the engine runs round after round until the domain's
//! target is reached or `--rounds` are spent, with a progress bar on stderr, and prints a
//! summary (rounds, best, time, improvements, rounds and seconds to the target). `--json`
//! prints the summary as one JSON object on stdout, for scripts
//! (`scripts/optimizer-experiment.sh`).
//!
//! Worker mode (`--attach URL --key FILE`): the same engine works for the node at `URL`
//! with the worker's own key (created if missing; its account must hold the domain's
//! `min_stake` plus fees: `doin-node wallet transfer` funds it). A candidate that beats the
//! on-chain champion by the domain's `min_improvement` is uploaded (`POST /params`),
//! committed, revealed and followed to its verdict; champions accepted on chain are fed back
//! into the engine. It stops after `--rounds`, when the champion on chain reaches the target,
//! or on Ctrl-C (a commit already made is still revealed), and prints a summary: optimae
//! committed, accepted, rejected, credit, stakes and fees. The worker itself is
//! [`doin_optimizer::attach`]; this binary parses the flags, builds the plugin, shows
//! progress and handles Ctrl-C.

mod shared;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use doin_core::config::{DomainConfig, NodeConfig};
use doin_optimizer::attach::{self, AttachOptions, Event, StopReason};
use doin_optimizer::{Engine, Step, StopSettings};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

/// Runs a DOIN domain's optimizer standalone (no network) or as a node's remote worker
/// (`--attach`), and summarizes the run.
#[derive(Debug, Parser)]
#[command(name = "doin-optimizer", version)]
struct Cli {
    /// Node configuration file (JSON), e.g. examples/quickstart.json.
    #[arg(long)]
    config: PathBuf,
    /// Domain id of the config to optimize (default: the first domain).
    #[arg(long)]
    domain: Option<String>,
    /// Most rounds (candidate evaluations) to run.
    #[arg(long, default_value_t = 10_000)]
    rounds: u64,
    /// Run seed: the same seed reproduces the same run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Search to run: `ga` or `random_step` (default: the domain config's `optimizer`).
    #[arg(long)]
    optimizer: Option<String>,
    /// L3 meta-optimizer for the GA: `gp` or `none` (default: the config's).
    #[arg(long)]
    meta: Option<String>,
    /// Target performance (default: the domain config's `target_performance`).
    #[arg(long, allow_hyphen_values = true)]
    target: Option<f64>,
    /// Overrides one optimization_config key: `--set population=16` (the value is JSON,
    /// or a string when it is not valid JSON). Repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Keep running after the target is reached (measures the best after `--rounds`).
    #[arg(long)]
    no_stop: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Work for the node whose HTTP API is at URL (e.g. http://127.0.0.1:8470) as a remote
    /// worker: commit, reveal and stake with --key's account.
    #[arg(long, value_name = "URL")]
    attach: Option<String>,
    /// The worker's key file (with --attach); created if missing.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// With --attach: the chain the node must run (default: the config's chain id, or its
    /// genesis file's).
    #[arg(long, value_name = "ID")]
    chain_id: Option<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let (config, domain) = load_domain(&cli)?;
    match (&cli.attach, &cli.key) {
        (Some(url), Some(key)) => run_attached(&cli, &config, domain, url, key),
        (Some(_), None) => bail!(
            "--attach needs --key FILE: the worker's key (created if missing), whose account \
             commits and stakes"
        ),
        (None, Some(_)) => {
            bail!("--key is for worker mode: add --attach URL (the node's HTTP API)")
        }
        (None, None) => run_standalone(&cli, domain),
    }
}

/// The config and the chosen domain, with the command line's overrides applied.
fn load_domain(cli: &Cli) -> Result<(NodeConfig, DomainConfig)> {
    let (config, mut domain) = shared::load_config_domain(&cli.config, cli.domain.as_deref())?;
    if let Some(t) = cli.target {
        domain.target_performance = Some(t);
    }
    if let Some(o) = &cli.optimizer {
        domain
            .optimization_config
            .insert("optimizer".into(), Value::String(o.clone()));
    }
    if let Some(m) = &cli.meta {
        domain
            .optimization_config
            .insert("meta_optimizer".into(), Value::String(m.clone()));
    }
    for kv in &cli.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
        domain.optimization_config.insert(k.to_string(), value);
    }
    Ok((config, domain))
}

fn plugin_of(domain: &DomainConfig) -> Result<Arc<dyn doin_core::plugin::DomainPlugin>> {
    doin_plugins::builtin_registry()
        .instantiate(&domain.optimization_plugin, &domain.plugin_setup())
        .with_context(|| format!("building domain {}", domain.domain_id))
}

/// The chain a worker expects: `--chain-id`, else the genesis file's, else the config's
/// (`chain.chain_id`, default `doin-dev`).
fn expected_chain_id(cli: &Cli, config: &NodeConfig) -> Result<String> {
    if let Some(id) = &cli.chain_id {
        return Ok(id.clone());
    }
    let Some(file) = &config.chain.genesis_file else {
        return Ok(config.chain.chain_id().to_string());
    };
    // As given, else next to the config.
    let beside = cli.config.parent().unwrap_or(Path::new(".")).join(file);
    let path = if file.exists() { file.clone() } else { beside };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the genesis file {} (for the chain id; or pass --chain-id)",
            path.display()
        )
    })?;
    let genesis: Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing the genesis file {}", path.display()))?;
    genesis["chain_id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} has no chain_id; pass --chain-id", path.display()))
}

/// Sets `stop` on the first Ctrl-C; a second one quits at once.
fn stop_on_ctrl_c(stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!(
                        "stopping: an optimae already committed is still revealed (Ctrl-C again \
                         quits at once)"
                    );
                    stop.store(true, Ordering::Relaxed);
                }
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    if let Err(e) = spawned {
        eprintln!("no Ctrl-C handler ({e}); stop with --rounds");
    }
}

fn run_attached(
    cli: &Cli,
    config: &NodeConfig,
    mut domain: DomainConfig,
    url: &str,
    key: &Path,
) -> Result<()> {
    if cli.no_stop {
        domain.target_performance = None;
    }
    let plugin = plugin_of(&domain)?;
    let mut opts = AttachOptions::new(url, key.to_path_buf(), domain, plugin);
    opts.seed = cli.seed;
    opts.rounds = cli.rounds;
    opts.chain_id = Some(expected_chain_id(cli, config)?);
    stop_on_ctrl_c(Arc::clone(&opts.stop));

    // Events go to the log as lines when there is no bar to print them above (`--quiet`,
    // or stderr is not a terminal: indicatif draws nothing there).
    let plain = cli.quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if plain {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };
    let mut on_event = |event: &Event| match event {
        Event::Progress { .. } => bar.set_message(event.to_string()),
        _ if plain => eprintln!("{event}"),
        _ => bar.println(event.to_string()),
    };
    let result = attach::run(opts, &mut on_event);
    bar.finish_and_clear();
    let summary = result?;
    if cli.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        eprintln!("{summary}");
    }
    if let StopReason::EngineFailed { error } = &summary.stopped {
        bail!("the optimizer failed: {error}");
    }
    Ok(())
}

fn run_standalone(cli: &Cli, mut domain: DomainConfig) -> Result<()> {
    if cli.no_stop {
        // The plugin reads the domain's target too (its own convergence check).
        domain.target_performance = None;
    }
    let plugin = plugin_of(&domain)?;
    let mut stop = StopSettings::from_domain_config(&domain)?;
    if let Some(hints) = plugin.verification_hints() {
        stop = stop.with_min_improvement(hints.min_improvement);
    }
    if cli.no_stop {
        // `None` would fall back to the plugin's own target: a target nothing reaches.
        stop = stop.with_target_performance(Some(f64::MAX));
    }
    let target = domain.target_performance;
    let mut engine = Engine::new(plugin, domain.optimizer_setup(cli.seed), stop)
        .with_context(|| format!("building the optimizer of {}", domain.domain_id))?;
    let kind = engine.optimizer_kind();

    let bar = if cli.quiet || cli.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::with_draw_target(Some(cli.rounds), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} rounds  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    };

    let start = Instant::now();
    let mut reached: Option<(u64, f64)> = None;
    let mut errors = 0u64;
    for _ in 0..cli.rounds {
        match engine.step() {
            Ok(Step::Converged) => break,
            Ok(Step::Improved(p)) => {
                bar.set_message(format!("best {:.4}", p.claimed_performance));
            }
            Ok(Step::NoImprovement) => {}
            Err(e) => {
                errors += 1;
                bar.println(format!("round failed: {e}"));
                if errors >= 10 {
                    bar.abandon();
                    bail!("10 rounds failed; last: {e}");
                }
            }
        }
        bar.inc(1);
        let stats = engine.stats();
        if reached.is_none() {
            if let (Some(t), Some(best)) = (target, stats.best_performance) {
                if best >= t {
                    reached = Some((stats.rounds, start.elapsed().as_secs_f64()));
                }
            }
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let stats = engine.stats();
    let summary = json!({
        "domain": domain.domain_id.as_str(),
        "optimizer": kind,
        "seed": cli.seed,
        "rounds": stats.rounds,
        "improvements": stats.improvements,
        "best": stats.best_performance,
        "target": target,
        "rounds_to_target": reached.map(|r| r.0),
        "seconds_to_target": reached.map(|r| r.1),
        "seconds": seconds,
        "converged": stats.converged,
        "stalled": stats.stalled,
        "ga": stats.ga,
    });
    if cli.json {
        println!("{summary}");
    } else {
        let optimizer = match kind {
            doin_optimizer::OptimizerKind::RandomStep => "random step",
            doin_optimizer::OptimizerKind::Ga => "GA",
        };
        eprintln!("domain       {} ({optimizer})", domain.domain_id);
        eprintln!("rounds       {} ({} failed)", stats.rounds, errors);
        match stats.best_performance {
            Some(best) => eprintln!("best         {best:.4}"),
            None => eprintln!("best         none (no candidate scored)"),
        }
        eprintln!("improvements {}", stats.improvements);
        match (target, reached) {
            (Some(t), Some((r, s))) => {
                eprintln!("target       {t} reached at round {r} after {s:.3} s")
            }
            (Some(t), None) => eprintln!("target       {t} not reached"),
            (None, _) => eprintln!("target       none"),
        }
        if let Some(ga) = stats.ga {
            eprintln!(
                "ga           generation {}, stage {}/{}, mutation scale {:.4}, surrogate rounds {} (its own optimum trained in {})",
                ga.generation,
                ga.stage + 1,
                ga.stages,
                ga.mutation_scale,
                ga.surrogate_rounds,
                ga.surrogate_optima
            );
        }
        eprintln!("time         {seconds:.3} s");
    }
    Ok(())
}
