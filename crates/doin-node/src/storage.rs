//! Chain storage: blocks, a transaction index, receipts and state snapshots in one SQLite file.
//!
//! # Why it looks like this
//! - **SQLite through sqlx, queries checked at run time.** `sqlx::query` with `bind`, not the
//!   `query!` macros, so building the node never needs a database. The schema lives in
//!   `migrations/` and is embedded with [`sqlx::migrate!`]; [`Store::open`] applies what is
//!   missing.
//! - **One block is one transaction.** [`Store::append_block`] writes the block row, its
//!   transaction index rows, a snapshot when due and the new tip inside a single
//!   `BEGIN IMMEDIATE … COMMIT`: a crash (even `kill -9`) at any point leaves the database at
//!   the previous block or at the new one, never in between. Every other write
//!   ([`Store::init`]) is one transaction too.
//! - **One writer.** Writes go through one dedicated connection behind an async lock (its
//!   page cache stays warm across blocks) and start with `BEGIN IMMEDIATE`, which takes
//!   SQLite's write lock up front, so another process cannot deadlock it on a read-to-write
//!   upgrade. Reads use a small pool and run concurrently with the writer (WAL readers never
//!   block the writer nor each other, and see only committed blocks).
//! - **Durability: WAL with `synchronous=NORMAL`.** A committed block survives any crash of
//!   the process: the commit is in the WAL file before `append_block` returns. An operating
//!   system crash or power loss may lose the last few committed blocks (they were not fsynced
//!   yet) but never corrupts the database, and whatever is lost is re-fetched from peers.
//!   `FULL` would fsync on every commit and cap the append rate at the disk's fsync rate.
//! - **Blocks are stored once, in their canonical encoding** (`Block::to_wire`). The `txs`
//!   table is an index: it records where each transaction's bytes sit inside its block blob,
//!   and a lookup extracts them with `substr` and decodes one transaction (no duplicated
//!   bytes, no whole-block decode). Its id and account indexes use 8-byte key prefixes: with
//!   random ids every indexed transaction dirties an index page per commit, and narrow
//!   entries halved the pages written per block (see `migrations/0001_init.sql`).
//! - **Snapshots make restart cheap.** Every `snapshot_interval` blocks the state after the
//!   block is stored (serde JSON of [`ChainState`]). [`Store::load_state`] starts from the
//!   latest one, checks it against the state root of its block, and replays only the blocks
//!   after it, fully validated by [`ChainState::apply_block`]: a tampered database is
//!   reported, never trusted. The newest [`SNAPSHOTS_KEPT`] snapshots (and genesis) are kept.
//! - **Reads verify what they return.** A block read by hash must hash to it, a block read by
//!   height must carry that height, a transaction must have the requested id; anything else
//!   is [`StoreError::Corrupt`].
//!
//! # Blocking and cancellation
//! sqlx runs SQLite on its own worker threads, so these methods do not block the async
//! runtime, except [`Store::load_state`], which re-executes blocks on the calling task (a
//! startup step, bounded by `snapshot_interval` blocks). Every method is cancel-safe in the
//! sense that a dropped future rolls its transaction back; a write whose future is dropped
//! after it committed stays committed, so callers that cancel a write re-read [`Store::tip`].
//!
//! Errors here are the node's own (disk, database, caller bugs): never a peer's fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use doin_core::block::{Block, BlockHash};
use doin_core::encode::{Decode, Encode};
use doin_core::hash::Hash32;
use doin_core::identity::AccountId;
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::{BlockReceipt, ChainState, VerdictRecord};
use doin_core::tx::{SignedTx, TxId};
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::ConnectOptions;
use sqlx::{Connection, Row, Sqlite, SqliteConnection, Transaction};
use thiserror::Error;
use tokio::sync::Mutex;

/// Blocks between two state snapshots when the operator does not say otherwise.
/// At 100, a restart replays at most 99 blocks.
pub const DEFAULT_SNAPSHOT_INTERVAL: u64 = 100;

/// Snapshots kept besides genesis; older ones are deleted when a new one is written. Three
/// cover `2 × snapshot_interval` blocks below the newest one, far more than a reorg can undo
/// (it never goes below the finality depth).
pub const SNAPSHOTS_KEPT: u64 = 3;

/// How long a statement waits for SQLite's lock (another process, a checkpoint) before
/// failing. sqlx's default too; long enough for any single block write.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Reader connections in the pool (API handlers, sync); the writer has its own.
pub const MAX_CONNECTIONS: u32 = 4;

/// Page cache of the writer connection, in KiB (allocated as used). Index pages the next
/// blocks update stay in memory instead of being re-read (SQLite's default is 2 MiB).
const WRITER_CACHE_KIB: u32 = 64 * 1024;

/// WAL pages (4 KiB) after which a commit checkpoints them into the database file: 32 MiB.
/// Larger than SQLite's 1,000 so that index pages rewritten by many consecutive blocks are
/// copied (and fsynced) once per checkpoint rather than once every few blocks.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 8_192;

/// Size the WAL file is truncated back to after a checkpoint, in bytes.
const JOURNAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// Rows per multi-row `INSERT` into `txs` (11 bound values each, far below SQLite's limit of
/// 32,766). Smaller batches use the powers of two below it, so at most 7 distinct statements
/// are ever prepared and cached.
const TX_INSERT_BATCH: usize = 64;

/// `txs.seq` is `height << SEQ_INDEX_BITS | index`; blocks hold at most
/// `MAX_BLOCK_TXS_HARD` (100,000) transactions, below 2^20.
const SEQ_INDEX_BITS: u32 = 20;

/// Blocks fetched per query while replaying (bounds memory whatever the interval).
const REPLAY_BATCH: u64 = 256;

const META_PARAMS: &str = "params";
const META_PARAMS_HASH: &str = "params_hash";
const META_TIP: &str = "tip";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why a storage operation failed. Nothing was written unless the operation succeeded.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database schema migration: {0}")]
    Migrate(#[from] MigrateError),
    #[error("creating the database directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot_interval must be at least 1")]
    ZeroSnapshotInterval,
    /// The database contradicts itself or fails a check on read.
    #[error("storage is corrupt: {what}: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(
        "this data directory holds another chain: its chain parameters hash to {stored}, the \
         configured ones to {configured}. Start the node with another --data-dir (or move this \
         one away) to run the configured chain; keep this directory to go back to its chain"
    )]
    ParamsMismatch { stored: Hash32, configured: Hash32 },
    /// A stored block failed re-validation while rebuilding the state.
    #[error("stored block {height} fails validation on replay: {reason}")]
    Replay { height: u64, reason: String },
    #[error("the store is closed")]
    Closed,
    #[error("the store holds no chain yet (call init first)")]
    NotInitialized,
    /// The block does not extend the stored tip; nothing was written.
    #[error(
        "block {height} (parent {parent}) does not extend the stored tip, block {tip_height} \
         ({tip_hash})"
    )]
    NotNext {
        height: u64,
        parent: BlockHash,
        tip_height: u64,
        tip_hash: BlockHash,
    },
    /// The caller passed data that contradicts itself (a caller bug); nothing was written.
    #[error("refused to store {what}: {reason}")]
    Refused { what: String, reason: String },
}

/// Result of a storage operation.
pub type StoreResult<T> = Result<T, StoreError>;

fn corrupt(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        reason: reason.to_string(),
    }
}

fn refused(what: impl Into<String>, reason: impl ToString) -> StoreError {
    StoreError::Refused {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// A transaction found in a stored block.
#[derive(Debug, Clone, PartialEq)]
pub struct TxRecord {
    pub tx: SignedTx,
    pub height: u64,
    /// Position in the block.
    pub index: u32,
    pub block_hash: Hash32,
}

/// A verdict read from a stored block receipt ([`Store::verdicts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVerdict {
    /// Height of the block whose receipt records the verdict.
    pub height: u64,
    pub timestamp_ms: u64,
    pub record: VerdictRecord,
}

/// A block's receipt with the header fields the API shows next to it ([`Store::receipts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiptRecord {
    pub height: u64,
    pub hash: BlockHash,
    pub timestamp_ms: u64,
    pub proposer: AccountId,
    pub tx_count: u64,
    /// `None` for genesis.
    pub receipt: Option<BlockReceipt>,
}

/// Handle on the chain database. Cheap to clone; clones share the pool and the writer lock.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The one connection that writes, behind the lock that serializes writers. Dedicated so
    /// its page cache stays warm (a pooled writer would often find its cache invalidated by
    /// another connection's write). `None` once closed.
    writer: Arc<Mutex<Option<SqliteConnection>>>,
    snapshot_interval: u64,
}

/// One `txs` row, computed before the write transaction starts.
struct TxRow {
    index: i64,
    id: TxId,
    sender: AccountId,
    nonce: i64,
    kind: &'static str,
    offset: i64,
    len: i64,
}

// === impl Store ===

impl Store {
    /// Opens (creating the file and its directory if missing) and migrates the database at
    /// `path`. `snapshot_interval` is how many blocks separate two state snapshots.
    pub async fn open(path: &Path, snapshot_interval: u64) -> StoreResult<Store> {
        if snapshot_interval == 0 {
            return Err(StoreError::ZeroSnapshotInterval);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A quick metadata call at startup; not worth a blocking-pool hop.
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // Statement journals (multi-row inserts) and sorts stay in memory: on disk they
            // were a fifth of the append time, as temporary files written and deleted.
            .pragma("temp_store", "MEMORY")
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            // A local file does not drop connections: skip the ping before every checkout,
            // which was a third of a lookup's latency.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let writer = options
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .connect()
            .await?;
        Ok(Store {
            pool,
            writer: Arc::new(Mutex::new(Some(writer))),
            snapshot_interval,
        })
    }

    /// Closes every connection (the last one checkpoints the WAL into the database file).
    /// Waits for a write in progress and for pooled connections in use to come back. Later
    /// calls on any clone fail with [`StoreError::Closed`] or a database error.
    pub async fn close(&self) {
        if let Some(writer) = self.writer.lock().await.take() {
            // Closing only fails if the connection is already broken: nothing to do then.
            let _ = writer.close().await;
        }
        self.pool.close().await;
    }

    /// Blocks between two state snapshots, as opened.
    pub fn snapshot_interval(&self) -> u64 {
        self.snapshot_interval
    }

    /// Records the chain on first use: parameters, genesis block and genesis state, in one
    /// transaction. On a store that already holds a chain, succeeds when it is the same chain
    /// (same parameters hash) and fails with [`StoreError::ParamsMismatch`] otherwise.
    pub async fn init(
        &self,
        params: &ChainParams,
        genesis: &Block,
        state: &ChainState,
    ) -> StoreResult<()> {
        let mut writer = self.writer.lock().await;
        let conn = writer.as_mut().ok_or(StoreError::Closed)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let result = init_in(&mut tx, params, genesis, state).await;
        finish(tx, result).await
    }

    /// Appends the next block with the state it leads to and its receipt, in one
    /// transaction: the block, its transaction index rows, a snapshot when
    /// `height % snapshot_interval == 0`, and the new tip. The block must extend the tip
    /// (height `tip + 1`, parent the tip's hash), otherwise [`StoreError::NotNext`] and
    /// nothing is written. The block is not validated here: the caller applied it.
    pub async fn append_block(
        &self,
        block: &Block,
        state_after: &ChainState,
        receipt: &BlockReceipt,
    ) -> StoreResult<()> {
        // CPU work first, outside the lock.
        let prepared = self.prepare(block, state_after, receipt)?;
        let mut writer = self.writer.lock().await;
        let conn = writer.as_mut().ok_or(StoreError::Closed)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let result = append_in(&mut tx, &prepared, self.snapshot_interval).await;
        finish(tx, result).await
    }

    /// Encodes what [`append_in`] writes for one block.
    fn prepare<'a>(
        &self,
        block: &'a Block,
        state_after: &ChainState,
        receipt: &BlockReceipt,
    ) -> StoreResult<PreparedBlock<'a>> {
        let height = block.header.height;
        let hash = block.hash();
        if state_after.height != height || state_after.tip != hash {
            return Err(refused(
                format!("block {height}"),
                format!(
                    "the state given is the state after block {} ({}), not after this block ({hash})",
                    state_after.height, state_after.tip
                ),
            ));
        }
        let wire = block.to_wire();
        let rows = tx_rows(block, &wire)?;
        let receipt_json =
            serde_json::to_string(receipt).map_err(|e| refused("block receipt", e))?;
        let snapshot = if height.is_multiple_of(self.snapshot_interval) {
            Some(serde_json::to_vec(state_after).map_err(|e| refused("state snapshot", e))?)
        } else {
            None
        };
        Ok(PreparedBlock {
            block,
            height,
            hash,
            wire,
            rows,
            receipt_json,
            snapshot,
        })
    }

    // --- reads ---

    /// Height and hash of the newest stored block; `None` before [`Store::init`].
    pub async fn tip(&self) -> StoreResult<Option<(u64, BlockHash)>> {
        let mut conn = self.pool.acquire().await?;
        read_tip(&mut conn).await
    }

    /// The chain parameters the store was initialized with.
    pub async fn stored_params(&self) -> StoreResult<Option<ChainParams>> {
        let mut tx = self.pool.begin().await?;
        let result = stored_params_in(&mut tx).await;
        finish(tx, result).await
    }

    /// The block at `height`, checked to carry that height.
    pub async fn block_by_height(&self, height: u64) -> StoreResult<Option<Block>> {
        let row = sqlx::query("SELECT height, block FROM blocks WHERE height = ?")
            .bind(to_i64(height, "height")?)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| block_from_row(&r)).transpose()
    }

    /// The block with this hash, checked to hash to it.
    pub async fn block_by_hash(&self, hash: &BlockHash) -> StoreResult<Option<Block>> {
        let row = sqlx::query("SELECT height, block FROM blocks WHERE hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let block = block_from_row(&row)?;
        if block.hash() != *hash {
            return Err(corrupt(
                format!("block {}", block.header.height),
                format!("indexed under {hash}, hashes to {}", block.hash()),
            ));
        }
        Ok(Some(block))
    }

    /// Blocks `from..=to` in height order (those that exist). The caller bounds the range.
    pub async fn blocks(&self, from: u64, to_inclusive: u64) -> StoreResult<Vec<Block>> {
        if from > to_inclusive {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT height, block FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
        )
        .bind(to_i64(from, "height")?)
        .bind(to_i64(to_inclusive, "height")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(block_from_row).collect()
    }

    /// What the block at `height` did beyond its transactions; `None` for genesis and for
    /// heights not stored.
    pub async fn receipt(&self, height: u64) -> StoreResult<Option<BlockReceipt>> {
        let json: Option<Option<String>> =
            sqlx::query_scalar("SELECT receipt FROM blocks WHERE height = ?")
                .bind(to_i64(height, "height")?)
                .fetch_optional(&self.pool)
                .await?;
        json.flatten()
            .map(|j| serde_json::from_str(&j).map_err(|e| corrupt(format!("receipt {height}"), e)))
            .transpose()
    }

    /// The verdicts of `domain` taken in blocks `from..before` (accepted ones only when
    /// `accepted_only`), newest first, at most `limit`, each with its block's height and
    /// timestamp. The caller bounds the range and the limit.
    ///
    /// Receipts are stored as JSON, so SQLite picks the verdicts out itself (`json_each`)
    /// and only matching ones cross into Rust to be decoded. Blocks without verdicts (most of
    /// them) are skipped by a substring test before any JSON is parsed: a receipt with no
    /// verdicts serializes as `{"verdicts":[],...`. Should that form ever change, the test
    /// only stops skipping early; the answer stays the same.
    pub async fn verdicts(
        &self,
        domain: &DomainId,
        from: u64,
        before: u64,
        limit: u32,
        accepted_only: bool,
    ) -> StoreResult<Vec<StoredVerdict>> {
        if from >= before || limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT b.height, b.timestamp_ms, v.value AS verdict \
             FROM blocks b, json_each(b.receipt, '$.verdicts') v \
             WHERE b.height >= ?1 AND b.height < ?2 AND b.receipt IS NOT NULL \
               AND instr(b.receipt, '\"verdicts\":[]') = 0 \
               AND json_extract(v.value, '$.domain') = ?3 \
               AND (?4 = 0 OR json_type(v.value, '$.verdict.Accepted') IS NOT NULL) \
             ORDER BY b.height DESC, v.key ASC LIMIT ?5",
        )
        .bind(to_i64(from, "height")?)
        .bind(saturating_i64(before))
        .bind(domain.as_str())
        .bind(accepted_only)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let height = u64_col(row, "height")?;
                let json: String = row.try_get("verdict")?;
                let record = serde_json::from_str(&json)
                    .map_err(|e| corrupt(format!("receipt {height}"), e))?;
                Ok(StoredVerdict {
                    height,
                    timestamp_ms: u64_col(row, "timestamp_ms")?,
                    record,
                })
            })
            .collect()
    }

    /// A transaction of a stored block, by id.
    pub async fn tx(&self, id: &TxId) -> StoreResult<Option<TxRecord>> {
        let row = sqlx::query(TX_SELECT_BY_ID)
            .bind(key8(id.as_bytes()))
            .bind(id.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let record = tx_record_from_row(&row)?;
        if record.tx.id() != *id {
            return Err(corrupt(
                format!("transaction {id}"),
                format!(
                    "the bytes indexed under it (block {}, index {}) hash to {}",
                    record.height,
                    record.index,
                    record.tx.id()
                ),
            ));
        }
        Ok(Some(record))
    }

    /// Up to `limit` transactions sent by `account`, newest first.
    pub async fn txs_by_account(
        &self,
        account: &AccountId,
        limit: u32,
    ) -> StoreResult<Vec<TxRecord>> {
        let rows = sqlx::query(TX_SELECT_BY_SENDER)
            .bind(key8(&account.0))
            .bind(account.0.as_slice())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let records = rows
            .iter()
            .map(tx_record_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        if let Some(r) = records.iter().find(|r| r.tx.body.sender != *account) {
            return Err(corrupt(
                format!("transaction {}", r.tx.id()),
                format!("indexed as sent by {account}, sent by {}", r.tx.body.sender),
            ));
        }
        Ok(records)
    }

    /// Receipts of blocks `from..=to` in height order (those that exist), with their
    /// height, hash, timestamp, proposer and transaction count. The block blobs are not
    /// read. The caller bounds the range.
    pub async fn receipts(&self, from: u64, to_inclusive: u64) -> StoreResult<Vec<ReceiptRecord>> {
        if from > to_inclusive {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT height, hash, timestamp_ms, proposer, tx_count, receipt FROM blocks \
             WHERE height BETWEEN ? AND ? ORDER BY height",
        )
        .bind(to_i64(from, "height")?)
        .bind(saturating_i64(to_inclusive))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(receipt_record_from_row).collect()
    }

    /// The newest block in `from..=to` whose receipt mentions `commitment` (as a verdict or
    /// an expiry), or `None`. A decided optimae appears in exactly one receipt, so the first
    /// hit is the one. Receipts are JSON with hashes in hex, so SQLite tests each one with
    /// `instr` and only the hit is decoded; the scan is still linear in the range, which
    /// the caller bounds.
    pub async fn receipt_mentioning(
        &self,
        commitment: &Hash32,
        from: u64,
        to_inclusive: u64,
    ) -> StoreResult<Option<ReceiptRecord>> {
        if from > to_inclusive {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT height, hash, timestamp_ms, proposer, tx_count, receipt FROM blocks \
             WHERE height BETWEEN ? AND ? AND receipt IS NOT NULL AND instr(receipt, ?) > 0 \
             ORDER BY height DESC LIMIT 1",
        )
        .bind(to_i64(from, "height")?)
        .bind(saturating_i64(to_inclusive))
        .bind(commitment.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(receipt_record_from_row).transpose()
    }

    /// Rebuilds the state at the tip: the newest snapshot at or below the tip, checked
    /// against its block's state root, then every later block re-validated with
    /// [`ChainState::apply_block`] (without the clock rule). Ends by checking that the replay
    /// reached the stored tip. CPU-bound for up to `snapshot_interval` blocks.
    pub async fn load_state(&self, params: &ChainParams) -> StoreResult<ChainState> {
        // One read transaction: a consistent view even if a writer commits meanwhile.
        let mut tx = self.pool.begin().await?;
        let result = load_state_in(&mut tx, params, None).await;
        finish(tx, result).await
    }

    /// The state after the stored block at `height` (at or below the tip), rebuilt like
    /// [`Store::load_state`]: from the newest snapshot at or below it, replaying the blocks
    /// after the snapshot. A reorganization starts from here.
    pub async fn state_at(&self, params: &ChainParams, height: u64) -> StoreResult<ChainState> {
        let mut tx = self.pool.begin().await?;
        let result = load_state_in(&mut tx, params, Some(height)).await;
        finish(tx, result).await
    }

    /// Hashes of the stored blocks `from..=to` in height order (those that exist).
    pub async fn hashes(&self, from: u64, to_inclusive: u64) -> StoreResult<Vec<(u64, BlockHash)>> {
        if from > to_inclusive {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT height, hash FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
        )
        .bind(to_i64(from, "height")?)
        .bind(to_i64(to_inclusive, "height")?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let height = u64_col(row, "height")?;
                let hash: Vec<u8> = row.try_get("hash")?;
                Ok((height, hash_from(&hash, "blocks.hash")?))
            })
            .collect()
    }

    /// Replaces the blocks above `fork_height` with `branch` (each with the state after it and
    /// its receipt, in height order, the first one building on the block at `fork_height`),
    /// in one transaction: the old blocks, their transaction index rows and snapshots go, the
    /// new ones come in, and the tip moves. A crash leaves the old chain or the new one.
    /// Returns the blocks that were removed, oldest first. The caller validated the branch.
    pub async fn reorganize(
        &self,
        fork_height: u64,
        branch: &[(Block, ChainState, BlockReceipt)],
    ) -> StoreResult<Vec<Block>> {
        let mut prepared = Vec::with_capacity(branch.len());
        for (block, state, receipt) in branch {
            prepared.push(self.prepare(block, state, receipt)?);
        }
        let mut writer = self.writer.lock().await;
        let conn = writer.as_mut().ok_or(StoreError::Closed)?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let result = async {
            let removed = rewind_in(&mut tx, fork_height).await?;
            for b in &prepared {
                append_in(&mut tx, b, self.snapshot_interval).await?;
            }
            Ok(removed)
        }
        .await;
        finish(tx, result).await
    }
}

// === helpers ===

async fn stored_params_in(conn: &mut SqliteConnection) -> StoreResult<Option<ChainParams>> {
    let Some(json) = meta_get(conn, META_PARAMS).await? else {
        return Ok(None);
    };
    let params: ChainParams =
        serde_json::from_slice(&json).map_err(|e| corrupt("meta.params", e))?;
    let stored_hash = meta_get(conn, META_PARAMS_HASH)
        .await?
        .ok_or_else(|| corrupt("meta.params_hash", "missing"))?;
    let stored_hash = hash_from(&stored_hash, "meta.params_hash")?;
    if params.hash() != stored_hash {
        return Err(corrupt(
            "meta.params",
            format!(
                "hash to {}, meta.params_hash says {stored_hash}",
                params.hash()
            ),
        ));
    }
    Ok(Some(params))
}

/// The state after block `upto` (default: the tip).
async fn load_state_in(
    conn: &mut SqliteConnection,
    params: &ChainParams,
    upto: Option<u64>,
) -> StoreResult<ChainState> {
    let stored = meta_get(conn, META_PARAMS_HASH)
        .await?
        .ok_or(StoreError::NotInitialized)?;
    let stored = hash_from(&stored, "meta.params_hash")?;
    let configured = params.hash();
    if stored != configured {
        return Err(StoreError::ParamsMismatch { stored, configured });
    }
    let (stored_tip, stored_tip_hash) = read_tip(conn).await?.ok_or(StoreError::NotInitialized)?;
    let (tip_height, tip_hash) = match upto {
        None => (stored_tip, stored_tip_hash),
        Some(h) if h > stored_tip => {
            return Err(refused(
                format!("state at {h}"),
                format!("the tip is {stored_tip}"),
            ))
        }
        Some(h) => {
            let row = sqlx::query("SELECT hash FROM blocks WHERE height = ?")
                .bind(to_i64(h, "height")?)
                .fetch_optional(&mut *conn)
                .await?
                .ok_or_else(|| corrupt(format!("block {h}"), "missing"))?;
            let hash: Vec<u8> = row.try_get("hash")?;
            (h, hash_from(&hash, "blocks.hash")?)
        }
    };

    let row = sqlx::query(
        "SELECT height, state FROM snapshots WHERE height <= ? ORDER BY height DESC LIMIT 1",
    )
    .bind(to_i64(tip_height, "height")?)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| corrupt("snapshots", "no snapshot at or below the tip"))?;
    let snap_height = u64_col(&row, "height")?;
    let bytes: Vec<u8> = row.try_get("state")?;
    let what = || format!("snapshot {snap_height}");
    let mut state: ChainState = serde_json::from_slice(&bytes).map_err(|e| corrupt(what(), e))?;
    drop(bytes);
    if state.height != snap_height {
        return Err(corrupt(
            what(),
            format!("holds the state at height {}", state.height),
        ));
    }
    let row = sqlx::query("SELECT height, block FROM blocks WHERE height = ?")
        .bind(to_i64(snap_height, "height")?)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| corrupt(format!("block {snap_height}"), "missing"))?;
    let snap_block = block_from_row(&row).map_err(|e| StoreError::Replay {
        height: snap_height,
        reason: e.to_string(),
    })?;
    if state.tip != snap_block.hash() {
        return Err(corrupt(
            what(),
            format!(
                "its tip is {}, block {snap_height} is {}",
                state.tip,
                snap_block.hash()
            ),
        ));
    }
    let root = state.state_root();
    if root != snap_block.header.state_root {
        return Err(corrupt(
            what(),
            format!(
                "its state root is {root}, block {snap_height} commits to {}",
                snap_block.header.state_root
            ),
        ));
    }

    let mut next = snap_height + 1;
    while next <= tip_height {
        let last = tip_height.min(next.saturating_add(REPLAY_BATCH - 1));
        let rows = sqlx::query(
            "SELECT height, block FROM blocks WHERE height BETWEEN ? AND ? ORDER BY height",
        )
        .bind(to_i64(next, "height")?)
        .bind(to_i64(last, "height")?)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let height = u64_col(&row, "height")?;
            if height != next {
                return Err(corrupt(format!("block {next}"), "missing"));
            }
            let block = block_from_row(&row).map_err(|e| StoreError::Replay {
                height,
                reason: e.to_string(),
            })?;
            state = state
                .apply_block(params, &block, None)
                .map_err(|e| StoreError::Replay {
                    height,
                    reason: e.to_string(),
                })?
                .0;
            next += 1;
        }
        if next <= last {
            return Err(corrupt(format!("block {next}"), "missing"));
        }
    }
    if state.height != tip_height || state.tip != tip_hash {
        return Err(corrupt(
            "tip",
            format!(
                "meta says block {tip_height} ({tip_hash}), the blocks lead to {} ({})",
                state.height, state.tip
            ),
        ));
    }
    Ok(state)
}

async fn init_in(
    conn: &mut SqliteConnection,
    params: &ChainParams,
    genesis: &Block,
    state: &ChainState,
) -> StoreResult<()> {
    let configured = params.hash();
    let genesis_hash = genesis.hash();
    if let Some(stored) = meta_get(conn, META_PARAMS_HASH).await? {
        let stored = hash_from(&stored, "meta.params_hash")?;
        if stored != configured {
            return Err(StoreError::ParamsMismatch { stored, configured });
        }
        let stored_genesis: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM blocks WHERE height = 0")
                .fetch_optional(&mut *conn)
                .await?;
        let stored_genesis = stored_genesis.ok_or_else(|| corrupt("genesis", "missing"))?;
        let stored_genesis = hash_from(&stored_genesis, "genesis hash")?;
        if stored_genesis != genesis_hash {
            return Err(corrupt(
                "genesis",
                format!("stored {stored_genesis}, the parameters give {genesis_hash}"),
            ));
        }
        return Ok(());
    }
    check_genesis(params, genesis, state)?;
    let params_json = serde_json::to_vec(params).map_err(|e| refused("params", e))?;
    let snapshot = serde_json::to_vec(state).map_err(|e| refused("genesis state", e))?;
    meta_put(conn, META_PARAMS, &params_json).await?;
    meta_put(conn, META_PARAMS_HASH, configured.as_bytes()).await?;
    insert_block(conn, genesis, &genesis_hash, &genesis.to_wire(), None).await?;
    sqlx::query("INSERT INTO snapshots (height, state) VALUES (0, ?)")
        .bind(snapshot)
        .execute(&mut *conn)
        .await?;
    meta_put(conn, META_TIP, &tip_bytes(0, &genesis_hash)).await
}

/// A block encoded and indexed, ready for its write transaction.
struct PreparedBlock<'a> {
    block: &'a Block,
    height: u64,
    hash: BlockHash,
    wire: Vec<u8>,
    rows: Vec<TxRow>,
    receipt_json: String,
    snapshot: Option<Vec<u8>>,
}

async fn append_in(
    conn: &mut SqliteConnection,
    b: &PreparedBlock<'_>,
    snapshot_interval: u64,
) -> StoreResult<()> {
    let (tip_height, tip_hash) = read_tip(conn).await?.ok_or(StoreError::NotInitialized)?;
    if b.height != tip_height.saturating_add(1) || b.block.header.parent != tip_hash {
        return Err(StoreError::NotNext {
            height: b.height,
            parent: b.block.header.parent,
            tip_height,
            tip_hash,
        });
    }
    insert_block(conn, b.block, &b.hash, &b.wire, Some(&b.receipt_json)).await?;
    insert_tx_rows(conn, b.height, &b.rows).await?;
    if let Some(state) = &b.snapshot {
        sqlx::query("INSERT INTO snapshots (height, state) VALUES (?, ?)")
            .bind(to_i64(b.height, "height")?)
            .bind(state.as_slice())
            .execute(&mut *conn)
            .await?;
        let keep_from = b
            .height
            .saturating_sub((SNAPSHOTS_KEPT - 1) * snapshot_interval);
        sqlx::query("DELETE FROM snapshots WHERE height > 0 AND height < ?")
            .bind(to_i64(keep_from, "height")?)
            .execute(&mut *conn)
            .await?;
    }
    meta_put(conn, META_TIP, &tip_bytes(b.height, &b.hash)).await
}

/// Removes every block above `fork_height` (with its transaction rows and snapshot) and makes
/// the block at `fork_height` the tip; returns the removed blocks, oldest first.
async fn rewind_in(conn: &mut SqliteConnection, fork_height: u64) -> StoreResult<Vec<Block>> {
    let (tip_height, _) = read_tip(conn).await?.ok_or(StoreError::NotInitialized)?;
    if fork_height > tip_height {
        return Err(refused(
            format!("rewind to {fork_height}"),
            format!("the tip is {tip_height}"),
        ));
    }
    let above = to_i64(fork_height, "height")?;
    let rows = sqlx::query("SELECT height, block FROM blocks WHERE height > ? ORDER BY height")
        .bind(above)
        .fetch_all(&mut *conn)
        .await?;
    let removed = rows
        .iter()
        .map(block_from_row)
        .collect::<StoreResult<Vec<Block>>>()?;
    let row = sqlx::query("SELECT hash FROM blocks WHERE height = ?")
        .bind(above)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| corrupt(format!("block {fork_height}"), "missing"))?;
    let fork_hash: Vec<u8> = row.try_get("hash")?;
    let fork_hash = hash_from(&fork_hash, "blocks.hash")?;
    for table in ["txs", "snapshots", "blocks"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE height > ?"))
            .bind(above)
            .execute(&mut *conn)
            .await?;
    }
    meta_put(conn, META_TIP, &tip_bytes(fork_height, &fork_hash)).await?;
    Ok(removed)
}

/// Ends a transaction: commits when `result` is a success, rolls back otherwise (at once, so
/// no lock outlives the call).
async fn finish<T>(tx: Transaction<'_, Sqlite>, result: StoreResult<T>) -> StoreResult<T> {
    match result {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(e) => {
            // The error that made us roll back is the one worth reporting.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

fn to_i64(v: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| refused(what, format!("{v} does not fit SQLite's INTEGER")))
}

/// For informational columns only (the blob is authoritative): saturates.
fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_col(row: &SqliteRow, col: &str) -> StoreResult<u64> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|_| corrupt(col, format!("negative value {v}")))
}

fn hash_from(bytes: &[u8], what: &str) -> StoreResult<Hash32> {
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("{} bytes, expected 32", bytes.len())))?;
    Ok(Hash32(arr))
}

fn tip_bytes(height: u64, hash: &BlockHash) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..8].copy_from_slice(&height.to_be_bytes());
    out[8..].copy_from_slice(hash.as_bytes());
    out
}

async fn read_tip(conn: &mut SqliteConnection) -> StoreResult<Option<(u64, BlockHash)>> {
    let Some(bytes) = meta_get(conn, META_TIP).await? else {
        return Ok(None);
    };
    if bytes.len() != 40 {
        return Err(corrupt(
            "meta.tip",
            format!("{} bytes, expected 40", bytes.len()),
        ));
    }
    let mut height = [0u8; 8];
    height.copy_from_slice(&bytes[..8]);
    Ok(Some((
        u64::from_be_bytes(height),
        hash_from(&bytes[8..], "meta.tip")?,
    )))
}

async fn meta_get(conn: &mut SqliteConnection, key: &str) -> StoreResult<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_optional(conn)
        .await?)
}

async fn meta_put(conn: &mut SqliteConnection, key: &str, value: &[u8]) -> StoreResult<()> {
    sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

fn check_genesis(params: &ChainParams, genesis: &Block, state: &ChainState) -> StoreResult<()> {
    let h = &genesis.header;
    let reason = if h.height != 0 {
        format!("height is {}", h.height)
    } else if h.parent != params.hash() {
        format!(
            "parent is {}, the parameters hash to {}",
            h.parent,
            params.hash()
        )
    } else if state.height != 0 || state.tip != genesis.hash() {
        format!(
            "the state given is at block {} ({})",
            state.height, state.tip
        )
    } else if state.state_root() != h.state_root {
        format!(
            "the state given has root {}, the block commits to {}",
            state.state_root(),
            h.state_root
        )
    } else {
        return Ok(());
    };
    Err(refused("genesis", reason))
}

async fn insert_block(
    conn: &mut SqliteConnection,
    block: &Block,
    hash: &BlockHash,
    wire: &[u8],
    receipt_json: Option<&str>,
) -> StoreResult<()> {
    let h = &block.header;
    sqlx::query(
        "INSERT INTO blocks (height, hash, parent, timestamp_ms, proposer, tx_count, work, block, receipt) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(to_i64(h.height, "height")?)
    .bind(hash.as_bytes().as_slice())
    .bind(h.parent.as_bytes().as_slice())
    .bind(saturating_i64(h.timestamp_ms))
    .bind(h.proposer.0.as_slice())
    .bind(saturating_i64(block.txs.len() as u64))
    .bind(saturating_i64(h.work))
    .bind(wire)
    .bind(receipt_json)
    .execute(conn)
    .await?;
    Ok(())
}

/// Index rows of a block's transactions. A block's encoding ends with its transactions, each
/// in its canonical unversioned encoding; their offsets are found from the end and checked.
fn tx_rows(block: &Block, wire: &[u8]) -> StoreResult<Vec<TxRow>> {
    if block.txs.len() >= 1 << SEQ_INDEX_BITS {
        return Err(refused(
            format!("block {}", block.header.height),
            format!(
                "{} transactions, more than a block can hold",
                block.txs.len()
            ),
        ));
    }
    let mut rows = Vec::with_capacity(block.txs.len());
    let mut end = wire.len();
    for (index, tx) in block.txs.iter().enumerate().rev() {
        let bytes = tx.to_bytes();
        let start = end.checked_sub(bytes.len());
        match start {
            Some(start) if wire[start..end] == bytes[..] => {
                rows.push(TxRow {
                    index: to_i64(index as u64, "index")?,
                    id: tx.id(),
                    sender: tx.body.sender,
                    nonce: saturating_i64(tx.body.nonce),
                    kind: tx.body.kind.name(),
                    offset: to_i64(start as u64, "offset")?,
                    len: to_i64(bytes.len() as u64, "length")?,
                });
                end = start;
            }
            _ => {
                return Err(refused(
                    format!("block {}", block.header.height),
                    "its encoding does not end with its transactions (encoding changed?)",
                ))
            }
        }
    }
    rows.reverse();
    Ok(rows)
}

async fn insert_tx_rows(
    conn: &mut SqliteConnection,
    height: u64,
    rows: &[TxRow],
) -> StoreResult<()> {
    let height_i = to_i64(height, "height")?;
    let first_seq = to_i64(height, "height")?
        .checked_mul(1 << SEQ_INDEX_BITS)
        .ok_or_else(|| refused(format!("block {height}"), "height too large to index"))?;
    let mut index = 0usize;
    while index < rows.len() {
        // Largest power of two <= remaining, capped at the batch size: few distinct statements.
        let remaining = rows.len() - index;
        let n = TX_INSERT_BATCH.min(1 << remaining.ilog2());
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "INSERT INTO txs (seq, id_key, sender_key, id, sender, height, idx, nonce, kind, \
             byte_offset, byte_len) ",
        );
        qb.push_values(&rows[index..index + n], |mut b, row| {
            b.push_bind(first_seq + row.index)
                .push_bind(key8(row.id.as_bytes()))
                .push_bind(key8(&row.sender.0))
                .push_bind(row.id.as_bytes().as_slice())
                .push_bind(row.sender.0.as_slice())
                .push_bind(height_i)
                .push_bind(row.index)
                .push_bind(row.nonce)
                .push_bind(row.kind)
                .push_bind(row.offset)
                .push_bind(row.len);
        });
        qb.build().execute(&mut *conn).await?;
        index += n;
    }
    Ok(())
}

/// The index key of a 32-byte id: its first 8 bytes as a little-endian integer.
fn key8(bytes: &[u8; 32]) -> i64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&bytes[..8]);
    i64::from_le_bytes(prefix)
}

fn block_from_row(row: &SqliteRow) -> StoreResult<Block> {
    let height = u64_col(row, "height")?;
    let bytes: Vec<u8> = row.try_get("block")?;
    let block = Block::from_wire(&bytes).map_err(|e| corrupt(format!("block {height}"), e))?;
    if block.header.height != height {
        return Err(corrupt(
            format!("block {height}"),
            format!(
                "stored at height {height}, its header says {}",
                block.header.height
            ),
        ));
    }
    Ok(block)
}

/// Transaction lookups: the index row, its block's hash, and the transaction's bytes cut out
/// of the block blob (`substr` counts from 1). The 8-byte keys find the rows; the full id or
/// sender then rules out prefix collisions.
const TX_SELECT_BY_ID: &str = "SELECT t.height AS height, t.idx AS idx, b.hash AS block_hash, \
     substr(b.block, t.byte_offset + 1, t.byte_len) AS tx \
     FROM txs t JOIN blocks b ON b.height = t.height WHERE t.id_key = ? AND t.id = ?";
const TX_SELECT_BY_SENDER: &str = "SELECT t.height AS height, t.idx AS idx, \
     b.hash AS block_hash, substr(b.block, t.byte_offset + 1, t.byte_len) AS tx \
     FROM txs t JOIN blocks b ON b.height = t.height \
     WHERE t.sender_key = ? AND t.sender = ? ORDER BY t.seq DESC LIMIT ?";

fn receipt_record_from_row(row: &SqliteRow) -> StoreResult<ReceiptRecord> {
    let height = u64_col(row, "height")?;
    let hash: Vec<u8> = row.try_get("hash")?;
    let proposer: Vec<u8> = row.try_get("proposer")?;
    let json: Option<String> = row.try_get("receipt")?;
    let receipt = json
        .map(|j| serde_json::from_str(&j).map_err(|e| corrupt(format!("receipt {height}"), e)))
        .transpose()?;
    Ok(ReceiptRecord {
        height,
        hash: hash_from(&hash, "block hash")?,
        timestamp_ms: u64_col(row, "timestamp_ms")?,
        proposer: AccountId(hash_from(&proposer, "proposer")?.0),
        tx_count: u64_col(row, "tx_count")?,
        receipt,
    })
}

fn tx_record_from_row(row: &SqliteRow) -> StoreResult<TxRecord> {
    let height = u64_col(row, "height")?;
    let index: i64 = row.try_get("idx")?;
    let index =
        u32::try_from(index).map_err(|_| corrupt("txs.idx", format!("{index} out of range")))?;
    let what = || format!("transaction {index} of block {height}");
    let block_hash: Vec<u8> = row.try_get("block_hash")?;
    let block_hash = hash_from(&block_hash, "blocks.hash")?;
    let bytes: Vec<u8> = row.try_get("tx")?;
    let tx = SignedTx::from_bytes(&bytes).map_err(|e| corrupt(what(), e))?;
    Ok(TxRecord {
        tx,
        height,
        index,
        block_hash,
    })
}

#[cfg(test)]
mod tests {
    use doin_core::amount::Amount;
    use doin_core::fee::FeeBid;
    use doin_core::identity::Keypair;
    use doin_core::tx::{TxBody, TxKind};

    use super::*;

    /// A deterministic test chain: every block carries `txs_per_block` transfers between
    /// funded accounts.
    struct Chain {
        params: ChainParams,
        genesis: Block,
        genesis_state: ChainState,
        senders: Vec<Keypair>,
        nonces: Vec<u64>,
        proposer: Keypair,
        state: ChainState,
        blocks: Vec<(Block, ChainState, BlockReceipt)>,
    }

    impl Chain {
        fn new(chain_id: &str, proposer_seed: u8) -> Chain {
            let senders: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed([i; 32])).collect();
            let mut params = ChainParams::dev(chain_id);
            params.genesis_allocations = senders
                .iter()
                .map(|k| (k.account(), Amount::from_doin(1_000)))
                .collect();
            let (genesis, state) = ChainState::genesis(&params);
            Chain {
                params,
                genesis,
                genesis_state: state.clone(),
                nonces: vec![0; senders.len()],
                senders,
                proposer: Keypair::from_seed([proposer_seed; 32]),
                state,
                blocks: Vec::new(),
            }
        }

        fn transfer(&mut self, i: usize) -> SignedTx {
            let s = i % self.senders.len();
            let to = self.senders[(i + 1) % self.senders.len()].account();
            let key = &self.senders[s];
            let tx = TxBody {
                chain_id: self.params.chain_id.clone(),
                sender: key.account(),
                nonce: self.nonces[s],
                fee: FeeBid {
                    max_fee: Amount(10_000),
                    tip: Amount(1),
                },
                kind: TxKind::Transfer {
                    to,
                    amount: Amount(1_000),
                },
            }
            .sign(key);
            self.nonces[s] += 1;
            tx
        }

        /// Builds the next block and returns its index in `blocks`.
        fn grow(&mut self, txs_per_block: usize) -> usize {
            let txs: Vec<SignedTx> = (0..txs_per_block).map(|i| self.transfer(i)).collect();
            let ts = self.state.empty_block_allowed_from(&self.params);
            let built = self
                .state
                .build_block(&self.params, &self.proposer, ts, txs)
                .expect("block builds");
            assert!(built.skipped.is_empty(), "{:?}", built.skipped);
            self.state = built.state.clone();
            self.blocks.push((built.block, built.state, built.receipt));
            self.blocks.len() - 1
        }

        fn build(chain_id: &str, blocks: usize, txs_per_block: usize) -> Chain {
            let mut chain = Chain::new(chain_id, 200);
            for _ in 0..blocks {
                chain.grow(txs_per_block);
            }
            chain
        }

        fn block(&self, height: u64) -> &(Block, ChainState, BlockReceipt) {
            &self.blocks[height as usize - 1]
        }
    }

    fn db_path(dir: &tempfile::TempDir) -> PathBuf {
        // A missing parent directory is created by open.
        dir.path().join("data").join("chain.sqlite")
    }

    /// A store holding only the chain's genesis.
    async fn initialized_store(chain: &Chain, dir: &tempfile::TempDir, interval: u64) -> Store {
        let store = Store::open(&db_path(dir), interval).await.unwrap();
        store
            .init(&chain.params, &chain.genesis, &chain.genesis_state)
            .await
            .unwrap();
        store
    }

    /// A store holding the whole chain.
    async fn store_with(chain: &Chain, dir: &tempfile::TempDir, interval: u64) -> Store {
        let store = initialized_store(chain, dir, interval).await;
        for (block, state, receipt) in &chain.blocks {
            store.append_block(block, state, receipt).await.unwrap();
        }
        store
    }

    async fn count(store: &Store, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    async fn snapshot_heights(store: &Store) -> Vec<i64> {
        sqlx::query_scalar("SELECT height FROM snapshots ORDER BY height")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn init_append_and_lookups_round_trip() {
        let chain = Chain::build("x", 5, 3);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 2).await;

        let (last, last_state, _) = chain.block(5);
        assert_eq!(store.tip().await.unwrap(), Some((5, last.hash())));
        assert_eq!(
            store.stored_params().await.unwrap(),
            Some(chain.params.clone())
        );
        assert_eq!(
            store.block_by_height(0).await.unwrap(),
            Some(chain.genesis.clone())
        );
        assert_eq!(store.block_by_height(6).await.unwrap(), None);
        for (block, _, receipt) in &chain.blocks {
            let h = block.header.height;
            assert_eq!(
                store.block_by_height(h).await.unwrap().as_ref(),
                Some(block)
            );
            assert_eq!(
                store.block_by_hash(&block.hash()).await.unwrap().as_ref(),
                Some(block)
            );
            assert_eq!(store.receipt(h).await.unwrap().as_ref(), Some(receipt));
        }
        assert_eq!(store.block_by_hash(&Hash32([9; 32])).await.unwrap(), None);
        assert_eq!(
            store.receipt(0).await.unwrap(),
            None,
            "genesis has no receipt"
        );
        assert_eq!(store.receipt(99).await.unwrap(), None);

        let range = store.blocks(2, 4).await.unwrap();
        let heights: Vec<u64> = range.iter().map(|b| b.header.height).collect();
        assert_eq!(heights, vec![2, 3, 4]);
        assert_eq!(
            store.blocks(4, 100).await.unwrap().len(),
            2,
            "stops at the tip"
        );
        assert!(store.blocks(3, 2).await.unwrap().is_empty());

        for (block, _, _) in &chain.blocks {
            for (index, tx) in block.txs.iter().enumerate() {
                let record = store.tx(&tx.id()).await.unwrap().expect("indexed");
                assert_eq!(
                    record,
                    TxRecord {
                        tx: tx.clone(),
                        height: block.header.height,
                        index: index as u32,
                        block_hash: block.hash(),
                    }
                );
            }
        }
        assert_eq!(store.tx(&Hash32([1; 32])).await.unwrap(), None);

        let sender = chain.senders[0].account();
        let mut expected: Vec<(u64, u32)> = chain
            .blocks
            .iter()
            .flat_map(|(b, _, _)| {
                b.txs
                    .iter()
                    .enumerate()
                    .filter(|(_, tx)| tx.body.sender == sender)
                    .map(|(i, _)| (b.header.height, i as u32))
                    .collect::<Vec<_>>()
            })
            .collect();
        expected.reverse();
        let got = store.txs_by_account(&sender, 100).await.unwrap();
        let got_pos: Vec<(u64, u32)> = got.iter().map(|r| (r.height, r.index)).collect();
        assert_eq!(got_pos, expected, "newest first");
        assert!(got.iter().all(|r| r.tx.body.sender == sender));
        assert_eq!(store.txs_by_account(&sender, 2).await.unwrap().len(), 2);
        let stranger = Keypair::from_seed([77; 32]).account();
        assert!(store
            .txs_by_account(&stranger, 10)
            .await
            .unwrap()
            .is_empty());

        assert_eq!(snapshot_heights(&store).await, vec![0, 2, 4]);
        let loaded = store.load_state(&chain.params).await.unwrap();
        assert_eq!(&loaded, last_state);
    }

    /// A reorganization swaps the blocks above the fork point in one transaction: the old
    /// blocks come back to the caller, their transactions and snapshots are gone, the state
    /// at any height rebuilds exactly, and a reopened store loads the new chain.
    #[tokio::test]
    async fn reorganize_replaces_the_blocks_above_the_fork_point() {
        let old = Chain::build("x", 24, 2);
        let mut new = Chain::build("x", 20, 2);
        new.proposer = Keypair::from_seed([201; 32]);
        for _ in 0..6 {
            new.grow(1);
        }
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&old, &dir, 10).await;
        // Sender 1's transfer: the new branch only carries sender 0's.
        let gone_tx = old.block(22).0.txs[1].id();
        assert!(store.tx(&gone_tx).await.unwrap().is_some());
        assert_eq!(snapshot_heights(&store).await, vec![0, 10, 20]);

        assert_eq!(
            store.state_at(&old.params, 15).await.unwrap(),
            old.block(15).1,
            "the state at a past height rebuilds exactly"
        );
        let branch: Vec<_> = new.blocks[20..].to_vec();
        let removed = store.reorganize(20, &branch).await.unwrap();
        let removed_hashes: Vec<_> = removed.iter().map(Block::hash).collect();
        let expected: Vec<_> = old.blocks[20..].iter().map(|(b, _, _)| b.hash()).collect();
        assert_eq!(removed_hashes, expected, "the old blocks, oldest first");

        let (tip_block, tip_state, _) = new.block(26);
        assert_eq!(store.tip().await.unwrap(), Some((26, tip_block.hash())));
        assert_eq!(store.tx(&gone_tx).await.unwrap(), None);
        assert_eq!(
            store.block_by_height(21).await.unwrap().unwrap().hash(),
            new.block(21).0.hash()
        );
        assert_eq!(store.load_state(&new.params).await.unwrap(), *tip_state);
        assert_eq!(
            store.state_at(&new.params, 23).await.unwrap(),
            new.block(23).1
        );

        // A branch that does not build on the fork point changes nothing.
        let err = store.reorganize(19, &branch).await.unwrap_err();
        assert!(matches!(err, StoreError::NotNext { .. }), "{err}");
        assert_eq!(store.tip().await.unwrap(), Some((26, tip_block.hash())));

        store.close().await;
        let reopened = Store::open(&db_path(&dir), 10).await.unwrap();
        assert_eq!(reopened.load_state(&new.params).await.unwrap(), *tip_state);
    }

    #[tokio::test]
    async fn init_twice_same_params_ok_other_params_mismatch() {
        let chain = Chain::build("x", 0, 0);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 10).await;
        store
            .init(&chain.params, &chain.genesis, &chain.genesis_state)
            .await
            .expect("same chain again");

        let other = Chain::build("y", 0, 0);
        let err = store
            .init(&other.params, &other.genesis, &other.genesis_state)
            .await
            .unwrap_err();
        match &err {
            StoreError::ParamsMismatch { stored, configured } => {
                assert_eq!(*stored, chain.params.hash());
                assert_eq!(*configured, other.params.hash());
            }
            e => panic!("expected ParamsMismatch, got {e}"),
        }
        assert!(err.to_string().contains("--data-dir"), "{err}");
        assert!(matches!(
            store.load_state(&other.params).await,
            Err(StoreError::ParamsMismatch { .. })
        ));
        // Nothing of the other chain was written.
        assert_eq!(
            store.stored_params().await.unwrap(),
            Some(chain.params.clone())
        );
        assert_eq!(count(&store, "blocks").await, 1);
    }

    #[tokio::test]
    async fn init_refuses_a_genesis_that_does_not_match() {
        let chain = Chain::build("x", 1, 0);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_path(&dir), 10).await.unwrap();
        let other = Chain::build("y", 0, 0);
        let err = store
            .init(&chain.params, &other.genesis, &other.genesis_state)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Refused { .. }), "{err}");
        assert_eq!(store.tip().await.unwrap(), None, "nothing written");
        assert_eq!(store.stored_params().await.unwrap(), None);
        assert!(matches!(
            store.load_state(&chain.params).await,
            Err(StoreError::NotInitialized)
        ));
        let (block, state, receipt) = chain.block(1);
        assert!(matches!(
            store.append_block(block, state, receipt).await,
            Err(StoreError::NotInitialized)
        ));
    }

    #[tokio::test]
    async fn append_that_does_not_extend_the_tip_writes_nothing() {
        let chain = Chain::build("x", 3, 2);
        let dir = tempfile::tempdir().unwrap();
        let store = initialized_store(&chain, &dir, 1).await;
        let (b1, s1, r1) = chain.block(1);
        let (b2, s2, r2) = chain.block(2);

        // Wrong height: block 2 on genesis.
        let err = store.append_block(b2, s2, r2).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotNext {
                    height: 2,
                    tip_height: 0,
                    ..
                }
            ),
            "{err}"
        );
        store.append_block(b1, s1, r1).await.unwrap();
        // Wrong height: block 1 again.
        assert!(matches!(
            store.append_block(b1, s1, r1).await,
            Err(StoreError::NotNext {
                height: 1,
                tip_height: 1,
                ..
            })
        ));
        // Right height, wrong parent: block 2 of a fork built by another proposer.
        let mut fork = Chain::new("x", 201);
        fork.grow(2);
        fork.grow(2);
        let (f2, fs2, fr2) = fork.block(2);
        assert_ne!(f2.header.parent, b1.hash());
        let err = store.append_block(f2, fs2, fr2).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::NotNext {
                    height: 2,
                    tip_height: 1,
                    ..
                }
            ),
            "{err}"
        );
        // A state that is not the block's.
        let err = store.append_block(b2, s1, r2).await.unwrap_err();
        assert!(matches!(err, StoreError::Refused { .. }), "{err}");

        assert_eq!(store.tip().await.unwrap(), Some((1, b1.hash())));
        assert_eq!(count(&store, "blocks").await, 2);
        assert_eq!(count(&store, "txs").await, 2);
        assert_eq!(snapshot_heights(&store).await, vec![0, 1]);
        assert_eq!(store.tx(&f2.txs[0].id()).await.unwrap(), None);
        store
            .append_block(b2, s2, r2)
            .await
            .expect("the right block still fits");
    }

    #[tokio::test]
    async fn a_failing_write_rolls_the_whole_block_back() {
        let chain = Chain::build("x", 2, 3);
        let dir = tempfile::tempdir().unwrap();
        let store = initialized_store(&chain, &dir, 1).await;
        let (b1, s1, r1) = chain.block(1);
        store.append_block(b1, s1, r1).await.unwrap();
        // Plant an index row where block 2's last transaction goes: its insert fails after
        // the block row, the first tx rows and the snapshot were written.
        let (b2, s2, r2) = chain.block(2);
        sqlx::query(
            "INSERT INTO txs (seq, id_key, sender_key, id, sender, height, idx, nonce, kind, \
             byte_offset, byte_len) VALUES (?, 0, 0, x'00', x'00', 0, 0, 0, 'planted', 0, 0)",
        )
        .bind((2i64 << SEQ_INDEX_BITS) | 2)
        .execute(&store.pool)
        .await
        .unwrap();
        let err = store.append_block(b2, s2, r2).await.unwrap_err();
        assert!(matches!(err, StoreError::Db(_)), "{err}");
        assert_eq!(store.tip().await.unwrap(), Some((1, b1.hash())));
        assert_eq!(store.block_by_height(2).await.unwrap(), None);
        assert_eq!(store.tx(&b2.txs[0].id()).await.unwrap(), None);
        assert_eq!(snapshot_heights(&store).await, vec![0, 1]);
        assert_eq!(&store.load_state(&chain.params).await.unwrap(), s1);
    }

    #[tokio::test]
    async fn restart_loads_state_from_the_latest_snapshot() {
        let chain = Chain::build("x", 250, 0);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 100).await;
        store.close().await;
        drop(store);

        let store = Store::open(&db_path(&dir), 100).await.unwrap();
        let (last, last_state, _) = chain.block(250);
        assert_eq!(store.tip().await.unwrap(), Some((250, last.hash())));
        assert_eq!(snapshot_heights(&store).await, vec![0, 100, 200]);
        let loaded = store.load_state(&chain.params).await.unwrap();
        assert_eq!(loaded.state_root(), last_state.state_root());
        assert_eq!(loaded.tip, last.hash());
        assert_eq!(&loaded, last_state);

        // Proof that the replay starts at snapshot 200, not at genesis: a block below it can
        // be damaged without load_state reading it.
        let mut bytes = chain.block(150).0.to_wire();
        let last_byte = bytes.len() - 1;
        bytes[last_byte] ^= 1;
        sqlx::query("UPDATE blocks SET block = ? WHERE height = 150")
            .bind(bytes)
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(&store.load_state(&chain.params).await.unwrap(), last_state);
    }

    #[tokio::test]
    async fn old_snapshots_are_pruned_but_genesis_is_kept() {
        let chain = Chain::build("x", 55, 0);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 10).await;
        assert_eq!(snapshot_heights(&store).await, vec![0, 30, 40, 50]);
        assert_eq!(
            &store.load_state(&chain.params).await.unwrap(),
            &chain.state
        );
    }

    /// Stores block `height` with one bit of its original encoding flipped at `at`.
    async fn tamper_block(store: &Store, chain: &Chain, height: u64, at: usize) {
        let mut bytes = chain.block(height).0.to_wire();
        bytes[at] ^= 0x01;
        sqlx::query("UPDATE blocks SET block = ? WHERE height = ?")
            .bind(bytes)
            .bind(height as i64)
            .execute(&store.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_corrupted_block_is_detected_by_load_state() {
        let chain = Chain::build("x", 230, 1);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 100).await;

        // The signature's last byte: decodes, fails verification.
        let len = chain.block(220).0.to_wire().len();
        tamper_block(&store, &chain, 220, len - 1).await;
        let err = store.load_state(&chain.params).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Replay { height: 220, .. }),
            "{err}"
        );

        // A byte of the header's timestamp: the block no longer hashes to what its child
        // and its signature say.
        // (Each tampering starts again from the original bytes.) Version byte, height, parent.
        tamper_block(&store, &chain, 220, 1 + 8 + 32).await;
        let err = store.load_state(&chain.params).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Replay { height: 220, .. }),
            "{err}"
        );

        // A flipped height byte is caught on read too.
        tamper_block(&store, &chain, 220, 1).await;
        assert!(matches!(
            store.block_by_height(220).await,
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[tokio::test]
    async fn a_corrupted_snapshot_or_missing_block_is_detected() {
        let chain = Chain::build("x", 130, 0);
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&chain, &dir, 100).await;

        let mut forged = chain.block(100).1.clone();
        forged.cumulative_work += 1;
        sqlx::query("UPDATE snapshots SET state = ? WHERE height = 100")
            .bind(serde_json::to_vec(&forged).unwrap())
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.load_state(&chain.params).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { what, .. } if what == "snapshot 100"),
            "{err}"
        );
        sqlx::query("UPDATE snapshots SET state = x'7b7d' WHERE height = 100")
            .execute(&store.pool)
            .await
            .unwrap();
        assert!(matches!(
            store.load_state(&chain.params).await,
            Err(StoreError::Corrupt { .. })
        ));
        sqlx::query("UPDATE snapshots SET state = ? WHERE height = 100")
            .bind(serde_json::to_vec(&chain.block(100).1).unwrap())
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            &store.load_state(&chain.params).await.unwrap(),
            &chain.state
        );

        sqlx::query("DELETE FROM blocks WHERE height = 120")
            .execute(&store.pool)
            .await
            .unwrap();
        let err = store.load_state(&chain.params).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt { what, .. } if what == "block 120"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn connections_use_the_documented_settings() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&db_path(&dir), 10).await.unwrap();
        let mut guard = store.writer.lock().await;
        let writer = guard.as_mut().unwrap();
        let mut reader = store.pool.acquire().await.unwrap();
        for conn in [writer, &mut *reader] {
            let pragma = |name: &'static str| sqlx::query_scalar::<_, String>(name);
            let journal = pragma("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(journal, "wal");
            let get = |name: &'static str| sqlx::query_scalar::<_, i64>(name);
            // synchronous: 1 = NORMAL; temp_store: 2 = MEMORY.
            assert_eq!(
                get("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                get("PRAGMA foreign_keys")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(
                get("PRAGMA temp_store")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                2
            );
            assert_eq!(
                get("PRAGMA busy_timeout")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                5_000
            );
            assert_eq!(
                get("PRAGMA wal_autocheckpoint")
                    .fetch_one(&mut *conn)
                    .await
                    .unwrap(),
                i64::from(WAL_AUTOCHECKPOINT_PAGES)
            );
        }
        let writer = guard.as_mut().unwrap();
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
            .fetch_one(&mut *writer)
            .await
            .unwrap();
        assert_eq!(cache, -i64::from(WRITER_CACHE_KIB));
        drop(guard);
        drop(reader); // close() waits for every pooled connection to come back
        store.close().await;
        let chain = Chain::build("x", 0, 0);
        assert!(matches!(
            store
                .init(&chain.params, &chain.genesis, &chain.genesis_state)
                .await,
            Err(StoreError::Closed)
        ));
    }

    #[tokio::test]
    async fn zero_snapshot_interval_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Store::open(&db_path(&dir), 0).await,
            Err(StoreError::ZeroSnapshotInterval)
        ));
    }

    #[tokio::test]
    async fn readers_run_while_a_writer_appends() {
        let chain = Chain::build("x", 40, 2);
        let dir = tempfile::tempdir().unwrap();
        let store = initialized_store(&chain, &dir, 10).await;
        let reader = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                while seen < 40 {
                    if let Some((h, hash)) = store.tip().await.unwrap() {
                        // Whatever tip a reader sees, its block is there.
                        let block = store.block_by_height(h).await.unwrap().unwrap();
                        assert_eq!(block.hash(), hash);
                        seen = h;
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        for (block, state, receipt) in &chain.blocks {
            store.append_block(block, state, receipt).await.unwrap();
        }
        reader.await.unwrap();
    }

    const CRASH_DB_ENV: &str = "DOIN_STORAGE_CRASH_DB";
    /// Transfers per block in the crash test (a few, so the write transaction has tx rows).
    const CRASH_TXS: usize = 5;

    /// The child half of `kill_9_leaves_a_whole_block`: appends blocks until killed.
    #[tokio::test]
    #[ignore = "run by kill_9_leaves_a_whole_block in a child process"]
    async fn crash_child() {
        let Some(path) = std::env::var_os(CRASH_DB_ENV) else {
            return;
        };
        let mut chain = Chain::new("x", 200);
        let store = Store::open(Path::new(&path), 7).await.unwrap();
        store
            .init(&chain.params, &chain.genesis, &chain.genesis_state)
            .await
            .unwrap();
        loop {
            let i = chain.grow(CRASH_TXS);
            let (block, state, receipt) = &chain.blocks[i];
            store.append_block(block, state, receipt).await.unwrap();
        }
    }

    /// A process killed with SIGKILL in the middle of appending leaves a store that loads at
    /// some whole block, with exactly the state of the chain at that block.
    #[tokio::test]
    async fn kill_9_leaves_a_whole_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "storage::tests::crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env(CRASH_DB_ENV, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut observed = 0;
        while observed < 10 {
            assert!(
                std::time::Instant::now() < deadline,
                "child made no progress"
            );
            assert!(child.try_wait().unwrap().is_none(), "child exited");
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(store) = Store::open(&path, 7).await {
                observed = store.tip().await.ok().flatten().map_or(0, |t| t.0);
                store.close().await;
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let mut chain = Chain::new("x", 200);
        let store = Store::open(&path, 7).await.unwrap();
        let (height, hash) = store.tip().await.unwrap().unwrap();
        assert!(height >= observed);
        let loaded = store.load_state(&chain.params).await.unwrap();
        for _ in 0..height {
            chain.grow(CRASH_TXS);
        }
        assert_eq!(loaded, chain.state);
        assert_eq!(loaded.tip, hash);
        // And the chain goes on from there.
        let i = chain.grow(CRASH_TXS);
        let (block, state, receipt) = &chain.blocks[i];
        store.append_block(block, state, receipt).await.unwrap();
    }
}
