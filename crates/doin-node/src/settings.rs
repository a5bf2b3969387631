//! From a config file and command-line flags to everything the node needs to start:
//! validated before anything touches the data directory.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use doin_core::config::{ConfigWarning, LogLevel, NodeConfig, PeerAddr};
use doin_core::identity::AccountId;
use doin_core::params::{ChainParams, DomainId, DomainParams};
use doin_core::Amount;
use thiserror::Error;

/// Why the node cannot start with the given configuration.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Config {
        path: PathBuf,
        source: doin_core::config::ConfigError,
    },
    #[error("{flag}: {reason}")]
    Flag { flag: &'static str, reason: String },
    #[error("cannot read genesis file {path}: {reason}")]
    Genesis { path: PathBuf, reason: String },
    #[error("chain parameters: {0}")]
    Params(#[from] doin_core::params::ParamsError),
}

/// Command-line values that override the config file (the original's flags).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub peers: Option<String>,
    pub log_level: Option<String>,
    pub identity: Option<PathBuf>,
    pub stats_file: Option<PathBuf>,
    pub olap_db: Option<PathBuf>,
    pub reset_chain: bool,
}

/// What a development chain takes from a configured domain's plugin.
#[derive(Debug, Clone)]
pub struct DevDomain {
    pub id: DomainId,
    pub baseline_performance: f64,
    pub hints: Option<doin_core::plugin::VerificationHints>,
}

impl DevDomain {
    pub fn of(id: &DomainId, plugin: &dyn doin_core::plugin::DomainPlugin) -> DevDomain {
        DevDomain {
            id: id.clone(),
            baseline_performance: plugin.info().baseline_performance,
            hints: plugin.verification_hints(),
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: NodeConfig,
    pub config_path: PathBuf,
    pub http_addr: SocketAddr,
    pub log_level: LogLevel,
}

impl Settings {
    /// Reads and validates the config, applies the flags, and checks the result again.
    pub fn load(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<(Settings, Vec<ConfigWarning>), SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config_err = |source| SettingsError::Config {
            path: path.to_path_buf(),
            source,
        };
        let (mut config, mut warnings) = NodeConfig::from_json_str(&text).map_err(config_err)?;
        if let Some(port) = overrides.port {
            config.port = port;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir.clone_from(dir);
        }
        if let Some(peers) = &overrides.peers {
            config.bootstrap_peers = parse_peers(peers)?;
        }
        if let Some(level) = &overrides.log_level {
            config.log_level = parse_log_level(level)?;
        }
        if let Some(identity) = &overrides.identity {
            config.identity_file = Some(identity.clone());
        }
        if let Some(stats) = &overrides.stats_file {
            config.experiment_stats_file = Some(stats.clone());
        }
        if let Some(olap) = &overrides.olap_db {
            config.olap_db_path = Some(olap.clone());
        }
        config.reset_chain |= overrides.reset_chain;
        // Flags can make a valid file invalid (and the other way round): check the result.
        warnings = merge_warnings(warnings, config.validate().map_err(config_err)?);
        let http_addr = resolve_addr(&config.host, config.port)?;
        let log_level = config.log_level;
        Ok((
            Settings {
                config,
                config_path: path.to_path_buf(),
                http_addr,
                log_level,
            },
            warnings,
        ))
    }

    /// Chain parameters of the network this node joins.
    ///
    /// With `chain.genesis_file`, the file defines the network. Otherwise the node runs a
    /// development chain: `ChainParams::dev` with the config's overrides and one domain per
    /// configured domain. In solo mode the node's own account is funded at genesis and
    /// registered as the evaluator of the domains it evaluates, so that it can run alone.
    pub fn chain_params(
        &self,
        node: &AccountId,
        domains: &[DevDomain],
    ) -> Result<ChainParams, SettingsError> {
        let config = &self.config;
        if let Some(path) = &config.chain.genesis_file {
            let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Genesis {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            let params: ChainParams =
                serde_json::from_str(&text).map_err(|e| SettingsError::Genesis {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            params.validate()?;
            return Ok(params);
        }
        let mut params = config.chain.dev_params();
        let template = params.domains[0].clone();
        params.domains = config
            .domains
            .iter()
            .map(|d| {
                let plugin = domains.iter().find(|p| p.id == d.domain_id);
                let hints = plugin.and_then(|p| p.hints);
                DomainParams {
                    id: d.domain_id.clone(),
                    quorum_size: if params.solo_mode {
                        1
                    } else {
                        config.quorum_min_evaluators
                    },
                    tolerance_rel: config.quorum_tolerance,
                    tolerance_abs: hints.map_or(template.tolerance_abs, |h| h.tolerance_abs),
                    // The original's default ε (1e-5) is far below evaluator noise: a copy of
                    // the champion would earn. The chain's ε is at least the domain's own
                    // (or the dev template's).
                    min_improvement: config
                        .acceptance_tolerance
                        .max(hints.map_or(template.min_improvement, |h| h.min_improvement)),
                    baseline_performance: plugin
                        .map_or(template.baseline_performance, |p| p.baseline_performance),
                    limits: d.resource_limits.clone(),
                    ..template.clone()
                }
            })
            .collect();
        params.target_block_time_ms = config
            .chain
            .target_block_time_ms
            .unwrap_or((config.target_block_time * 1000.0).round().max(1.0) as u64);
        params.max_block_interval_ms = config.chain.max_block_interval_ms.unwrap_or(
            params
                .max_block_interval_ms
                .max(params.target_block_time_ms * 5),
        );
        if params.solo_mode {
            params.genesis_allocations.push((*node, SOLO_GENESIS_FUNDS));
            for d in config.domains.iter().filter(|d| d.evaluate) {
                params.genesis_evaluators.push((d.domain_id.clone(), *node));
            }
        }
        params.validate()?;
        Ok(params)
    }
}

/// What a solo node starts with, to pay stakes and fees before it earns rewards.
pub const SOLO_GENESIS_FUNDS: Amount = Amount::from_doin(1_000);

fn merge_warnings(mut a: Vec<ConfigWarning>, b: Vec<ConfigWarning>) -> Vec<ConfigWarning> {
    for w in b {
        if !a.contains(&w) {
            a.push(w);
        }
    }
    a
}

fn parse_peers(text: &str) -> Result<Vec<PeerAddr>, SettingsError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            PeerAddr::parse(s).map_err(|e| SettingsError::Flag {
                flag: "--peers",
                reason: e.to_string(),
            })
        })
        .collect()
}

fn parse_log_level(text: &str) -> Result<LogLevel, SettingsError> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        SettingsError::Flag {
            flag: "--log-level",
            reason: format!("{text:?} is not one of trace, debug, info, warn, error"),
        }
    })
}

fn resolve_addr(host: &str, port: u16) -> Result<SocketAddr, SettingsError> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| SettingsError::Flag {
            flag: "host",
            reason: format!("cannot resolve {host:?}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("config.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn flags_override_the_file_and_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), r#"{"port": 9000, "host": "127.0.0.1"}"#);
        let overrides = Overrides {
            port: Some(9100),
            peers: Some("127.0.0.1:9001, 127.0.0.1:9002".into()),
            ..Default::default()
        };
        let (s, _) = Settings::load(&path, &overrides).unwrap();
        assert_eq!(s.http_addr.port(), 9100);
        assert_eq!(s.config.bootstrap_peers.len(), 2);
        let bad = Overrides {
            peers: Some("nope".into()),
            ..Default::default()
        };
        assert!(Settings::load(&path, &bad)
            .unwrap_err()
            .to_string()
            .contains("--peers"));
        let bad = Overrides {
            log_level: Some("loud".into()),
            ..Default::default()
        };
        assert!(Settings::load(&path, &bad)
            .unwrap_err()
            .to_string()
            .contains("--log-level"));
    }

    #[test]
    fn bad_config_names_the_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), r#"{"quorum_fraction": 7}"#);
        let err = Settings::load(&path, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.json") && err.contains("quorum_fraction"),
            "{err}"
        );
        let err =
            Settings::load(&dir.path().join("missing.json"), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("cannot read config file"));
    }

    #[test]
    fn solo_dev_chain_funds_and_registers_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            r#"{"host": "127.0.0.1", "chain": {"solo_mode": true},
                "domains": [{"domain_id": "quadratic", "optimize": true, "evaluate": true}]}"#,
        );
        let (s, _) = Settings::load(&path, &Overrides::default()).unwrap();
        let me = doin_core::Keypair::from_seed([1; 32]).account();
        let q = DomainId::new("quadratic").unwrap();
        let hints = doin_core::plugin::VerificationHints {
            tolerance_abs: 0.1,
            min_improvement: 0.05,
        };
        let p = s
            .chain_params(
                &me,
                &[DevDomain {
                    id: q.clone(),
                    baseline_performance: -123.0,
                    hints: Some(hints),
                }],
            )
            .unwrap();
        assert_eq!(p.domains[0].tolerance_abs, 0.1);
        assert_eq!(p.domains[0].min_improvement, 0.05);
        assert!(p.solo_mode);
        assert_eq!(p.domains[0].quorum_size, 1);
        assert_eq!(p.domains[0].baseline_performance, -123.0);
        assert!(p.genesis_evaluators.contains(&(q, me)));
        assert_eq!(p.genesis_allocations, vec![(me, SOLO_GENESIS_FUNDS)]);
    }
}
