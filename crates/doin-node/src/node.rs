//! Start-up and shutdown: from validated settings to running services.
//!
//! Order matters: plugins are built and the chain parameters derived before the data
//! directory is touched; the identity key, database and blob store come next; then the
//! chain is loaded (snapshot + replay of the tail), and only then do the producer, the
//! roles and the HTTP server start.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use doin_core::config::{DomainConfig, LogLevel};
use doin_core::identity::Keypair;
use doin_core::params::DomainId;
use doin_core::plugin::{DomainPlugin, PluginRegistry};
use doin_core::state::ChainState;
use tokio::sync::{broadcast, watch, Notify};

use crate::blobs::BlobStore;
use crate::context::{now_ms, ChainView, DomainRuntime, NetLink, NodeContext};
use crate::inference::payments::PaymentDesk;
use crate::inference::voucher_store::VoucherStore;
use crate::inference::InferenceService;
use crate::mempool::Mempool;
use crate::settings::{DevDomain, Settings};
use crate::storage::Store;

/// Most transactions the mempool holds.
pub const MEMPOOL_CAPACITY: usize = 50_000;

/// Installs the log subscriber (to stderr; stdout stays for command output). `RUST_LOG`
/// refines the configured level.
pub fn init_logging(level: LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},sqlx=warn", level.as_str()))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The registered plugin name of `domains[i]`: its `*_plugin` keys (which must agree), or
/// its domain id when none is given.
fn plugin_name(i: usize, d: &DomainConfig) -> anyhow::Result<&str> {
    let names: Vec<&str> = [
        &d.optimization_plugin,
        &d.synthetic_data_plugin,
        &d.inference_plugin,
    ]
    .into_iter()
    .map(String::as_str)
    .filter(|n| !n.is_empty())
    .collect();
    // A DOIN-rs plugin implements a whole domain; the original's three keys must agree.
    let name = names.first().copied().unwrap_or(d.domain_id.as_str());
    if let Some(other) = names.iter().find(|n| **n != name) {
        anyhow::bail!(
            "domains[{i}] ({}): plugins {name:?} and {other:?} differ; a DOIN-rs domain plugin \
             provides optimization, synthetic data and inference together",
            d.domain_id
        );
    }
    Ok(name)
}

/// Checks that every configured domain names a plugin of `registry`, without building any
/// (building may start processes or load models): what `check-config` can promise.
pub fn check_plugin_names(
    registry: &PluginRegistry,
    domains: &[DomainConfig],
) -> anyhow::Result<()> {
    for (i, d) in domains.iter().enumerate() {
        let name = plugin_name(i, d)?;
        anyhow::ensure!(
            registry.contains(name),
            "domains[{i}] ({}): unknown plugin {name:?} (registered: {})",
            d.domain_id,
            registry.names().join(", ")
        );
    }
    Ok(())
}

/// Builds the plugin of every configured domain from the registry.
pub fn domain_plugins(
    registry: &PluginRegistry,
    domains: &[DomainConfig],
) -> anyhow::Result<BTreeMap<DomainId, Arc<dyn DomainPlugin>>> {
    let mut plugins = BTreeMap::new();
    for (i, d) in domains.iter().enumerate() {
        let name = plugin_name(i, d)?;
        let plugin = registry
            .instantiate(name, &d.plugin_setup())
            .with_context(|| format!("domains[{i}] ({}): plugin {name:?}", d.domain_id))?;
        plugins.insert(d.domain_id.clone(), plugin);
    }
    Ok(plugins)
}

/// Runs a node until Ctrl-C or SIGTERM, with the domains of `registry` (the built-ins,
/// [`doin_plugins::builtin_registry`], plus whatever the binary adds).
pub async fn run(settings: Settings, registry: PluginRegistry) -> anyhow::Result<()> {
    let config = &settings.config;
    let plugins = domain_plugins(&registry, &config.domains)?;
    let dev_domains: Vec<DevDomain> = plugins
        .iter()
        .map(|(id, p)| DevDomain::of(id, p.as_ref()))
        .collect();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let key = Keypair::load_or_generate(&config.identity_path())?;
    let params = settings.chain_params(&key.account(), &dev_domains)?;
    if params.solo_mode {
        tracing::warn!(
            "solo mode: this node verifies its own work; never use it on a shared network"
        );
    }
    let db_path = config.chain_db_path();
    if config.reset_chain && db_path.exists() {
        tracing::warn!("--reset-chain: deleting {}", db_path.display());
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
        }
    }
    let store = Store::open(&db_path, config.snapshot_interval.max(1)).await?;
    let (genesis, genesis_state) = ChainState::genesis(&params);
    store.init(&params, &genesis, &genesis_state).await?;
    let started = std::time::Instant::now();
    let state = store.load_state(&params).await?;
    let tip = store
        .block_by_height(state.height)
        .await?
        .context("the stored tip block is missing")?
        .header;
    tracing::info!(
        "chain {} loaded: height {}, tip {}, in {} ms; node account {}",
        params.chain_id,
        state.height,
        &tip.hash().to_hex()[..16],
        started.elapsed().as_millis(),
        key.account()
    );
    let blobs = BlobStore::open(&config.data_dir.join("params"))?;

    let domains = config
        .domains
        .iter()
        .map(|d| DomainRuntime {
            id: d.domain_id.clone(),
            optimize: d.optimize,
            evaluate: d.evaluate,
            target_performance: d.target_performance,
            converged: AtomicBool::new(d.target_performance.is_some_and(|t| {
                state
                    .champions
                    .get(&d.domain_id)
                    .is_some_and(|c| c.performance >= t)
            })),
            rounds: AtomicU64::new(0),
            search: std::sync::Mutex::new(None),
        })
        .collect();
    let ctx = Arc::new(NodeContext {
        params: params.clone(),
        key,
        store,
        blobs,
        chain: RwLock::new(ChainView {
            state: Arc::new(state),
            tip,
        }),
        mempool: Mutex::new(Mempool::new(MEMPOOL_CAPACITY)),
        domains,
        events: broadcast::channel(1024).0,
        new_tx: Notify::new(),
        own_tx: Mutex::new(()),
        node_label: if config.node_label.is_empty() {
            settings.http_addr.to_string()
        } else {
            config.node_label.clone()
        },
        started_at_ms: now_ms(),
        net: NetLink::default(),
        parked: Default::default(),
        admitted_reveals: broadcast::channel(256).0,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut optimizers = Vec::new();
    let mut evaluators: BTreeMap<DomainId, Arc<dyn doin_evaluator::EvaluatorRole>> =
        BTreeMap::new();
    for (i, d) in config.domains.iter().enumerate() {
        let plugin = Arc::clone(&plugins[&d.domain_id]);
        let domain_params = params
            .domain(&d.domain_id)
            .context("domain missing from chain parameters")?;
        if d.evaluate {
            let evaluator =
                doin_evaluator::Evaluator::new(Arc::clone(&plugin), domain_params.limits.clone());
            evaluators.insert(d.domain_id.clone(), Arc::new(evaluator));
        }
        if d.optimize {
            let seed = optimizer_seed(&ctx, &d.domain_id);
            let what = || format!("domains[{i}] ({}): optimizer", d.domain_id);
            let stop = doin_optimizer::StopSettings::from_domain_config(d)
                .with_context(what)?
                .with_min_improvement(domain_params.min_improvement)
                .with_baseline_performance(Some(domain_params.baseline_performance));
            let mut engine = doin_optimizer::Engine::new(plugin, d.optimizer_setup(seed), stop)
                .with_context(what)?;
            let round_interval = doin_optimizer::round_interval(d).with_context(what)?;
            // Resume from the chain's champion, when this node holds its parameters.
            let champion = ctx.view().state.champions.get(&d.domain_id).cloned();
            if let Some(champion) = champion {
                if let Ok(Some(params)) = ctx.blobs.get(&champion.params_hash) {
                    let migrant = doin_core::plugin::Migrant {
                        params,
                        performance: champion.performance,
                        hyperparameters: Default::default(),
                    };
                    if let Err(err) = engine.observe_champion(migrant) {
                        tracing::warn!("{}: cannot resume from the champion: {err}", d.domain_id);
                    }
                }
            }
            optimizers.push(crate::roles::optimizer::spawn(
                Arc::clone(&ctx),
                d.domain_id.clone(),
                Box::new(engine),
                round_interval,
                stop_rx.clone(),
            )?);
            tracing::info!(
                "{}: optimizing (target {:?})",
                d.domain_id,
                d.target_performance
            );
        }
    }
    tokio::spawn(crate::roles::evaluator::run(
        Arc::clone(&ctx),
        evaluators,
        optimizers,
        stop_rx.clone(),
    ));
    // One registry for the node: the block follower, the inference service and the swarm
    // record into it, `GET /metrics` reads it (through the inference service, see
    // http::Api). The swarm starts first, so that libp2p's metrics are registered before
    // the registry is shared; the node handles its events from `network::start` on. The
    // follower starts before the producer, so that it counts every block.
    let mut metrics = crate::metrics::Metrics::new();
    let network = crate::network::open(&ctx, config, metrics.registry_mut())?;
    let metrics = Arc::new(metrics);
    tokio::spawn(crate::metrics::run(
        Arc::clone(&metrics),
        Arc::clone(&ctx),
        stop_rx.clone(),
    ));
    let producer = if config.produce_blocks {
        tokio::spawn(crate::producer::run(Arc::clone(&ctx), stop_rx.clone()))
    } else {
        tracing::info!("produce_blocks is false: following the network's chain");
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _ = stop.changed().await;
            Ok(())
        })
    };
    if let Some(network) = network {
        crate::network::start(
            network,
            Arc::clone(&ctx),
            config,
            Arc::clone(&metrics),
            stop_rx.clone(),
        )
        .await?;
    }

    let payments_path = config.data_dir.join("payments.db");
    let (vouchers, held) = VoucherStore::open(&payments_path, config.inference.voucher_fsync)
        .await
        .with_context(|| format!("opening {}", payments_path.display()))?;
    if !held.is_empty() {
        tracing::info!(
            "payments: {} channel(s) with vouchers to settle",
            held.len()
        );
    }
    let desk = PaymentDesk::new(
        ctx.account(),
        config.inference.settle_margin_blocks,
        vouchers,
        held,
    );
    let inference = Arc::new(InferenceService::new(
        Arc::clone(&ctx),
        config.inference.clone(),
        &plugins,
        desk,
        metrics,
    ));
    tokio::spawn(crate::inference::run(
        Arc::clone(&inference),
        stop_rx.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding the HTTP port {}", settings.http_addr))?;
    let http_addr = listener.local_addr()?;
    tracing::info!("HTTP API on http://{http_addr}");
    // With port 0 the address is only known now: publish it for tests and supervisors.
    let addr_file = config.data_dir.join("http.addr");
    std::fs::write(&addr_file, format!("{http_addr}\n"))
        .with_context(|| format!("writing {}", addr_file.display()))?;
    let mut http_stop = stop_rx.clone();
    let http_config = config.http.clone();
    let http_ctx = Arc::clone(&ctx);
    let http = tokio::spawn(async move {
        crate::http::serve_with(http_ctx, inference, &http_config, listener, async move {
            let _ = http_stop.changed().await;
        })
        .await
    });

    tokio::select! {
        _ = shutdown_signal() => tracing::info!("shutting down"),
        result = producer => {
            let _ = stop_tx.send(true);
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(err),
                Err(join) => Err(anyhow::anyhow!("block producer crashed: {join}")),
            };
        }
    }
    let _ = stop_tx.send(true);
    let _ = http.await;
    Ok(())
}

/// A per-node, per-domain optimizer seed: nodes explore differently, each reproducibly.
fn optimizer_seed(ctx: &NodeContext, domain: &DomainId) -> u64 {
    let mut bytes = ctx.account().0.to_vec();
    bytes.extend_from_slice(domain.as_str().as_bytes());
    let h = doin_core::hash::HashKind::DataSeed.hash(&bytes);
    u64::from_le_bytes(h.0[..8].try_into().unwrap_or_default())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
