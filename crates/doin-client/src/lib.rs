#![doc = include_str!("../README.md")]
//!
//! # Bird's eye view
//!
//! | type | what |
//! |---|---|
//! | [`NodeClient`] | the node's HTTP API, unauthenticated: status, accounts, transactions, channels, offers, queries, domains, optimae, parameter blobs |
//! | [`Wallet`] | a key plus a node: signs and submits transfers and channel transactions, pays for queries |
//! | [`ChannelBook`] | the client's side of its payment channels, persisted in a JSON file: the highest amount ever signed per channel |
//!
//! Vouchers are cumulative: each one says "the provider may take `amount` in total". The
//! book records a new amount *before* the voucher leaves the process, so a crash can at worst
//! skip one query's price, never sign the same amount twice for different queries.

mod book;
mod error;
mod node;
mod wallet;

pub use book::{ChannelBook, ChannelEntry};
pub use error::{ClientError, ClientResult, PaymentInfo};
pub use node::{
    AccountInfo, Answer, ChainRules, ChannelInfo, DomainInfo, DomainLimits, DomainRules,
    NodeClient, NodeStatus, Offer, OfferChampion, Offers, OptimaeInfo, OptimaeReveal, ParamsUpload,
    TxLookup,
};
pub use wallet::{SentTx, Wallet};
