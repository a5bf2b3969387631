//! The client's side of its payment channels, kept in a small JSON file.
//!
//! What matters is `spent`, the highest cumulative amount ever signed for a channel: the next
//! voucher must be above it. It is written to disk (a temporary file renamed over the old
//! one, so a crash leaves either version) before a voucher with the new amount is returned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, ClientResult};

/// One channel this client opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelEntry {
    pub provider: AccountId,
    pub deposit: Amount,
    /// Highest cumulative amount signed so far.
    pub spent: Amount,
    /// Height of the block that opened it.
    pub opened_at: u64,
    /// Height from which the channel is expired.
    pub expires_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct BookFile {
    channels: BTreeMap<Hash32, ChannelEntry>,
}

/// The channel book: channels by id, persisted at `path`.
#[derive(Debug)]
pub struct ChannelBook {
    path: PathBuf,
    file: BookFile,
}

impl ChannelBook {
    /// Opens the book at `path`, or starts an empty one if the file does not exist.
    pub fn open(path: &Path) -> ClientResult<ChannelBook> {
        let file = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| book_error(path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BookFile::default(),
            Err(e) => return Err(book_error(path, e)),
        };
        Ok(ChannelBook {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, id: &Hash32) -> Option<&ChannelEntry> {
        self.file.channels.get(id)
    }

    pub fn channels(&self) -> impl Iterator<Item = (&Hash32, &ChannelEntry)> {
        self.file.channels.iter()
    }

    /// Adds (or replaces) a channel and saves the book.
    pub fn insert(&mut self, id: Hash32, entry: ChannelEntry) -> ClientResult<()> {
        self.file.channels.insert(id, entry);
        self.save()
    }

    /// Forgets a channel (after it was collected) and saves the book.
    pub fn remove(&mut self, id: &Hash32) -> ClientResult<Option<ChannelEntry>> {
        let removed = self.file.channels.remove(id);
        self.save()?;
        Ok(removed)
    }

    /// Signs the voucher for one more query at `price`: `spent + price`, recorded on disk
    /// before it is returned.
    pub fn next_voucher(
        &mut self,
        key: &Keypair,
        channel: &Hash32,
        price: Amount,
    ) -> ClientResult<Voucher> {
        let entry = self
            .file
            .channels
            .get(channel)
            .ok_or(ClientError::UnknownChannel(*channel))?;
        let amount = entry
            .spent
            .checked_add(price)
            .filter(|a| *a <= entry.deposit)
            .ok_or(ClientError::ChannelExhausted {
                channel: *channel,
                needed: Amount(entry.spent.0.saturating_add(price.0)),
                deposit: entry.deposit,
            })?;
        self.set_spent(channel, amount)?;
        Ok(Voucher::sign(key, *channel, amount))
    }

    /// Raises `spent` to what the provider says it already holds (never lowers it).
    pub fn resync(&mut self, channel: &Hash32, provider_holds: Amount) -> ClientResult<bool> {
        match self.file.channels.get(channel) {
            Some(entry) if provider_holds > entry.spent => {
                self.set_spent(channel, provider_holds)?;
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(ClientError::UnknownChannel(*channel)),
        }
    }

    fn set_spent(&mut self, channel: &Hash32, amount: Amount) -> ClientResult<()> {
        if let Some(entry) = self.file.channels.get_mut(channel) {
            entry.spent = amount;
        }
        self.save()
    }

    fn save(&self) -> ClientResult<()> {
        let bytes = serde_json::to_vec_pretty(&self.file).map_err(|e| book_error(&self.path, e))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| book_error(&tmp, e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| book_error(&self.path, e))
    }
}

fn book_error(path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Book {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry(provider: AccountId) -> ChannelEntry {
        ChannelEntry {
            provider,
            deposit: Amount(1_000),
            spent: Amount::ZERO,
            opened_at: 1,
            expires_at: 100,
        }
    }

    #[test]
    fn vouchers_are_cumulative_persisted_and_bounded_by_the_deposit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.json");
        let key = Keypair::from_seed([7; 32]);
        let id = Hash32([9; 32]);
        let mut book = ChannelBook::open(&path).unwrap();
        book.insert(id, entry(Keypair::from_seed([8; 32]).account()))
            .unwrap();
        let first = book.next_voucher(&key, &id, Amount(300)).unwrap();
        let second = book.next_voucher(&key, &id, Amount(300)).unwrap();
        assert_eq!((first.amount, second.amount), (Amount(300), Amount(600)));
        second.verify(&key.account()).unwrap();
        // Reopened from disk: the next voucher continues above the last one signed.
        let mut book = ChannelBook::open(&path).unwrap();
        assert_eq!(book.get(&id).unwrap().spent, Amount(600));
        assert!(matches!(
            book.next_voucher(&key, &id, Amount(401)),
            Err(ClientError::ChannelExhausted { .. })
        ));
        assert_eq!(book.get(&id).unwrap().spent, Amount(600), "nothing signed");
        assert!(book.resync(&id, Amount(700)).unwrap());
        assert!(!book.resync(&id, Amount(650)).unwrap(), "never lowered");
        assert!(matches!(
            book.next_voucher(&key, &Hash32([1; 32]), Amount(1)),
            Err(ClientError::UnknownChannel(_))
        ));
    }

    #[test]
    fn a_corrupt_book_is_an_error_not_an_empty_book() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("book.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            ChannelBook::open(&path),
            Err(ClientError::Book { .. })
        ));
    }
}
