//! The node configuration file (`doin-node --config config.json`).
//!
//! # Compatibility
//!
//! The file accepts the keys of the original Python DOIN node, with the same defaults
//! (doin-node spec §2), so an existing config keeps working; `{}` is a valid config.
//! What DOIN-rs does differently is reported, never silent:
//!
//! * an **unknown key** is a warning naming it (a typo should not go unnoticed, but a config
//!   written for a newer node should still load); keys starting with `$`, such as `$schema`
//!   or `$doc`, are annotations and stay silent;
//! * an **invalid value** is an error naming its key path, for example
//!   `domains[0].resource_limits.max_epochs: must be greater than zero`;
//! * a **JSON syntax error** reports its line and column;
//! * settings whose original behaviour is unsafe and not kept (flooding, auto-accepting
//!   unverified claims, non-deterministic seeds) load with a warning saying what happens instead.
//!
//! Rust-only additions: the `chain` section (which network, and development-chain overrides
//! of [`ChainParams`]) and `log_level`.
//!
//! # How errors find their key
//!
//! `serde_json` says *what* is wrong with a value but not *where* it is. On a type error the
//! loader deserializes the document again one key at a time (then one array item, then one
//! nested key) until it finds the culprit. Config files are small, so this costs nothing and
//! needs no extra dependency.
//!
//! This module is pure: it parses text and resolves paths, but never touches the file system.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, Deserializer, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::amount::Amount;
use crate::limits::{ParamBounds, ResourceLimits};
use crate::params::{ChainParams, DomainId};
use crate::plugin::{OptimizerSetup, PluginSetup};

// === defaults ===

/// Listen on every interface, as the original did.
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// The original's HTTP port (its LAN scan probes 8470–8479).
pub const DEFAULT_PORT: u16 = 8470;
pub const DEFAULT_DATA_DIR: &str = "./doin-data";
/// The only storage backend: SQLite (WAL). The original's JSON file store is not kept.
pub const STORAGE_SQLITE: &str = "sqlite";
/// The only network protocol: libp2p gossipsub.
pub const PROTOCOL_GOSSIPSUB: &str = "gossipsub";
/// The original's flooding protocol: accepted, but gossipsub is used.
pub const PROTOCOL_FLOODING: &str = "flooding";
/// Network of a node without a `chain` section: a local development chain.
pub const DEFAULT_CHAIN_ID: &str = "doin-dev";

// === errors and warnings ===

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The text is not JSON.
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A value has the wrong type or is out of range; `path` names it (`domains[0].port`).
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

impl ConfigError {
    fn invalid(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }

    fn syntax(err: &serde_json::Error) -> Self {
        let full = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        ConfigError::Syntax {
            line: err.line(),
            column: err.column(),
            message,
        }
    }

    /// The key path of an invalid value, if this is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { path, .. } => Some(path),
            ConfigError::Syntax { .. } => None,
        }
    }
}

/// What kind of thing a warning reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigWarningKind {
    /// A key this node does not know; it is ignored.
    UnknownKey,
    /// A known key whose original behaviour DOIN-rs does not keep; the value is ignored.
    Ignored,
}

/// Something in a valid configuration the operator should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub kind: ConfigWarningKind,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn warn(
    path: impl Into<String>,
    kind: ConfigWarningKind,
    message: impl Into<String>,
) -> ConfigWarning {
    ConfigWarning {
        path: path.into(),
        kind,
        message: message.into(),
    }
}

// === peer addresses ===

/// A bootstrap peer: `host:port` as in the original (IPv6 in brackets: `[::1]:8470`), or a
/// libp2p multiaddr such as `/ip4/10.0.0.2/tcp/8470/p2p/12D3Koo…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PeerAddr {
    /// A DNS name or IP address and a port (the original's form).
    HostPort { host: String, port: u16 },
    /// A libp2p multiaddr, kept as written (the node parses it with libp2p).
    Multiaddr(String),
}

/// A bootstrap peer that is neither `host:port` nor a multiaddr.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{addr:?}: {reason}")]
pub struct PeerAddrError {
    pub addr: String,
    pub reason: String,
}

impl PeerAddr {
    /// Parses `host:port`, `[ipv6]:port` or a multiaddr (anything starting with `/`).
    pub fn parse(addr: &str) -> Result<PeerAddr, PeerAddrError> {
        let fail = |reason: &str| PeerAddrError {
            addr: addr.to_string(),
            reason: reason.to_string(),
        };
        if addr.chars().any(char::is_whitespace) {
            return Err(fail("must not contain whitespace"));
        }
        if addr.starts_with('/') {
            return parse_multiaddr(addr).ok_or_else(|| {
                fail("a multiaddr needs non-empty /protocol/value segments, e.g. /ip4/1.2.3.4/tcp/8470")
            });
        }
        let (host, port) = split_host_port(addr).map_err(fail)?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| fail("port must be 1-65535"))?;
        Ok(PeerAddr::HostPort {
            host: host.to_string(),
            port,
        })
    }
}

fn parse_multiaddr(addr: &str) -> Option<PeerAddr> {
    let segments: Vec<&str> = addr.split('/').skip(1).collect();
    let ok = segments.len() >= 2 && segments.iter().all(|s| !s.is_empty());
    ok.then(|| PeerAddr::Multiaddr(addr.to_string()))
}

/// Splits `host:port` on the last colon, or `[v6]:port` on the bracket.
fn split_host_port(addr: &str) -> Result<(&str, &str), &'static str> {
    let (host, port) = match addr.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or("expected [ipv6]:port")?,
        None => {
            let (host, port) = addr.rsplit_once(':').ok_or("expected host:port")?;
            if host.contains(':') {
                return Err("an IPv6 address needs brackets: [::1]:8470");
            }
            (host, port)
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err("expected host:port with a non-empty host");
    }
    Ok((host, port))
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::HostPort { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            PeerAddr::HostPort { host, port } => write!(f, "{host}:{port}"),
            PeerAddr::Multiaddr(addr) => f.write_str(addr),
        }
    }
}

impl std::str::FromStr for PeerAddr {
    type Err = PeerAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeerAddr::parse(s)
    }
}

impl TryFrom<String> for PeerAddr {
    type Error = PeerAddrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PeerAddr::parse(&s)
    }
}

impl From<PeerAddr> for String {
    fn from(p: PeerAddr) -> String {
        p.to_string()
    }
}

impl JsonSchema for PeerAddr {
    fn schema_name() -> String {
        "PeerAddr".into()
    }
    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = String::json_schema(gen).into_object();
        schema.metadata().description =
            Some("host:port ([ipv6]:port), or a libp2p multiaddr starting with '/'".into());
        schema.into()
    }
}

// === sections ===

/// Log verbosity (the original's `--log-level`; upper case is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    #[serde(alias = "TRACE")]
    Trace,
    #[serde(alias = "DEBUG")]
    Debug,
    #[default]
    #[serde(alias = "INFO")]
    Info,
    #[serde(alias = "WARN", alias = "warning", alias = "WARNING")]
    Warn,
    #[serde(alias = "ERROR")]
    Error,
}

impl LogLevel {
    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Which network the node joins.
///
/// Without `genesis_file` the node runs a development chain ([`ChainParams::dev`]) with the
/// overrides below. With it, the genesis file defines every consensus rule and overrides are
/// refused: one node cannot change a network's rules (`chain_id` may still be given, and must
/// match the file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// Network name, bound into every signature (default `doin-dev`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
    /// JSON file with the network's `ChainParams` (read by the node).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub genesis_file: Option<PathBuf>,
    /// Development only: an optimizer may sit in its own quorum, so one node can run a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solo_mode: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_block_time_ms: Option<u64>,
    /// Longest wait for a block when there is no optimization work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_block_interval_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finality_depth: Option<u64>,
    /// How long a scheduled proposer has before the next in line may take over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposer_timeout_ms: Option<u64>,
}

impl ChainConfig {
    /// The network name: `chain_id`, or [`DEFAULT_CHAIN_ID`].
    pub fn chain_id(&self) -> &str {
        self.chain_id.as_deref().unwrap_or(DEFAULT_CHAIN_ID)
    }

    /// Whether any consensus rule is overridden.
    pub fn has_overrides(&self) -> bool {
        self.solo_mode.is_some()
            || self.target_block_time_ms.is_some()
            || self.max_block_interval_ms.is_some()
            || self.finality_depth.is_some()
            || self.proposer_timeout_ms.is_some()
    }

    /// Writes the overrides (and `chain_id`, when given) into `params`.
    pub fn apply(&self, params: &mut ChainParams) {
        if let Some(id) = &self.chain_id {
            params.chain_id.clone_from(id);
        }
        if let Some(v) = self.solo_mode {
            params.solo_mode = v;
        }
        if let Some(v) = self.target_block_time_ms {
            params.target_block_time_ms = v;
        }
        if let Some(v) = self.max_block_interval_ms {
            params.max_block_interval_ms = v;
        }
        if let Some(v) = self.finality_depth {
            params.finality_depth = v;
        }
        if let Some(v) = self.proposer_timeout_ms {
            params.proposer_timeout_ms = v;
        }
    }

    /// The development chain's parameters with the overrides applied.
    pub fn dev_params(&self) -> ChainParams {
        let mut params = ChainParams::dev(self.chain_id());
        self.apply(&mut params);
        params
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.genesis_file.is_some() && self.has_overrides() {
            return Err(ConfigError::invalid(
                "chain.genesis_file",
                "cannot be combined with consensus overrides (solo_mode, target_block_time_ms, \
                 max_block_interval_ms, finality_depth, proposer_timeout_ms): the genesis file defines the network",
            ));
        }
        self.dev_params()
            .validate()
            .map_err(|e| ConfigError::invalid(format!("chain.{}", e.field), e.reason))
    }
}

/// Whether `POST /inference` asks for payment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InferenceMode {
    /// Every query carries a payment-channel voucher for at least the price.
    #[default]
    Paid,
    /// No payment (local use and development).
    Free,
}

/// Default price of one inference query: 0.0001 DOIN.
pub const DEFAULT_INFERENCE_PRICE: Amount = Amount(10_000);
/// Largest `input_data` the node accepts by default (JSON bytes).
pub const DEFAULT_MAX_INFERENCE_INPUT_BYTES: usize = 64 * 1024;
/// Upper bound of `inference.max_input_bytes` (the HTTP body limit is derived from it).
pub const MAX_INFERENCE_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// How the node serves inference from each domain's champion (DOIN-rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceConfig {
    /// `"paid"` (default) or `"free"`.
    pub mode: InferenceMode,
    /// Price of one query in base units (1 DOIN = 100,000,000), for domains not in
    /// `domain_prices`.
    pub price: Amount,
    /// Per-domain prices in base units.
    pub domain_prices: BTreeMap<DomainId, Amount>,
    /// Largest `input_data` accepted, in bytes of JSON.
    pub max_input_bytes: usize,
    /// Queries computed at once; 0 means one per CPU core.
    pub max_concurrent: usize,
    /// Vouchers are refused on a channel that expires or closes within this many blocks,
    /// and the node settles its best voucher of a channel once the channel gets this close.
    pub settle_margin_blocks: u64,
    /// `true`: each group commit of vouchers is fsynced, so earned vouchers survive a power
    /// loss; `false`: they survive a crash of the node process but not of the machine, for
    /// several times the paid-query throughput on a disk with slow fsync.
    pub voucher_fsync: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            mode: InferenceMode::Paid,
            price: DEFAULT_INFERENCE_PRICE,
            domain_prices: BTreeMap::new(),
            max_input_bytes: DEFAULT_MAX_INFERENCE_INPUT_BYTES,
            max_concurrent: 0,
            settle_margin_blocks: 5,
            voucher_fsync: true,
        }
    }
}

impl InferenceConfig {
    /// The price of one query of `domain` (zero in free mode).
    pub fn price(&self, domain: &DomainId) -> Amount {
        match self.mode {
            InferenceMode::Free => Amount::ZERO,
            InferenceMode::Paid => self
                .domain_prices
                .get(domain)
                .copied()
                .unwrap_or(self.price),
        }
    }

    fn validate(&self, domains: &[DomainConfig]) -> Result<(), ConfigError> {
        if !(1..=MAX_INFERENCE_INPUT_BYTES).contains(&self.max_input_bytes) {
            return Err(ConfigError::invalid(
                "inference.max_input_bytes",
                format!("must be 1-{MAX_INFERENCE_INPUT_BYTES}"),
            ));
        }
        if self.settle_margin_blocks == 0 {
            return Err(ConfigError::invalid(
                "inference.settle_margin_blocks",
                "must be at least 1: the node needs a block to settle in",
            ));
        }
        if self.mode == InferenceMode::Paid && self.price == Amount::ZERO {
            return Err(ConfigError::invalid(
                "inference.price",
                "must be above 0 in paid mode (use \"mode\": \"free\" for free inference)",
            ));
        }
        for (domain, price) in &self.domain_prices {
            let path = format!("inference.domain_prices.{domain}");
            if !domains.iter().any(|d| &d.domain_id == domain) {
                return Err(ConfigError::invalid(path, "not a configured domain"));
            }
            if self.mode == InferenceMode::Paid && *price == Amount::ZERO {
                return Err(ConfigError::invalid(path, "must be above 0 in paid mode"));
            }
        }
        Ok(())
    }
}

/// Origins a browser may call the API from by default: any (`"*"`). The API is read-only
/// except `POST /tx`, whose payload is signed by its sender, so allowing every origin gives
/// a web page nothing it could not do with a plain HTTP client.
pub const DEFAULT_CORS_ORIGINS: &[&str] = &["*"];
/// Most entries `http.cors_origins` may list.
pub const MAX_CORS_ORIGINS: usize = 64;

/// Most entries `p2p.listen` may list.
pub const MAX_P2P_LISTEN: usize = 16;

/// The peer-to-peer network's settings (DOIN-rs). The node joins a network only when
/// `listen` or `bootstrap_peers` is non-empty; otherwise it runs alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// libp2p multiaddrs to listen on, e.g. `"/ip4/0.0.0.0/tcp/8471"` (`tcp/0`: any free
    /// port). The full address with the peer id is written to `<data_dir>/p2p.addr`.
    pub listen: Vec<String>,
    /// Zero-configuration discovery of peers on the LAN.
    pub mdns: bool,
    /// Most connected peers.
    pub max_peers: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: Vec::new(),
            mdns: true,
            max_peers: 50,
        }
    }
}

impl P2pConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.len() > MAX_P2P_LISTEN {
            return Err(ConfigError::invalid(
                "p2p.listen",
                format!("at most {MAX_P2P_LISTEN} addresses"),
            ));
        }
        for (i, addr) in self.listen.iter().enumerate() {
            if !addr.starts_with('/') || addr.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    format!("p2p.listen[{i}]"),
                    format!("{addr:?} is not a multiaddr (e.g. \"/ip4/0.0.0.0/tcp/8471\")"),
                ));
            }
        }
        if self.max_peers == 0 {
            return Err(ConfigError::invalid("p2p.max_peers", "must be at least 1"));
        }
        Ok(())
    }
}

/// The HTTP API's settings (DOIN-rs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed to call the API from a browser (CORS): `["*"]` (default) for any,
    /// a list of origins such as `"https://dash.example:8443"` (scheme, host and optional
    /// port; no path), or `[]` to send no CORS headers (browsers then refuse cross-origin
    /// calls; other clients are unaffected).
    pub cors_origins: Vec<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            cors_origins: DEFAULT_CORS_ORIGINS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl HttpConfig {
    /// Whether any origin is allowed (`["*"]`).
    pub fn allows_any_origin(&self) -> bool {
        self.cors_origins.iter().any(|o| o == "*")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cors_origins.len() > MAX_CORS_ORIGINS {
            return Err(ConfigError::invalid(
                "http.cors_origins",
                format!("at most {MAX_CORS_ORIGINS} origins"),
            ));
        }
        if self.allows_any_origin() && self.cors_origins.len() > 1 {
            return Err(ConfigError::invalid(
                "http.cors_origins",
                "\"*\" allows every origin: list it alone",
            ));
        }
        for (i, origin) in self.cors_origins.iter().enumerate() {
            if origin != "*" {
                check_origin(origin).map_err(|reason| {
                    ConfigError::invalid(format!("http.cors_origins[{i}]"), reason)
                })?;
            }
        }
        Ok(())
    }
}

/// An origin as browsers send it: `http(s)://host[:port]`, nothing after the authority.
fn check_origin(origin: &str) -> Result<(), String> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("{origin:?} must start with http:// or https://"))?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{origin:?} is not an origin: scheme://host[:port], without a path or trailing slash"
        ))
    }
}

/// The original's fee-market settings (doin-node spec §2.1). Validated and kept for tools that
/// read them; DOIN-rs fees are integer base units set by the chain parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FeeConfig {
    pub min_base_fee: f64,
    pub max_base_fee: f64,
    /// Fullness the base fee steers toward, in (0, 1].
    pub target_block_fullness: f64,
    /// The base fee moves by at most 1/denom per block.
    pub base_fee_change_denom: u64,
    pub target_block_size: u64,
    pub max_block_size: u64,
    pub optimae_stake_multiplier: f64,
    /// Share of a stake burned when an optimae fails, in [0, 1].
    pub optimae_burn_fraction: f64,
}

impl Default for FeeConfig {
    fn default() -> Self {
        FeeConfig {
            min_base_fee: 0.001,
            max_base_fee: 100.0,
            target_block_fullness: 0.5,
            base_fee_change_denom: 8,
            target_block_size: 100,
            max_block_size: 200,
            optimae_stake_multiplier: 5.0,
            optimae_burn_fraction: 0.2,
        }
    }
}

impl FeeConfig {
    fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let at = |key: &str| format!("{path}.{key}");
        non_negative(&at("min_base_fee"), self.min_base_fee)?;
        non_negative(&at("max_base_fee"), self.max_base_fee)?;
        if self.max_base_fee < self.min_base_fee {
            return Err(ConfigError::invalid(
                at("max_base_fee"),
                "must be >= min_base_fee",
            ));
        }
        fraction(&at("target_block_fullness"), self.target_block_fullness)?;
        at_least_one(&at("base_fee_change_denom"), self.base_fee_change_denom)?;
        at_least_one(&at("target_block_size"), self.target_block_size)?;
        if self.max_block_size < self.target_block_size {
            return Err(ConfigError::invalid(
                at("max_block_size"),
                "must be >= target_block_size",
            ));
        }
        non_negative(
            &at("optimae_stake_multiplier"),
            self.optimae_stake_multiplier,
        )?;
        unit_interval(&at("optimae_burn_fraction"), self.optimae_burn_fraction)
    }
}

/// The original's per-domain reward shaping (doin-node spec §2.2). Validated for
/// compatibility; DOIN-rs rewards follow the chain's economics (credit = verified improvement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct IncentiveConfig {
    /// Must agree with the protocol's direction: `false` is ignored with a warning.
    pub higher_is_better: bool,
    pub tolerance_margin: f64,
    pub bonus_threshold: f64,
    /// In [0, 1].
    pub min_reward_fraction: f64,
    pub max_bonus_multiplier: f64,
}

impl Default for IncentiveConfig {
    fn default() -> Self {
        IncentiveConfig {
            higher_is_better: true,
            tolerance_margin: 0.10,
            bonus_threshold: 0.05,
            min_reward_fraction: 0.3,
            max_bonus_multiplier: 1.2,
        }
    }
}

impl IncentiveConfig {
    fn validate(&self, path: &str, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        let at = |key: &str| format!("{path}.{key}");
        non_negative(&at("tolerance_margin"), self.tolerance_margin)?;
        non_negative(&at("bonus_threshold"), self.bonus_threshold)?;
        unit_interval(&at("min_reward_fraction"), self.min_reward_fraction)?;
        non_negative(&at("max_bonus_multiplier"), self.max_bonus_multiplier)?;
        if !self.higher_is_better {
            warnings.push(warn(
                at("higher_is_better"),
                ConfigWarningKind::Ignored,
                "false is ignored: performance is always higher-is-better",
            ));
        }
        Ok(())
    }
}

// === domains ===

/// One optimization domain this node works on (`domains[]`, doin-node spec §2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DomainConfig {
    /// The domain's id (required): 1-64 characters of a-z, 0-9, '_', '.', '-'.
    pub domain_id: DomainId,
    /// Run an optimizer (island) on this domain.
    #[serde(default)]
    pub optimize: bool,
    /// Evaluate other nodes' optimae of this domain (and serve its inference).
    #[serde(default)]
    pub evaluate: bool,
    /// Registered plugin that optimizes this domain.
    #[serde(default)]
    pub optimization_plugin: String,
    /// Free JSON object given to the optimizer.
    #[serde(default)]
    pub optimization_config: Map<String, Value>,
    #[serde(default)]
    pub inference_plugin: String,
    /// Inference configuration; falls back to `optimization_config` when empty.
    #[serde(default)]
    pub inference_config: Map<String, Value>,
    #[serde(default)]
    pub synthetic_data_plugin: String,
    /// Synthetic data configuration; falls back to `optimization_config` when empty.
    #[serde(default)]
    pub synthetic_data_config: Map<String, Value>,
    /// Accepted for compatibility: every DOIN-rs domain verifies on synthetic data.
    #[serde(default)]
    pub has_synthetic_data: bool,
    /// `false` made the original auto-accept unverified claims; DOIN-rs always verifies
    /// (a warning says so).
    #[serde(default = "default_true")]
    pub synthetic_data_validation: bool,
    /// Must be `true`: performance is always higher-is-better (a loss is reported negated).
    #[serde(default = "default_true")]
    pub higher_is_better: bool,
    /// Name of the performance metric; injected into plugin configs that lack one.
    #[serde(default)]
    pub metric_type: String,
    /// `{name: [low, high]}`, finite with low <= high.
    #[serde(default)]
    pub param_bounds: ParamBounds,
    /// What one candidate may consume (enforced); unknown fields are an error.
    #[serde(default)]
    pub resource_limits: ResourceLimits,
    #[serde(default)]
    pub incentive_config: IncentiveConfig,
    /// Performance at which the domain is converged and stops consuming optimizer compute.
    #[serde(default)]
    pub target_performance: Option<f64>,
    /// Keys this node does not know (reported as warnings, kept on re-serialization).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn default_true() -> bool {
    true
}

impl DomainConfig {
    /// A domain with every other key at its default.
    pub fn new(domain_id: DomainId) -> Self {
        DomainConfig {
            domain_id,
            optimize: false,
            evaluate: false,
            optimization_plugin: String::new(),
            optimization_config: Map::new(),
            inference_plugin: String::new(),
            inference_config: Map::new(),
            synthetic_data_plugin: String::new(),
            synthetic_data_config: Map::new(),
            has_synthetic_data: false,
            synthetic_data_validation: true,
            higher_is_better: true,
            metric_type: String::new(),
            param_bounds: ParamBounds::default(),
            resource_limits: ResourceLimits::default(),
            incentive_config: IncentiveConfig::default(),
            target_performance: None,
            extra: BTreeMap::new(),
        }
    }

    /// The optimizer's configuration, as the original built it: `optimization_config` plus
    /// `metric_type` and `param_bounds` when absent (and no `hyperparameter_bounds` is given).
    pub fn effective_optimization_config(&self) -> Value {
        let mut config = self.optimization_config.clone();
        self.inject_metric_type(&mut config);
        let has_bounds =
            config.contains_key("param_bounds") || config.contains_key("hyperparameter_bounds");
        if !has_bounds && !self.param_bounds.0.is_empty() {
            if let Ok(bounds) = serde_json::to_value(&self.param_bounds) {
                config.insert("param_bounds".into(), bounds);
            }
        }
        Value::Object(config)
    }

    /// `inference_config` (or `optimization_config` when empty) plus `metric_type`.
    pub fn effective_inference_config(&self) -> Value {
        let mut config = self.or_optimization_config(&self.inference_config);
        self.inject_metric_type(&mut config);
        Value::Object(config)
    }

    /// `synthetic_data_config`, or `optimization_config` when empty (no injection).
    pub fn effective_synthetic_data_config(&self) -> Value {
        Value::Object(self.or_optimization_config(&self.synthetic_data_config))
    }

    /// What a domain plugin is instantiated from.
    pub fn plugin_setup(&self) -> PluginSetup {
        PluginSetup {
            domain: self.domain_id.clone(),
            data_config: self.effective_synthetic_data_config(),
            inference_config: self.effective_inference_config(),
            target_performance: self.target_performance,
        }
    }

    /// What this domain's optimizer is built from.
    pub fn optimizer_setup(&self, seed: u64) -> OptimizerSetup {
        OptimizerSetup {
            config: self.effective_optimization_config(),
            seed,
            limits: self.resource_limits.clone(),
            bounds: self.param_bounds.clone(),
        }
    }

    fn or_optimization_config(&self, own: &Map<String, Value>) -> Map<String, Value> {
        if own.is_empty() {
            self.optimization_config.clone()
        } else {
            own.clone()
        }
    }

    fn inject_metric_type(&self, config: &mut Map<String, Value>) {
        if !self.metric_type.is_empty() && !config.contains_key("metric_type") {
            config.insert(
                "metric_type".into(),
                Value::String(self.metric_type.clone()),
            );
        }
    }

    fn validate(&self, path: &str, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        let at = |key: &str| format!("{path}.{key}");
        if !self.higher_is_better {
            return Err(ConfigError::invalid(
                at("higher_is_better"),
                "must be true: DOIN performance is always higher-is-better \
                 (a domain with a loss metric reports the loss negated)",
            ));
        }
        self.param_bounds.validate().map_err(|e| {
            ConfigError::invalid(at(&format!("param_bounds.{}", e.field)), e.reason)
        })?;
        self.resource_limits.validate().map_err(|e| {
            ConfigError::invalid(at(&format!("resource_limits.{}", e.field)), e.reason)
        })?;
        if let Some(target) = self.target_performance {
            finite(&at("target_performance"), target)?;
        }
        self.incentive_config
            .validate(&at("incentive_config"), warnings)?;
        if !self.synthetic_data_validation {
            warnings.push(warn(
                at("synthetic_data_validation"),
                ConfigWarningKind::Ignored,
                "false is ignored: every optimae is verified by a quorum on synthetic data \
                 (for a single node, set chain.solo_mode)",
            ));
        }
        unknown_keys(path, &self.extra, warnings);
        Ok(())
    }
}

// === the node ===

/// The whole node configuration. Every key is optional; defaults are the original's.
///
/// ```
/// use doin_core::config::NodeConfig;
/// let (config, warnings) = NodeConfig::from_json_str("{}").unwrap();
/// assert_eq!(config.port, 8470);
/// assert!(warnings.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct NodeConfig {
    /// Label shown in the dashboard; empty means `host:port`.
    pub node_label: String,
    /// Listen address.
    pub host: String,
    /// Port of the HTTP API, 0-65535; 0 picks a free port and writes the bound address to
    /// `<data_dir>/http.addr` (tests and supervisors read it there).
    #[serde(deserialize_with = "deserialize_port")]
    #[schemars(range(min = 0, max = 65535))]
    pub port: u16,
    /// Directory of the chain database, identity, analytics and stats files.
    pub data_dir: PathBuf,
    /// Key file; empty means `<data_dir>/identity.key`.
    #[serde(
        deserialize_with = "deserialize_optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub identity_file: Option<PathBuf>,
    /// Peers to connect to at startup.
    pub bootstrap_peers: Vec<PeerAddr>,
    pub domains: Vec<DomainConfig>,

    /// Target seconds between blocks (> 0).
    pub target_block_time: f64,
    /// The original's starting block threshold (any finite number).
    pub initial_threshold: f64,
    /// Least absolute improvement that counts as better (>= 0).
    pub acceptance_tolerance: f64,
    /// Evaluators per quorum (>= 1).
    pub quorum_min_evaluators: u32,
    /// Share of the quorum that must agree, in (0, 1].
    pub quorum_fraction: f64,
    /// Relative divergence allowed between measurements (>= 0).
    pub quorum_tolerance: f64,
    /// Seconds before an unrevealed commitment expires (> 0).
    pub commit_reveal_max_age: f64,
    /// Blocks below the tip after which a block is final (>= 1).
    pub finality_confirmation_depth: u64,
    /// Blocks between checkpoint exports to external anchors (>= 1).
    pub external_anchor_interval: u64,
    /// `false` is ignored: data seeds are always derived deterministically.
    pub require_deterministic_seed: bool,

    /// Seconds between evaluator polls (> 0).
    pub eval_poll_interval: f64,
    /// Evaluations run at once (>= 1).
    pub eval_max_concurrent: u32,
    /// Seconds of pause between optimizer rounds (>= 0).
    pub optimizer_loop_interval: f64,

    /// Shared-population mode: seconds before a claimed candidate's lease expires (> 0).
    pub shared_claim_timeout: f64,
    /// Shared-population mode: results after which a lease expires (>= 1).
    pub shared_claim_result_patience: u32,
    /// Shared-population mode: peers to wait for (0 disables the barriers).
    pub shared_min_peers: u32,
    pub shared_initialize_before_peers: bool,
    /// Seconds between "still waiting for peers" messages (> 0).
    pub shared_peer_wait_timeout: f64,
    /// Seconds to wait before each confirmation round (>= 0).
    pub shared_claim_settle_seconds: f64,
    /// Consecutive confirmed rounds needed (>= 1).
    pub shared_claim_confirmation_rounds: u32,

    /// Must be `"sqlite"`, the only backend.
    pub storage_backend: String,
    /// Chain database; empty means `<data_dir>/chain.db`.
    #[serde(
        deserialize_with = "deserialize_optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub db_path: Option<PathBuf>,
    /// Blocks between state snapshots (>= 1).
    pub snapshot_interval: u64,
    /// Keep transaction bodies of the last N blocks; 0 keeps everything.
    pub prune_keep_blocks: u64,

    /// `"gossipsub"`; the original's `"flooding"` is accepted with a warning.
    pub network_protocol: String,
    /// Seconds between gossip heartbeats (> 0).
    pub gossip_heartbeat_interval: f64,
    pub discovery_enabled: bool,
    /// Seconds between peer discovery rounds (> 0).
    pub discovery_interval: f64,
    pub dashboard_enabled: bool,
    /// Experiment CSV; empty means `<data_dir>/experiment_stats.csv`.
    #[serde(
        deserialize_with = "deserialize_optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub experiment_stats_file: Option<PathBuf>,
    /// Analytics database; empty means `<data_dir>/olap.db`.
    #[serde(
        deserialize_with = "deserialize_optional_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub olap_db_path: Option<PathBuf>,
    /// Delete the chain and analytics databases in `data_dir` at startup.
    pub reset_chain: bool,
    pub fee_market_enabled: bool,
    pub fee_config: FeeConfig,

    /// Which network to join (DOIN-rs).
    pub chain: ChainConfig,
    /// Log verbosity (DOIN-rs; the original only had `--log-level`).
    pub log_level: LogLevel,
    /// Serving `POST /inference` and getting paid for it (DOIN-rs).
    pub inference: InferenceConfig,
    /// The HTTP API: CORS origins (DOIN-rs).
    pub http: HttpConfig,
    /// The peer-to-peer network (DOIN-rs).
    pub p2p: P2pConfig,
    /// Propose blocks (DOIN-rs). `false` runs a full node that validates, stores, follows
    /// and serves the chain without producing blocks.
    pub produce_blocks: bool,

    /// Keys this node does not know (reported as warnings, kept on re-serialization).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_label: String::new(),
            host: DEFAULT_HOST.into(),
            port: DEFAULT_PORT,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            identity_file: None,
            bootstrap_peers: Vec::new(),
            domains: Vec::new(),
            target_block_time: 600.0,
            initial_threshold: 1.0,
            acceptance_tolerance: 1e-5,
            quorum_min_evaluators: 3,
            quorum_fraction: 0.67,
            quorum_tolerance: 0.05,
            commit_reveal_max_age: 600.0,
            finality_confirmation_depth: 6,
            external_anchor_interval: 100,
            require_deterministic_seed: true,
            eval_poll_interval: 10.0,
            eval_max_concurrent: 3,
            optimizer_loop_interval: 30.0,
            shared_claim_timeout: 600.0,
            shared_claim_result_patience: 4,
            shared_min_peers: 0,
            shared_initialize_before_peers: false,
            shared_peer_wait_timeout: 120.0,
            shared_claim_settle_seconds: 1.0,
            shared_claim_confirmation_rounds: 2,
            storage_backend: STORAGE_SQLITE.into(),
            db_path: None,
            snapshot_interval: 100,
            prune_keep_blocks: 10_000,
            network_protocol: PROTOCOL_GOSSIPSUB.into(),
            gossip_heartbeat_interval: 1.0,
            discovery_enabled: true,
            discovery_interval: 60.0,
            dashboard_enabled: true,
            experiment_stats_file: None,
            olap_db_path: None,
            reset_chain: false,
            fee_market_enabled: true,
            fee_config: FeeConfig::default(),
            chain: ChainConfig::default(),
            log_level: LogLevel::default(),
            inference: InferenceConfig::default(),
            http: HttpConfig::default(),
            p2p: P2pConfig::default(),
            produce_blocks: true,
            extra: BTreeMap::new(),
        }
    }
}

impl NodeConfig {
    /// Parses and validates a configuration. Returns the warnings of a valid configuration
    /// (unknown keys, ignored settings); a syntax error gives its line and column, an invalid
    /// value its key path.
    pub fn from_json_str(text: &str) -> Result<(NodeConfig, Vec<ConfigWarning>), ConfigError> {
        let document: Value = serde_json::from_str(text).map_err(|e| ConfigError::syntax(&e))?;
        check_sections_are_objects(&document)?;
        let config = NodeConfig::deserialize(&document).map_err(|e| locate_error(&document, &e))?;
        let warnings = config.validate()?;
        Ok((config, warnings))
    }

    /// Checks every value; returns the warnings of a valid configuration.
    pub fn validate(&self) -> Result<Vec<ConfigWarning>, ConfigError> {
        let mut warnings = Vec::new();
        self.validate_listen()?;
        self.validate_numbers()?;
        self.validate_storage()?;
        self.validate_network(&mut warnings)?;
        self.fee_config.validate("fee_config")?;
        self.chain.validate()?;
        self.validate_domains(&mut warnings)?;
        self.inference.validate(&self.domains)?;
        self.http.validate()?;
        self.p2p.validate()?;
        if !self.require_deterministic_seed {
            warnings.push(warn(
                "require_deterministic_seed",
                ConfigWarningKind::Ignored,
                "false is ignored: data seeds are always derived from the chain",
            ));
        }
        unknown_keys("", &self.extra, &mut warnings);
        Ok(warnings)
    }

    /// The domain configured with `id`.
    pub fn domain(&self, id: &DomainId) -> Option<&DomainConfig> {
        self.domains.iter().find(|d| &d.domain_id == id)
    }

    /// The key file: `identity_file`, or `<data_dir>/identity.key`.
    pub fn identity_path(&self) -> PathBuf {
        self.in_data_dir(self.identity_file.as_deref(), "identity.key")
    }

    /// The chain database: `db_path`, or `<data_dir>/chain.db`.
    pub fn chain_db_path(&self) -> PathBuf {
        self.in_data_dir(self.db_path.as_deref(), "chain.db")
    }

    /// The experiment CSV: `experiment_stats_file`, or `<data_dir>/experiment_stats.csv`.
    pub fn experiment_stats_path(&self) -> PathBuf {
        self.in_data_dir(
            self.experiment_stats_file.as_deref(),
            "experiment_stats.csv",
        )
    }

    /// The analytics database: `olap_db_path`, or `<data_dir>/olap.db`.
    pub fn olap_path(&self) -> PathBuf {
        self.in_data_dir(self.olap_db_path.as_deref(), "olap.db")
    }

    fn in_data_dir(&self, explicit: Option<&Path>, default_name: &str) -> PathBuf {
        explicit.map_or_else(|| self.data_dir.join(default_name), Path::to_path_buf)
    }

    fn validate_listen(&self) -> Result<(), ConfigError> {
        if self.host.is_empty() || self.host.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                "host",
                "must be a non-empty address without spaces",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        Ok(())
    }

    fn validate_numbers(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("target_block_time", self.target_block_time),
            ("commit_reveal_max_age", self.commit_reveal_max_age),
            ("eval_poll_interval", self.eval_poll_interval),
            ("shared_claim_timeout", self.shared_claim_timeout),
            ("shared_peer_wait_timeout", self.shared_peer_wait_timeout),
            ("gossip_heartbeat_interval", self.gossip_heartbeat_interval),
            ("discovery_interval", self.discovery_interval),
        ] {
            positive(key, value)?;
        }
        for (key, value) in [
            ("acceptance_tolerance", self.acceptance_tolerance),
            ("quorum_tolerance", self.quorum_tolerance),
            ("optimizer_loop_interval", self.optimizer_loop_interval),
            (
                "shared_claim_settle_seconds",
                self.shared_claim_settle_seconds,
            ),
        ] {
            non_negative(key, value)?;
        }
        for (key, value) in [
            (
                "quorum_min_evaluators",
                u64::from(self.quorum_min_evaluators),
            ),
            (
                "finality_confirmation_depth",
                self.finality_confirmation_depth,
            ),
            ("external_anchor_interval", self.external_anchor_interval),
            ("eval_max_concurrent", u64::from(self.eval_max_concurrent)),
            (
                "shared_claim_result_patience",
                u64::from(self.shared_claim_result_patience),
            ),
            (
                "shared_claim_confirmation_rounds",
                u64::from(self.shared_claim_confirmation_rounds),
            ),
            ("snapshot_interval", self.snapshot_interval),
        ] {
            at_least_one(key, value)?;
        }
        finite("initial_threshold", self.initial_threshold)?;
        fraction("quorum_fraction", self.quorum_fraction)
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        if self.storage_backend != STORAGE_SQLITE {
            return Err(ConfigError::invalid(
                "storage_backend",
                format!(
                    "must be \"{STORAGE_SQLITE}\", the only storage backend (got {:?}; the \
                     original's JSON file store is not supported)",
                    self.storage_backend
                ),
            ));
        }
        Ok(())
    }

    fn validate_network(&self, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        match self.network_protocol.as_str() {
            PROTOCOL_GOSSIPSUB => Ok(()),
            PROTOCOL_FLOODING => {
                warnings.push(warn(
                    "network_protocol",
                    ConfigWarningKind::Ignored,
                    "\"flooding\" is not supported; gossipsub is used",
                ));
                Ok(())
            }
            other => Err(ConfigError::invalid(
                "network_protocol",
                format!("must be \"{PROTOCOL_GOSSIPSUB}\" (or the original's \"{PROTOCOL_FLOODING}\"), got {other:?}"),
            )),
        }
    }

    fn validate_domains(&self, warnings: &mut Vec<ConfigWarning>) -> Result<(), ConfigError> {
        let mut first_index: BTreeMap<&DomainId, usize> = BTreeMap::new();
        for (i, domain) in self.domains.iter().enumerate() {
            let path = format!("domains[{i}]");
            if let Some(first) = first_index.insert(&domain.domain_id, i) {
                return Err(ConfigError::invalid(
                    format!("{path}.domain_id"),
                    format!(
                        "duplicate domain id {:?} (also domains[{first}])",
                        domain.domain_id.as_str()
                    ),
                ));
            }
            domain.validate(&path, warnings)?;
        }
        Ok(())
    }
}

/// The JSON Schema of the configuration file (for editors, docs and `$schema`).
pub fn json_schema() -> Value {
    let schema = schemars::schema_for!(NodeConfig);
    serde_json::to_value(schema).expect("a JSON schema always serializes to JSON")
}

// === value checks ===

fn finite(path: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("must be a finite number, got {value}"),
        ))
    }
}

fn positive(path: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("must be a finite number > 0, got {value}"),
        ))
    }
}

fn non_negative(path: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

/// In (0, 1].
fn fraction(path: &str, value: f64) -> Result<(), ConfigError> {
    if value > 0.0 && value <= 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("must be in (0, 1], got {value}"),
        ))
    }
}

/// In [0, 1].
fn unit_interval(path: &str, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            path,
            format!("must be in [0, 1], got {value}"),
        ))
    }
}

fn at_least_one(path: &str, value: u64) -> Result<(), ConfigError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(ConfigError::invalid(path, "must be at least 1, got 0"))
    }
}

/// Warns about each unknown key except `$`-prefixed annotations.
fn unknown_keys(path: &str, extra: &BTreeMap<String, Value>, warnings: &mut Vec<ConfigWarning>) {
    for key in extra.keys().filter(|k| !k.starts_with('$')) {
        let full = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        warnings.push(warn(
            full,
            ConfigWarningKind::UnknownKey,
            "unknown key, ignored",
        ));
    }
}

// === field deserializers ===

/// A port with a message that says the range (serde's own would say "expected u16").
fn deserialize_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let raw = i64::deserialize(d)?;
    u16::try_from(raw)
        .map_err(|_| D::Error::custom(format!("must be 0-65535 (0: any free port), got {raw}")))
}

/// A path where the original's `""` (or `null`) means "the default location".
fn deserialize_optional_path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw.filter(|s| !s.is_empty()).map(PathBuf::from))
}

// === locating type errors ===

/// Refuses sections that are not JSON objects. serde would also read a struct from an array
/// (positionally: `"domains": [["quadratic"]]` would name a domain), which nobody means.
fn check_sections_are_objects(document: &Value) -> Result<(), ConfigError> {
    let Some(root) = document.as_object() else {
        return Err(ConfigError::invalid(
            "(root)",
            "the configuration must be a JSON object",
        ));
    };
    for key in ["fee_config", "chain"] {
        expect_object(root.get(key), key)?;
    }
    let domains = root.get("domains").and_then(Value::as_array);
    for (i, domain) in domains.into_iter().flatten().enumerate() {
        let path = format!("domains[{i}]");
        expect_object(Some(domain), &path)?;
        for key in ["resource_limits", "incentive_config", "param_bounds"] {
            expect_object(domain.get(key), &format!("{path}.{key}"))?;
        }
    }
    Ok(())
}

fn expect_object(value: Option<&Value>, path: &str) -> Result<(), ConfigError> {
    match value {
        Some(v) if !v.is_object() => Err(ConfigError::invalid(path, "must be a JSON object")),
        _ => Ok(()),
    }
}

/// A key path below some value (`"fee_config.min_base_fee"`, `"[2].domain_id"`) and the error
/// of the innermost value that fails on its own.
type Located = Option<(String, serde_json::Error)>;

/// Locates an error inside one value.
type Locator = fn(&Value) -> Located;

/// The locator of a key's value, for keys whose values have keys or items of their own.
type ChildLocator = fn(&str) -> Option<Locator>;

/// Finds where in `document` a deserialization error comes from.
fn locate_error(document: &Value, err: &serde_json::Error) -> ConfigError {
    if !document.is_object() {
        return ConfigError::invalid("(root)", "the configuration must be a JSON object");
    }
    match locate_object::<NodeConfig>(document, &[], node_child) {
        Some((path, inner)) => ConfigError::invalid(path, inner.to_string()),
        None => ConfigError::invalid("(root)", err.to_string()),
    }
}

fn node_child(key: &str) -> Option<Locator> {
    match key {
        "domains" => Some(|v| locate_array::<DomainConfig>(v, Some(locate_domain))),
        "bootstrap_peers" => Some(|v| locate_array::<PeerAddr>(v, None)),
        "fee_config" => Some(|v| locate_object::<FeeConfig>(v, &[], no_child)),
        "chain" => Some(|v| locate_object::<ChainConfig>(v, &[], no_child)),
        _ => None,
    }
}

fn locate_domain(value: &Value) -> Located {
    locate_object::<DomainConfig>(value, &["domain_id"], domain_child)
}

fn domain_child(key: &str) -> Option<Locator> {
    match key {
        "param_bounds" => Some(|v| locate_object::<ParamBounds>(v, &[], no_child)),
        "resource_limits" => Some(|v| locate_object::<ResourceLimits>(v, &[], no_child)),
        "incentive_config" => Some(|v| locate_object::<IncentiveConfig>(v, &[], no_child)),
        _ => None,
    }
}

fn no_child(_: &str) -> Option<Locator> {
    None
}

/// The key of object `value` that `T` fails on: the required keys alone first (a missing or
/// invalid required key is the culprit), then each other key on top of them.
fn locate_object<T: DeserializeOwned>(
    value: &Value,
    required: &[&str],
    child: ChildLocator,
) -> Located {
    let object = value.as_object()?;
    let base: Map<String, Value> = required
        .iter()
        .filter_map(|k| object.get_key_value(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Err(err) = T::deserialize(&Value::Object(base.clone())) {
        let key = required
            .iter()
            .find(|k| !object.contains_key(**k))
            .or(required.first())?;
        let missing = !object.contains_key(*key);
        let err = if missing {
            serde_json::Error::custom("is required")
        } else {
            err
        };
        return Some((key.to_string(), err));
    }
    object
        .iter()
        .filter(|(key, _)| !required.contains(&key.as_str()))
        .find_map(|(key, item)| {
            let mut probe = base.clone();
            probe.insert(key.clone(), item.clone());
            let err = T::deserialize(&Value::Object(probe)).err()?;
            let deeper = child(key).and_then(|locate| locate(item));
            Some(match deeper {
                Some((sub, inner)) => (join_path(key, &sub), inner),
                None => (key.clone(), err),
            })
        })
}

/// The first item of array `value` that `T` fails on, refined by `item` when given.
fn locate_array<T: DeserializeOwned>(value: &Value, item: Option<Locator>) -> Located {
    let items = value.as_array()?;
    items.iter().enumerate().find_map(|(i, v)| {
        let err = T::deserialize(v).err()?;
        let deeper = item.and_then(|locate| locate(v));
        Some(match deeper {
            Some((sub, inner)) => (join_path(&format!("[{i}]"), &sub), inner),
            None => (format!("[{i}]"), err),
        })
    })
}

fn join_path(head: &str, tail: &str) -> String {
    if tail.starts_with('[') {
        format!("{head}{tail}")
    } else {
        format!("{head}.{tail}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const SEED_CONFIG: &str = r#"{"host": "0.0.0.0", "port": 8470, "data_dir": "./doin-data",
        "bootstrap_peers": ["seed1.doin.network:8470"], "storage_backend": "sqlite",
        "network_protocol": "gossipsub", "experiment_stats_file": "./stats.csv",
        "domains": [{"domain_id": "my-ml-domain", "optimize": true, "evaluate": true,
        "has_synthetic_data": true, "optimization_plugin": "my_optimizer",
        "synthetic_data_plugin": "my_synth_gen", "target_performance": -1.0}]}"#;

    fn parse(value: Value) -> Result<(NodeConfig, Vec<ConfigWarning>), ConfigError> {
        NodeConfig::from_json_str(&value.to_string())
    }

    /// Parses `value` and returns the error's path and message.
    fn error_of(value: Value) -> (String, String) {
        match parse(value.clone()) {
            Err(ConfigError::Invalid { path, reason }) => (path, reason),
            other => panic!("expected an invalid value in {value}, got {other:?}"),
        }
    }

    #[test]
    fn http_cors_origins_default_to_any_and_are_checked() {
        let (config, _) = parse(json!({})).unwrap();
        assert_eq!(config.http.cors_origins, vec!["*".to_owned()]);
        assert!(config.http.allows_any_origin());
        let (config, _) = parse(json!({"http": {"cors_origins": [
            "https://dash.example", "http://localhost:3000", "http://[::1]:8080"
        ]}}))
        .unwrap();
        assert!(!config.http.allows_any_origin());
        let (config, _) = parse(json!({"http": {"cors_origins": []}})).unwrap();
        assert!(config.http.cors_origins.is_empty());
        for (bad, path) in [
            (json!(["*", "https://a.example"]), "http.cors_origins"),
            (json!(["dash.example"]), "http.cors_origins[0]"),
            (
                json!(["https://a.example", "https://b.example/"]),
                "http.cors_origins[1]",
            ),
            (json!(["https://a.example/path"]), "http.cors_origins[0]"),
        ] {
            assert_eq!(
                error_of(json!({"http": {"cors_origins": bad}})).0,
                path,
                "{bad}"
            );
        }
        assert!(
            parse(json!({"http": {"cors": ["*"]}})).is_err(),
            "unknown key"
        );
    }

    fn domain(extra: Value) -> Value {
        let mut d = json!({"domain_id": "quadratic"});
        if let (Some(d), Some(extra)) = (d.as_object_mut(), extra.as_object()) {
            d.extend(extra.clone());
        }
        json!({ "domains": [d] })
    }

    #[test]
    fn seed_example_config_parses() {
        let (config, warnings) = NodeConfig::from_json_str(SEED_CONFIG).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.port, 8470);
        assert_eq!(
            config.bootstrap_peers,
            vec![PeerAddr::HostPort {
                host: "seed1.doin.network".into(),
                port: 8470
            }]
        );
        assert_eq!(config.experiment_stats_path(), PathBuf::from("./stats.csv"));
        let d = &config.domains[0];
        assert_eq!(d.domain_id.as_str(), "my-ml-domain");
        assert!(d.optimize && d.evaluate && d.has_synthetic_data);
        assert_eq!(d.optimization_plugin, "my_optimizer");
        assert_eq!(d.synthetic_data_plugin, "my_synth_gen");
        assert_eq!(d.target_performance, Some(-1.0));
        assert!(d.synthetic_data_validation && d.higher_is_better);
        assert_eq!(d.resource_limits, ResourceLimits::default());
    }

    #[test]
    fn empty_object_is_the_defaults() {
        let (config, warnings) = NodeConfig::from_json_str("{}").unwrap();
        assert_eq!(config, NodeConfig::default());
        assert!(warnings.is_empty());
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.port, 8470);
        assert_eq!(config.data_dir, PathBuf::from("./doin-data"));
        assert_eq!(config.target_block_time, 600.0);
        assert_eq!(config.quorum_min_evaluators, 3);
        assert_eq!(config.quorum_fraction, 0.67);
        assert_eq!(config.storage_backend, "sqlite");
        assert_eq!(config.network_protocol, "gossipsub");
        assert_eq!(config.fee_config.base_fee_change_denom, 8);
        assert_eq!(config.log_level, LogLevel::Info);
        assert_eq!(
            config.chain_db_path(),
            PathBuf::from("./doin-data/chain.db")
        );
        assert_eq!(
            config.identity_path(),
            PathBuf::from("./doin-data/identity.key")
        );
        assert_eq!(config.olap_path(), PathBuf::from("./doin-data/olap.db"));
    }

    #[test]
    fn empty_paths_mean_the_default_location() {
        let (config, _) =
            parse(json!({"db_path": "", "olap_db_path": null, "data_dir": "/d"})).unwrap();
        assert_eq!(config.db_path, None);
        assert_eq!(config.chain_db_path(), PathBuf::from("/d/chain.db"));
        assert_eq!(config.olap_path(), PathBuf::from("/d/olap.db"));
    }

    #[test]
    fn unknown_keys_warn_and_dollar_keys_are_silent() {
        let (config, warnings) = parse(json!({
            "$schema": "./schema.json",
            "$doc": "notes",
            "prot": 1,
            "domains": [{"domain_id": "a", "optimise": true, "$note": "x"}],
        }))
        .unwrap();
        let paths: Vec<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, vec!["domains[0].optimise", "prot"]);
        assert!(warnings
            .iter()
            .all(|w| w.kind == ConfigWarningKind::UnknownKey));
        assert_eq!(warnings[1].to_string(), "prot: unknown key, ignored");
        assert_eq!(config.extra.get("prot"), Some(&json!(1)));
    }

    #[test]
    fn flooding_and_unsafe_originals_warn() {
        let (_, warnings) = parse(json!({
            "network_protocol": "flooding",
            "require_deterministic_seed": false,
            "domains": [{"domain_id": "a", "synthetic_data_validation": false,
                         "incentive_config": {"higher_is_better": false}}],
        }))
        .unwrap();
        let paths: BTreeSet<&str> = warnings.iter().map(|w| w.path.as_str()).collect();
        let expected: BTreeSet<&str> = [
            "network_protocol",
            "require_deterministic_seed",
            "domains[0].synthetic_data_validation",
            "domains[0].incentive_config.higher_is_better",
        ]
        .into();
        assert_eq!(paths, expected);
        assert!(warnings
            .iter()
            .all(|w| w.kind == ConfigWarningKind::Ignored));
        assert!(warnings[0].message.contains("gossipsub"));
    }

    #[test]
    fn syntax_errors_report_line_and_column() {
        let err = NodeConfig::from_json_str("{\n  \"port\": 8470,\n  oops\n}").unwrap_err();
        match err {
            ConfigError::Syntax {
                line,
                column,
                ref message,
            } => {
                assert_eq!((line, column), (3, 3));
                assert!(!message.contains("line"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err
            .to_string()
            .starts_with("invalid JSON at line 3, column 3: "));
        assert!(matches!(
            NodeConfig::from_json_str(""),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn non_object_documents_are_refused() {
        for doc in ["[]", "1", "null", "\"x\""] {
            let err = NodeConfig::from_json_str(doc).unwrap_err();
            assert_eq!(err.path(), Some("(root)"), "{doc}");
        }
    }

    #[test]
    fn inference_and_p2p_settings_are_checked_and_name_their_key() {
        let domain = json!([{"domain_id": "quadratic"}]);
        let cases = [
            (
                json!({"inference": {"max_input_bytes": 0}}),
                "inference.max_input_bytes",
            ),
            (
                json!({"inference": {"max_input_bytes": MAX_INFERENCE_INPUT_BYTES + 1}}),
                "inference.max_input_bytes",
            ),
            (
                json!({"inference": {"settle_margin_blocks": 0}}),
                "inference.settle_margin_blocks",
            ),
            (json!({"inference": {"price": 0}}), "inference.price"),
            (
                json!({"inference": {"domain_prices": {"other": 5}}}),
                "inference.domain_prices.other",
            ),
            (
                json!({"domains": domain, "inference": {"domain_prices": {"quadratic": 0}}}),
                "inference.domain_prices.quadratic",
            ),
            (
                json!({"p2p": {"listen": ["127.0.0.1:8471"]}}),
                "p2p.listen[0]",
            ),
            (json!({"p2p": {"max_peers": 0}}), "p2p.max_peers"),
        ];
        for (doc, path) in cases {
            let err = NodeConfig::from_json_str(&doc.to_string()).unwrap_err();
            assert_eq!(err.path(), Some(path), "{doc}: {err}");
        }
        // Free mode needs no price; a configured domain may have its own.
        let ok = json!({
            "domains": domain,
            "inference": {"mode": "free", "price": 0, "domain_prices": {"quadratic": 0}},
            "p2p": {"listen": ["/ip4/0.0.0.0/tcp/8471"]}
        });
        let (config, _) = NodeConfig::from_json_str(&ok.to_string()).unwrap();
        let quadratic = DomainId::new("quadratic").unwrap();
        assert_eq!(config.inference.price(&quadratic), Amount::ZERO);
    }

    #[test]
    fn each_invalid_top_level_value_names_its_key() {
        let cases = [
            (json!({"port": 70000}), "port"),
            (json!({"port": -1}), "port"),
            (json!({"port": "8470"}), "port"),
            (json!({"host": ""}), "host"),
            (json!({"data_dir": ""}), "data_dir"),
            (json!({"target_block_time": 0}), "target_block_time"),
            (json!({"target_block_time": -5.0}), "target_block_time"),
            (
                json!({"acceptance_tolerance": -1e-5}),
                "acceptance_tolerance",
            ),
            (json!({"quorum_min_evaluators": 0}), "quorum_min_evaluators"),
            (
                json!({"quorum_min_evaluators": 2.5}),
                "quorum_min_evaluators",
            ),
            (json!({"quorum_fraction": 0}), "quorum_fraction"),
            (json!({"quorum_fraction": 1.01}), "quorum_fraction"),
            (json!({"quorum_tolerance": -0.1}), "quorum_tolerance"),
            (json!({"commit_reveal_max_age": 0}), "commit_reveal_max_age"),
            (
                json!({"finality_confirmation_depth": 0}),
                "finality_confirmation_depth",
            ),
            (
                json!({"external_anchor_interval": 0}),
                "external_anchor_interval",
            ),
            (json!({"eval_poll_interval": 0}), "eval_poll_interval"),
            (json!({"eval_max_concurrent": 0}), "eval_max_concurrent"),
            (
                json!({"optimizer_loop_interval": -1}),
                "optimizer_loop_interval",
            ),
            (json!({"shared_claim_timeout": 0}), "shared_claim_timeout"),
            (
                json!({"shared_claim_result_patience": 0}),
                "shared_claim_result_patience",
            ),
            (json!({"shared_min_peers": -1}), "shared_min_peers"),
            (
                json!({"shared_peer_wait_timeout": 0}),
                "shared_peer_wait_timeout",
            ),
            (
                json!({"shared_claim_settle_seconds": -1}),
                "shared_claim_settle_seconds",
            ),
            (
                json!({"shared_claim_confirmation_rounds": 0}),
                "shared_claim_confirmation_rounds",
            ),
            (json!({"storage_backend": "json"}), "storage_backend"),
            (json!({"snapshot_interval": 0}), "snapshot_interval"),
            (json!({"prune_keep_blocks": -1}), "prune_keep_blocks"),
            (
                json!({"network_protocol": "carrier-pigeon"}),
                "network_protocol",
            ),
            (
                json!({"gossip_heartbeat_interval": 0}),
                "gossip_heartbeat_interval",
            ),
            (json!({"discovery_interval": 0}), "discovery_interval"),
            (json!({"discovery_enabled": "yes"}), "discovery_enabled"),
            (json!({"reset_chain": 1}), "reset_chain"),
            (json!({"log_level": "loud"}), "log_level"),
            (json!({"domains": {}}), "domains"),
            (json!({"bootstrap_peers": "a:1"}), "bootstrap_peers"),
            (
                json!({"bootstrap_peers": ["a:1", "nope"]}),
                "bootstrap_peers[1]",
            ),
            (json!({"bootstrap_peers": ["a:0"]}), "bootstrap_peers[0]"),
            (json!({"fee_config": []}), "fee_config"),
            (json!({"chain": [null]}), "chain"),
            (
                json!({"fee_config": {"min_base_fee": "x"}}),
                "fee_config.min_base_fee",
            ),
            (json!({"fee_config": {"surge": 1}}), "fee_config.surge"),
            (
                json!({"fee_config": {"min_base_fee": -1}}),
                "fee_config.min_base_fee",
            ),
            (
                json!({"fee_config": {"max_base_fee": 0.0001}}),
                "fee_config.max_base_fee",
            ),
            (
                json!({"fee_config": {"target_block_fullness": 0}}),
                "fee_config.target_block_fullness",
            ),
            (
                json!({"fee_config": {"base_fee_change_denom": 0}}),
                "fee_config.base_fee_change_denom",
            ),
            (
                json!({"fee_config": {"max_block_size": 10}}),
                "fee_config.max_block_size",
            ),
            (
                json!({"fee_config": {"optimae_burn_fraction": 1.5}}),
                "fee_config.optimae_burn_fraction",
            ),
            (json!({"chain": {"chain_id": ""}}), "chain.chain_id"),
            (
                json!({"chain": {"finality_depth": 0}}),
                "chain.finality_depth",
            ),
            (
                json!({"chain": {"proposer_timeout_ms": 0}}),
                "chain.proposer_timeout_ms",
            ),
            (json!({"chain": {"solo": true}}), "chain.solo"),
            (
                json!({"chain": {"genesis_file": "g.json", "solo_mode": true}}),
                "chain.genesis_file",
            ),
        ];
        for (value, path) in cases {
            let (got, reason) = error_of(value.clone());
            assert_eq!(got, path, "{value}: {reason}");
            assert!(!reason.is_empty());
        }
    }

    #[test]
    fn each_invalid_domain_value_names_its_key() {
        let cases = [
            (json!({"domains": [{}]}), "domains[0].domain_id"),
            (
                json!({"domains": [{"optimize": true}]}),
                "domains[0].domain_id",
            ),
            (
                json!({"domains": [{"domain_id": "Bad Id"}]}),
                "domains[0].domain_id",
            ),
            (
                json!({"domains": [{"domain_id": "a"}, {"domain_id": "a"}]}),
                "domains[1].domain_id",
            ),
            (json!({"domains": [{"domain_id": "a"}, 7]}), "domains[1]"),
            (json!({"domains": [["a"]]}), "domains[0]"),
            (
                domain(json!({"resource_limits": [1, 2, 3, 4, 5]})),
                "domains[0].resource_limits",
            ),
            (
                domain(json!({"incentive_config": []})),
                "domains[0].incentive_config",
            ),
            (
                domain(json!({"param_bounds": [[0, 1]]})),
                "domains[0].param_bounds",
            ),
            (domain(json!({"optimize": "yes"})), "domains[0].optimize"),
            (
                domain(json!({"optimization_config": []})),
                "domains[0].optimization_config",
            ),
            (
                domain(json!({"inference_config": "x"})),
                "domains[0].inference_config",
            ),
            (
                domain(json!({"higher_is_better": false})),
                "domains[0].higher_is_better",
            ),
            (
                domain(json!({"target_performance": "high"})),
                "domains[0].target_performance",
            ),
            (
                domain(json!({"param_bounds": {"x": [1, 0]}})),
                "domains[0].param_bounds.x",
            ),
            (
                domain(json!({"param_bounds": {"x": [1]}})),
                "domains[0].param_bounds.x",
            ),
            (
                domain(json!({"param_bounds": {"x": [0, "1"]}})),
                "domains[0].param_bounds.x",
            ),
            (
                domain(json!({"resource_limits": {"max_gpus": 1}})),
                "domains[0].resource_limits.max_gpus",
            ),
            (
                domain(json!({"resource_limits": {"max_epochs": 0}})),
                "domains[0].resource_limits.max_epochs",
            ),
            (
                domain(json!({"resource_limits": {"max_epochs": -3}})),
                "domains[0].resource_limits.max_epochs",
            ),
            (
                domain(json!({"incentive_config": {"min_reward_fraction": 2}})),
                "domains[0].incentive_config.min_reward_fraction",
            ),
            (
                domain(json!({"incentive_config": {"bonus": 2}})),
                "domains[0].incentive_config.bonus",
            ),
        ];
        for (value, path) in cases {
            let (got, reason) = error_of(value.clone());
            assert_eq!(got, path, "{value}: {reason}");
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        assert_eq!(
            error_of(json!({"quorum_fraction": 1.5})),
            (
                "quorum_fraction".into(),
                "must be in (0, 1], got 1.5".into()
            )
        );
        assert_eq!(
            error_of(json!({"port": 70000})).1,
            "must be 0-65535 (0: any free port), got 70000"
        );
        assert!(error_of(json!({"storage_backend": "json"}))
            .1
            .contains("only storage backend"));
        assert_eq!(error_of(json!({"domains": [{}]})).1, "is required");
        let err =
            parse(json!({"domains": [{"domain_id": "a", "resource_limits": {"max_gpus": 1}}]}))
                .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("domains[0].resource_limits.max_gpus: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn peer_addresses_parse_and_print() {
        let ok = [
            ("seed1.doin.network:8470", "seed1.doin.network:8470"),
            ("10.0.0.2:1", "10.0.0.2:1"),
            ("[::1]:8470", "[::1]:8470"),
            ("/ip4/10.0.0.2/tcp/8470", "/ip4/10.0.0.2/tcp/8470"),
        ];
        for (text, shown) in ok {
            assert_eq!(PeerAddr::parse(text).unwrap().to_string(), shown);
        }
        let bad = [
            "",
            "host",
            "host:",
            ":8470",
            "host:0",
            "host:65536",
            "::1:8470",
            "[::1]",
            "/",
            "/ip4//tcp",
            "a b:1",
        ];
        for text in bad {
            assert!(PeerAddr::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn log_levels_accept_the_originals_spelling() {
        for (text, level) in [
            ("DEBUG", LogLevel::Debug),
            ("WARNING", LogLevel::Warn),
            ("warn", LogLevel::Warn),
            ("error", LogLevel::Error),
        ] {
            let (config, _) = parse(json!({"log_level": text})).unwrap();
            assert_eq!(config.log_level, level);
        }
        assert_eq!(LogLevel::Warn.as_str(), "warn");
    }

    #[test]
    fn chain_section_overrides_the_dev_chain() {
        let (config, _) = parse(
            json!({"chain": {"chain_id": "lab", "solo_mode": false, "target_block_time_ms": 5000}}),
        )
        .unwrap();
        let params = config.chain.dev_params();
        assert_eq!(params.chain_id, "lab");
        assert!(!params.solo_mode);
        assert_eq!(params.target_block_time_ms, 5000);
        assert_eq!(params.finality_depth, ChainParams::dev("x").finality_depth);
        assert_eq!(NodeConfig::default().chain.chain_id(), DEFAULT_CHAIN_ID);
        let (config, _) =
            parse(json!({"chain": {"genesis_file": "g.json", "chain_id": "main"}})).unwrap();
        assert_eq!(config.chain.genesis_file, Some(PathBuf::from("g.json")));
    }

    #[test]
    fn plugin_configs_fall_back_and_inject_like_the_original() {
        let (config, _) = parse(json!({"domains": [{
            "domain_id": "q",
            "metric_type": "neg_mse",
            "optimization_config": {"n_params": 10},
            "param_bounds": {"x": [-20, 20]},
            "target_performance": -100.0,
        }]}))
        .unwrap();
        let d = &config.domains[0];
        assert_eq!(
            d.effective_optimization_config(),
            json!({"n_params": 10, "metric_type": "neg_mse", "param_bounds": {"x": [-20.0, 20.0]}})
        );
        assert_eq!(
            d.effective_inference_config(),
            json!({"n_params": 10, "metric_type": "neg_mse"})
        );
        assert_eq!(d.effective_synthetic_data_config(), json!({"n_params": 10}));
        let setup = d.plugin_setup();
        assert_eq!(setup.domain.as_str(), "q");
        assert_eq!(setup.target_performance, Some(-100.0));
        let opt = d.optimizer_setup(9);
        assert_eq!(opt.seed, 9);
        assert_eq!(opt.bounds, d.param_bounds);

        let mut own = d.clone();
        own.synthetic_data_config
            .insert("noise_std".into(), json!(0.1));
        own.optimization_config
            .insert("hyperparameter_bounds".into(), json!({}));
        assert_eq!(
            own.effective_synthetic_data_config(),
            json!({"noise_std": 0.1})
        );
        assert!(own
            .effective_optimization_config()
            .get("param_bounds")
            .is_none());
        assert_eq!(config.domain(&d.domain_id), Some(d));
    }

    #[test]
    fn configs_round_trip_through_json() {
        let (config, _) = NodeConfig::from_json_str(SEED_CONFIG).unwrap();
        let text = serde_json::to_string_pretty(&config).unwrap();
        let (again, warnings) = NodeConfig::from_json_str(&text).unwrap();
        assert_eq!(again, config);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(DomainConfig::new(DomainId::new("a").unwrap()), {
            let (c, _) = parse(json!({"domains": [{"domain_id": "a"}]})).unwrap();
            c.domains[0].clone()
        });
    }

    #[test]
    fn programmatic_configs_are_validated_too() {
        let mut config = NodeConfig {
            host: String::new(),
            ..NodeConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().path(), Some("host"));
        config.host = "127.0.0.1".into();
        // Port 0 is valid: any free port.
        config.port = 0;
        assert!(config.validate().is_ok());
        config.quorum_tolerance = f64::NAN;
        assert_eq!(
            config.validate().unwrap_err().path(),
            Some("quorum_tolerance")
        );
        config.quorum_tolerance = 0.1;
        let mut d = DomainConfig::new(DomainId::new("a").unwrap());
        d.target_performance = Some(f64::INFINITY);
        config.domains.push(d);
        assert_eq!(
            config.validate().unwrap_err().path(),
            Some("domains[0].target_performance")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = NodeConfig::from_json_str(&text);
        }

        #[test]
        fn arbitrary_json_never_panics(value in arb_json()) {
            let doc = json!({ "domains": [value.clone()], "fee_config": value.clone(), "chain": value.clone() });
            let _ = NodeConfig::from_json_str(&doc.to_string());
            let _ = NodeConfig::from_json_str(&value.to_string());
        }

        #[test]
        fn ports_are_accepted_exactly_in_range(port in -10i64..70_000) {
            let result = parse(json!({"port": port}));
            prop_assert_eq!(result.is_ok(), (1..=65_535).contains(&port));
            if let Err(err) = result {
                prop_assert_eq!(err.path(), Some("port"));
            }
        }

        #[test]
        fn fractions_are_accepted_exactly_in_range(f in -0.5f64..1.5) {
            let result = parse(json!({"quorum_fraction": f}));
            prop_assert_eq!(result.is_ok(), f > 0.0 && f <= 1.0);
        }

        #[test]
        fn valid_configs_round_trip(
            port in 1u16..,
            // Dyadic fractions print and parse exactly (serde_json's default float parser
            // is not exact for every decimal).
            fraction in (1u32..=1024).prop_map(|k| f64::from(k) / 1024.0),
            peers in prop::collection::vec(("[a-z]{1,8}", 1u16..), 0..4),
            ids in prop::collection::btree_set("[a-z0-9_.-]{1,16}", 0..4),
        ) {
            let mut config = NodeConfig {
                port,
                quorum_fraction: fraction,
                bootstrap_peers: peers
                    .into_iter()
                    .map(|(host, port)| PeerAddr::HostPort { host, port })
                    .collect(),
                ..NodeConfig::default()
            };
            config.domains = ids
                .into_iter()
                .map(|id| DomainConfig::new(DomainId::new(id).unwrap()))
                .collect();
            let text = serde_json::to_string(&config).unwrap();
            let (again, warnings) = NodeConfig::from_json_str(&text).unwrap();
            prop_assert_eq!(again, config);
            prop_assert!(warnings.is_empty());
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e6f64..1e6).prop_map(Value::from),
            "[a-z_$]{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("domain_id".to_string()),
                        Just("port".to_string()),
                        Just("param_bounds".to_string()),
                        Just("resource_limits".to_string()),
                        "[a-z_]{1,10}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
