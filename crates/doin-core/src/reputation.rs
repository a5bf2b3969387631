//! Reputation: a per-account score that gates quorum eligibility and scales rewards.
//!
//! Scores are integers in milli-points (1 point = 1000), bounded by
//! [`ReputationParams::max`], and derived from chain data only: gains on accepted work and on
//! votes that matched the verdict, losses `penalty_multiplier` times larger (3 by default) on
//! rejected work and on votes against the verdict, and a multiplicative decay every
//! `decay_epoch` blocks. Block heights, never wall-clock time, drive the decay, so every node
//! computes the same score.
//!
//! The asymmetry is the point: with losses three times the gains, an account that cheats
//! once must do honest work three times to get back where it was, so cheating some of the
//! time never pays.

use crate::params::ReputationParams;

/// Milli-points per whole reputation point.
pub const MILLI_PER_POINT: u64 = 1_000;

/// The score after a gain of `gain`, capped at `max`.
pub fn reward(score: u64, gain: u64, max: u64) -> u64 {
    score.saturating_add(gain).min(max)
}

/// The score after a loss of `gain × multiplier`, never below zero.
pub fn penalize(score: u64, gain: u64, multiplier: u64) -> u64 {
    score.saturating_sub(gain.saturating_mul(multiplier))
}

/// The score after one decay epoch: `score − score × permille / 1000`, rounded so that the
/// loss is rounded down (a permille above 1000 counts as 1000, i.e. the score drops to 0).
pub fn decay(score: u64, permille: u64) -> u64 {
    let permille = permille.min(1_000);
    let loss = u128::from(score) * u128::from(permille) / 1_000;
    // `loss ≤ score`, so the conversion and the subtraction cannot fail.
    score - u64::try_from(loss).unwrap_or(score)
}

/// Whether an account with `score` may be drawn into a quorum.
pub fn is_eligible(score: u64, p: &ReputationParams) -> bool {
    score >= p.min_eligible
}

/// Whether every score decays after the block at `height` (every `decay_epoch` blocks, never
/// at genesis; a zero epoch, which `ChainParams::validate` rejects, means never).
pub fn is_decay_height(height: u64, p: &ReputationParams) -> bool {
    height > 0 && p.decay_epoch > 0 && height.is_multiple_of(p.decay_epoch)
}

/// An optimizer's reward weight: `credit × (max + min(score, max))`.
///
/// The reputation factor runs from 1× (score 0) to 2× (score at max) of the verified credit,
/// so reputation boosts rewards but can never earn anything without verified work. The
/// common `max` denominator cancels in the pro-rata split, so it is left out. Saturates at
/// `u128::MAX` (only reachable with absurd parameters).
pub fn reward_weight(credit_units: u64, score: u64, p: &ReputationParams) -> u128 {
    let factor = u128::from(p.max) + u128::from(score.min(p.max));
    u128::from(credit_units).saturating_mul(factor)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::params::ChainParams;
    use proptest::prelude::*;

    fn params() -> ReputationParams {
        ChainParams::dev("rep").reputation
    }

    #[test]
    fn one_rejection_costs_three_acceptances() {
        let p = params();
        let start = 10_000;
        let mut score = start;
        for _ in 0..3 {
            score = reward(score, p.optimizer_gain, p.max);
        }
        assert_eq!(score, start + 3 * p.optimizer_gain);
        score = penalize(score, p.optimizer_gain, p.penalty_multiplier);
        assert_eq!(score, start);
        // Likewise for evaluators.
        let e = penalize(
            reward(start, p.evaluator_gain, p.max),
            p.evaluator_gain,
            p.penalty_multiplier,
        );
        assert_eq!(e, start - 2 * p.evaluator_gain);
    }

    #[test]
    fn scores_stay_within_bounds() {
        assert_eq!(reward(99, 5, 100), 100);
        assert_eq!(reward(u64::MAX, u64::MAX, 100), 100);
        assert_eq!(penalize(5, 1, 3), 2);
        assert_eq!(penalize(5, 2, 3), 0);
        assert_eq!(penalize(u64::MAX, u64::MAX, u64::MAX), 0);
    }

    #[test]
    fn decay_takes_the_permille() {
        assert_eq!(decay(10_000, 50), 9_500);
        assert_eq!(decay(19, 50), 19); // loss rounds down to 0
        assert_eq!(decay(10_000, 0), 10_000);
        assert_eq!(decay(10_000, 1_000), 0);
        assert_eq!(decay(10_000, u64::MAX), 0);
        assert_eq!(decay(u64::MAX, 500), u64::MAX - u64::MAX / 2);
    }

    #[test]
    fn eligibility_is_a_minimum() {
        let p = params();
        assert!(is_eligible(p.min_eligible, &p));
        assert!(!is_eligible(p.min_eligible - 1, &p));
        assert!(is_eligible(p.initial, &p), "a fresh evaluator is eligible");
    }

    #[test]
    fn decay_heights_are_epoch_multiples() {
        let p = params();
        assert!(!is_decay_height(0, &p));
        assert!(!is_decay_height(p.decay_epoch - 1, &p));
        assert!(is_decay_height(p.decay_epoch, &p));
        assert!(is_decay_height(3 * p.decay_epoch, &p));
        let never = ReputationParams {
            decay_epoch: 0,
            ..params()
        };
        assert!(!is_decay_height(100, &never));
    }

    #[test]
    fn reward_weight_factor_is_one_to_two() {
        let p = params();
        let base = u128::from(p.max);
        assert_eq!(reward_weight(7, 0, &p), 7 * base);
        assert_eq!(reward_weight(7, p.max, &p), 14 * base);
        assert_eq!(reward_weight(7, u64::MAX, &p), 14 * base);
        assert_eq!(reward_weight(7, p.max / 2, &p), 7 * base * 3 / 2);
        assert_eq!(reward_weight(0, p.max, &p), 0);
        let huge = ReputationParams {
            max: u64::MAX,
            ..params()
        };
        assert_eq!(
            reward_weight(u64::MAX, u64::MAX, &huge),
            u128::MAX,
            "saturates"
        );
    }

    proptest! {
        #[test]
        fn reward_is_bounded_and_monotone(score in any::<u64>(), gain in any::<u64>(), max in any::<u64>()) {
            let s = reward(score, gain, max);
            prop_assert!(s <= max);
            if score <= max {
                prop_assert!(s >= score);
            }
        }

        #[test]
        fn penalty_is_multiplier_times_gain(score in any::<u64>(), gain in 0u64..1 << 20, mult in 0u64..16) {
            let s = penalize(score, gain, mult);
            prop_assert!(s <= score);
            prop_assert_eq!(s, score.saturating_sub(gain * mult));
        }

        #[test]
        fn asymmetry_holds_away_from_the_bounds(score in 0u64..1 << 40, gain in 0u64..1 << 20) {
            let max = u64::MAX;
            let up = (0..3).fold(score, |s, _| reward(s, gain, max));
            prop_assert_eq!(penalize(up, gain, 3), score);
            prop_assert!(penalize(reward(score, gain, max), gain, 3) <= score);
        }

        #[test]
        fn decay_is_monotone(a in any::<u64>(), b in any::<u64>(), permille in 0u64..=1_000, other in 0u64..=1_000) {
            let (lo, hi) = (a.min(b), a.max(b));
            // Never raises a score, and preserves order between scores.
            prop_assert!(decay(hi, permille) <= hi);
            prop_assert!(decay(lo, permille) <= decay(hi, permille));
            // A larger rate decays at least as much.
            let (p_lo, p_hi) = (permille.min(other), permille.max(other));
            prop_assert!(decay(hi, p_hi) <= decay(hi, p_lo));
        }

        #[test]
        fn repeated_decay_reaches_a_floor(score in 0u64..1 << 30, permille in 1u64..=1_000) {
            let mut s = score;
            for _ in 0..20_000 {
                let next = decay(s, permille);
                prop_assert!(next <= s);
                if next == s {
                    break;
                }
                s = next;
            }
            // Only scores whose loss rounds to zero survive: s × permille < 1000.
            prop_assert!(u128::from(s) * u128::from(permille) < 1_000);
        }

        #[test]
        fn reward_weight_is_between_one_and_two_times_credit(credit in any::<u64>(), score in any::<u64>(), max in 1u64..1 << 62) {
            let p = ReputationParams { max, ..params() };
            let w = reward_weight(credit, score, &p);
            let unit = u128::from(credit) * u128::from(max);
            prop_assert!(w >= unit);
            prop_assert!(w <= 2 * unit);
            // More reputation never lowers the weight.
            prop_assert!(reward_weight(credit, score.saturating_add(1), &p) >= w);
        }
    }
}
