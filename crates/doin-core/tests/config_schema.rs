//! The JSON Schema of the node configuration covers every key of the original DOIN node
//! (doin-node spec §2.1 and §2.2), plus the DOIN-rs additions, with the original defaults.

use doin_core::config::{json_schema, NodeConfig};
use serde_json::{json, Value};

const TOP_LEVEL_KEYS: &[&str] = &[
    "node_label",
    "host",
    "port",
    "data_dir",
    "identity_file",
    "bootstrap_peers",
    "domains",
    "target_block_time",
    "initial_threshold",
    "acceptance_tolerance",
    "quorum_min_evaluators",
    "quorum_fraction",
    "quorum_tolerance",
    "commit_reveal_max_age",
    "finality_confirmation_depth",
    "external_anchor_interval",
    "require_deterministic_seed",
    "eval_poll_interval",
    "eval_max_concurrent",
    "optimizer_loop_interval",
    "shared_claim_timeout",
    "shared_claim_result_patience",
    "shared_min_peers",
    "shared_initialize_before_peers",
    "shared_peer_wait_timeout",
    "shared_claim_settle_seconds",
    "shared_claim_confirmation_rounds",
    "storage_backend",
    "db_path",
    "snapshot_interval",
    "prune_keep_blocks",
    "network_protocol",
    "gossip_heartbeat_interval",
    "discovery_enabled",
    "discovery_interval",
    "dashboard_enabled",
    "experiment_stats_file",
    "olap_db_path",
    "reset_chain",
    "fee_market_enabled",
    "fee_config",
    // DOIN-rs additions.
    "chain",
    "log_level",
];

const DOMAIN_KEYS: &[&str] = &[
    "domain_id",
    "optimize",
    "evaluate",
    "optimization_plugin",
    "optimization_config",
    "inference_plugin",
    "inference_config",
    "synthetic_data_plugin",
    "synthetic_data_config",
    "has_synthetic_data",
    "synthetic_data_validation",
    "higher_is_better",
    "metric_type",
    "param_bounds",
    "resource_limits",
    "incentive_config",
    "target_performance",
];

const FEE_KEYS: &[&str] = &[
    "min_base_fee",
    "max_base_fee",
    "target_block_fullness",
    "base_fee_change_denom",
    "target_block_size",
    "max_block_size",
    "optimae_stake_multiplier",
    "optimae_burn_fraction",
];

fn properties<'a>(schema: &'a Value, pointer: &str) -> &'a serde_json::Map<String, Value> {
    schema
        .pointer(pointer)
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("no properties at {pointer}"))
}

fn assert_has_keys(schema: &Value, pointer: &str, keys: &[&str]) {
    let props = properties(schema, pointer);
    let missing: Vec<&&str> = keys.iter().filter(|k| !props.contains_key(**k)).collect();
    assert!(missing.is_empty(), "{pointer} lacks {missing:?}");
}

#[test]
fn schema_contains_every_original_top_level_key() {
    assert_has_keys(&json_schema(), "/properties", TOP_LEVEL_KEYS);
}

#[test]
fn schema_contains_every_original_domain_key() {
    let schema = json_schema();
    assert_has_keys(&schema, "/definitions/DomainConfig/properties", DOMAIN_KEYS);
    assert_eq!(
        schema.pointer("/definitions/DomainConfig/required"),
        Some(&json!(["domain_id"]))
    );
}

#[test]
fn schema_contains_the_fee_config_keys() {
    assert_has_keys(
        &json_schema(),
        "/definitions/FeeConfig/properties",
        FEE_KEYS,
    );
}

#[test]
fn schema_states_the_original_defaults() {
    let schema = json_schema();
    let props = properties(&schema, "/properties");
    let default = |key: &str| props[key].get("default").cloned();
    assert_eq!(default("port"), Some(json!(8470)));
    assert_eq!(default("host"), Some(json!("0.0.0.0")));
    assert_eq!(default("data_dir"), Some(json!("./doin-data")));
    assert_eq!(default("target_block_time"), Some(json!(600.0)));
    assert_eq!(default("quorum_fraction"), Some(json!(0.67)));
    assert_eq!(default("storage_backend"), Some(json!("sqlite")));
    assert_eq!(default("network_protocol"), Some(json!("gossipsub")));
    assert_eq!(props["port"]["minimum"], json!(0.0));
    assert_eq!(props["port"]["maximum"], json!(65535.0));
}

#[test]
fn schema_allows_unknown_keys_because_they_only_warn() {
    let schema = json_schema();
    assert_eq!(schema.get("additionalProperties"), Some(&json!(true)));
}

#[test]
fn every_schema_key_is_accepted_by_the_loader() {
    // A config naming every top-level key with its default value loads without warnings.
    let defaults = serde_json::to_value(NodeConfig::default()).unwrap();
    let text = defaults.to_string();
    let (config, warnings) = NodeConfig::from_json_str(&text).unwrap();
    assert_eq!(config, NodeConfig::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    let schema = json_schema();
    let props = properties(&schema, "/properties");
    for key in defaults.as_object().unwrap().keys() {
        assert!(
            props.contains_key(key),
            "{key} is serialized but not in the schema"
        );
    }
}
