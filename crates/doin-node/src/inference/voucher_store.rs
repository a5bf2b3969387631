//! The provider's highest voucher per channel, on disk before a paid answer leaves the node.
//!
//! A voucher is money: if the node answered a query and then lost the voucher in a crash,
//! it would have worked for free. So `record` returns only after the voucher is committed to
//! its own SQLite file (`payments.db`, WAL, `synchronous = FULL`: an fsync per commit, which
//! survives power loss, not only a process crash). With `fsync = false` (the
//! `inference.voucher_fsync` setting) commits reach the OS but are not flushed: a crash of
//! the node process loses nothing, a crash of the machine may lose the last vouchers.
//!
//! One fsync per query would cap throughput at the disk's fsync rate, so writes go through
//! one writer task that commits in groups: it takes every write waiting in its queue (up to
//! [`MAX_BATCH`]), stores them in one transaction and then answers all of them. Under load
//! the batches grow and the cost per voucher falls; alone, a voucher waits for one commit.
//! A separate file keeps this writer from queueing behind block appends on the chain
//! database.

use std::path::Path;
use std::time::Duration;

use doin_core::channel::Voucher;
use doin_core::encode::{Decode, Encode};
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 1024;
/// Most writes waiting for the writer; beyond it callers wait for room (backpressure).
pub const QUEUE_CAPACITY: usize = 8192;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vouchers (
    channel    BLOB PRIMARY KEY NOT NULL,
    client     BLOB NOT NULL,
    -- The voucher in its canonical encoding (channel, amount, signature).
    voucher    BLOB NOT NULL,
    amount     INTEGER NOT NULL,
    queries    INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

#[derive(Debug, Error)]
pub enum VoucherStoreError {
    #[error("payments database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("payments database: stored voucher for channel {channel} is corrupt: {reason}")]
    Corrupt { channel: String, reason: String },
    #[error("payments database: the writer stopped")]
    Closed,
}

/// The best voucher of one channel, as the provider keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVoucher {
    pub voucher: Voucher,
    pub client: AccountId,
    /// Queries paid through this channel so far.
    pub queries: u64,
}

enum Write {
    Record(StoredVoucher, oneshot::Sender<Result<(), String>>),
    Forget(Hash32, oneshot::Sender<Result<(), String>>),
}

/// Handle to the payments database; cheap to clone.
#[derive(Debug, Clone)]
pub struct VoucherStore {
    writes: mpsc::Sender<Write>,
}

impl std::fmt::Debug for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Record(v, _) => write!(f, "Record({})", v.voucher.channel),
            Write::Forget(c, _) => write!(f, "Forget({c})"),
        }
    }
}

impl VoucherStore {
    /// Opens (creating) the database at `path`, starts its writer task and returns every
    /// stored voucher.
    pub async fn open(
        path: &Path,
        fsync: bool,
    ) -> Result<(VoucherStore, Vec<StoredVoucher>), VoucherStoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if fsync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        let rows = sqlx::query("SELECT channel, client, voucher, queries FROM vouchers")
            .fetch_all(&pool)
            .await?;
        let mut stored = Vec::with_capacity(rows.len());
        for row in rows {
            let channel: Vec<u8> = row.try_get("channel")?;
            let corrupt = |reason: String| VoucherStoreError::Corrupt {
                channel: hex::encode(&channel),
                reason,
            };
            let voucher = Voucher::from_bytes(&row.try_get::<Vec<u8>, _>("voucher")?)
                .map_err(|e| corrupt(e.to_string()))?;
            let client = AccountId::from_bytes(&row.try_get::<Vec<u8>, _>("client")?)
                .map_err(|e| corrupt(e.to_string()))?;
            let queries: i64 = row.try_get("queries")?;
            stored.push(StoredVoucher {
                voucher,
                client,
                queries: u64::try_from(queries).map_err(|e| corrupt(e.to_string()))?,
            });
        }
        let (writes, queue) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(writer(pool, queue));
        Ok((VoucherStore { writes }, stored))
    }

    /// Stores `v` as its channel's best voucher unless a higher one is stored; returns once
    /// it is committed.
    pub async fn record(&self, v: StoredVoucher) -> Result<(), VoucherStoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Record(v, done), wait).await
    }

    /// Deletes a channel's voucher (the channel was paid out and no longer exists).
    pub async fn forget(&self, channel: Hash32) -> Result<(), VoucherStoreError> {
        let (done, wait) = oneshot::channel();
        self.send(Write::Forget(channel, done), wait).await
    }

    async fn send(
        &self,
        write: Write,
        wait: oneshot::Receiver<Result<(), String>>,
    ) -> Result<(), VoucherStoreError> {
        self.writes
            .send(write)
            .await
            .map_err(|_| VoucherStoreError::Closed)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(VoucherStoreError::Db(sqlx::Error::Protocol(reason))),
            Err(_) => Err(VoucherStoreError::Closed),
        }
    }
}

/// Commits queued writes in groups until every handle is dropped.
async fn writer(pool: SqlitePool, mut queue: mpsc::Receiver<Write>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = commit(&pool, &batch).await.map_err(|e| {
            tracing::error!("payments database: commit failed: {e}");
            e.to_string()
        });
        for write in batch.drain(..) {
            let done = match write {
                Write::Record(_, done) | Write::Forget(_, done) => done,
            };
            let _ = done.send(result.clone());
        }
    }
    pool.close().await;
}

async fn commit(pool: &SqlitePool, batch: &[Write]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for write in batch {
        match write {
            Write::Record(v, _) => {
                let amount = i64::try_from(v.voucher.amount.units())
                    .map_err(|e| sqlx::Error::Protocol(format!("voucher amount: {e}")))?;
                let queries = i64::try_from(v.queries).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO vouchers (channel, client, voucher, amount, queries, updated_ms)
                     VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (channel) DO UPDATE SET
                         voucher = excluded.voucher, amount = excluded.amount,
                         queries = excluded.queries, updated_ms = excluded.updated_ms
                     WHERE excluded.amount > vouchers.amount",
                )
                .bind(v.voucher.channel.0.as_slice())
                .bind(v.client.0.as_slice())
                .bind(v.voucher.to_bytes())
                .bind(amount)
                .bind(queries)
                .bind(i64::try_from(crate::context::now_ms()).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
            }
            Write::Forget(channel, _) => {
                sqlx::query("DELETE FROM vouchers WHERE channel = ?")
                    .bind(channel.0.as_slice())
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use doin_core::amount::Amount;
    use doin_core::identity::Keypair;

    fn stored(key: &Keypair, channel: u8, amount: u64, queries: u64) -> StoredVoucher {
        StoredVoucher {
            voucher: Voucher::sign(key, Hash32([channel; 32]), Amount(amount)),
            client: key.account(),
            queries,
        }
    }

    #[tokio::test]
    async fn keeps_the_highest_voucher_per_channel_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("payments.db");
        let key = Keypair::from_seed([5; 32]);
        {
            let (store, existing) = VoucherStore::open(&path, true).await.unwrap();
            assert!(existing.is_empty());
            // Concurrent writers: they are committed in groups, each answered once durable.
            let mut tasks = Vec::new();
            for i in 1..=200u64 {
                let store = store.clone();
                let v = stored(&key, (i % 4) as u8, i * 10, i);
                tasks.push(tokio::spawn(async move { store.record(v).await }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            // A lower voucher never replaces a higher one.
            store.record(stored(&key, 0, 5, 1)).await.unwrap();
            store.forget(Hash32([3; 32])).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_store, mut existing) = VoucherStore::open(&path, true).await.unwrap();
        existing.sort_by_key(|v| v.voucher.channel.0[0]);
        let best: Vec<(u8, u64)> = existing
            .iter()
            .map(|v| (v.voucher.channel.0[0], v.voucher.amount.units()))
            .collect();
        assert_eq!(best, vec![(0, 2000), (1, 1970), (2, 1980)]);
        for v in &existing {
            v.voucher.verify(&key.account()).unwrap();
        }
    }
}
