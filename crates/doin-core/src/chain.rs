//! Chain rules other than applying a block: timestamps, fork choice, finality and
//! checkpoints.
//!
//! * **Timestamps** must exceed the median of the last [`MEDIAN_TIME_SPAN`] blocks (so no
//!   single proposer can drag time backwards) and be at most a bounded drift ahead of the
//!   validator's clock (so nobody can mint far-future blocks to game the difficulty).
//! * **Fork choice** picks the tip with the most cumulative verified work; equal work is broken
//!   by the lower block hash, so every node picks the same tip without looking at arrival
//!   order.
//! * **Finality**: blocks `finality_depth` below the tip are final and are never reorganized
//!   away, however much work a competing branch shows.
//! * **Checkpoints** (height, block hash, state root) are exported through a
//!   [`CheckpointSink`]; the node writes them to a file or an HTTP endpoint, and an external
//!   chain can anchor them later through the same trait.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encode::{put, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash32, HashKind};

/// How many recent block timestamps the median time past looks at.
pub const MEDIAN_TIME_SPAN: usize = 11;

/// Why a block timestamp is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimestampError {
    /// Not after the median of the recent blocks: permanently invalid.
    #[error("timestamp {timestamp_ms} ms is not after the median time past {median_ms} ms of the last blocks")]
    NotAfterMedian { timestamp_ms: u64, median_ms: u64 },
    /// Too far ahead of the local clock: may become valid later.
    #[error("timestamp {timestamp_ms} ms is more than {max_drift_ms} ms ahead of local time {now_ms} ms")]
    TooFarInFuture {
        timestamp_ms: u64,
        now_ms: u64,
        max_drift_ms: u64,
    },
}

impl TimestampError {
    /// Whether the block can never become valid (so its sender is at fault). A block from the
    /// future is only early: a clock difference, not proof of misbehaviour.
    pub fn is_permanent(&self) -> bool {
        matches!(self, TimestampError::NotAfterMedian { .. })
    }
}

/// The median of the last up to [`MEDIAN_TIME_SPAN`] timestamps of `recent` (ordered oldest
/// to newest); for an even count the lower of the two middle values; 0 when empty.
pub fn median_time_past(recent: &[u64]) -> u64 {
    let start = recent.len().saturating_sub(MEDIAN_TIME_SPAN);
    let mut window = recent[start..].to_vec();
    window.sort_unstable();
    match window.len() {
        0 => 0,
        n => window[(n - 1) / 2],
    }
}

/// Checks a block timestamp against the recent blocks (`recent`, oldest to newest, ending
/// with the parent) and, when given, the validator's clock `now_ms`.
///
/// With no recent blocks (only possible for genesis) there is no lower bound. Pass
/// `now_ms = None` when re-validating history, where the local clock is irrelevant.
pub fn check_timestamp(
    ts_ms: u64,
    recent: &[u64],
    now_ms: Option<u64>,
    max_drift_ms: u64,
) -> Result<(), TimestampError> {
    if !recent.is_empty() {
        let median_ms = median_time_past(recent);
        if ts_ms <= median_ms {
            return Err(TimestampError::NotAfterMedian {
                timestamp_ms: ts_ms,
                median_ms,
            });
        }
    }
    if let Some(now_ms) = now_ms {
        if ts_ms > now_ms.saturating_add(max_drift_ms) {
            return Err(TimestampError::TooFarInFuture {
                timestamp_ms: ts_ms,
                now_ms,
                max_drift_ms,
            });
        }
    }
    Ok(())
}

/// What fork choice needs to know about a chain tip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TipInfo {
    pub hash: Hash32,
    pub height: u64,
    /// Verified work of every block from genesis to this one.
    pub cumulative_work: u128,
}

/// Orders tips by preference: `Greater` means `a` is the better tip.
///
/// More cumulative work wins; on equal work the lower hash wins (a fixed rule every node
/// applies the same way). Height is deliberately ignored: a long chain of cheap blocks must
/// not beat a shorter chain with more verified work.
pub fn compare_tips(a: &TipInfo, b: &TipInfo) -> std::cmp::Ordering {
    a.cumulative_work
        .cmp(&b.cumulative_work)
        .then_with(|| b.hash.cmp(&a.hash))
}

/// Whether `candidate` should replace `current` as the chain tip (strictly better; the same
/// tip is not better than itself).
pub fn is_better_tip(candidate: &TipInfo, current: &TipInfo) -> bool {
    compare_tips(candidate, current) == std::cmp::Ordering::Greater
}

/// The highest final height when the tip is at `tip_height`: `depth` blocks below it,
/// saturating at genesis (which is always final).
pub fn finalized_height(tip_height: u64, depth: u64) -> u64 {
    tip_height.saturating_sub(depth)
}

/// Why a reorganization is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReorgError {
    /// The competing branch forks below the finalized height.
    #[error(
        "reorg with fork point at height {fork_point_height} would replace blocks at or below the finalized height {finalized_height}"
    )]
    BeyondFinality {
        fork_point_height: u64,
        finalized_height: u64,
    },
}

/// Checks that switching to a branch whose last common block with the current chain is at
/// `fork_point_height` keeps every final block: allowed iff the fork point is at or above
/// [`finalized_height`]`(current_tip_height, depth)`.
pub fn check_reorg(
    fork_point_height: u64,
    current_tip_height: u64,
    depth: u64,
) -> Result<(), ReorgError> {
    let finalized_height = finalized_height(current_tip_height, depth);
    if fork_point_height < finalized_height {
        return Err(ReorgError::BeyondFinality {
            fork_point_height,
            finalized_height,
        });
    }
    Ok(())
}

/// A statement that the block at `height` with `block_hash` leads to `state_root`; exported to
/// external anchors so a node (or a person) can detect a rewritten history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub height: u64,
    pub block_hash: Hash32,
    pub state_root: Hash32,
}

impl Checkpoint {
    /// The checkpoint's id: its canonical encoding hashed in the checkpoint context.
    pub fn id(&self) -> Hash32 {
        HashKind::Checkpoint.hash_encoded(self)
    }
}

impl Encode for Checkpoint {
    fn encode(&self, out: &mut Vec<u8>) {
        put::u64(out, self.height);
        self.block_hash.encode(out);
        self.state_root.encode(out);
    }
}

impl Decode for Checkpoint {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Checkpoint {
            height: r.u64("checkpoint.height")?,
            block_hash: Hash32::decode(r)?,
            state_root: Hash32::decode(r)?,
        })
    }
}

/// Whether the block at `height` is exported as a checkpoint: every `interval` blocks,
/// not genesis (its hash is fixed by the chain parameters), never when `interval` is 0.
pub fn is_checkpoint_height(height: u64, interval: u64) -> bool {
    height > 0 && interval > 0 && height.is_multiple_of(interval)
}

/// Why a checkpoint could not be exported.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    /// The sink itself failed (file, network, external chain); the text says how.
    #[error("checkpoint sink: {0}")]
    Sink(String),
    /// Checkpoints must be exported in increasing height order.
    #[error("checkpoint at height {height} is not above the last exported height {last_height}")]
    OutOfOrder { height: u64, last_height: u64 },
}

/// Somewhere checkpoints go: a file, an HTTP endpoint, or (later) an external chain.
pub trait CheckpointSink {
    /// Records `checkpoint`. Implementations refuse heights not above the last exported one.
    fn export(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
}

/// Keeps checkpoints in memory, in export order; for tests and embedding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemorySink {
    checkpoints: Vec<Checkpoint>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every checkpoint exported so far, in increasing height order.
    pub fn checkpoints(&self) -> &[Checkpoint] {
        &self.checkpoints
    }

    /// The most recently exported checkpoint.
    pub fn last(&self) -> Option<&Checkpoint> {
        self.checkpoints.last()
    }
}

impl CheckpointSink for MemorySink {
    fn export(&mut self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        if let Some(last) = self.checkpoints.last() {
            if checkpoint.height <= last.height {
                return Err(CheckpointError::OutOfOrder {
                    height: checkpoint.height,
                    last_height: last.height,
                });
            }
        }
        self.checkpoints.push(*checkpoint);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Ordering;

    fn h(n: u8) -> Hash32 {
        Hash32([n; 32])
    }

    fn tip(hash: u8, height: u64, work: u128) -> TipInfo {
        TipInfo {
            hash: h(hash),
            height,
            cumulative_work: work,
        }
    }

    fn naive_median(recent: &[u64]) -> u64 {
        let mut last: Vec<u64> = recent
            .iter()
            .rev()
            .take(MEDIAN_TIME_SPAN)
            .copied()
            .collect();
        last.sort();
        if last.is_empty() {
            0
        } else {
            last[(last.len() - 1) / 2]
        }
    }

    #[test]
    fn median_of_the_last_eleven() {
        assert_eq!(median_time_past(&[]), 0);
        assert_eq!(median_time_past(&[5]), 5);
        assert_eq!(median_time_past(&[1, 9]), 1, "lower middle");
        assert_eq!(median_time_past(&[3, 1, 2]), 2);
        assert_eq!(median_time_past(&[4, 1, 3, 2]), 2);
        // Only the last 11 count: the leading 1000s are ignored.
        let mut recent = vec![1_000, 1_000, 1_000];
        recent.extend(1..=11);
        assert_eq!(median_time_past(&recent), 6);
    }

    #[test]
    fn timestamp_must_pass_the_median() {
        let recent = [10, 20, 30, 40, 50];
        assert_eq!(
            check_timestamp(30, &recent, None, 0),
            Err(TimestampError::NotAfterMedian {
                timestamp_ms: 30,
                median_ms: 30
            })
        );
        assert_eq!(check_timestamp(31, &recent, None, 0), Ok(()));
        // A block may be older than its parent, as long as it beats the median.
        assert_eq!(check_timestamp(45, &recent, None, 0), Ok(()));
        // Genesis: no lower bound.
        assert_eq!(check_timestamp(0, &[], None, 0), Ok(()));
    }

    #[test]
    fn timestamp_must_not_run_ahead_of_the_clock() {
        assert_eq!(check_timestamp(1_015, &[1], Some(1_000), 15), Ok(()));
        let err = check_timestamp(1_016, &[1], Some(1_000), 15).unwrap_err();
        assert_eq!(
            err,
            TimestampError::TooFarInFuture {
                timestamp_ms: 1_016,
                now_ms: 1_000,
                max_drift_ms: 15
            }
        );
        assert!(!err.is_permanent());
        let msg = err.to_string();
        assert!(msg.contains("1016") && msg.contains("1000"), "{msg}");
        assert_eq!(
            check_timestamp(u64::MAX, &[1], Some(u64::MAX - 1), u64::MAX),
            Ok(())
        );
    }

    #[test]
    fn timestamp_errors_name_both_numbers() {
        let err = check_timestamp(7, &[9, 9, 9], None, 0).unwrap_err();
        assert!(err.is_permanent());
        let msg = err.to_string();
        assert!(msg.contains('7') && msg.contains('9'), "{msg}");
    }

    #[test]
    fn most_work_wins_then_lowest_hash() {
        let a = tip(9, 10, 500);
        let b = tip(1, 50, 499);
        assert_eq!(compare_tips(&a, &b), Ordering::Greater, "work beats height");
        assert!(is_better_tip(&a, &b));
        assert!(!is_better_tip(&b, &a));
        let low = tip(1, 10, 500);
        let high = tip(2, 10, 500);
        assert_eq!(compare_tips(&low, &high), Ordering::Greater);
        assert!(is_better_tip(&low, &high));
        assert!(!is_better_tip(&a, &a), "a tip is not better than itself");
        assert_eq!(compare_tips(&a, &a), Ordering::Equal);
    }

    #[test]
    fn finality_depth() {
        assert_eq!(finalized_height(100, 6), 94);
        assert_eq!(finalized_height(3, 6), 0);
        assert_eq!(finalized_height(0, 0), 0);
        assert_eq!(check_reorg(94, 100, 6), Ok(()));
        assert_eq!(check_reorg(99, 100, 6), Ok(()));
        assert_eq!(
            check_reorg(93, 100, 6),
            Err(ReorgError::BeyondFinality {
                fork_point_height: 93,
                finalized_height: 94
            })
        );
        // Early chain: anything above genesis may be reorganized.
        assert_eq!(check_reorg(0, 5, 6), Ok(()));
        let msg = check_reorg(1, 100, 6).unwrap_err().to_string();
        assert!(msg.contains("height 1") && msg.contains("94"), "{msg}");
    }

    #[test]
    fn checkpoint_id_commits_to_every_field() {
        let c = Checkpoint {
            height: 100,
            block_hash: h(1),
            state_root: h(2),
        };
        assert_eq!(c.id(), HashKind::Checkpoint.hash(&c.to_bytes()));
        assert_ne!(c.id(), Checkpoint { height: 101, ..c }.id());
        assert_ne!(
            c.id(),
            Checkpoint {
                block_hash: h(3),
                ..c
            }
            .id()
        );
        assert_ne!(
            c.id(),
            Checkpoint {
                state_root: h(3),
                ..c
            }
            .id()
        );
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), 8 + 32 + 32);
        assert_eq!(&bytes[..8], &100u64.to_le_bytes());
        assert_eq!(Checkpoint::from_bytes(&bytes), Ok(c));
        assert!(Checkpoint::from_bytes(&bytes[..71]).is_err());
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), c);
    }

    #[test]
    fn checkpoint_heights() {
        assert!(!is_checkpoint_height(0, 100));
        assert!(!is_checkpoint_height(99, 100));
        assert!(is_checkpoint_height(100, 100));
        assert!(is_checkpoint_height(300, 100));
        assert!(!is_checkpoint_height(100, 0));
        assert!(is_checkpoint_height(1, 1));
    }

    #[test]
    fn memory_sink_refuses_out_of_order_heights() {
        let mut sink = MemorySink::new();
        let at = |height| Checkpoint {
            height,
            block_hash: h(1),
            state_root: h(2),
        };
        sink.export(&at(100)).unwrap();
        sink.export(&at(200)).unwrap();
        assert_eq!(
            sink.export(&at(200)),
            Err(CheckpointError::OutOfOrder {
                height: 200,
                last_height: 200
            })
        );
        assert!(sink.export(&at(150)).is_err());
        assert_eq!(sink.checkpoints().len(), 2);
        assert_eq!(sink.last().map(|c| c.height), Some(200));
        // Usable through the trait object the node holds.
        let dyn_sink: &mut dyn CheckpointSink = &mut sink;
        dyn_sink.export(&at(300)).unwrap();
        assert_eq!(sink.checkpoints().len(), 3);
        assert!(CheckpointError::Sink("disk full".into())
            .to_string()
            .contains("disk full"));
    }

    fn arb_tip() -> impl Strategy<Value = TipInfo> {
        (0u8..4, any::<u64>(), 0u128..4).prop_map(|(hash, height, work)| tip(hash, height, work))
    }

    proptest! {
        #[test]
        fn median_matches_naive(recent in prop::collection::vec(any::<u64>(), 0..40)) {
            prop_assert_eq!(median_time_past(&recent), naive_median(&recent));
        }

        #[test]
        fn accepted_timestamps_are_after_the_median_and_within_drift(
            ts in any::<u64>(),
            recent in prop::collection::vec(any::<u64>(), 0..15),
            now in prop::option::of(any::<u64>()),
            drift in any::<u64>(),
        ) {
            let result = check_timestamp(ts, &recent, now, drift);
            let after_median = recent.is_empty() || ts > median_time_past(&recent);
            let within_drift = now.is_none_or(|n| ts <= n.saturating_add(drift));
            prop_assert_eq!(result.is_ok(), after_median && within_drift);
        }

        #[test]
        fn fork_choice_is_a_total_order(a in arb_tip(), b in arb_tip(), c in arb_tip()) {
            prop_assert_eq!(compare_tips(&a, &b), compare_tips(&b, &a).reverse());
            if compare_tips(&a, &b) == Ordering::Equal {
                prop_assert_eq!(a.hash, b.hash);
                prop_assert_eq!(a.cumulative_work, b.cumulative_work);
            }
            if is_better_tip(&a, &b) && is_better_tip(&b, &c) {
                prop_assert!(is_better_tip(&a, &c));
            }
            // Every node picks the same best tip from the same set, whatever the order.
            let forward = [a, b, c].into_iter().max_by(compare_tips);
            let backward = [c, b, a].into_iter().max_by(compare_tips);
            prop_assert_eq!(forward.map(|t| (t.hash, t.cumulative_work)), backward.map(|t| (t.hash, t.cumulative_work)));
        }

        #[test]
        fn reorgs_never_touch_final_blocks(fork in any::<u64>(), tip in any::<u64>(), depth in any::<u64>()) {
            let finalized = finalized_height(tip, depth);
            prop_assert!(finalized <= tip);
            prop_assert_eq!(check_reorg(fork, tip, depth).is_ok(), fork >= finalized);
            // Genesis is always final: a fork point at genesis is only allowed while the
            // finalized height is still genesis.
            prop_assert_eq!(check_reorg(0, tip, depth).is_ok(), finalized == 0);
        }

        #[test]
        fn checkpoint_round_trips(height in any::<u64>(), a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let c = Checkpoint { height, block_hash: Hash32(a), state_root: Hash32(b) };
            prop_assert_eq!(Checkpoint::from_bytes(&c.to_bytes()), Ok(c));
        }

        #[test]
        fn memory_sink_keeps_heights_increasing(heights in prop::collection::vec(any::<u64>(), 0..30)) {
            let mut sink = MemorySink::new();
            for height in heights {
                let _ = sink.export(&Checkpoint { height, block_hash: Hash32::ZERO, state_root: Hash32::ZERO });
            }
            prop_assert!(sink.checkpoints().windows(2).all(|w| w[0].height < w[1].height));
        }
    }
}
