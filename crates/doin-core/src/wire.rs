//! Messages nodes exchange: gossip (blocks and transactions) and request-response (sync and
//! parameter blobs). Every message has a size limit and decodes defensively.
//!
//! Commits, reveals and votes are ordinary signed transactions: they travel on their
//! domain's topic, so a node only receives the optimae traffic of the domains it works on
//! (domain sharding), while every node receives every block. Model parameters never go
//! through gossip; they are fetched by hash with [`SyncRequest::Params`].
//!
//! Trial reports (an island's recent trainings, for the other islands' surrogates) travel on
//! their domain's own trials topic: they are not transactions and never enter a block.

use crate::block::{Block, BlockHeader, MAX_BLOCK_BYTES};
use crate::encode::{decode_versioned, encode_versioned, put, Decode, DecodeError, Encode, Reader};
use crate::hash::Hash32;
use crate::params::DomainId;
use crate::trials::SignedTrialReport;
use crate::tx::SignedTx;

/// Largest gossiped transaction (or trial report) message.
pub const MAX_GOSSIP_TX_BYTES: usize = 64 * 1024;
/// Largest gossiped block message.
pub const MAX_GOSSIP_BLOCK_BYTES: usize = MAX_BLOCK_BYTES;
/// Most headers or blocks in one sync response.
pub const MAX_SYNC_BATCH: u32 = 512;
/// Largest parameter blob served by request-response.
pub const MAX_PARAMS_BYTES: usize = 64 << 20;
/// Longest error text in a response.
const MAX_ERROR_TEXT: usize = 1024;

/// Gossip topics, namespaced by chain so that two networks never mix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    Blocks,
    /// Transactions that belong to no domain (transfers, channels).
    Txs,
    /// A domain's commits, reveals, votes and evaluator registrations.
    Domain(DomainId),
    /// A domain's signed trial reports: separate from its transactions, so a node can take
    /// the optimae traffic without the (larger, chattier) surrogate traffic.
    Trials(DomainId),
}

impl Topic {
    pub fn name(&self, chain_id: &str) -> String {
        match self {
            Topic::Blocks => format!("doin/{chain_id}/blocks/1"),
            Topic::Txs => format!("doin/{chain_id}/txs/1"),
            Topic::Domain(d) => format!("doin/{chain_id}/domain/{d}/1"),
            Topic::Trials(d) => format!("doin/{chain_id}/trials/{d}/1"),
        }
    }

    /// The topic a transaction is gossiped on.
    pub fn for_tx(
        tx: &SignedTx,
        domain_of_commitment: impl Fn(&Hash32) -> Option<DomainId>,
    ) -> Topic {
        use crate::tx::TxKind::*;
        match &tx.body.kind {
            Commit { domain, .. } | RegisterEvaluator { domain } => Topic::Domain(domain.clone()),
            Reveal { commitment, .. } | Vote { commitment, .. } => {
                domain_of_commitment(commitment).map_or(Topic::Txs, Topic::Domain)
            }
            _ => Topic::Txs,
        }
    }
}

/// A gossip payload.
#[derive(Debug, Clone, PartialEq)]
pub enum GossipMessage {
    Block(Box<Block>),
    Tx(Box<SignedTx>),
    Trials(Box<SignedTrialReport>),
}

/// Encoding tags of [`GossipMessage`].
mod gossip_tag {
    pub const BLOCK: u8 = 0;
    pub const TX: u8 = 1;
    pub const TRIALS: u8 = 2;
}

impl GossipMessage {
    pub fn to_wire(&self) -> Vec<u8> {
        encode_versioned(self)
    }

    /// Decodes a gossip payload; oversized input is refused before decoding.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        let max = match bytes.get(1) {
            Some(&gossip_tag::BLOCK) => MAX_GOSSIP_BLOCK_BYTES,
            // Transactions and trial reports (a maximal report fits, see the tests); unknown
            // tags fail in decoding.
            _ => MAX_GOSSIP_TX_BYTES,
        };
        if bytes.len() > max {
            return Err(DecodeError::TooLong {
                field: "gossip message",
                len: bytes.len(),
                max,
            });
        }
        decode_versioned(bytes)
    }
}

impl Encode for GossipMessage {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            GossipMessage::Block(b) => {
                put::u8(out, gossip_tag::BLOCK);
                b.encode(out);
            }
            GossipMessage::Tx(t) => {
                put::u8(out, gossip_tag::TX);
                t.encode(out);
            }
            GossipMessage::Trials(t) => {
                put::u8(out, gossip_tag::TRIALS);
                t.encode(out);
            }
        }
    }
}

impl Decode for GossipMessage {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8("gossip kind")? {
            gossip_tag::BLOCK => Ok(GossipMessage::Block(Box::new(Block::decode(r)?))),
            gossip_tag::TX => Ok(GossipMessage::Tx(Box::new(SignedTx::decode(r)?))),
            gossip_tag::TRIALS => Ok(GossipMessage::Trials(Box::new(SignedTrialReport::decode(
                r,
            )?))),
            tag => Err(DecodeError::BadTag {
                field: "gossip kind",
                tag,
            }),
        }
    }
}

/// A request to one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// The peer's tip.
    Status,
    /// Headers of heights `from..from+count` on the peer's best chain.
    Headers { from: u64, count: u32 },
    /// Full blocks by hash.
    Blocks { hashes: Vec<Hash32> },
    /// A parameter blob by its content hash.
    Params { hash: Hash32 },
}

/// A peer's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncResponse {
    Status {
        height: u64,
        tip: Hash32,
        cumulative_work: u128,
    },
    Headers(Vec<BlockHeader>),
    Blocks(Vec<Block>),
    /// `None` when the peer does not have the blob.
    Params(Option<Vec<u8>>),
    Error(String),
}

impl Encode for SyncRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SyncRequest::Status => put::u8(out, 0),
            SyncRequest::Headers { from, count } => {
                put::u8(out, 1);
                put::u64(out, *from);
                put::u32(out, *count);
            }
            SyncRequest::Blocks { hashes } => {
                put::u8(out, 2);
                put::len(out, hashes.len());
                for h in hashes {
                    h.encode(out);
                }
            }
            SyncRequest::Params { hash } => {
                put::u8(out, 3);
                hash.encode(out);
            }
        }
    }
}

impl Decode for SyncRequest {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match r.u8("request kind")? {
            0 => SyncRequest::Status,
            1 => {
                let from = r.u64("from")?;
                let count = r.u32("count")?;
                if count > MAX_SYNC_BATCH {
                    return Err(DecodeError::TooLong {
                        field: "count",
                        len: count as usize,
                        max: MAX_SYNC_BATCH as usize,
                    });
                }
                SyncRequest::Headers { from, count }
            }
            2 => SyncRequest::Blocks {
                hashes: r.vec("hashes", MAX_SYNC_BATCH as usize, Hash32::decode)?,
            },
            3 => SyncRequest::Params {
                hash: Hash32::decode(r)?,
            },
            tag => {
                return Err(DecodeError::BadTag {
                    field: "request kind",
                    tag,
                })
            }
        })
    }
}

impl Encode for SyncResponse {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SyncResponse::Status {
                height,
                tip,
                cumulative_work,
            } => {
                put::u8(out, 0);
                put::u64(out, *height);
                tip.encode(out);
                put::u128(out, *cumulative_work);
            }
            SyncResponse::Headers(headers) => {
                put::u8(out, 1);
                put::len(out, headers.len());
                for h in headers {
                    h.encode(out);
                }
            }
            SyncResponse::Blocks(blocks) => {
                put::u8(out, 2);
                put::len(out, blocks.len());
                for b in blocks {
                    b.encode(out);
                }
            }
            SyncResponse::Params(blob) => {
                put::u8(out, 3);
                put::bool(out, blob.is_some());
                if let Some(b) = blob {
                    put::bytes(out, b);
                }
            }
            SyncResponse::Error(text) => {
                put::u8(out, 4);
                put::string(out, text);
            }
        }
    }
}

impl Decode for SyncResponse {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let batch = MAX_SYNC_BATCH as usize;
        Ok(match r.u8("response kind")? {
            0 => SyncResponse::Status {
                height: r.u64("height")?,
                tip: Hash32::decode(r)?,
                cumulative_work: r.u128("cumulative_work")?,
            },
            1 => SyncResponse::Headers(r.vec("headers", batch, BlockHeader::decode)?),
            2 => SyncResponse::Blocks(r.vec("blocks", batch, Block::decode)?),
            3 => SyncResponse::Params(r.option("params", |r| r.bytes("params", MAX_PARAMS_BYTES))?),
            4 => SyncResponse::Error(r.string("error", MAX_ERROR_TEXT)?),
            tag => {
                return Err(DecodeError::BadTag {
                    field: "response kind",
                    tag,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_batches_are_bounded() {
        for req in [
            SyncRequest::Status,
            SyncRequest::Headers {
                from: 7,
                count: 100,
            },
            SyncRequest::Blocks {
                hashes: vec![Hash32([1; 32]); 3],
            },
            SyncRequest::Params {
                hash: Hash32([9; 32]),
            },
        ] {
            assert_eq!(
                decode_versioned::<SyncRequest>(&encode_versioned(&req)),
                Ok(req)
            );
        }
        let too_many = SyncRequest::Headers {
            from: 0,
            count: MAX_SYNC_BATCH + 1,
        };
        assert!(decode_versioned::<SyncRequest>(&encode_versioned(&too_many)).is_err());
    }

    #[test]
    fn responses_round_trip() {
        for resp in [
            SyncResponse::Status {
                height: 3,
                tip: Hash32([2; 32]),
                cumulative_work: 99,
            },
            SyncResponse::Params(Some(vec![1, 2, 3])),
            SyncResponse::Params(None),
            SyncResponse::Error("nope".into()),
        ] {
            assert_eq!(
                decode_versioned::<SyncResponse>(&encode_versioned(&resp)),
                Ok(resp)
            );
        }
    }

    #[test]
    fn topics_are_namespaced_by_chain() {
        assert_eq!(Topic::Blocks.name("main"), "doin/main/blocks/1");
        let d = DomainId::new("quadratic").unwrap();
        assert_eq!(
            Topic::Domain(d.clone()).name("dev"),
            "doin/dev/domain/quadratic/1"
        );
        assert_eq!(Topic::Trials(d).name("dev"), "doin/dev/trials/quadratic/1");
    }

    #[test]
    fn a_maximal_trial_report_fits_a_gossip_message() {
        use crate::identity::Keypair;
        use crate::trials::*;
        use crate::tx::MAX_CHAIN_ID;

        let key = Keypair::from_seed([5; 32]);
        let trial = Trial {
            hyperparameters: (0..MAX_TRIAL_HYPERPARAMETERS)
                .map(|i| {
                    (
                        format!("{i:0>width$}", width = MAX_HYPERPARAMETER_NAME),
                        0.5,
                    )
                })
                .collect(),
            seed: u64::MAX,
            performance: -1.0,
        };
        let chain_id = "c".repeat(MAX_CHAIN_ID);
        let report = TrialReport {
            chain_id: chain_id.clone(),
            domain: DomainId::new("d".repeat(crate::params::MAX_DOMAIN_ID_LEN)).unwrap(),
            reporter: key.account(),
            sequence: u64::MAX,
            trials: vec![trial; MAX_TRIALS_PER_REPORT],
        }
        .sign(&key);
        assert!(
            report.verify(&chain_id).is_ok(),
            "the report is maximal, not oversize"
        );
        let msg = GossipMessage::Trials(Box::new(report));
        let bytes = msg.to_wire();
        assert!(bytes.len() <= MAX_GOSSIP_TX_BYTES, "{} bytes", bytes.len());
        assert_eq!(GossipMessage::from_wire(&bytes), Ok(msg));
    }
}
