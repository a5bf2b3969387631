//! # doin-node
//!
//! One DOIN node: block production, the optimizer and evaluator roles, SQLite chain
//! storage, content-addressed parameter blobs and the HTTP API, composed around a shared
//! [`context::NodeContext`]. The optimizer and evaluator engines come from the
//! `doin-optimizer` and `doin-evaluator` crates and are driven through trait objects.

pub mod blobs;
pub mod cli;
pub mod context;
pub mod http;
pub mod import;
pub mod inference;
pub mod mempool;
pub mod metrics;
pub mod network;
pub mod node;
pub mod producer;
pub mod roles;
pub mod settings;
pub mod storage;
#[cfg(test)]
mod test_support;
pub mod wallet_cli;
