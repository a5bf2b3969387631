//! blake3 hashing with one domain-separation context per object kind, and the merkle root.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::encode::{put, Decode, DecodeError, Encode, Reader};

/// A 32-byte blake3 digest. Shown and serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    pub const ZERO: Hash32 = Hash32([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, HexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| HexError { len: s.len() })?;
        Ok(Hash32(out))
    }
}

/// A hex string that is not exactly 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex digits, got {len} characters that do not form a 32-byte hex value")]
pub struct HexError {
    pub len: usize,
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for Hash32 {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash32::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Hash32 {
    fn schema_name() -> String {
        "Hash32".into()
    }
    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = String::json_schema(gen).into_object();
        schema.string().pattern = Some("^[0-9a-f]{64}$".into());
        schema.into()
    }
}

impl Encode for Hash32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Hash32 {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Hash32(r.array("hash")?))
    }
}

/// The kinds of object that are hashed. Each has its own blake3 derive-key context, so a
/// digest of one kind can never be passed off as a digest of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKind {
    Tx,
    Block,
    Commit,
    QuorumSeed,
    DataSeed,
    MerkleLeaf,
    MerkleNode,
    State,
    Params,
    Channel,
    Voucher,
    Domain,
    Message,
    Checkpoint,
    /// A model's parameter blob (content address).
    Model,
    /// An evaluator's synthetic dataset.
    Dataset,
    /// A signed report of an optimizer's trainings (island gossip, not consensus data).
    Trials,
}

impl HashKind {
    const COUNT: usize = 17;

    /// The derive-key context string. Changing one is a hard fork.
    pub const fn context(self) -> &'static str {
        match self {
            HashKind::Tx => "doin/tx v1",
            HashKind::Block => "doin/block v1",
            HashKind::Commit => "doin/commit v1",
            HashKind::QuorumSeed => "doin/quorum-seed v1",
            HashKind::DataSeed => "doin/seed v1",
            HashKind::MerkleLeaf => "doin/merkle-leaf v1",
            HashKind::MerkleNode => "doin/merkle-node v1",
            HashKind::State => "doin/state v1",
            HashKind::Params => "doin/params v1",
            HashKind::Channel => "doin/channel v1",
            HashKind::Voucher => "doin/voucher v1",
            HashKind::Domain => "doin/domain v1",
            HashKind::Message => "doin/message v1",
            HashKind::Checkpoint => "doin/checkpoint v1",
            HashKind::Model => "doin/model v1",
            HashKind::Dataset => "doin/dataset v1",
            HashKind::Trials => "doin/trials v1",
        }
    }

    /// The 32-byte blake3 key of this kind, derived once from its context string.
    /// Keyed hashing with a derived key is blake3's own domain separation, and it avoids
    /// re-deriving the context on every hash (merkle roots hash thousands of small inputs).
    fn key(self) -> &'static [u8; 32] {
        static KEYS: [OnceLock<[u8; 32]>; HashKind::COUNT] =
            [const { OnceLock::new() }; HashKind::COUNT];
        KEYS[self as usize].get_or_init(|| blake3::derive_key(self.context(), &[]))
    }

    /// Starts an incremental hasher for this kind.
    pub fn hasher(self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(self.key())
    }

    pub fn hash(self, bytes: &[u8]) -> Hash32 {
        Hash32(*blake3::keyed_hash(self.key(), bytes).as_bytes())
    }

    /// Hashes the canonical encoding of `value`.
    pub fn hash_encoded<T: Encode + ?Sized>(self, value: &T) -> Hash32 {
        self.hash(&value.to_bytes())
    }
}

/// Merkle root over ids.
///
/// Leaves and inner nodes use different contexts (no leaf can pose as a node), and an odd
/// node at the end of a level is promoted unchanged rather than paired with itself, so two
/// different id lists never share a root (the CVE-2012-2459 duplicate-last-leaf class).
/// The leaf count is bound into the root as well. The empty list has the root [`Hash32::ZERO`].
pub fn merkle_root(ids: &[Hash32]) -> Hash32 {
    if ids.is_empty() {
        return Hash32::ZERO;
    }
    let mut level: Vec<Hash32> = ids
        .iter()
        .map(|id| HashKind::MerkleLeaf.hash(&id.0))
        .collect();
    let mut buf = [0u8; 64];
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [left, right] => {
                    buf[..32].copy_from_slice(&left.0);
                    buf[32..].copy_from_slice(&right.0);
                    next.push(HashKind::MerkleNode.hash(&buf));
                }
                [odd] => next.push(*odd),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    let mut top = Vec::with_capacity(40);
    put::u64(&mut top, ids.len() as u64);
    top.extend_from_slice(&level[0].0);
    HashKind::MerkleNode.hash(&top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Hash32 {
        Hash32([n; 32])
    }

    #[test]
    fn every_kind_has_its_own_key_slot_and_context() {
        use HashKind::*;
        let all = [
            Tx, Block, Commit, QuorumSeed, DataSeed, MerkleLeaf, MerkleNode, State, Params,
            Channel, Voucher, Domain, Message, Checkpoint, Model, Dataset, Trials,
        ];
        assert_eq!(all.len(), HashKind::COUNT);
        let contexts: std::collections::BTreeSet<_> = all.iter().map(|k| k.context()).collect();
        assert_eq!(contexts.len(), all.len());
        for (i, k) in all.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn incremental_and_one_shot_hashes_agree() {
        let mut h = HashKind::Block.hasher();
        h.update(b"ab");
        h.update(b"c");
        assert_eq!(
            Hash32(*h.finalize().as_bytes()),
            HashKind::Block.hash(b"abc")
        );
    }

    #[test]
    fn contexts_separate_kinds() {
        assert_ne!(HashKind::Tx.hash(b"x"), HashKind::Block.hash(b"x"));
        assert_ne!(
            HashKind::MerkleLeaf.hash(b"x"),
            HashKind::MerkleNode.hash(b"x")
        );
    }

    #[test]
    fn duplicating_the_last_leaf_changes_the_root() {
        let three = merkle_root(&[id(1), id(2), id(3)]);
        let four = merkle_root(&[id(1), id(2), id(3), id(3)]);
        assert_ne!(three, four);
        let five = merkle_root(&[id(1), id(2), id(3), id(4), id(5)]);
        let six = merkle_root(&[id(1), id(2), id(3), id(4), id(5), id(5)]);
        assert_ne!(five, six);
    }

    #[test]
    fn order_and_content_matter() {
        assert_ne!(merkle_root(&[id(1), id(2)]), merkle_root(&[id(2), id(1)]));
        assert_ne!(merkle_root(&[id(1)]), merkle_root(&[id(2)]));
        assert_eq!(merkle_root(&[]), Hash32::ZERO);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = HashKind::Block.hash(b"abc");
        assert_eq!(Hash32::from_hex(&h.to_hex()), Ok(h));
        assert!(Hash32::from_hex("abc").is_err());
        assert!(Hash32::from_hex(&"zz".repeat(32)).is_err());
    }
}
