//! Canonical binary encoding for everything that is hashed or signed.
//!
//! One encoding, fixed field order, no self-description: integers are little-endian and fixed
//! width, floats are their IEEE-754 bits (finite only), variable-length fields carry a `u32`
//! length prefix and have a maximum, enums carry a one-byte tag. Top-level objects start with
//! [`ENCODING_VERSION`]. JSON is for the API and config only; it is never hashed.
//!
//! Decoding is defensive: every read is bounds-checked, every length is capped before anything
//! is allocated, and trailing bytes are an error. Arbitrary input never panics.

use thiserror::Error;

/// Version byte that prefixes every top-level encoded object (transactions, blocks, vouchers).
pub const ENCODING_VERSION: u8 = 1;

/// Largest length prefix accepted for any single variable-length field (16 MiB).
pub const MAX_FIELD_LEN: usize = 16 << 20;

/// Why bytes could not be decoded. `field` names the field being read when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("{field}: unexpected end of input")]
    Truncated { field: &'static str },
    #[error("{field}: length {len} exceeds the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field}: invalid tag {tag}")]
    BadTag { field: &'static str, tag: u8 },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("unsupported encoding version {0} (this build speaks {ENCODING_VERSION})")]
    Version(u8),
    #[error("{0} trailing bytes after the object")]
    Trailing(usize),
}

/// A value with one canonical byte encoding.
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A value that can be read back from its canonical encoding.
pub trait Decode: Sized {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a whole buffer: the value must consume every byte.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let value = Self::decode(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// Writes a top-level object: version byte, then the object.
pub fn encode_versioned<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![ENCODING_VERSION];
    value.encode(&mut out);
    out
}

/// Reads a top-level object written by [`encode_versioned`].
pub fn decode_versioned<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(bytes);
    let version = r.u8("version")?;
    if version != ENCODING_VERSION {
        return Err(DecodeError::Version(version));
    }
    let value = T::decode(&mut r)?;
    r.finish()?;
    Ok(value)
}

/// A bounds-checked cursor over input bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Errors when bytes remain unread.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }

    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated { field });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub fn u128(&mut self, field: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_le_bytes(self.array(field)?))
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::BadTag { field, tag }),
        }
    }

    /// A finite `f64`; NaN and infinities are rejected.
    pub fn f64(&mut self, field: &'static str) -> Result<f64, DecodeError> {
        let value = f64::from_bits(self.u64(field)?);
        if !value.is_finite() {
            return Err(DecodeError::Invalid {
                field,
                reason: "not a finite number".into(),
            });
        }
        Ok(value)
    }

    /// A length prefix, checked against `max` before anything is allocated.
    pub fn len(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max.min(MAX_FIELD_LEN) {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: max.min(MAX_FIELD_LEN),
            });
        }
        Ok(len)
    }

    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.len(field, max)?;
        Ok(self.take(len, field)?.to_vec())
    }

    pub fn string(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let bytes = self.bytes(field, max)?;
        String::from_utf8(bytes).map_err(|_| DecodeError::Invalid {
            field,
            reason: "not valid UTF-8".into(),
        })
    }

    /// A length-prefixed sequence of at most `max` items.
    pub fn vec<T>(
        &mut self,
        field: &'static str,
        max: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.len(field, max)?;
        // Every item takes at least one byte, so a length larger than the input is a lie.
        if len > self.remaining() {
            return Err(DecodeError::Truncated { field });
        }
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            out.push(item(self)?);
        }
        Ok(out)
    }

    pub fn option<T>(
        &mut self,
        field: &'static str,
        item: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool(field)? {
            Ok(Some(item(self)?))
        } else {
            Ok(None)
        }
    }
}

/// Append-only helpers mirroring [`Reader`].
pub mod put {
    pub fn u8(out: &mut Vec<u8>, v: u8) {
        out.push(v);
    }
    pub fn u16(out: &mut Vec<u8>, v: u16) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(out: &mut Vec<u8>, v: u32) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(out: &mut Vec<u8>, v: u64) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u128(out: &mut Vec<u8>, v: u128) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bool(out: &mut Vec<u8>, v: bool) {
        out.push(u8::from(v));
    }
    /// Callers guarantee finiteness (validated types); the bits are written as they are.
    pub fn f64(out: &mut Vec<u8>, v: f64) {
        u64(out, v.to_bits());
    }
    pub fn len(out: &mut Vec<u8>, len: usize) {
        let len = u32::try_from(len).expect("encoded fields are bounded far below u32::MAX");
        u32(out, len);
    }
    pub fn bytes(out: &mut Vec<u8>, v: &[u8]) {
        len(out, v.len());
        out.extend_from_slice(v);
    }
    pub fn string(out: &mut Vec<u8>, v: &str) {
        bytes(out, v.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_rejects_truncation_and_trailing_bytes() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32("x"), Err(DecodeError::Truncated { field: "x" }));
        let r = Reader::new(&[1]);
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn lengths_are_capped_before_allocation() {
        let mut buf = Vec::new();
        put::u32(&mut buf, u32::MAX);
        let mut r = Reader::new(&buf);
        assert!(matches!(
            r.bytes("blob", 1024),
            Err(DecodeError::TooLong { .. })
        ));
        let mut r = Reader::new(&buf);
        assert!(matches!(
            r.vec("items", usize::MAX, |r| r.u8("i")),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn non_finite_floats_are_rejected() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut buf = Vec::new();
            put::f64(&mut buf, bad);
            assert!(Reader::new(&buf).f64("claim").is_err());
        }
    }

    #[test]
    fn bool_tags_other_than_zero_and_one_are_rejected() {
        assert_eq!(
            Reader::new(&[2]).bool("flag"),
            Err(DecodeError::BadTag {
                field: "flag",
                tag: 2
            })
        );
    }
}
