//! Serving inference from each domain's best verified model, paid per query.
//!
//! - **Models**: after every block, a domain whose on-chain champion changed gets the
//!   champion's parameters loaded from the blob store and prepared by its plugin
//!   ([`doin_core::plugin::Infer::prepare`]) on the blocking pool; the previous model keeps
//!   answering until the new one is ready, then one pointer swap replaces it.
//! - **Queries** run on the blocking pool, at most `max_concurrent` at once (one per core by
//!   default), so a heavy model never stalls the async workers that serve the rest of the API.
//!   A model whose queries are measured (moving average) under [`INLINE_MAX_NS`] runs on the
//!   async worker instead: for microseconds of work the hop costs more than the query.
//! - **Payment** ([`payments`]): in paid mode each query carries a voucher that the
//!   [`payments::PaymentDesk`] checks before the model runs and records on disk before the
//!   answer leaves.

pub mod payments;
pub mod voucher_store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::config::{InferenceConfig, InferenceMode};
use doin_core::hash::Hash32;
use doin_core::params::DomainId;
use doin_core::plugin::{DomainPlugin, PluginError, PreparedModel};
use doin_core::state::Champion;
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{watch, Semaphore};

use crate::context::{ChainEvent, NodeContext};
use crate::metrics::Metrics;
use payments::{PaymentDesk, PaymentError};

/// A champion's model, ready to answer.
#[derive(Debug)]
pub struct LoadedModel {
    pub champion: Champion,
    pub prepared: PreparedModel,
    /// Moving average of one query's compute time in nanoseconds (`u64::MAX` until measured).
    cost_ns: AtomicU64,
}

/// Queries measured below this run on the async worker that received them.
pub const INLINE_MAX_NS: u64 = 50_000;

impl LoadedModel {
    fn new(champion: Champion, prepared: PreparedModel) -> Self {
        LoadedModel {
            champion,
            prepared,
            cost_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Whether this model's queries are measured to be cheap enough to run inline.
    fn is_cheap(&self) -> bool {
        self.cost_ns.load(Ordering::Relaxed) < INLINE_MAX_NS
    }

    /// Runs one query and folds its duration into the average (weight 1/8).
    fn run(&self, plugin: &dyn DomainPlugin, input: &Value) -> Result<Value, PluginError> {
        let infer = plugin.inference().ok_or(PluginError::Unsupported {
            capability: "inference",
        })?;
        let started = std::time::Instant::now();
        let result = infer.infer_prepared(&self.prepared, input);
        let sample = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let old = self.cost_ns.load(Ordering::Relaxed);
        let new = if old == u64::MAX {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.cost_ns.store(new, Ordering::Relaxed);
        result
    }
}

/// One domain this node serves.
struct ServedDomain {
    plugin: Arc<dyn DomainPlugin>,
    price: Amount,
    model: RwLock<Option<Arc<LoadedModel>>>,
    /// The params hash being loaded, or that failed to load (not retried until the
    /// champion changes again).
    attempted: Mutex<Option<Hash32>>,
}

impl std::fmt::Debug for ServedDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedDomain")
            .field("price", &self.price)
            .finish_non_exhaustive()
    }
}

impl ServedDomain {
    fn model(&self) -> Option<Arc<LoadedModel>> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a query was not answered. Nothing was charged.
#[derive(Debug, Error)]
pub enum InferenceError {
    #[error("this node does not serve domain {0:?} (see GET /inference)")]
    UnknownDomain(String),
    #[error("domain {0} has no accepted model yet (or it is still loading); try again after the next accepted optimae")]
    NotReady(DomainId),
    #[error("{0}")]
    Payment(#[from] PaymentError),
    #[error("input_data: {0}")]
    BadInput(String),
    #[error("the model failed: {0}")]
    Model(PluginError),
    #[error("the inference worker stopped: {0}")]
    Worker(String),
}

impl InferenceError {
    /// The error code of the HTTP answer (also the `result` label of the request metric).
    pub fn code(&self) -> &'static str {
        match self {
            InferenceError::UnknownDomain(_) => "unknown_domain",
            InferenceError::NotReady(_) => "model_not_ready",
            InferenceError::Payment(e) => e.code(),
            InferenceError::BadInput(_) => "invalid_input",
            InferenceError::Model(_) | InferenceError::Worker(_) => "internal",
        }
    }
}

/// A query's answer.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Answer {
    pub domain_id: DomainId,
    pub prediction: Value,
    pub optimae_id: Hash32,
    pub params_hash: Hash32,
    pub performance: f64,
    pub champion_height: u64,
    pub price: Amount,
    /// The channel's cumulative amount now held by this node (paid mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paid: Option<Amount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Hash32>,
}

/// One row of `GET /inference`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Offer {
    pub domain_id: DomainId,
    pub price: Amount,
    pub provider: doin_core::identity::AccountId,
    pub champion: Option<OfferChampion>,
    pub ready: bool,
    /// The shape of `input_data` the served model takes (domain-defined; `null` if unknown).
    pub input: Value,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct OfferChampion {
    pub optimae_id: Hash32,
    pub params_hash: Hash32,
    pub performance: f64,
    pub height: u64,
}

/// A served domain's price, as `/status` lists it.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct DomainPrice {
    pub domain_id: DomainId,
    pub price: Amount,
}

/// See the module documentation.
#[derive(Debug)]
pub struct InferenceService {
    ctx: Arc<NodeContext>,
    config: InferenceConfig,
    prices: Vec<DomainPrice>,
    domains: BTreeMap<DomainId, ServedDomain>,
    desk: Arc<PaymentDesk>,
    limiter: Arc<Semaphore>,
    /// The node's metrics: every query is recorded here (and `/metrics` reads it from here).
    metrics: Arc<Metrics>,
}

impl InferenceService {
    /// Serves every domain of `plugins` that offers inference, recording into `metrics`.
    pub fn new(
        ctx: Arc<NodeContext>,
        config: InferenceConfig,
        plugins: &BTreeMap<DomainId, Arc<dyn DomainPlugin>>,
        desk: PaymentDesk,
        metrics: Arc<Metrics>,
    ) -> InferenceService {
        let domains: BTreeMap<DomainId, ServedDomain> = plugins
            .iter()
            .filter(|(_, p)| p.inference().is_some())
            .map(|(id, plugin)| {
                (
                    id.clone(),
                    ServedDomain {
                        plugin: Arc::clone(plugin),
                        price: config.price(id),
                        model: RwLock::new(None),
                        attempted: Mutex::new(None),
                    },
                )
            })
            .collect();
        let prices = domains
            .iter()
            .map(|(id, d): (&DomainId, &ServedDomain)| DomainPrice {
                domain_id: id.clone(),
                price: d.price,
            })
            .collect();
        let permits = match config.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        InferenceService {
            ctx,
            config,
            prices,
            domains,
            desk: Arc::new(desk),
            limiter: Arc::new(Semaphore::new(permits)),
            metrics,
        }
    }

    /// The node's metrics, which this service records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn mode(&self) -> InferenceMode {
        self.config.mode
    }

    /// Every served domain with its price.
    pub fn prices(&self) -> &[DomainPrice] {
        &self.prices
    }

    pub fn max_input_bytes(&self) -> usize {
        self.config.max_input_bytes
    }

    pub fn desk(&self) -> &Arc<PaymentDesk> {
        &self.desk
    }

    /// Every domain served, with price and champion.
    pub fn offers(&self) -> Vec<Offer> {
        let view = self.ctx.view();
        self.domains
            .iter()
            .map(|(id, d)| {
                let champion = view.state.champions.get(id).map(|c| OfferChampion {
                    optimae_id: c.commitment,
                    params_hash: c.params_hash,
                    performance: c.performance,
                    height: c.height,
                });
                let model = d.model();
                let input = match (&model, d.plugin.inference()) {
                    (Some(m), Some(infer)) => infer.describe_input(&m.prepared),
                    _ => Value::Null,
                };
                Offer {
                    domain_id: id.clone(),
                    price: d.price,
                    provider: self.ctx.account(),
                    ready: model.is_some(),
                    champion,
                    input,
                }
            })
            .collect()
    }

    /// The price of a domain's query, if served.
    pub fn price(&self, domain: &DomainId) -> Option<Amount> {
        self.domains.get(domain).map(|d| d.price)
    }

    /// Answers one query: payment check, the model on the blocking pool, payment recorded.
    /// Its result and latency go to the metrics.
    pub async fn answer(
        &self,
        domain: &str,
        input: Value,
        voucher: Option<Voucher>,
    ) -> Result<Answer, InferenceError> {
        let started = std::time::Instant::now();
        let result = self.answer_unrecorded(domain, input, voucher).await;
        let served = self.domains.keys().find(|id| id.as_str() == domain);
        let outcome = match &result {
            Ok((_, received)) => Ok(*received),
            Err(err) => Err(err),
        };
        self.metrics
            .record_inference(served, outcome, started.elapsed());
        result.map(|(answer, _)| answer)
    }

    /// [`InferenceService::answer`] without the metrics; also returns what the voucher paid.
    async fn answer_unrecorded(
        &self,
        domain: &str,
        input: Value,
        voucher: Option<Voucher>,
    ) -> Result<(Answer, Option<Amount>), InferenceError> {
        let (id, served) = self
            .domains
            .iter()
            .find(|(id, _)| id.as_str() == domain)
            .ok_or_else(|| {
                InferenceError::UnknownDomain(crate::http::truncate(domain, 80).into())
            })?;
        let price = served.price;
        let checked = match (self.config.mode, voucher) {
            (InferenceMode::Free, _) => None,
            (InferenceMode::Paid, None) => {
                return Err(PaymentError::Missing {
                    price,
                    provider: self.ctx.account(),
                }
                .into())
            }
            (InferenceMode::Paid, Some(v)) => {
                let view = self.ctx.view();
                Some(self.desk.check(&view.state, &v, price)?)
            }
        };
        let model = served
            .model()
            .ok_or_else(|| InferenceError::NotReady(id.clone()))?;
        let prediction = if model.is_cheap() {
            // Microseconds of work: a hop to the blocking pool would cost more than the query.
            model.run(served.plugin.as_ref(), &input)
        } else {
            let _permit = self
                .limiter
                .acquire()
                .await
                .map_err(|e| InferenceError::Worker(e.to_string()))?;
            let plugin = Arc::clone(&served.plugin);
            let model = Arc::clone(&model);
            tokio::task::spawn_blocking(move || model.run(plugin.as_ref(), &input))
                .await
                .map_err(|e| InferenceError::Worker(e.to_string()))?
        }
        .map_err(|e| match e {
            PluginError::InvalidInput { reason } => InferenceError::BadInput(reason),
            other => InferenceError::Model(other),
        })?;
        let (paid, received, channel) = match checked {
            Some(checked) => {
                let channel = checked.channel();
                let committed = self.desk.commit(checked, price).await?;
                (
                    Some(committed.cumulative),
                    Some(committed.received),
                    Some(channel),
                )
            }
            None => (None, None, None),
        };
        let champion = &model.champion;
        let answer = Answer {
            domain_id: id.clone(),
            prediction,
            optimae_id: champion.commitment,
            params_hash: champion.params_hash,
            performance: champion.performance,
            champion_height: champion.height,
            price,
            paid,
            channel,
        };
        Ok((answer, received))
    }

    /// Loads the champion of every served domain whose champion changed; the previous model
    /// answers meanwhile.
    pub fn refresh_models(self: &Arc<Self>) {
        let view = self.ctx.view();
        for (id, served) in &self.domains {
            let Some(champion) = view.state.champions.get(id).cloned() else {
                continue;
            };
            if served
                .model()
                .is_some_and(|m| m.champion.params_hash == champion.params_hash)
            {
                continue;
            }
            {
                let mut attempted = served.attempted.lock().unwrap_or_else(|e| e.into_inner());
                if *attempted == Some(champion.params_hash) {
                    continue;
                }
                *attempted = Some(champion.params_hash);
            }
            let service = Arc::clone(self);
            let id = id.clone();
            let max_bytes = self
                .ctx
                .params
                .domain(&id)
                .map_or(0, |d| d.limits.max_params_bytes);
            tokio::spawn(async move {
                // A champion from another node: fetch its parameters from the peers first.
                crate::network::ensure_params(&service.ctx, &champion.params_hash, max_bytes).await;
                let _ = tokio::task::spawn_blocking(move || service.load(&id, champion)).await;
            });
        }
    }

    /// Reads and prepares a champion's parameters (blocking).
    fn load(&self, id: &DomainId, champion: Champion) {
        let Some(served) = self.domains.get(id) else {
            return;
        };
        let started = std::time::Instant::now();
        let params = match self.ctx.blobs.get(&champion.params_hash) {
            Ok(Some(params)) => params,
            Ok(None) => {
                tracing::warn!(
                    "{id}: champion {} parameters {} are not in the blob store; serving the previous model",
                    champion.commitment,
                    champion.params_hash
                );
                return;
            }
            Err(err) => {
                tracing::warn!("{id}: reading champion parameters: {err}");
                return;
            }
        };
        let prepared = served
            .plugin
            .inference()
            .ok_or(PluginError::Unsupported {
                capability: "inference",
            })
            .and_then(|infer| infer.prepare(&params));
        match prepared {
            Ok(prepared) => {
                tracing::info!(
                    "{id}: serving champion {} (performance {}) loaded in {} ms",
                    champion.commitment,
                    champion.performance,
                    started.elapsed().as_millis()
                );
                *served.model.write().unwrap_or_else(|e| e.into_inner()) =
                    Some(Arc::new(LoadedModel::new(champion, prepared)));
            }
            Err(err) => tracing::warn!(
                "{id}: champion {} cannot be prepared for serving: {err}",
                champion.commitment
            ),
        }
    }
}

/// Keeps models current and channels settled until `stop`.
pub async fn run(service: Arc<InferenceService>, mut stop: watch::Receiver<bool>) {
    let settlement = tokio::spawn(payments::run_settlement(
        Arc::clone(&service.ctx),
        Arc::clone(&service.desk),
        stop.clone(),
    ));
    let mut events = service.ctx.events.subscribe();
    service.refresh_models();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(ChainEvent::Block { .. } | ChainEvent::Reorg { .. })
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => service.refresh_models(),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = stop.changed() => break,
        }
    }
    let _ = settlement.await;
}
