//! Node and account identity: one ed25519 key per node. The account id is the 32-byte public
//! key; the node's libp2p identity is derived from the same secret.
//!
//! Signatures are always checked with `verify_strict` (rejects small-order keys and
//! non-canonical signatures, so a signature cannot be malleated into a second valid one).

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::encode::{Decode, DecodeError, Encode, Reader};
use crate::hash::Hash32;

/// An account: the ed25519 public key bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 32]);

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("account id is not a valid ed25519 public key")]
    BadPublicKey,
    #[error("signature does not verify against the signer's key")]
    Invalid,
}

impl AccountId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, crate::hash::HexError> {
        Hash32::from_hex(s).map(|h| AccountId(h.0))
    }

    /// Checks `signature` over `message` with `verify_strict`.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::BadPublicKey)?;
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        key.verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid)
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form keeps logs readable; the full key is in Display.
        write!(f, "AccountId({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for AccountId {
    type Err = crate::hash::HexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AccountId::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for AccountId {
    fn schema_name() -> String {
        "AccountId".into()
    }
    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        Hash32::json_schema(gen)
    }
}

impl Encode for AccountId {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for AccountId {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AccountId(r.array("account")?))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({}…)", &hex::encode(&self.0[..8]))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|_| serde::de::Error::custom("signature: expected 128 hex digits"))?;
        Ok(Signature(out))
    }
}

impl schemars::JsonSchema for Signature {
    fn schema_name() -> String {
        "Signature".into()
    }
    fn json_schema(gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
        let mut schema = String::json_schema(gen).into_object();
        schema.string().pattern = Some("^[0-9a-f]{128}$".into());
        schema.into()
    }
}

impl Encode for Signature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Signature {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Signature(r.array("signature")?))
    }
}

/// A node's secret key. Debug output never shows the secret.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keypair({:?})", self.account())
    }
}

/// Why a key file could not be read or written.
#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: &'static str },
    #[error("key file {path} already exists; refusing to overwrite a key")]
    Exists { path: String },
}

const KEY_FILE_HEADER: &str = "doin-ed25519-secret-v1";

impl Keypair {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        Self {
            signing: SigningKey::generate(&mut rand_core::OsRng),
        }
    }

    /// A key from a 32-byte secret seed (deterministic; for tests and derived keys).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    pub fn account(&self) -> AccountId {
        AccountId(self.signing.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// Writes the secret to `path` with mode 0600 (owner only). Never overwrites.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        use std::io::Write;
        let shown = path.display().to_string();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: shown.clone(),
            },
            _ => KeyFileError::Io {
                path: shown.clone(),
                source,
            },
        })?;
        let text = format!("{KEY_FILE_HEADER}\n{}\n", hex::encode(self.secret_bytes()));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyFileError::Io {
                path: shown,
                source,
            })
    }

    /// Reads a key written by [`Keypair::save`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| KeyFileError::Corrupt {
            path: shown,
            reason,
        })
    }

    /// Loads the key at `path`, or creates one there if the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self, KeyFileError> {
        match Self::load(path) {
            Err(KeyFileError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let key = Self::generate();
                key.save(path)?;
                Ok(key)
            }
            other => other,
        }
    }

    fn parse(text: &str) -> Result<Self, &'static str> {
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err("missing the doin-ed25519-secret-v1 header line");
        }
        let secret = lines.next().ok_or("missing the secret line")?.trim();
        let mut seed = [0u8; 32];
        hex::decode_to_slice(secret, &mut seed)
            .map_err(|_| "the secret line is not 64 hex digits")?;
        if lines.any(|l| !l.trim().is_empty()) {
            return Err("unexpected content after the secret line");
        }
        Ok(Self::from_seed(seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let key = Keypair::from_seed([7; 32]);
        let sig = key.sign(b"hello");
        assert_eq!(key.account().verify(b"hello", &sig), Ok(()));
        assert_eq!(
            key.account().verify(b"hellp", &sig),
            Err(SignatureError::Invalid)
        );
        let other = Keypair::from_seed([8; 32]);
        assert_eq!(
            other.account().verify(b"hello", &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn small_order_public_key_is_rejected() {
        // The identity point (y = 1) has small order: verify_strict must refuse it.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = AccountId(identity);
        assert!(weak.verify(b"m", &Signature([0; 64])).is_err());
    }

    #[test]
    fn key_file_round_trip_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let key = Keypair::generate();
        key.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(Keypair::load(&path).unwrap().account(), key.account());
        assert!(matches!(key.save(&path), Err(KeyFileError::Exists { .. })));
        assert_eq!(
            Keypair::load_or_generate(&path).unwrap().account(),
            key.account()
        );
    }

    #[test]
    fn corrupt_key_files_get_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expect) in [
            ("", "header"),
            ("doin-ed25519-secret-v1\n", "missing the secret"),
            ("doin-ed25519-secret-v1\nxyz\n", "64 hex digits"),
            ("doin-ed25519-secret-v1\n0000000000000000000000000000000000000000000000000000000000000000\nextra\n", "unexpected content"),
        ] {
            let path = dir.path().join("bad.key");
            std::fs::write(&path, content).unwrap();
            let err = Keypair::load(&path).unwrap_err().to_string();
            assert!(err.contains("corrupt") && err.contains(expect), "{err}");
        }
    }
}
