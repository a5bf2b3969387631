//! Content-addressed parameter blobs (model weights) on disk.
//!
//! A blob is stored in one file named by the lowercase hex of its hash
//! ([`doin_core::plugin::params_hash`]), the hash that reveals and champions carry on chain.
//! - **Atomic writes.** [`BlobStore::put`] writes a temporary file in the same directory,
//!   fsyncs it, renames it into place and fsyncs the directory: a crash leaves either no file
//!   or the whole blob, never a prefix under the final name. Temporary files a crash left
//!   behind are removed by [`BlobStore::open`] once they are an hour old.
//! - **Verified reads.** [`BlobStore::get`] re-hashes what it read: a file damaged on disk is
//!   an error ([`BlobError::Corrupt`]), never returned as if it were the blob. A later `put`
//!   of the right bytes repairs it.
//! - **Bounded writes.** `put` takes the largest size the caller accepts (the domain's
//!   parameter limit) and refuses larger blobs before touching the disk.
//!
//! Everything here is synchronous `std::fs`: blobs can be megabytes, so async callers run
//! these methods in `tokio::task::spawn_blocking` (or another blocking context), never on a
//! runtime worker thread. The store is safe to share between threads and processes: writers
//! of the same blob race only on the final rename, and both renames install identical bytes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use doin_core::hash::Hash32;
use doin_core::plugin::params_hash;
use thiserror::Error;

/// Prefix of in-progress files; never a valid hex name.
const TEMP_PREFIX: &str = ".tmp-";

/// Age after which a temporary file is considered left behind by a crash.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Distinguishes concurrent writers of the same blob within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Why a blob operation failed.
#[derive(Debug, Error)]
pub enum BlobError {
    #[error("blob is {size} bytes, the limit is {max}")]
    TooLarge { size: u64, max: u64 },
    #[error("blob {hash} is corrupt on disk ({path}): its content hashes to {actual}")]
    Corrupt {
        hash: Hash32,
        actual: Hash32,
        path: PathBuf,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Result of a blob operation.
pub type BlobResult<T> = Result<T, BlobError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of blobs named by their content hash. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: Arc<Path>,
}

// === impl BlobStore ===

impl BlobStore {
    /// Opens the blob directory, creating it if missing, and removes stale temporary files.
    pub fn open(dir: &Path) -> BlobResult<BlobStore> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        let store = BlobStore {
            dir: Arc::from(dir),
        };
        store.remove_stale_temps()?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` unless they exceed `max_bytes`; returns their hash. Idempotent: a blob
    /// already present intact is not rewritten (one damaged on disk is replaced).
    pub fn put(&self, bytes: &[u8], max_bytes: u64) -> BlobResult<Hash32> {
        let size = bytes.len() as u64;
        if size > max_bytes {
            return Err(BlobError::TooLarge {
                size,
                max: max_bytes,
            });
        }
        let hash = params_hash(bytes);
        let path = self.path(&hash);
        match self.get(&hash) {
            Ok(Some(_)) => return Ok(hash),
            Ok(None) | Err(BlobError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}-{}",
            hash.to_hex(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_synced(&temp, bytes)
            .and_then(|()| fs::rename(&temp, &path).map_err(io_err("renaming into", &path)))
            .and_then(|()| sync_dir(&self.dir));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| hash)
    }

    /// The blob with this hash, verified; `None` if absent, [`BlobError::Corrupt`] if the file
    /// does not hash to its name.
    pub fn get(&self, hash: &Hash32) -> BlobResult<Option<Vec<u8>>> {
        let path = self.path(hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let actual = params_hash(&bytes);
        if actual != *hash {
            return Err(BlobError::Corrupt {
                hash: *hash,
                actual,
                path,
            });
        }
        Ok(Some(bytes))
    }

    /// Whether a file for this hash exists (its content is checked only by [`Self::get`]).
    pub fn contains(&self, hash: &Hash32) -> bool {
        self.path(hash).is_file()
    }

    /// Deletes a blob; returns whether it existed.
    pub fn remove(&self, hash: &Hash32) -> BlobResult<bool> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &path)(e)),
        }
    }

    fn path(&self, hash: &Hash32) -> PathBuf {
        self.dir.join(hash.to_hex())
    }

    fn remove_stale_temps(&self) -> BlobResult<()> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STALE_TEMP_AGE);
            if stale {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err("removing stale", &path))?;
            }
        }
        Ok(())
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> BlobResult<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("creating", path))?;
    file.write_all(bytes).map_err(io_err("writing", path))?;
    file.sync_all().map_err(io_err("syncing", path))
}

/// Makes a rename durable. Directories cannot be opened for syncing on every platform; where
/// they cannot, the rename is as durable as the platform makes it.
fn sync_dir(dir: &Path) -> BlobResult<()> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1 << 20;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = BlobStore::open(&dir.path().join("blobs")).expect("open");
        (dir, store)
    }

    #[test]
    fn put_get_round_trip() {
        let (_dir, store) = store();
        let bytes = b"model weights".to_vec();
        let hash = store.put(&bytes, MAX).unwrap();
        assert_eq!(hash, params_hash(&bytes));
        assert!(store.contains(&hash));
        assert_eq!(store.get(&hash).unwrap(), Some(bytes));
        assert!(store.dir().join(hash.to_hex()).is_file());
    }

    #[test]
    fn put_is_idempotent_and_leaves_no_temp_files() {
        let (_dir, store) = store();
        let a = store.put(b"same", MAX).unwrap();
        let b = store.put(b"same", MAX).unwrap();
        assert_eq!(a, b);
        let names: Vec<String> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![a.to_hex()]);
    }

    #[test]
    fn missing_blob_is_none() {
        let (_dir, store) = store();
        let hash = params_hash(b"never stored");
        assert!(!store.contains(&hash));
        assert_eq!(store.get(&hash).unwrap(), None);
        assert!(!store.remove(&hash).unwrap());
    }

    #[test]
    fn empty_blob_is_a_blob() {
        let (_dir, store) = store();
        let hash = store.put(&[], MAX).unwrap();
        assert_eq!(store.get(&hash).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn oversized_blob_is_refused_before_writing() {
        let (_dir, store) = store();
        let bytes = vec![7u8; 101];
        let err = store.put(&bytes, 100).unwrap_err();
        assert!(
            matches!(
                err,
                BlobError::TooLarge {
                    size: 101,
                    max: 100
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("101 bytes, the limit is 100"));
        assert!(!store.contains(&params_hash(&bytes)));
        assert!(
            store.put(&bytes[..100], 100).is_ok(),
            "exactly the limit is fine"
        );
    }

    #[test]
    fn corrupted_file_is_an_error_and_put_repairs_it() {
        let (_dir, store) = store();
        let bytes = vec![1u8, 2, 3, 4, 5];
        let hash = store.put(&bytes, MAX).unwrap();
        let path = store.dir().join(hash.to_hex());
        fs::write(&path, [1u8, 2, 3, 4, 6]).unwrap();
        let err = store.get(&hash).unwrap_err();
        assert!(
            matches!(err, BlobError::Corrupt { hash: h, .. } if h == hash),
            "{err}"
        );
        // Truncation is corruption too.
        fs::write(&path, [1u8, 2]).unwrap();
        assert!(matches!(store.get(&hash), Err(BlobError::Corrupt { .. })));
        // Storing the right bytes again replaces the damaged file.
        assert_eq!(store.put(&bytes, MAX).unwrap(), hash);
        assert_eq!(store.get(&hash).unwrap(), Some(bytes));
    }

    #[test]
    fn remove_deletes() {
        let (_dir, store) = store();
        let hash = store.put(b"gone soon", MAX).unwrap();
        assert!(store.remove(&hash).unwrap());
        assert!(!store.contains(&hash));
        assert_eq!(store.get(&hash).unwrap(), None);
    }

    #[test]
    fn open_removes_only_stale_temp_files() {
        let (_dir, store) = store();
        let fresh = store.dir().join(format!("{TEMP_PREFIX}fresh"));
        let stale = store.dir().join(format!("{TEMP_PREFIX}stale"));
        fs::write(&fresh, b"in progress").unwrap();
        fs::write(&stale, b"left by a crash").unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(1);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let reopened = BlobStore::open(store.dir()).unwrap();
        assert!(fresh.exists(), "a writer may still be using it");
        assert!(!stale.exists());
        drop(reopened);
    }

    #[test]
    fn clones_share_the_directory_across_threads() {
        let (_dir, store) = store();
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || store.put(&[i % 2; 1000], MAX).unwrap())
            })
            .collect();
        let hashes: Vec<Hash32> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (i, hash) in hashes.iter().enumerate() {
            assert_eq!(store.get(hash).unwrap(), Some(vec![(i % 2) as u8; 1000]));
        }
    }
}
