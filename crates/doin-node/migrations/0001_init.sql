-- DOIN chain storage, schema 1.
--
-- Never edit this file once a node has run it: sqlx refuses a migration whose checksum
-- changed ("previously applied but has been modified"). Add 0002_*.sql instead.
--
-- Integers are SQLite's signed 64-bit INTEGER. Heights, indexes, offsets and lengths always
-- fit; the informational u64 columns (work, nonce) saturate at i64::MAX. The authoritative
-- copy of every block and transaction is `blocks.block` (canonical encoding, Block::to_wire);
-- the other block columns only serve lookups and ad-hoc SQL.

-- Key/value metadata:
--   'params'       chain parameters, JSON (the configuration that created this store)
--   'params_hash'  ChainParams::hash(), 32 bytes
--   'tip'          height of the newest block as 8 bytes big-endian, then its hash (40 bytes)
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- One row per block of the chain, genesis (height 0) included. `height` is the rowid.
CREATE TABLE blocks (
    height       INTEGER PRIMARY KEY NOT NULL,
    hash         BLOB NOT NULL UNIQUE,
    parent       BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    proposer     BLOB NOT NULL,
    tx_count     INTEGER NOT NULL,
    work         INTEGER NOT NULL,
    -- Block::to_wire(): the block exactly as it travels on the network.
    block        BLOB NOT NULL,
    -- BlockReceipt as JSON; NULL for genesis.
    receipt      TEXT
);

-- Transaction index, one row per transaction in block order (`seq` = height << 20 | idx,
-- so new rows always go at the end of the table).
--
-- The transaction bytes are not repeated here: `byte_offset`/`byte_len` locate the
-- transaction's canonical (unversioned) encoding inside `blocks.block`, and a lookup reads
-- `substr(block, byte_offset + 1, byte_len)` and decodes that one transaction.
--
-- The two lookup indexes are keyed by the first 8 bytes of the id / sender (as a
-- little-endian signed integer), not the 32-byte values: ids are random, so every indexed
-- transaction dirties one index page per commit, and narrow entries (about 18 bytes, the
-- rowid included) make both indexes several times smaller, which halved the pages written
-- per block in measurements. Queries match the full `id` / `sender` after the index lookup,
-- so a prefix collision costs one extra row read, never a wrong answer.
CREATE TABLE txs (
    seq         INTEGER PRIMARY KEY NOT NULL,
    id_key      INTEGER NOT NULL,
    sender_key  INTEGER NOT NULL,
    id          BLOB NOT NULL,
    sender      BLOB NOT NULL,
    height      INTEGER NOT NULL REFERENCES blocks(height),
    idx         INTEGER NOT NULL,
    nonce       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    byte_offset INTEGER NOT NULL,
    byte_len    INTEGER NOT NULL
);

-- Lookup by transaction id.
CREATE INDEX txs_by_id ON txs (id_key);
-- Transactions sent by an account, newest first: entries are (sender_key, seq), so the
-- index order is (account, height, idx).
CREATE INDEX txs_by_sender ON txs (sender_key);

-- Chain state after the block at `height` (serde JSON of ChainState), every
-- `snapshot_interval` blocks; restart replays only the blocks after the latest one.
CREATE TABLE snapshots (
    height INTEGER PRIMARY KEY NOT NULL REFERENCES blocks(height),
    state  BLOB NOT NULL
);
