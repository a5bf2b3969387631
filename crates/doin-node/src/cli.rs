//! The `doin-node` command line: run a node (the default), manage keys, inspect a chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use doin_core::identity::Keypair;
use doin_core::plugin::PluginRegistry;

use crate::settings::{Overrides, Settings};

/// A DOIN node: optimizes ML models, verifies other nodes' work, mines blocks and serves
/// the HTTP API.
#[derive(Debug, Parser)]
#[command(name = "doin-node", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of the original node; each overrides the config file.
#[derive(Debug, Args)]
struct RunArgs {
    /// Config file (JSON; the original DOIN keys are accepted).
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP port (overrides `port`).
    #[arg(short, long)]
    port: Option<u16>,
    /// Data directory: chain database, identity key, parameter blobs (overrides `data_dir`).
    #[arg(short, long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Bootstrap peers, comma separated `host:port` (overrides `bootstrap_peers`).
    #[arg(long, value_name = "HOST:PORT,...")]
    peers: Option<String>,
    /// Log level: trace, debug, info, warn or error (overrides `log_level`).
    #[arg(short, long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Identity key file (overrides `identity_file`; created with mode 0600 if missing).
    #[arg(short, long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Experiment statistics CSV (overrides `experiment_stats_file`).
    #[arg(long, value_name = "FILE")]
    stats_file: Option<PathBuf>,
    /// Analytics database (overrides `olap_db_path`).
    #[arg(long, value_name = "FILE")]
    olap_db: Option<PathBuf>,
    /// Delete the chain database in the data directory before starting.
    #[arg(long)]
    reset_chain: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new identity key file (mode 0600); refuses to overwrite one.
    Keygen {
        /// Where to write the key.
        #[arg(value_name = "FILE")]
        path: PathBuf,
    },
    /// Print the account id (public key) of an identity key file.
    ShowId {
        #[arg(value_name = "FILE")]
        path: PathBuf,
    },
    /// Print the JSON Schema of the config file.
    ConfigSchema,
    /// Check a config file without starting anything: prints warnings or the first error.
    CheckConfig {
        #[arg(value_name = "FILE")]
        path: PathBuf,
    },
    /// Balances, transfers, payment channels and paid inference queries, through a node.
    Wallet(crate::wallet_cli::WalletArgs),
    /// Inspect a stored chain offline (the node must not be running on it).
    Inspect {
        /// The node's data directory.
        #[arg(value_name = "DATA_DIR")]
        data_dir: PathBuf,
        /// Re-validate every stored block from genesis.
        #[arg(long)]
        verify: bool,
    },
}

/// Entry point of the binary: errors are printed for a person, with their causes.
pub fn main() -> ExitCode {
    main_with_registry(doin_plugins::builtin_registry())
}

/// The node's command line with the domains of `registry`, for a custom binary that links
/// its own plugin crates: start from [`doin_plugins::builtin_registry`], register the extra
/// domains, and call this from `main` (see `examples/custom-plugin` and `docs/plugins.md`).
/// `check-config` validates plugin names against the same registry.
pub fn main_with_registry(registry: PluginRegistry) -> ExitCode {
    let cli = Cli::parse();
    match run(cli, registry) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, registry: PluginRegistry) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Keygen { path }) => {
            let key = Keypair::generate();
            key.save(&path)?;
            println!("{}", key.account());
            Ok(())
        }
        Some(Command::ShowId { path }) => {
            println!("{}", Keypair::load(&path)?.account());
            Ok(())
        }
        Some(Command::ConfigSchema) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&doin_core::config::json_schema())?
            );
            Ok(())
        }
        Some(Command::CheckConfig { path }) => {
            let (settings, warnings) = Settings::load(&path, &Overrides::default())?;
            crate::node::check_plugin_names(&registry, &settings.config.domains)
                .with_context(|| format!("config file {}", path.display()))?;
            for w in &warnings {
                println!("warning: {w}");
            }
            println!("{}: ok", path.display());
            Ok(())
        }
        Some(Command::Inspect { data_dir, verify }) => inspect(&data_dir, verify),
        Some(Command::Wallet(args)) => crate::wallet_cli::run(args),
        None => {
            let args = cli.run;
            let config = args
                .config
                .clone()
                .context("no config file: pass --config FILE (see examples/quickstart.json)")?;
            let overrides = Overrides {
                port: args.port,
                data_dir: args.data_dir,
                peers: args.peers,
                log_level: args.log_level,
                identity: args.identity,
                stats_file: args.stats_file,
                olap_db: args.olap_db,
                reset_chain: args.reset_chain,
            };
            // Everything is validated before the data directory is touched.
            let (settings, warnings) = Settings::load(&config, &overrides)?;
            crate::node::init_logging(settings.log_level);
            for w in &warnings {
                tracing::warn!("config: {w}");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("doin-node")
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(crate::node::run(settings, registry))
        }
    }
}

fn inspect(data_dir: &Path, verify: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = data_dir.join("chain.db");
        anyhow::ensure!(db.exists(), "no chain database at {}", db.display());
        let store = crate::storage::Store::open(&db, 100).await?;
        let params = store
            .stored_params()
            .await?
            .context("the database holds no chain")?;
        let (height, tip) = store.tip().await?.context("the database holds no blocks")?;
        println!("chain_id: {}", params.chain_id);
        println!("height:   {height}");
        println!("tip:      {tip}");
        let state = if verify {
            let (genesis_block, mut state) = doin_core::state::ChainState::genesis(&params);
            anyhow::ensure!(
                store.block_by_height(0).await?.map(|b| b.hash()) == Some(genesis_block.hash()),
                "stored genesis does not match the stored parameters"
            );
            for h in 1..=height {
                let block = store
                    .block_by_height(h)
                    .await?
                    .with_context(|| format!("block {h} missing"))?;
                state = state
                    .apply_block(&params, &block, None)
                    .with_context(|| format!("block {h} is invalid"))?
                    .0;
            }
            println!("verified: all {height} blocks re-executed from genesis");
            state
        } else {
            store.load_state(&params).await?
        };
        println!(
            "supply:   {} (issued {}, burned {})",
            state.supply(),
            state.issued,
            state.burned
        );
        println!("accounts: {}", state.accounts.len());
        for (domain, champion) in &state.champions {
            println!(
                "champion: {domain} performance {} at height {}",
                champion.performance, champion.height
            );
        }
        state.check_conservation().map_err(anyhow::Error::msg)?;
        Ok(())
    })
}
