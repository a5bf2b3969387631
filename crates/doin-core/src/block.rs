//! Block headers and blocks, with the checks that need no chain state.
//!
//! A block's hash is the domain-separated hash of its versioned canonical header; the
//! proposer signs that hash. Everything the header claims (work, difficulty, base fee,
//! minted coins, state root) is recomputed by [`crate::state::ChainState::apply_block`] and
//! must match exactly.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::encode::{decode_versioned, encode_versioned, put, Decode, DecodeError, Encode, Reader};
use crate::hash::{merkle_root, Hash32, HashKind};
use crate::identity::{AccountId, Keypair, Signature, SignatureError};
use crate::params::ChainParams;
use crate::tx::{SignedTx, TxError, TxId};

/// Largest encoded block accepted from anyone (also bounds decoding).
pub const MAX_BLOCK_BYTES: usize = 16 << 20;
/// Largest transaction count a block may encode, whatever the chain parameters say.
pub const MAX_BLOCK_TXS_HARD: usize = 100_000;

/// A block hash.
pub type BlockHash = Hash32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BlockHeader {
    pub height: u64,
    /// Hash of the parent block; for genesis, the hash of the chain parameters.
    pub parent: BlockHash,
    pub timestamp_ms: u64,
    /// Merkle root over the transaction ids, in block order.
    pub tx_root: Hash32,
    /// Hash of the chain state after this block.
    pub state_root: Hash32,
    pub proposer: AccountId,
    /// Verified work of the optimae accepted in this block.
    pub work: u64,
    /// Total work of the chain up to and including this block (fork choice).
    pub cumulative_work: u128,
    /// The work threshold this block had to meet (unless its interval allowed an empty block).
    pub difficulty: u64,
    /// Base fee every transaction in this block paid (and burned).
    pub base_fee: Amount,
    /// New coins created by this block.
    pub minted: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Block {
    pub header: BlockHeader,
    /// The proposer's signature over the block hash (all zeros for genesis).
    pub signature: Signature,
    pub txs: Vec<SignedTx>,
}

/// Why a block is invalid. Each variant says what was expected.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BlockError {
    #[error("block is {size} bytes, the limit is {max}")]
    TooLarge { size: usize, max: usize },
    #[error("block has {count} transactions, the limit is {max}")]
    TooManyTxs { count: usize, max: usize },
    #[error("tx_root: header says {claimed}, transactions give {actual}")]
    TxRoot { claimed: Hash32, actual: Hash32 },
    #[error("proposer signature: {0}")]
    Signature(SignatureError),
    #[error("transaction {index} ({id}): {source}")]
    Tx {
        index: usize,
        id: TxId,
        source: TxError,
    },
    #[error("transaction {0} appears twice in the block")]
    DuplicateTx(TxId),
    #[error("parent: block builds on {got}, expected {expected}")]
    WrongParent { expected: BlockHash, got: BlockHash },
    #[error("height: expected {expected}, got {got}")]
    WrongHeight { expected: u64, got: u64 },
    #[error("timestamp: {0}")]
    Timestamp(String),
    #[error("{field}: header says {claimed}, re-execution gives {actual}")]
    Mismatch {
        field: &'static str,
        claimed: String,
        actual: String,
    },
    #[error("proposer has rank {rank} in the schedule: its block may not be timestamped before {earliest_ms} ms (it says {timestamp_ms} ms)")]
    BeforeTurn {
        rank: u64,
        earliest_ms: u64,
        timestamp_ms: u64,
    },
    #[error("work {work} is below the difficulty {difficulty} and the empty-block interval has not passed")]
    InsufficientWork { work: u64, difficulty: u64 },
    #[error("transaction {index} ({id}) cannot be applied: {reason}")]
    Apply {
        index: usize,
        id: TxId,
        reason: String,
    },
    #[error("malformed block: {0}")]
    Decode(#[from] DecodeError),
}

impl BlockHeader {
    pub fn hash(&self) -> BlockHash {
        HashKind::Block.hash(&encode_versioned(self))
    }
}

impl Block {
    pub fn hash(&self) -> BlockHash {
        self.header.hash()
    }

    /// Signs a header and assembles the block.
    pub fn seal(header: BlockHeader, txs: Vec<SignedTx>, proposer: &Keypair) -> Block {
        debug_assert_eq!(header.proposer, proposer.account());
        let signature = proposer.sign(header.hash().as_bytes());
        Block {
            header,
            signature,
            txs,
        }
    }

    pub fn tx_ids(&self) -> Vec<TxId> {
        self.txs.iter().map(SignedTx::id).collect()
    }

    pub fn to_wire(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes a block received from anyone; the size is checked before decoding.
    pub fn from_wire(bytes: &[u8]) -> Result<Block, BlockError> {
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                size: bytes.len(),
                max: MAX_BLOCK_BYTES,
            });
        }
        Ok(decode_versioned(bytes)?)
    }

    /// Checks that need no chain state: size, tx count and root, proposer signature, and
    /// each transaction's stateless checks and signature. Returns the tx ids in block order.
    pub fn verify_stateless(&self, params: &ChainParams) -> Result<Vec<TxId>, BlockError> {
        let size = self.to_wire().len();
        if size > MAX_BLOCK_BYTES {
            return Err(BlockError::TooLarge {
                size,
                max: MAX_BLOCK_BYTES,
            });
        }
        if self.txs.len() > params.max_block_txs as usize {
            return Err(BlockError::TooManyTxs {
                count: self.txs.len(),
                max: params.max_block_txs as usize,
            });
        }
        self.header
            .proposer
            .verify(self.hash().as_bytes(), &self.signature)
            .map_err(BlockError::Signature)?;
        let mut ids = Vec::with_capacity(self.txs.len());
        let mut seen = std::collections::HashSet::with_capacity(self.txs.len());
        for (index, tx) in self.txs.iter().enumerate() {
            let id = tx
                .verify_stateless(params)
                .map_err(|source| BlockError::Tx {
                    index,
                    id: tx.id(),
                    source,
                })?;
            if !seen.insert(id) {
                return Err(BlockError::DuplicateTx(id));
            }
            ids.push(id);
        }
        let actual = merkle_root(&ids);
        if actual != self.header.tx_root {
            return Err(BlockError::TxRoot {
                claimed: self.header.tx_root,
                actual,
            });
        }
        Ok(ids)
    }
}

impl Encode for BlockHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        put::u64(out, self.height);
        self.parent.encode(out);
        put::u64(out, self.timestamp_ms);
        self.tx_root.encode(out);
        self.state_root.encode(out);
        self.proposer.encode(out);
        put::u64(out, self.work);
        put::u128(out, self.cumulative_work);
        put::u64(out, self.difficulty);
        self.base_fee.encode(out);
        self.minted.encode(out);
    }
}

impl Decode for BlockHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(BlockHeader {
            height: r.u64("height")?,
            parent: Hash32::decode(r)?,
            timestamp_ms: r.u64("timestamp_ms")?,
            tx_root: Hash32::decode(r)?,
            state_root: Hash32::decode(r)?,
            proposer: AccountId::decode(r)?,
            work: r.u64("work")?,
            cumulative_work: r.u128("cumulative_work")?,
            difficulty: r.u64("difficulty")?,
            base_fee: Amount::decode(r)?,
            minted: Amount::decode(r)?,
        })
    }
}

impl Encode for Block {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        self.signature.encode(out);
        put::len(out, self.txs.len());
        for tx in &self.txs {
            tx.encode(out);
        }
    }
}

impl Decode for Block {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Block {
            header: BlockHeader::decode(r)?,
            signature: Signature::decode(r)?,
            txs: r.vec("txs", MAX_BLOCK_TXS_HARD, SignedTx::decode)?,
        })
    }
}
