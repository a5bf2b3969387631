//! What the crate's binaries share: reading a node config and picking one of its domains.

use std::path::Path;

use anyhow::{Context as _, Result};
use doin_core::config::{DomainConfig, NodeConfig};
use doin_core::params::DomainId;

/// The node config at `path` (its warnings printed) and its domain `domain` (the first one
/// when not given).
pub fn load_config_domain(path: &Path, domain: Option<&str>) -> Result<(NodeConfig, DomainConfig)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (config, warnings) =
        NodeConfig::from_json_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    for w in warnings {
        eprintln!("config warning: {w}");
    }
    let domain = match domain {
        None => config
            .domains
            .first()
            .cloned()
            .context("the config has no domains")?,
        Some(id) => {
            let id = DomainId::new(id).context("invalid --domain")?;
            config
                .domain(&id)
                .cloned()
                .with_context(|| format!("domain {id} is not in the config"))?
        }
    };
    Ok((config, domain))
}
