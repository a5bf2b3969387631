//! What can go wrong talking to a node, in terms a caller can act on.

use doin_core::amount::Amount;
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use serde::Deserialize;
use thiserror::Error;

/// The payment details of a `402 Payment Required` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentInfo {
    /// Price of one query.
    pub price: Amount,
    /// The account to open a channel to.
    pub provider: AccountId,
    /// The channel the refused voucher named, when the node knows it.
    #[serde(default)]
    pub channel: Option<Hash32>,
    /// The highest amount the provider holds for that channel (resynchronizes a client).
    #[serde(default)]
    pub paid: Option<Amount>,
}

#[derive(Debug, Error)]
pub enum ClientError {
    /// The node could not be reached or the connection broke.
    #[error("cannot reach the node at {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The node answered with an error (its JSON `error` code and message).
    #[error("the node refused ({status} {code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The node wants (more) payment for a query.
    #[error("payment required ({code}): {message}")]
    PaymentRequired {
        code: String,
        message: String,
        /// Boxed: keeps every `Result` of this crate small.
        payment: Option<Box<PaymentInfo>>,
    },
    /// The node's answer is not what this client understands.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    /// The provider asks more than the caller allows.
    #[error("price {price} is above the maximum {max_price} you allowed")]
    PriceTooHigh { price: Amount, max_price: Amount },
    /// The channel cannot pay for another query.
    #[error("channel {channel}: {needed} needed in total but the deposit is {deposit}; open a new channel")]
    ChannelExhausted {
        channel: Hash32,
        needed: Amount,
        deposit: Amount,
    },
    #[error("channel {0} is not in the channel book (open it with this wallet first)")]
    UnknownChannel(Hash32),
    #[error("transaction {id} was not confirmed within {seconds} s (still {state})")]
    NotConfirmed {
        id: Hash32,
        seconds: u64,
        state: String,
    },
    #[error("channel book {path}: {reason}")]
    Book { path: String, reason: String },
}

pub type ClientResult<T> = Result<T, ClientError>;
