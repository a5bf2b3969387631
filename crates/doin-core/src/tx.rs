//! Transactions: every one signed by its sender, nonced per account, with a fee bid.
//!
//! The id of a transaction is the domain-separated hash of its versioned canonical body
//! (signature excluded); the signature is over the id. The body names the chain, so a
//! transaction cannot be replayed on another network.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::channel::Voucher;
use crate::encode::{decode_versioned, encode_versioned, put, Decode, DecodeError, Encode, Reader};
use crate::fee::FeeBid;
use crate::hash::{Hash32, HashKind};
use crate::identity::{AccountId, Keypair, Signature, SignatureError};
use crate::params::{ChainParams, DomainId};

/// Most experiment metrics a reveal may carry (they feed the analytics store).
pub const MAX_METRICS: usize = 32;
/// Longest metric name, in bytes.
pub const MAX_METRIC_NAME: usize = 64;
/// Longest chain id, in bytes.
pub const MAX_CHAIN_ID: usize = 64;

/// A transaction id.
pub type TxId = Hash32;

/// One named experiment metric of a reveal (e.g. `epochs`, `train_seconds`, `val_mae`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Metric {
    pub name: String,
    pub value: f64,
}

/// What a transaction does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TxKind {
    /// Moves coins between accounts.
    Transfer { to: AccountId, amount: Amount },
    /// Bonds `evaluator_bond` and makes the sender eligible for the domain's quorums.
    RegisterEvaluator { domain: DomainId },
    /// Step 1 of the optimae lifecycle: a binding commitment with a stake.
    Commit {
        domain: DomainId,
        commitment: Hash32,
        stake: Amount,
    },
    /// Step 2: opens the commitment. The parameters travel off chain, by `params_hash`.
    Reveal {
        commitment: Hash32,
        params_hash: Hash32,
        params_size: u64,
        claim: f64,
        salt: [u8; 32],
        metrics: Vec<Metric>,
    },
    /// Step 4: a selected evaluator's measurement on its own synthetic data.
    Vote {
        commitment: Hash32,
        measured: f64,
        data_hash: Hash32,
    },
    /// Locks a deposit for paying `provider` off chain with vouchers.
    ChannelOpen {
        provider: AccountId,
        deposit: Amount,
        lifetime: u64,
    },
    /// The client asks to close: starts the settle window for the provider.
    ChannelClose { channel: Hash32 },
    /// The provider claims the highest voucher it holds.
    ChannelSettle { voucher: Voucher },
    /// After the settle window (or expiry): pays the provider and refunds the client.
    ChannelCollect { channel: Hash32 },
}

impl TxKind {
    pub fn name(&self) -> &'static str {
        match self {
            TxKind::Transfer { .. } => "transfer",
            TxKind::RegisterEvaluator { .. } => "register_evaluator",
            TxKind::Commit { .. } => "commit",
            TxKind::Reveal { .. } => "reveal",
            TxKind::Vote { .. } => "vote",
            TxKind::ChannelOpen { .. } => "channel_open",
            TxKind::ChannelClose { .. } => "channel_close",
            TxKind::ChannelSettle { .. } => "channel_settle",
            TxKind::ChannelCollect { .. } => "channel_collect",
        }
    }
}

/// The signed part of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TxBody {
    pub chain_id: String,
    pub sender: AccountId,
    /// Must equal the sender's next nonce (0 for a new account).
    pub nonce: u64,
    pub fee: FeeBid,
    pub kind: TxKind,
}

/// A transaction with its sender's signature over its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignedTx {
    pub body: TxBody,
    pub signature: Signature,
}

/// Why a transaction is invalid, before looking at any chain state.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TxError {
    #[error("chain_id: transaction is for chain {got:?}, this is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("malformed transaction: {0}")]
    Decode(#[from] DecodeError),
}

fn field(field: &'static str, reason: impl Into<String>) -> TxError {
    TxError::Field {
        field,
        reason: reason.into(),
    }
}

impl TxBody {
    /// The id: hash of the versioned canonical encoding.
    pub fn id(&self) -> TxId {
        HashKind::Tx.hash(&encode_versioned(self))
    }

    pub fn sign(self, key: &Keypair) -> SignedTx {
        debug_assert_eq!(
            self.sender,
            key.account(),
            "signing another account's transaction"
        );
        let signature = key.sign(self.id().as_bytes());
        SignedTx {
            body: self,
            signature,
        }
    }
}

impl SignedTx {
    pub fn id(&self) -> TxId {
        self.body.id()
    }

    /// Encoded size on the wire.
    pub fn encoded_len(&self) -> usize {
        encode_versioned(self).len()
    }

    pub fn to_wire(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode_versioned(bytes)
    }

    /// Every check that needs no chain state: chain, size, field sanity, signature.
    /// Returns the id so callers need not hash twice.
    pub fn verify_stateless(&self, params: &ChainParams) -> Result<TxId, TxError> {
        if self.body.chain_id != params.chain_id {
            return Err(TxError::WrongChain {
                expected: params.chain_id.clone(),
                got: self.body.chain_id.clone(),
            });
        }
        // One encoding of the body serves both the size check and the id: this runs for
        // every transaction of every block.
        let body = encode_versioned(&self.body);
        let size = body.len() + self.signature.0.len();
        if size > params.max_tx_bytes as usize {
            return Err(TxError::TooLarge {
                size,
                max: params.max_tx_bytes as usize,
            });
        }
        self.body.kind.check_fields()?;
        let id = HashKind::Tx.hash(&body);
        self.body.sender.verify(id.as_bytes(), &self.signature)?;
        Ok(id)
    }
}

impl TxKind {
    /// Field sanity that holds whatever the chain state: positive amounts, finite floats,
    /// bounded metrics.
    fn check_fields(&self) -> Result<(), TxError> {
        match self {
            TxKind::Transfer { amount, .. } if amount.0 == 0 => {
                Err(field("amount", "must be greater than zero"))
            }
            TxKind::Commit { stake, .. } if stake.0 == 0 => {
                Err(field("stake", "must be greater than zero"))
            }
            TxKind::Reveal { claim, metrics, .. } => {
                if !claim.is_finite() {
                    return Err(field("claim", "must be a finite number"));
                }
                if metrics.len() > MAX_METRICS {
                    return Err(field("metrics", format!("at most {MAX_METRICS} metrics")));
                }
                for m in metrics {
                    if m.name.is_empty() || m.name.len() > MAX_METRIC_NAME {
                        return Err(field(
                            "metrics.name",
                            format!("must be 1-{MAX_METRIC_NAME} bytes"),
                        ));
                    }
                    if !m.value.is_finite() {
                        return Err(field("metrics.value", format!("{} is not finite", m.name)));
                    }
                }
                Ok(())
            }
            TxKind::Vote { measured, .. } if !measured.is_finite() => {
                Err(field("measured", "must be a finite number"))
            }
            TxKind::ChannelOpen {
                deposit, lifetime, ..
            } => {
                if deposit.0 == 0 {
                    return Err(field("deposit", "must be greater than zero"));
                }
                if *lifetime == 0 {
                    return Err(field("lifetime", "must be greater than zero"));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

// ---- canonical encoding -------------------------------------------------------------------

mod tag {
    pub const TRANSFER: u8 = 0;
    pub const REGISTER_EVALUATOR: u8 = 1;
    pub const COMMIT: u8 = 2;
    pub const REVEAL: u8 = 3;
    pub const VOTE: u8 = 4;
    pub const CHANNEL_OPEN: u8 = 5;
    pub const CHANNEL_CLOSE: u8 = 6;
    pub const CHANNEL_SETTLE: u8 = 7;
    pub const CHANNEL_COLLECT: u8 = 8;
}

impl Encode for Metric {
    fn encode(&self, out: &mut Vec<u8>) {
        put::string(out, &self.name);
        put::f64(out, self.value);
    }
}

impl Decode for Metric {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Metric {
            name: r.string("metrics.name", MAX_METRIC_NAME)?,
            value: r.f64("metrics.value")?,
        })
    }
}

impl Encode for TxKind {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TxKind::Transfer { to, amount } => {
                put::u8(out, tag::TRANSFER);
                to.encode(out);
                amount.encode(out);
            }
            TxKind::RegisterEvaluator { domain } => {
                put::u8(out, tag::REGISTER_EVALUATOR);
                domain.encode(out);
            }
            TxKind::Commit {
                domain,
                commitment,
                stake,
            } => {
                put::u8(out, tag::COMMIT);
                domain.encode(out);
                commitment.encode(out);
                stake.encode(out);
            }
            TxKind::Reveal {
                commitment,
                params_hash,
                params_size,
                claim,
                salt,
                metrics,
            } => {
                put::u8(out, tag::REVEAL);
                commitment.encode(out);
                params_hash.encode(out);
                put::u64(out, *params_size);
                put::f64(out, *claim);
                out.extend_from_slice(salt);
                put::len(out, metrics.len());
                for m in metrics {
                    m.encode(out);
                }
            }
            TxKind::Vote {
                commitment,
                measured,
                data_hash,
            } => {
                put::u8(out, tag::VOTE);
                commitment.encode(out);
                put::f64(out, *measured);
                data_hash.encode(out);
            }
            TxKind::ChannelOpen {
                provider,
                deposit,
                lifetime,
            } => {
                put::u8(out, tag::CHANNEL_OPEN);
                provider.encode(out);
                deposit.encode(out);
                put::u64(out, *lifetime);
            }
            TxKind::ChannelClose { channel } => {
                put::u8(out, tag::CHANNEL_CLOSE);
                channel.encode(out);
            }
            TxKind::ChannelSettle { voucher } => {
                put::u8(out, tag::CHANNEL_SETTLE);
                voucher.encode(out);
            }
            TxKind::ChannelCollect { channel } => {
                put::u8(out, tag::CHANNEL_COLLECT);
                channel.encode(out);
            }
        }
    }
}

impl Decode for TxKind {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("kind")? {
            tag::TRANSFER => TxKind::Transfer {
                to: AccountId::decode(r)?,
                amount: Amount::decode(r)?,
            },
            tag::REGISTER_EVALUATOR => TxKind::RegisterEvaluator {
                domain: DomainId::decode(r)?,
            },
            tag::COMMIT => TxKind::Commit {
                domain: DomainId::decode(r)?,
                commitment: Hash32::decode(r)?,
                stake: Amount::decode(r)?,
            },
            tag::REVEAL => TxKind::Reveal {
                commitment: Hash32::decode(r)?,
                params_hash: Hash32::decode(r)?,
                params_size: r.u64("params_size")?,
                claim: r.f64("claim")?,
                salt: r.array("salt")?,
                metrics: r.vec("metrics", MAX_METRICS, Metric::decode)?,
            },
            tag::VOTE => TxKind::Vote {
                commitment: Hash32::decode(r)?,
                measured: r.f64("measured")?,
                data_hash: Hash32::decode(r)?,
            },
            tag::CHANNEL_OPEN => TxKind::ChannelOpen {
                provider: AccountId::decode(r)?,
                deposit: Amount::decode(r)?,
                lifetime: r.u64("lifetime")?,
            },
            tag::CHANNEL_CLOSE => TxKind::ChannelClose {
                channel: Hash32::decode(r)?,
            },
            tag::CHANNEL_SETTLE => TxKind::ChannelSettle {
                voucher: Voucher::decode(r)?,
            },
            tag::CHANNEL_COLLECT => TxKind::ChannelCollect {
                channel: Hash32::decode(r)?,
            },
            tag => return Err(DecodeError::BadTag { field: "kind", tag }),
        })
    }
}

impl Encode for TxBody {
    fn encode(&self, out: &mut Vec<u8>) {
        put::string(out, &self.chain_id);
        self.sender.encode(out);
        put::u64(out, self.nonce);
        self.fee.encode(out);
        self.kind.encode(out);
    }
}

impl Decode for TxBody {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxBody {
            chain_id: r.string("chain_id", MAX_CHAIN_ID)?,
            sender: AccountId::decode(r)?,
            nonce: r.u64("nonce")?,
            fee: FeeBid::decode(r)?,
            kind: TxKind::decode(r)?,
        })
    }
}

impl Encode for SignedTx {
    fn encode(&self, out: &mut Vec<u8>) {
        self.body.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for SignedTx {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedTx {
            body: TxBody::decode(r)?,
            signature: Signature::decode(r)?,
        })
    }
}
