//! The external-process bridge: a domain implemented by any program that speaks JSON lines
//! over its stdin and stdout (protocol version [`PROTOCOL_VERSION`]).
//!
//! # Why a process and not an embedded interpreter
//!
//! Existing ML projects are Python (Keras, PyTorch, scikit-learn). A child process lets them
//! join DOIN unchanged, in their own virtual environment, without linking an interpreter into
//! the node; a crash or a hang in the plugin costs one call, not the node. The price is one
//! copy of the parameters per call (base64 in JSON), which is small next to training.
//!
//! # Bird's eye view
//!
//! ```text
//!  ExternalDomain ──┐                         ┌─ writer thread ──▶ child stdin
//!  ExternalOptimizer┼─▶ Bridge (Mutex<Slot>) ─┤
//!                   │   one process, started  └─ reader thread ◀── child stdout (bounded lines)
//!                   │   on demand, restarted     stderr thread ◀── child stderr (last 8 KiB)
//! ```
//!
//! Every capability object of a domain shares one bridge: a mutex around the process,
//! so calls are serialized (the protocol has no pipelining) and the traits' `Send + Sync`
//! hold. Each call has a deadline; a process that misses it, closes its stdout, writes a line
//! over the limit, writes something that is not a response, or answers another request id is
//! killed, and the next call starts a fresh one (which gets `describe` again first). A
//! well-formed error reply leaves the process running.
//!
//! # Protocol (version 1)
//!
//! One JSON object per line (UTF-8, `\n`-terminated, at most `max_line_bytes`) in each
//! direction; exactly one response per request, in order; stderr is free for logs. Requests
//! are `{"id": n, "method": "...", "params": {...}}`, responses `{"id": n, "result": {...}}` or
//! `{"id": n, "error": {"kind": "...", "message": "..."}}`. Byte blobs (parameters, datasets)
//! are standard base64 with padding; seeds of synthetic data are 64 hex digits. The methods,
//! their fields and an example exchange are in `docs/plugins.md`:
//!
//! | method | params | result |
//! |---|---|---|
//! | `describe` | `protocol`, `domain`, `config`, `inference_config`, `target_performance` | `protocol`, `name`, `description`, `performance_metric`, `version`, `baseline_performance`, `higher_is_better`, `capabilities`, `search_space` |
//! | `synthesize` | `seed` (hex) | `dataset` (base64) |
//! | `evaluate` | `params`, `dataset` | `score` |
//! | `infer` | `params`, `input` (any JSON) | `output` (any JSON) |
//! | `optimizer_new` | `optimizer` (id), `config`, `seed`, `bounds`, `limits` | `{}` |
//! | `propose` | `optimizer`, `champion` (migrant or null), `seed`, `round` | proposal |
//! | `inject` | `optimizer`, `migrant` | `{}` |
//! | `train` | `hyperparameters`, `seed`, `limits` | proposal |
//!
//! # Configuration
//!
//! The bridge reads its keys from the domain's `synthetic_data_config` (which falls back to
//! `optimization_config`), or else from `inference_config`; the whole object is also handed
//! to the process in `describe`, so the program's own keys sit next to these:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `command` | required | program and arguments, e.g. `["python3", "domain.py"]` (no shell) |
//! | `working_dir` | the node's | directory the program runs in |
//! | `timeout_ms` | 60 000 | deadline of `synthesize`, `evaluate`, `infer`, `inject`, `optimizer_new` |
//! | `startup_timeout_ms` | 60 000 | deadline of `describe`, which includes the program's start-up |
//! | `train_timeout_ms` | the domain's `max_training_seconds` | deadline of `propose` and `train` |
//! | `max_line_bytes` | 96 MiB | longest line either way (a 64 MiB parameter blob in base64 fits) |

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use doin_core::hash::Hash32;
use doin_core::limits::{ParamBounds, ResourceLimits};
use doin_core::plugin::{
    checked_score, Dataset, DomainInfo, DomainPlugin, Evaluate, Infer, Migrant, Optimize,
    OptimizerSetup, PluginError, PluginRegistry, PluginResult, PluginSetup, Proposal,
    ProposeContext, SyntheticData, Train, TrainRequest,
};
use serde_json::{json, Map, Value};
use thiserror::Error;

mod process;

use process::{Process, Spawn};

/// The name this bridge is registered under.
pub const NAME: &str = "external";
/// Version of the JSON-lines protocol; `describe` must answer with the same.
pub const PROTOCOL_VERSION: u64 = 1;
/// Deadline of ordinary calls when `timeout_ms` is absent: generous for a Python evaluation
/// of a mid-sized model on CPU, short enough that a hung process does not stall a verdict.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
/// Deadline of `describe` when `startup_timeout_ms` is absent: importing torch or
/// TensorFlow alone can take tens of seconds on a cold disk.
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 60_000;
/// Longest deadline any call may be given (one day).
pub const MAX_TIMEOUT_MS: u64 = 24 * 3_600_000;
/// Longest line when `max_line_bytes` is absent: a parameter blob at the default
/// `max_params_bytes` (64 MiB) is about 85.4 MiB in base64, plus room for the envelope.
pub const DEFAULT_MAX_LINE_BYTES: usize = 96 << 20;
/// Smallest `max_line_bytes` accepted (a `describe` must fit).
pub const MIN_MAX_LINE_BYTES: usize = 4 << 10;
/// Largest `max_line_bytes` accepted: a line is held in memory whole, twice at most.
pub const MAX_MAX_LINE_BYTES: usize = 1 << 30;
/// Most items in `command`.
pub const MAX_COMMAND_ITEMS: usize = 256;

// === methods and errors ===

/// A protocol method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Describe,
    Synthesize,
    Evaluate,
    Infer,
    OptimizerNew,
    Propose,
    Inject,
    Train,
}

impl Method {
    /// The method's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Describe => "describe",
            Method::Synthesize => "synthesize",
            Method::Evaluate => "evaluate",
            Method::Infer => "infer",
            Method::OptimizerNew => "optimizer_new",
            Method::Propose => "propose",
            Method::Inject => "inject",
            Method::Train => "train",
        }
    }

    /// The capability a method belongs to, as [`PluginError::Unsupported`] names it.
    fn capability(self) -> &'static str {
        match self {
            Method::Describe => "description",
            Method::Synthesize => "synthetic data",
            Method::Evaluate => "evaluator",
            Method::Infer => "inference",
            Method::OptimizerNew | Method::Propose | Method::Inject => "optimizer",
            Method::Train => "trainer",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `kind` of an error reply: which [`PluginError`] the program reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// `invalid_params`: the parameters are malformed (the optimizer is at fault).
    InvalidParams,
    /// `invalid_data`: the dataset is malformed.
    InvalidData,
    /// `invalid_input`: an inference query or training request it cannot answer.
    InvalidInput,
    /// `invalid_config`: its configuration is wrong (`field` names the key).
    InvalidConfig,
    /// `unsupported`: it does not implement the method.
    Unsupported,
    /// `failed`, or any kind this node does not know.
    Failed,
}

impl ReplyKind {
    fn parse(kind: &str) -> ReplyKind {
        match kind {
            "invalid_params" => ReplyKind::InvalidParams,
            "invalid_data" => ReplyKind::InvalidData,
            "invalid_input" => ReplyKind::InvalidInput,
            "invalid_config" => ReplyKind::InvalidConfig,
            "unsupported" => ReplyKind::Unsupported,
            _ => ReplyKind::Failed,
        }
    }

    /// The kind's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyKind::InvalidParams => "invalid_params",
            ReplyKind::InvalidData => "invalid_data",
            ReplyKind::InvalidInput => "invalid_input",
            ReplyKind::InvalidConfig => "invalid_config",
            ReplyKind::Unsupported => "unsupported",
            ReplyKind::Failed => "failed",
        }
    }
}

impl fmt::Display for ReplyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong talking to a plugin process.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ExternalError {
    /// The bridge's own configuration (`command`, timeouts, limits) is wrong.
    #[error("invalid external plugin configuration: {field}: {reason}")]
    Config { field: String, reason: String },
    /// The program could not be started.
    #[error("cannot start {program:?}: {reason}")]
    Spawn { program: String, reason: String },
    /// No response before the deadline; the process was killed.
    #[error("{method}: no response within {timeout_ms} ms (the process was killed)")]
    Timeout { method: Method, timeout_ms: u64 },
    /// The process closed its stdout (exited, crashed, or was killed) during the call.
    #[error(
        "{method}: the plugin process exited ({status}); its stderr ends with: {stderr_tail:?}"
    )]
    Exited {
        method: Method,
        status: String,
        stderr_tail: String,
    },
    /// A response line exceeded `max_line_bytes`; the process was killed.
    #[error("{method}: a response line exceeds {limit} bytes (the process was killed)")]
    LineTooLong { method: Method, limit: usize },
    /// The request would exceed `max_line_bytes`; nothing was sent.
    #[error("{method}: the request is {bytes} bytes, over the {limit}-byte line limit")]
    RequestTooLarge {
        method: Method,
        bytes: usize,
        limit: usize,
    },
    /// A line on stdout is not a JSON object (stray `print`?); the process was killed.
    #[error("{method}: the plugin wrote a line that is not a JSON object ({reason}): {line:?} (the process was killed; log to stderr, not stdout)")]
    BadJson {
        method: Method,
        reason: String,
        line: String,
    },
    /// The response answers another request; the process was killed.
    #[error(
        "{method}: response id {got} does not match request id {expected} (the process was killed)"
    )]
    WrongId {
        method: Method,
        expected: u64,
        got: String,
    },
    /// The response envelope or result lacks a field or has a wrong type.
    #[error("{method}: malformed response: {reason}")]
    BadResponse { method: Method, reason: String },
    /// The program answered with an error reply.
    #[error("{method}: the plugin reported {kind}: {message}")]
    Reply {
        method: Method,
        kind: ReplyKind,
        /// The configuration key at fault, for [`ReplyKind::InvalidConfig`].
        field: Option<String>,
        message: String,
    },
    /// `describe` answered another protocol version.
    #[error("the plugin speaks protocol version {got}, this node speaks {PROTOCOL_VERSION}")]
    Protocol { got: String },
    /// A restarted process describes a different domain than the first one did.
    #[error("after a restart the plugin describes a different domain: {what} changed")]
    DescribeChanged { what: &'static str },
    /// Reading or writing the pipes failed.
    #[error("{method}: i/o error talking to the plugin process: {reason}")]
    Io { method: Method, reason: String },
}

impl ExternalError {
    /// True when the stream can no longer be trusted: the process is killed and the next call
    /// starts a new one.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ExternalError::Timeout { .. }
                | ExternalError::Exited { .. }
                | ExternalError::LineTooLong { .. }
                | ExternalError::BadJson { .. }
                | ExternalError::WrongId { .. }
                | ExternalError::Io { .. }
                | ExternalError::Protocol { .. }
                | ExternalError::DescribeChanged { .. }
        )
    }
}

impl From<ExternalError> for PluginError {
    /// Error replies keep their meaning (an `invalid_params` reply blames the parameters);
    /// every failure of the process itself is local to this node ([`PluginError::Failed`]).
    fn from(err: ExternalError) -> PluginError {
        match err {
            ExternalError::Reply {
                method,
                kind,
                field,
                message,
            } => match kind {
                ReplyKind::InvalidParams => PluginError::InvalidParams { reason: message },
                ReplyKind::InvalidData => PluginError::InvalidData { reason: message },
                ReplyKind::InvalidInput => PluginError::InvalidInput { reason: message },
                ReplyKind::InvalidConfig => PluginError::InvalidConfig {
                    field: field.unwrap_or_else(|| "config".into()),
                    reason: message,
                },
                ReplyKind::Unsupported => PluginError::Unsupported {
                    capability: method.capability(),
                },
                ReplyKind::Failed => {
                    PluginError::Failed(format!("external plugin: {method}: {message}"))
                }
            },
            ExternalError::Config { field, reason } => PluginError::InvalidConfig { field, reason },
            other => PluginError::Failed(format!("external plugin: {other}")),
        }
    }
}

/// Result alias of bridge calls.
pub type ExternalResult<T> = Result<T, ExternalError>;

/// The error an `{"error": {...}}` reply stands for.
fn reply_error(method: Method, error: &Value) -> ExternalError {
    let text = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_string);
    match text("kind") {
        Some(kind) => ExternalError::Reply {
            method,
            kind: ReplyKind::parse(&kind),
            field: text("field"),
            message: text("message").unwrap_or_default(),
        },
        None => ExternalError::BadResponse {
            method,
            reason: format!("\"error\" must be an object with a string \"kind\", got {error}"),
        },
    }
}

// === config ===

/// How to run the plugin program (see the module docs for the keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalConfig {
    spawn: Spawn,
    timeout: Duration,
    startup_timeout: Duration,
    train_timeout: Option<Duration>,
}

impl ExternalConfig {
    /// Reads the bridge's keys from the object that holds `command`; other keys are the
    /// program's and are ignored here.
    pub fn from_json(config: &Value) -> ExternalResult<Self> {
        let map = config
            .as_object()
            .ok_or_else(|| config_error("config", "must be a JSON object"))?;
        let command = match map.get("command") {
            None => return Err(config_error(
                "command",
                "missing: give the program and its arguments, e.g. [\"python3\", \"domain.py\"]",
            )),
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_COMMAND_ITEMS => {
                items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect::<Option<Vec<String>>>()
                    .filter(|items| items.first().is_some_and(|p| !p.is_empty()))
                    .ok_or_else(|| {
                        config_error(
                            "command",
                            "must be an array of strings, the first one the program",
                        )
                    })?
            }
            Some(other) => {
                return Err(config_error(
                    "command",
                    format!(
                    "must be a non-empty array of at most {MAX_COMMAND_ITEMS} strings, got {other}"
                ),
                ))
            }
        };
        let working_dir = match map.get("working_dir") {
            None | Some(Value::Null) => None,
            Some(Value::String(dir)) if !dir.is_empty() => Some(dir.clone()),
            Some(other) => {
                return Err(config_error(
                    "working_dir",
                    format!("must be a directory path, got {other}"),
                ))
            }
        };
        let max_line_bytes = match map.get("max_line_bytes") {
            None => DEFAULT_MAX_LINE_BYTES,
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| (MIN_MAX_LINE_BYTES..=MAX_MAX_LINE_BYTES).contains(n))
                .ok_or_else(|| {
                    config_error(
                        "max_line_bytes",
                        format!("must be an integer from {MIN_MAX_LINE_BYTES} to {MAX_MAX_LINE_BYTES}, got {v}"),
                    )
                })?,
        };
        Ok(ExternalConfig {
            spawn: Spawn {
                command,
                working_dir,
                max_line_bytes,
            },
            timeout: timeout_ms(map, "timeout_ms")?
                .unwrap_or(Duration::from_millis(DEFAULT_TIMEOUT_MS)),
            startup_timeout: timeout_ms(map, "startup_timeout_ms")?
                .unwrap_or(Duration::from_millis(DEFAULT_STARTUP_TIMEOUT_MS)),
            train_timeout: timeout_ms(map, "train_timeout_ms")?,
        })
    }

    /// Reads the keys from the setup: `synthetic_data_config` (or the `optimization_config`
    /// it falls back to) when it has `command`, else `inference_config`.
    pub fn from_setup(setup: &PluginSetup) -> ExternalResult<Self> {
        Self::from_json(config_source(setup))
    }

    /// Program and arguments.
    pub fn command(&self) -> &[String] {
        &self.spawn.command
    }

    /// Deadline of ordinary calls (default [`DEFAULT_TIMEOUT_MS`]).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Deadline of `describe` (default [`DEFAULT_STARTUP_TIMEOUT_MS`]).
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    /// Longest line either way (default [`DEFAULT_MAX_LINE_BYTES`]).
    pub fn max_line_bytes(&self) -> usize {
        self.spawn.max_line_bytes
    }

    /// Deadline of `propose` and `train`: `train_timeout_ms`, or else the domain's
    /// `max_training_seconds`, which is what a candidate may take anyway.
    pub fn train_timeout(&self, limits: &ResourceLimits) -> Duration {
        self.train_timeout.unwrap_or_else(|| {
            Duration::from_secs(limits.max_training_seconds).clamp(
                Duration::from_millis(1),
                Duration::from_millis(MAX_TIMEOUT_MS),
            )
        })
    }
}

fn config_source(setup: &PluginSetup) -> &Value {
    if setup.data_config.get("command").is_none() && setup.inference_config.get("command").is_some()
    {
        &setup.inference_config
    } else {
        &setup.data_config
    }
}

fn config_error(field: &str, reason: impl Into<String>) -> ExternalError {
    ExternalError::Config {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn timeout_ms(map: &Map<String, Value>, key: &str) -> ExternalResult<Option<Duration>> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
            .map(|ms| Some(Duration::from_millis(ms)))
            .ok_or_else(|| {
                config_error(
                    key,
                    format!(
                        "must be an integer from 1 to {MAX_TIMEOUT_MS} (milliseconds), got {v}"
                    ),
                )
            }),
    }
}

// === describe ===

/// What the program says about its domain (the `describe` result).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The program's name for its domain.
    pub name: String,
    pub description: String,
    pub performance_metric: String,
    /// [`DomainInfo::version`]: bump it when data generation or evaluation changes.
    pub version: u32,
    pub baseline_performance: f64,
    /// Offers `infer`.
    pub infer: bool,
    /// Offers `optimizer_new`, `propose` and `inject`.
    pub optimize: bool,
    /// Offers `train` over [`Description::search_space`].
    pub train: bool,
    pub search_space: ParamBounds,
}

impl Description {
    fn parse(result: &Value) -> ExternalResult<Description> {
        let bad = |reason: String| ExternalError::BadResponse {
            method: Method::Describe,
            reason,
        };
        match result.get("protocol") {
            Some(v) if v.as_u64() == Some(PROTOCOL_VERSION) => {}
            Some(v) => return Err(ExternalError::Protocol { got: v.to_string() }),
            None => return Err(ExternalError::Protocol { got: "none".into() }),
        }
        let text = |key: &str| -> ExternalResult<String> {
            match result.get(key) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(bad(format!("{key:?} must be a string, got {other}"))),
            }
        };
        if result
            .get("higher_is_better")
            .is_some_and(|v| v != &Value::Bool(true))
        {
            return Err(bad(
                "\"higher_is_better\" must be true: DOIN maximizes, so report a loss negated"
                    .into(),
            ));
        }
        let version = match result.get("version") {
            None => 1,
            Some(v) => v
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| {
                    bad(format!(
                        "\"version\" must be an unsigned 32-bit integer, got {v}"
                    ))
                })?,
        };
        let baseline_performance = result
            .get("baseline_performance")
            .and_then(Value::as_f64)
            .filter(|b| b.is_finite())
            .ok_or_else(|| bad("\"baseline_performance\" must be a finite number".into()))?;
        let capabilities: Vec<&str> = match result.get("capabilities") {
            None => Vec::new(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(other) => {
                return Err(bad(format!(
                    "\"capabilities\" must be an array of strings, got {other}"
                )))
            }
        };
        let has = |c: &str| capabilities.contains(&c);
        let search_space = match result.get("search_space") {
            None | Some(Value::Null) => ParamBounds::default(),
            Some(v) => {
                let bounds: ParamBounds = serde_json::from_value(v.clone()).map_err(|e| {
                    bad(format!(
                        "\"search_space\" must be {{name: [low, high]}}: {e}"
                    ))
                })?;
                bounds
                    .validate()
                    .map_err(|e| bad(format!("\"search_space\": {e}")))?;
                bounds
            }
        };
        if has("train") && search_space.0.is_empty() {
            return Err(bad(
                "the \"train\" capability needs a non-empty \"search_space\"".into(),
            ));
        }
        let mut name = text("name")?;
        if name.is_empty() {
            name = NAME.to_string();
        }
        Ok(Description {
            name,
            description: text("description")?,
            performance_metric: text("performance_metric")?,
            version,
            baseline_performance,
            infer: has("infer"),
            optimize: has("optimize"),
            train: has("train"),
            search_space,
        })
    }

    /// What must not change when the process restarts, if anything did.
    fn changed_from(&self, first: &Description) -> Option<&'static str> {
        if self.name != first.name {
            Some("name")
        } else if self.performance_metric != first.performance_metric {
            Some("performance_metric")
        } else if self.version != first.version {
            Some("version")
        } else if self.baseline_performance.to_bits() != first.baseline_performance.to_bits() {
            Some("baseline_performance")
        } else if (self.infer, self.optimize, self.train)
            != (first.infer, first.optimize, first.train)
        {
            Some("capabilities")
        } else if self.search_space != first.search_space {
            Some("search_space")
        } else {
            None
        }
    }
}

// === the bridge ===

/// The process slot behind the mutex.
#[derive(Debug)]
struct Slot {
    process: Option<Process>,
    /// Processes started so far; an optimizer re-creates its state in a new one.
    generation: u64,
    next_optimizer: u64,
}

/// One plugin process shared by a domain's capability objects.
#[derive(Debug)]
struct Bridge {
    config: ExternalConfig,
    /// The `describe` params, sent to every new process.
    hello: Value,
    description: Description,
    slot: Mutex<Slot>,
}

impl Bridge {
    /// Starts the process and reads its description.
    fn start(config: ExternalConfig, hello: Value) -> ExternalResult<Bridge> {
        let mut process = Process::spawn(&config.spawn)?;
        let description = match describe(&mut process, &config, &hello) {
            Ok(d) => d,
            Err(e) => {
                process.kill();
                return Err(e);
            }
        };
        Ok(Bridge {
            config,
            hello,
            description,
            slot: Mutex::new(Slot {
                process: Some(process),
                generation: 1,
                next_optimizer: 1,
            }),
        })
    }

    /// Locks the slot, (re)starting the process when there is none or it has exited.
    fn session(&self) -> ExternalResult<Session<'_>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let alive = slot.process.as_mut().is_some_and(Process::is_running);
        if !alive {
            slot.process = None;
            let mut process = Process::spawn(&self.config.spawn)?;
            slot.generation = slot.generation.wrapping_add(1);
            let checked = describe(&mut process, &self.config, &self.hello).and_then(|d| {
                match d.changed_from(&self.description) {
                    Some(what) => Err(ExternalError::DescribeChanged { what }),
                    None => Ok(()),
                }
            });
            if let Err(e) = checked {
                process.kill();
                return Err(e);
            }
            slot.process = Some(process);
        }
        Ok(Session { bridge: self, slot })
    }

    /// One call in its own session.
    fn call(&self, method: Method, params: Value, timeout: Duration) -> ExternalResult<Value> {
        self.session()?.call(method, params, timeout)
    }

    /// Kills the process (tests use it to simulate a crash between calls).
    fn kill(&self) {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(process) = slot.process.as_mut() {
            process.kill();
        }
    }
}

fn describe(
    process: &mut Process,
    config: &ExternalConfig,
    hello: &Value,
) -> ExternalResult<Description> {
    let result = process.call(Method::Describe, hello.clone(), config.startup_timeout)?;
    Description::parse(&result)
}

/// The locked process: calls in one session are not interleaved with other callers'.
struct Session<'a> {
    bridge: &'a Bridge,
    slot: MutexGuard<'a, Slot>,
}

impl Session<'_> {
    fn generation(&self) -> u64 {
        self.slot.generation
    }

    /// One request and its response; a fatal error kills the process.
    fn call(&mut self, method: Method, params: Value, timeout: Duration) -> ExternalResult<Value> {
        let Some(process) = self.slot.process.as_mut() else {
            return Err(ExternalError::Exited {
                method,
                status: "not running".into(),
                stderr_tail: String::new(),
            });
        };
        let result = process.call(method, params, timeout);
        if let Err(e) = &result {
            if e.is_fatal() {
                process.kill();
                self.slot.process = None;
            }
        }
        result
    }

    fn default_timeout(&self) -> Duration {
        self.bridge.config.timeout
    }
}

// === wire encodings ===

fn b64(bytes: &[u8]) -> Value {
    Value::String(BASE64.encode(bytes))
}

fn field<'a>(method: Method, result: &'a Value, key: &str) -> ExternalResult<&'a Value> {
    result.get(key).ok_or_else(|| ExternalError::BadResponse {
        method,
        reason: format!("the result has no {key:?}"),
    })
}

fn bytes_field(method: Method, result: &Value, key: &str) -> ExternalResult<Vec<u8>> {
    let text = field(method, result, key)?
        .as_str()
        .ok_or_else(|| ExternalError::BadResponse {
            method,
            reason: format!("{key:?} must be a base64 string"),
        })?;
    BASE64.decode(text).map_err(|e| ExternalError::BadResponse {
        method,
        reason: format!("{key:?} is not valid base64: {e}"),
    })
}

fn number_field(method: Method, result: &Value, key: &str) -> ExternalResult<f64> {
    field(method, result, key)?
        .as_f64()
        .ok_or_else(|| ExternalError::BadResponse {
            method,
            reason: format!("{key:?} must be a number"),
        })
}

/// A `{name: number}` map of a proposal; absent means empty.
fn numbers_field(
    method: Method,
    result: &Value,
    key: &str,
) -> ExternalResult<BTreeMap<String, f64>> {
    match result.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| ExternalError::BadResponse {
            method,
            reason: format!("{key:?} must be an object of numbers: {e}"),
        }),
    }
}

fn migrant_json(migrant: &Migrant) -> Value {
    json!({
        "params": b64(&migrant.params),
        "performance": migrant.performance,
        "hyperparameters": migrant.hyperparameters,
    })
}

fn parse_proposal(
    method: Method,
    result: &Value,
    limits: &ResourceLimits,
) -> PluginResult<Proposal> {
    let params = bytes_field(method, result, "params")?;
    limits.check_params_size(u64::try_from(params.len()).unwrap_or(u64::MAX))?;
    let claimed_performance = checked_score(number_field(method, result, "claimed_performance")?)?;
    Ok(Proposal {
        params,
        claimed_performance,
        hyperparameters: numbers_field(method, result, "hyperparameters")?,
        metrics: numbers_field(method, result, "metrics")?,
    })
}

// === the domain ===

/// Registers the bridge under [`NAME`].
pub fn register(registry: &mut PluginRegistry) -> PluginResult<()> {
    registry.register(NAME, factory)
}

/// Starts the program of a domain and asks for its description (a
/// [`doin_core::plugin::PluginFactory`]).
pub fn factory(setup: &PluginSetup) -> PluginResult<Arc<dyn DomainPlugin>> {
    Ok(Arc::new(ExternalDomain::new(setup)?))
}

/// A domain implemented by an external program.
#[derive(Debug)]
pub struct ExternalDomain {
    bridge: Arc<Bridge>,
    info: DomainInfo,
}

impl ExternalDomain {
    /// Starts the program and reads its description; fails if it does not speak protocol
    /// [`PROTOCOL_VERSION`].
    pub fn new(setup: &PluginSetup) -> ExternalResult<Self> {
        let config = ExternalConfig::from_setup(setup)?;
        let hello = json!({
            "protocol": PROTOCOL_VERSION,
            "domain": setup.domain.as_str(),
            "config": config_source(setup),
            "inference_config": setup.inference_config,
            "target_performance": setup.target_performance,
        });
        let bridge = Bridge::start(config, hello)?;
        let d = &bridge.description;
        let info = DomainInfo {
            id: setup.domain.clone(),
            description: if d.description.is_empty() {
                format!("external domain {:?}", d.name)
            } else {
                d.description.clone()
            },
            performance_metric: d.performance_metric.clone(),
            version: d.version,
            target_performance: setup.target_performance,
            baseline_performance: d.baseline_performance,
        };
        Ok(ExternalDomain {
            bridge: Arc::new(bridge),
            info,
        })
    }

    /// The program's `describe` answer.
    pub fn description(&self) -> &Description {
        &self.bridge.description
    }

    /// The bridge configuration.
    pub fn config(&self) -> &ExternalConfig {
        &self.bridge.config
    }

    /// Processes started so far (1 until the first restart).
    pub fn generation(&self) -> u64 {
        self.bridge
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Kills the process now; the next call starts a new one. For tests of crash recovery.
    pub fn kill_process(&self) {
        self.bridge.kill();
    }

    /// `synthesize`: the dataset for `seed`.
    pub fn synthesize(&self, seed: &Hash32) -> ExternalResult<Dataset> {
        let method = Method::Synthesize;
        let result = self.bridge.call(
            method,
            json!({"seed": seed.to_hex()}),
            self.bridge.config.timeout,
        )?;
        Ok(Dataset::new(bytes_field(method, &result, "dataset")?))
    }

    /// `evaluate`: the score of `params` on `data` (the program's number, not yet checked to
    /// be finite).
    pub fn score(&self, params: &[u8], data: &Dataset) -> ExternalResult<f64> {
        let method = Method::Evaluate;
        let request = json!({"params": b64(params), "dataset": b64(&data.bytes)});
        let result = self
            .bridge
            .call(method, request, self.bridge.config.timeout)?;
        number_field(method, &result, "score")
    }

    /// `infer`: the program's answer to `input`.
    pub fn answer(&self, params: &[u8], input: &Value) -> ExternalResult<Value> {
        let method = Method::Infer;
        let request = json!({"params": b64(params), "input": input});
        let mut result = self
            .bridge
            .call(method, request, self.bridge.config.timeout)?;
        result
            .get_mut("output")
            .map(Value::take)
            .ok_or_else(|| ExternalError::BadResponse {
                method,
                reason: "the result has no \"output\"".into(),
            })
    }
}

impl SyntheticData for ExternalDomain {
    fn generate(&self, seed: &Hash32) -> PluginResult<Dataset> {
        Ok(self.synthesize(seed)?)
    }
}

impl Evaluate for ExternalDomain {
    fn evaluate(&self, params: &[u8], data: &Dataset) -> PluginResult<f64> {
        checked_score(self.score(params, data)?)
    }
}

impl Infer for ExternalDomain {
    fn infer(&self, params: &[u8], input: &Value) -> PluginResult<Value> {
        if !self.bridge.description.infer {
            return Err(PluginError::Unsupported {
                capability: "inference",
            });
        }
        Ok(self.answer(params, input)?)
    }
}

impl Train for ExternalDomain {
    fn search_space(&self) -> ParamBounds {
        self.bridge.description.search_space.clone()
    }

    fn train(&self, request: &TrainRequest<'_>) -> PluginResult<Proposal> {
        let method = Method::Train;
        self.bridge.description.search_space.check(
            request
                .hyperparameters
                .iter()
                .map(|(k, v)| (k.as_str(), *v)),
        )?;
        let params = json!({
            "hyperparameters": request.hyperparameters,
            "seed": request.seed,
            "limits": request.limits,
        });
        let result = self.bridge.call(
            method,
            params,
            self.bridge.config.train_timeout(request.limits),
        )?;
        parse_proposal(method, &result, request.limits)
    }
}

impl DomainPlugin for ExternalDomain {
    fn info(&self) -> DomainInfo {
        self.info.clone()
    }

    fn synthetic(&self) -> &dyn SyntheticData {
        self
    }

    fn evaluator(&self) -> &dyn Evaluate {
        self
    }

    fn inference(&self) -> Option<&dyn Infer> {
        self.bridge.description.infer.then_some(self as &dyn Infer)
    }

    fn trainer(&self) -> Option<&dyn Train> {
        self.bridge.description.train.then_some(self as &dyn Train)
    }

    fn new_optimizer(&self, setup: &OptimizerSetup) -> PluginResult<Box<dyn Optimize>> {
        if !self.bridge.description.optimize {
            return Err(PluginError::Unsupported {
                capability: "optimizer",
            });
        }
        Ok(Box::new(ExternalOptimizer::new(
            Arc::clone(&self.bridge),
            setup,
        )?))
    }
}

// === the optimizer ===

/// One optimizer (island) living in the plugin process under an id.
///
/// The process may restart between calls and lose its state. The optimizer notices (the
/// bridge's generation changed), creates itself again with `optimizer_new` and injects the
/// best proposal it has seen, so a restart costs progress since that proposal at most.
#[derive(Debug)]
pub struct ExternalOptimizer {
    bridge: Arc<Bridge>,
    id: u64,
    /// The `optimizer_new` params, replayed after a restart.
    create: Value,
    generation: u64,
    best: Option<Migrant>,
    limits: ResourceLimits,
    timeout: Duration,
}

impl ExternalOptimizer {
    fn new(bridge: Arc<Bridge>, setup: &OptimizerSetup) -> ExternalResult<Self> {
        let mut session = bridge.session()?;
        let id = session.slot.next_optimizer;
        session.slot.next_optimizer = id.wrapping_add(1);
        let create = json!({
            "optimizer": id,
            "config": setup.config,
            "seed": setup.seed,
            "bounds": setup.bounds,
            "limits": setup.limits,
        });
        let timeout = session.default_timeout();
        session.call(Method::OptimizerNew, create.clone(), timeout)?;
        let generation = session.generation();
        drop(session);
        Ok(ExternalOptimizer {
            timeout: bridge.config.train_timeout(&setup.limits),
            bridge,
            id,
            create,
            generation,
            best: None,
            limits: setup.limits.clone(),
        })
    }

    /// A session in which this optimizer exists in the process (re-created after a restart).
    fn session(&mut self) -> ExternalResult<Session<'_>> {
        let mut session = self.bridge.session()?;
        if session.generation() != self.generation {
            let timeout = session.default_timeout();
            session.call(Method::OptimizerNew, self.create.clone(), timeout)?;
            if let Some(best) = &self.best {
                let inject = json!({"optimizer": self.id, "migrant": migrant_json(best)});
                session.call(Method::Inject, inject, timeout)?;
            }
            self.generation = session.generation();
        }
        Ok(session)
    }
}

impl Optimize for ExternalOptimizer {
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal> {
        let method = Method::Propose;
        let request = json!({
            "optimizer": self.id,
            "champion": ctx.champion.map(migrant_json),
            "seed": ctx.seed,
            "round": ctx.round,
        });
        let timeout = self.timeout;
        let result = self.session()?.call(method, request, timeout)?;
        let proposal = parse_proposal(method, &result, &self.limits)?;
        if self
            .best
            .as_ref()
            .is_none_or(|b| proposal.claimed_performance > b.performance)
        {
            self.best = Some(proposal.to_migrant());
        }
        Ok(proposal)
    }

    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
        let request = json!({"optimizer": self.id, "migrant": migrant_json(migrant)});
        let timeout = self.bridge.config.timeout;
        self.session()?.call(Method::Inject, request, timeout)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
