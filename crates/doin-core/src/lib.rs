//! # doin-core
//!
//! The DOIN protocol as pure, deterministic code: canonical encoding, hashing and identity,
//! transactions and blocks, the chain state machine, the optimae lifecycle (commit, reveal,
//! quorum, verdict), economics, difficulty, the proposer schedule, fork choice and finality, payment channels, the
//! plugin traits and the node configuration schema.
//!
//! Nothing here does I/O (beyond reading and writing key files) or needs an async runtime:
//! every rule is a function of its inputs, so every node computes the same result and every
//! failure reproduces from its inputs.

pub mod amount;
pub mod block;
pub mod chain;
pub mod channel;
pub mod config;
pub mod difficulty;
pub mod economics;
pub mod encode;
pub mod fee;
pub mod hash;
pub mod identity;
pub mod limits;
pub mod optimae;
pub mod params;
pub mod plugin;
pub mod reputation;
pub mod schedule;
pub mod state;
pub mod trials;
pub mod tx;
pub mod wire;

pub use amount::Amount;
pub use hash::{Hash32, HashKind};
pub use identity::{AccountId, Keypair, Signature};
pub use params::{ChainParams, DomainId, DomainParams};
