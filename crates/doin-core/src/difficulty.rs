//! The work threshold: how much verified work a block needs, steered toward the target block
//! time.
//!
//! Two corrections, both integer-only so every node computes the same threshold:
//!
//! * **Per block**, an exponential moving average of block times (weight 1/10, each sample
//!   capped at 10 targets) nudges the threshold by `target / ema`, clamped to ±2% per block. This reacts within a few blocks
//!   without letting a single odd timestamp move the threshold far.
//! * **Per epoch** (every [`EPOCH_LENGTH`] blocks), the threshold is multiplied by
//!   `target epoch time / actual epoch time`, which removes whatever bias the EMA left.
//!
//! Whatever the corrections say, the threshold stays within `[1/4, 4]` of the threshold the
//! epoch started with ([`MAX_EPOCH_FACTOR`]). The clamp applies on every block, and the next
//! epoch starts from the clamped value, so the bound really holds from one epoch boundary to
//! the next (the Python original claimed a 4× bound but moved 29× in one epoch). The
//! threshold is never 0.
//!
//! Faster-than-target blocks raise the threshold, slower ones lower it; blocks exactly on
//! target leave it unchanged.

use serde::{Deserialize, Serialize};

use crate::encode::{put, Decode, DecodeError, Encode, Reader};

/// Blocks per difficulty epoch.
pub const EPOCH_LENGTH: u64 = 100;

/// Within one epoch the threshold moves by at most this factor, up or down.
pub const MAX_EPOCH_FACTOR: u64 = 4;

/// A block time enters the EMA as at most this many target block times. One long gap (the
/// first block of a chain whose genesis time is months old, a network that stalled) would
/// otherwise dominate the average for a hundred blocks and drive the threshold down for all
/// of them; the ±2% per-block clamp alone only slows that drift.
pub const MAX_EMA_SAMPLE_TARGETS: u64 = 10;

/// The EMA gives a new block time weight `1 / EMA_WEIGHT_DENOMINATOR`.
pub const EMA_WEIGHT_DENOMINATOR: u64 = 10;

/// The per-block correction moves the threshold by at most this many percent.
pub const MAX_BLOCK_CHANGE_PERCENT: u64 = 2;

/// Everything the difficulty rule carries from block to block (part of the chain state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DifficultyState {
    /// Verified work units the next block needs. Never 0.
    pub threshold: u64,
    /// Moving average of recent block times, in milliseconds.
    pub ema_block_time_ms: u64,
    /// Height of the block that started the current epoch (0 = genesis).
    pub epoch_start_height: u64,
    /// Timestamp of that block, in milliseconds.
    pub epoch_start_time_ms: u64,
    /// Threshold at the start of the epoch: the clamp is relative to it.
    pub epoch_start_threshold: u64,
}

impl DifficultyState {
    /// The state after genesis: the EMA starts on target and the first epoch starts at
    /// height 0. A zero threshold (rejected by `ChainParams::validate`) becomes 1.
    pub fn genesis(
        initial_threshold: u64,
        target_block_time_ms: u64,
        genesis_time_ms: u64,
    ) -> DifficultyState {
        let threshold = initial_threshold.max(1);
        DifficultyState {
            threshold,
            ema_block_time_ms: target_block_time_ms.max(1),
            epoch_start_height: 0,
            epoch_start_time_ms: genesis_time_ms,
            epoch_start_threshold: threshold,
        }
    }

    /// The state after the block at `height` (timestamp `block_time_ms`, parent's timestamp
    /// `parent_time_ms`) has been applied; its `threshold` is what the next block needs.
    ///
    /// Timestamps are taken as given (the chain rules already bound them); a block that is
    /// not after its parent counts as 1 ms.
    pub fn next(
        &self,
        height: u64,
        parent_time_ms: u64,
        block_time_ms: u64,
        target_block_time_ms: u64,
    ) -> DifficultyState {
        let target = target_block_time_ms.max(1);
        let elapsed = block_time_ms
            .saturating_sub(parent_time_ms)
            .clamp(1, target.saturating_mul(MAX_EMA_SAMPLE_TARGETS));
        let ema = next_ema(self.ema_block_time_ms, elapsed);
        let mut threshold = per_block_correction(self.threshold.max(1), target, ema);
        let epoch_ends = height.saturating_sub(self.epoch_start_height) >= EPOCH_LENGTH;
        if epoch_ends {
            let actual = block_time_ms.saturating_sub(self.epoch_start_time_ms);
            threshold = epoch_correction(threshold, target, actual);
        }
        let threshold = clamp_to_epoch(threshold, self.epoch_start_threshold);
        let mut next = DifficultyState {
            threshold,
            ema_block_time_ms: ema,
            ..*self
        };
        if epoch_ends {
            next.epoch_start_height = height;
            next.epoch_start_time_ms = block_time_ms;
            next.epoch_start_threshold = threshold;
        }
        next
    }
}

/// Free-function form of [`DifficultyState::genesis`].
pub fn genesis(
    initial_threshold: u64,
    target_block_time_ms: u64,
    genesis_time_ms: u64,
) -> DifficultyState {
    DifficultyState::genesis(initial_threshold, target_block_time_ms, genesis_time_ms)
}

/// `(9 × ema + elapsed) / 10`, at least 1 ms.
fn next_ema(ema: u64, elapsed: u64) -> u64 {
    let weight = u128::from(EMA_WEIGHT_DENOMINATOR);
    let sum = u128::from(ema) * (weight - 1) + u128::from(elapsed);
    to_u64(sum / weight).max(1)
}

/// `threshold × target / ema`, moved by at most ±2% of `threshold`.
fn per_block_correction(threshold: u64, target: u64, ema: u64) -> u64 {
    let wanted = u128::from(threshold) * u128::from(target) / u128::from(ema.max(1));
    let step = u128::from(threshold) * u128::from(MAX_BLOCK_CHANGE_PERCENT) / 100;
    let low = u128::from(threshold) - step;
    let high = u128::from(threshold) + step;
    to_u64(wanted.clamp(low, high))
}

/// `threshold × (EPOCH_LENGTH × target) / actual`; `actual` of 0 counts as 1 ms.
fn epoch_correction(threshold: u64, target: u64, actual_ms: u64) -> u64 {
    let wanted = u128::from(EPOCH_LENGTH) * u128::from(target);
    // The product can pass u128 only when the quotient passes u64 anyway (`actual < 2^64`),
    // so saturating it changes nothing after `to_u64`.
    let scaled = u128::from(threshold).saturating_mul(wanted);
    to_u64(scaled / u128::from(actual_ms.max(1)))
}

/// Clamps into `[start / 4, start × 4]`, and never below 1.
fn clamp_to_epoch(threshold: u64, epoch_start_threshold: u64) -> u64 {
    let low = (epoch_start_threshold / MAX_EPOCH_FACTOR).max(1);
    let high = epoch_start_threshold
        .saturating_mul(MAX_EPOCH_FACTOR)
        .max(low);
    threshold.clamp(low, high)
}

/// Narrows to `u64`, saturating.
fn to_u64(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Encode for DifficultyState {
    fn encode(&self, out: &mut Vec<u8>) {
        put::u64(out, self.threshold);
        put::u64(out, self.ema_block_time_ms);
        put::u64(out, self.epoch_start_height);
        put::u64(out, self.epoch_start_time_ms);
        put::u64(out, self.epoch_start_threshold);
    }
}

impl Decode for DifficultyState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(DifficultyState {
            threshold: r.u64("difficulty.threshold")?,
            ema_block_time_ms: r.u64("difficulty.ema_block_time_ms")?,
            epoch_start_height: r.u64("difficulty.epoch_start_height")?,
            epoch_start_time_ms: r.u64("difficulty.epoch_start_time_ms")?,
            epoch_start_threshold: r.u64("difficulty.epoch_start_threshold")?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TARGET: u64 = 2_000;
    const T0: u64 = 1_000_000;

    /// Applies blocks `1..=intervals.len()` with the given gaps; returns every state.
    fn run(start: DifficultyState, intervals: &[u64]) -> Vec<DifficultyState> {
        let mut states = vec![start];
        let mut time = start.epoch_start_time_ms;
        for (i, gap) in intervals.iter().enumerate() {
            let parent = time;
            time = time.saturating_add(*gap);
            let state = states[i].next(i as u64 + 1, parent, time, TARGET);
            states.push(state);
        }
        states
    }

    /// Blocks found by a constant work rate: gap = threshold / rate.
    fn simulate(start: DifficultyState, work_per_ms: u64, blocks: u64) -> Vec<u64> {
        let mut state = start;
        let mut time = start.epoch_start_time_ms;
        let mut gaps = Vec::new();
        for h in 1..=blocks {
            let gap = (state.threshold / work_per_ms).max(1);
            gaps.push(gap);
            state = state.next(h, time, time + gap, TARGET);
            time += gap;
        }
        gaps
    }

    #[test]
    fn genesis_starts_on_target() {
        let g = genesis(T0, TARGET, 77);
        assert_eq!(
            g,
            DifficultyState {
                threshold: T0,
                ema_block_time_ms: TARGET,
                epoch_start_height: 0,
                epoch_start_time_ms: 77,
                epoch_start_threshold: T0,
            }
        );
        assert_eq!(genesis(0, 0, 0).threshold, 1);
        assert_eq!(genesis(0, 0, 0).ema_block_time_ms, 1);
    }

    #[test]
    fn on_target_blocks_leave_the_threshold_unchanged() {
        let states = run(genesis(T0, TARGET, 0), &[TARGET; 350]);
        assert!(states.iter().all(|s| s.threshold == T0));
        assert!(states.iter().all(|s| s.ema_block_time_ms == TARGET));
        assert_eq!(states[350].epoch_start_height, 300);
        assert_eq!(states[350].epoch_start_time_ms, 300 * TARGET);
    }

    #[test]
    fn fast_blocks_raise_the_threshold() {
        let states = run(genesis(T0, TARGET, 0), &[TARGET / 2; 10]);
        for pair in states.windows(2) {
            assert!(pair[1].threshold >= pair[0].threshold);
        }
        assert!(states[10].threshold > T0);
        // At most 2% per block.
        assert!(states[1].threshold <= T0 * 102 / 100);
    }

    #[test]
    fn slow_blocks_lower_the_threshold() {
        let states = run(genesis(T0, TARGET, 0), &[TARGET * 3; 10]);
        for pair in states.windows(2) {
            assert!(pair[1].threshold <= pair[0].threshold);
        }
        assert!(states[10].threshold < T0);
        assert!(states[1].threshold >= T0 * 98 / 100);
    }

    #[test]
    fn epoch_correction_applies_at_the_boundary() {
        // The epoch took half its target time: the epoch correction doubles whatever the
        // per-block correction (+2% at most) reached.
        let s = DifficultyState {
            threshold: T0,
            ema_block_time_ms: TARGET,
            epoch_start_height: 0,
            epoch_start_time_ms: 0,
            epoch_start_threshold: T0,
        };
        let half = EPOCH_LENGTH * TARGET / 2;
        let n = s.next(EPOCH_LENGTH, half - TARGET / 2, half, TARGET);
        assert_eq!(n.threshold, T0 * 102 / 100 * 2);
        assert_eq!(n.epoch_start_height, EPOCH_LENGTH);
        assert_eq!(n.epoch_start_time_ms, half);
        assert_eq!(n.epoch_start_threshold, n.threshold);
        // One block earlier, no epoch correction and the epoch does not restart.
        let m = s.next(EPOCH_LENGTH - 1, half - TARGET / 2, half, TARGET);
        assert_eq!(m.threshold, T0 * 102 / 100);
        assert_eq!(m.epoch_start_height, 0);
        // Twice the target time halves it.
        let slow = s.next(EPOCH_LENGTH, 2 * half * 2 - TARGET, 2 * half * 2, TARGET);
        assert_eq!(slow.threshold, T0 / 2);
    }

    #[test]
    fn epoch_clamp_holds_against_extreme_timestamps() {
        // Every block 1 ms apart: the threshold wants to grow 2000× per epoch.
        let states = run(genesis(T0, TARGET, 0), &[1; 300]);
        assert_eq!(states[100].threshold, 4 * T0);
        assert_eq!(states[200].threshold, 16 * T0);
        assert!(states[..=100].iter().all(|s| s.threshold <= 4 * T0));
        // Blocks a day apart: it wants to shrink, by at most 4× per epoch.
        let states = run(genesis(T0, TARGET, 0), &[86_400_000; 200]);
        assert_eq!(states[100].threshold, T0 / 4);
        assert_eq!(states[200].threshold, T0 / 16);
    }

    #[test]
    fn threshold_never_reaches_zero() {
        let states = run(genesis(1, TARGET, 0), &[u64::MAX / 1_000; 500]);
        assert!(states.iter().all(|s| s.threshold >= 1));
        let states = run(genesis(3, TARGET, 0), &[86_400_000; 500]);
        assert!(states.iter().all(|s| s.threshold >= 1));
    }

    #[test]
    fn backwards_timestamps_count_as_one_millisecond() {
        let s = genesis(T0, TARGET, 10_000);
        let a = s.next(1, 10_000, 5_000, TARGET);
        let b = s.next(1, 10_000, 10_001, TARGET);
        assert_eq!(a.ema_block_time_ms, b.ema_block_time_ms);
        assert_eq!(a.threshold, b.threshold);
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let s = DifficultyState {
            threshold: u64::MAX,
            ema_block_time_ms: u64::MAX,
            epoch_start_height: 0,
            epoch_start_time_ms: 0,
            epoch_start_threshold: u64::MAX,
        };
        let n = s.next(100, 0, u64::MAX, u64::MAX);
        assert!(n.threshold >= 1);
        let z = DifficultyState {
            threshold: 0,
            ema_block_time_ms: 0,
            epoch_start_height: u64::MAX,
            epoch_start_time_ms: u64::MAX,
            epoch_start_threshold: 0,
        };
        let n = z.next(0, u64::MAX, 0, 0);
        assert_eq!(n.threshold, 1);
        assert_eq!(n.ema_block_time_ms, 1);
    }

    #[test]
    fn constant_work_rate_converges_to_the_target() {
        // Work rate such that the right threshold is 2000 × 500 = 1,000,000.
        for start in [T0 / 8, T0, T0 * 8] {
            let gaps = simulate(genesis(start, TARGET, 0), 500, 1_500);
            let last_epoch: u64 = gaps[1_400..].iter().sum::<u64>() / 100;
            assert!(
                last_epoch.abs_diff(TARGET) <= TARGET / 50,
                "start {start}: last epoch averaged {last_epoch} ms"
            );
        }
    }

    #[test]
    fn encoding_round_trips_in_field_order() {
        let s = DifficultyState {
            threshold: 1,
            ema_block_time_ms: 2,
            epoch_start_height: 3,
            epoch_start_time_ms: 4,
            epoch_start_threshold: 5,
        };
        let bytes = s.to_bytes();
        assert_eq!(bytes.len(), 40);
        for (i, chunk) in bytes.chunks(8).enumerate() {
            assert_eq!(chunk, &(i as u64 + 1).to_le_bytes());
        }
        assert_eq!(DifficultyState::from_bytes(&bytes), Ok(s));
        assert!(DifficultyState::from_bytes(&bytes[..39]).is_err());
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<DifficultyState>(&json).unwrap(), s);
    }

    fn gap() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            1u64..10,
            1u64..20_000,
            1u64..10_000_000,
            any::<u64>().prop_map(|g| g >> 8),
        ]
    }

    proptest! {
        #[test]
        fn epoch_boundaries_move_at_most_four_times(
            start in 1u64..u64::MAX / 8,
            gaps in prop::collection::vec(gap(), 1..450),
        ) {
            let states = run(genesis(start, TARGET, 1_000), &gaps);
            let mut boundary = states[0].threshold;
            for (height, s) in states.iter().enumerate().skip(1) {
                prop_assert!(s.threshold >= 1);
                // Every block stays within [1/4, 4] of the epoch's starting threshold.
                prop_assert!(s.threshold <= boundary.saturating_mul(MAX_EPOCH_FACTOR));
                prop_assert!(s.threshold >= (boundary / MAX_EPOCH_FACTOR).max(1));
                if (height as u64).is_multiple_of(EPOCH_LENGTH) {
                    prop_assert_eq!(s.epoch_start_height, height as u64);
                    prop_assert_eq!(s.epoch_start_threshold, s.threshold);
                    boundary = s.threshold;
                }
            }
        }

        #[test]
        fn epoch_clamp_holds_for_arbitrary_timestamps(
            start in 1u64..u64::MAX / 8,
            target in 1u64..100_000,
            times in prop::collection::vec(
                prop_oneof![any::<u64>(), 0u64..1_000_000, Just(0u64), Just(u64::MAX)],
                1..450,
            ),
        ) {
            // Timestamps in any order, including backwards and equal ones.
            let mut state = genesis(start, target, times[0]);
            let mut boundary = state.threshold;
            let mut parent = times[0];
            for (i, &time) in times.iter().enumerate().skip(1) {
                let height = i as u64;
                state = state.next(height, parent, time, target);
                parent = time;
                prop_assert!(state.threshold >= 1);
                prop_assert!(state.threshold <= boundary.saturating_mul(MAX_EPOCH_FACTOR));
                prop_assert!(state.threshold >= (boundary / MAX_EPOCH_FACTOR).max(1));
                if height.is_multiple_of(EPOCH_LENGTH) {
                    boundary = state.threshold;
                }
            }
        }

        #[test]
        fn per_block_moves_are_at_most_two_percent_inside_an_epoch(
            start in 100u64..1 << 50,
            gaps in prop::collection::vec(gap(), 1..99),
        ) {
            let states = run(genesis(start, TARGET, 0), &gaps);
            for pair in states.windows(2) {
                let (a, b) = (pair[0].threshold, pair[1].threshold);
                prop_assert!(b.abs_diff(a) <= a * MAX_BLOCK_CHANGE_PERCENT / 100);
            }
        }

        #[test]
        fn direction_follows_block_time(start in 1_000u64..1 << 50, gap in 1u64..100_000) {
            let s = genesis(start, TARGET, 0).next(1, 0, gap, TARGET);
            match gap.cmp(&TARGET) {
                std::cmp::Ordering::Less => prop_assert!(s.threshold >= start),
                std::cmp::Ordering::Equal => prop_assert_eq!(s.threshold, start),
                std::cmp::Ordering::Greater => prop_assert!(s.threshold <= start),
            }
        }

        #[test]
        fn any_state_and_inputs_stay_in_bounds(
            fields in any::<[u64; 5]>(),
            height in any::<u64>(),
            parent in any::<u64>(),
            block in any::<u64>(),
            target in any::<u64>(),
        ) {
            let s = DifficultyState {
                threshold: fields[0],
                ema_block_time_ms: fields[1],
                epoch_start_height: fields[2],
                epoch_start_time_ms: fields[3],
                epoch_start_threshold: fields[4],
            };
            let n = s.next(height, parent, block, target);
            prop_assert!(n.threshold >= 1);
            prop_assert!(n.ema_block_time_ms >= 1);
            prop_assert!(n.threshold >= (s.epoch_start_threshold / MAX_EPOCH_FACTOR).max(1));
            prop_assert!(
                n.threshold
                    <= s.epoch_start_threshold.saturating_mul(MAX_EPOCH_FACTOR).max(1)
            );
        }

        #[test]
        fn decode_round_trips(a in any::<u64>(), b in any::<u64>(), c in any::<u64>(), d in any::<u64>(), e in any::<u64>()) {
            let s = DifficultyState {
                threshold: a,
                ema_block_time_ms: b,
                epoch_start_height: c,
                epoch_start_time_ms: d,
                epoch_start_threshold: e,
            };
            prop_assert_eq!(DifficultyState::from_bytes(&s.to_bytes()), Ok(s));
        }
    }
}
