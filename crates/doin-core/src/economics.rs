//! Coin issuance and the split of each block's reward.
//!
//! The numbers are the seed's, made exact: 50 DOIN per block, halving every 210,000 blocks,
//! a hard cap of 21,000,000 DOIN. The subsidy is an integer right shift of base units, as in
//! Bitcoin, so the total ever issued is 20,999,999.9769 DOIN — a little under the cap, and the
//! cap is additionally enforced against everything already issued (genesis allocations
//! included) by [`capped_subsidy`].
//!
//! Each block's subsidy is split 65% / 30% / 5% between the optimizers whose work the block
//! records, the evaluators whose votes matched the verdicts, and the proposer. The split is
//! exactly conserved: integer rounding remainders go to the proposer, and a pool with nobody
//! to pay is simply not minted (it is not handed to someone who did not earn it).

use std::collections::BTreeMap;

use crate::amount::Amount;
use crate::identity::AccountId;

/// The hard cap on coins that can ever exist, genesis allocations included.
pub const MAX_SUPPLY: Amount = Amount::from_doin(21_000_000);

/// The subsidy of blocks in the first era.
pub const INITIAL_SUBSIDY: Amount = Amount::from_doin(50);

/// Blocks per era; the subsidy halves at the start of each new era.
pub const HALVING_INTERVAL: u64 = 210_000;

/// Share of the subsidy paid to optimizers, pro rata by weighted verified credit.
pub const OPTIMIZER_PERCENT: u64 = 65;

/// Share of the subsidy paid to evaluators, pro rata by votes that matched the verdict.
pub const EVALUATOR_PERCENT: u64 = 30;

/// Share of the subsidy paid to the block's proposer (it also gets the rounding remainders).
pub const PROPOSER_PERCENT: u64 = 5;

/// A right shift of 64 or more clears a `u64`: the subsidy is zero from that era on.
const LAST_SHIFT: u64 = 64;

/// The subsidy a block at `height` may mint before the supply cap is applied.
///
/// Genesis (height 0) mints nothing through the subsidy (its coins are the genesis
/// allocations). Block `h ≥ 1` is in era `(h − 1) / 210_000` and pays
/// `50 DOIN >> era` base units, so blocks 1..=210,000 pay 50 DOIN and block 210,001 pays 25.
///
/// ```
/// use doin_core::economics::{block_subsidy, scheduled_issuance};
/// use doin_core::Amount;
///
/// assert_eq!(block_subsidy(0), Amount::ZERO);
/// assert_eq!(block_subsidy(210_001), Amount::from_doin(25));
/// // Everything ever issued: 20,999,999.9769 DOIN, under the 21M cap.
/// assert_eq!(scheduled_issuance(u64::MAX), Amount(2_099_999_997_690_000));
/// ```
pub fn block_subsidy(height: u64) -> Amount {
    match height.checked_sub(1) {
        None => Amount::ZERO,
        Some(h) => era_subsidy(h / HALVING_INTERVAL),
    }
}

/// The per-block subsidy of era `era` (0-based).
fn era_subsidy(era: u64) -> Amount {
    if era >= LAST_SHIFT {
        Amount::ZERO
    } else {
        Amount(INITIAL_SUBSIDY.0 >> era)
    }
}

/// Everything the subsidy schedule has issued in blocks `1..=height`.
///
/// Closed form per era (at most a few dozen iterations, since the subsidy reaches zero in era
/// 33), never above [`MAX_SUPPLY`].
pub fn scheduled_issuance(height: u64) -> Amount {
    let mut total: u128 = 0;
    let mut era: u64 = 0;
    loop {
        let per_block = era_subsidy(era);
        let first = era.saturating_mul(HALVING_INTERVAL).saturating_add(1);
        if per_block == Amount::ZERO || height < first {
            break;
        }
        let last = first.saturating_add(HALVING_INTERVAL - 1).min(height);
        let blocks = u128::from(last - first + 1);
        total = total.saturating_add(blocks * u128::from(per_block.0));
        era += 1;
    }
    Amount(u64::try_from(total).unwrap_or(u64::MAX)).min(MAX_SUPPLY)
}

/// The subsidy a block at `height` actually mints, given `issued_so_far` (genesis allocations
/// plus every earlier block's mint): the scheduled subsidy, cut down so that the supply never
/// passes [`MAX_SUPPLY`].
pub fn capped_subsidy(height: u64, issued_so_far: Amount) -> Amount {
    block_subsidy(height).min(MAX_SUPPLY.saturating_sub(issued_so_far))
}

/// Everything needed to split one block's reward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardInput {
    /// Receives the proposer pool, the rounding remainders and the tips.
    pub proposer: AccountId,
    /// The capped subsidy of this block (see [`capped_subsidy`]).
    pub subsidy: Amount,
    /// Sum of the tips of the block's transactions (already paid by senders, so not minted).
    pub tips: Amount,
    /// Optimizers and their weights: verified credit × reputation factor, computed by the
    /// caller (see `reputation::reward_weight`). Duplicates are merged.
    pub optimizers: Vec<(AccountId, u128)>,
    /// Evaluators and the number of their votes that matched the verdict. Duplicates are merged.
    pub evaluators: Vec<(AccountId, u64)>,
}

/// The outcome of [`split_block_reward`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewardSplit {
    /// Credit per account, roles merged; only positive amounts appear.
    pub payouts: BTreeMap<AccountId, Amount>,
    /// New coins created by this block: `subsidy − unminted`.
    pub minted: Amount,
    /// Subsidy not created because its pool had no recipient.
    pub unminted: Amount,
}

/// Splits a block's subsidy and tips.
///
/// * optimizer pool = subsidy × 65 / 100, evaluator pool = subsidy × 30 / 100, proposer pool =
///   the rest (so the three always add up to the subsidy);
/// * within a pool each recipient gets `pool × weight / total weight`, rounded down; the
///   rounding remainder goes to the proposer; zero weights get nothing;
/// * a pool whose recipients' total weight is zero is not minted;
/// * the proposer also gets every tip.
///
/// Invariants (property-tested): Σ payouts = minted + tips, minted + unminted = subsidy, and
/// the result does not depend on the order of the input lists. A single account's payout
/// saturates at `u64::MAX`, which cannot happen for amounts within [`MAX_SUPPLY`].
pub fn split_block_reward(input: &RewardInput) -> RewardSplit {
    let subsidy = input.subsidy.0;
    let optimizer_pool = percent_of(subsidy, OPTIMIZER_PERCENT);
    let evaluator_pool = percent_of(subsidy, EVALUATOR_PERCENT);
    let proposer_pool = subsidy - optimizer_pool - evaluator_pool;

    let mut split = RewardSplit::default();
    let mut to_proposer = u128::from(proposer_pool) + u128::from(input.tips.0);
    let optimizers = merge_weights(input.optimizers.iter().copied());
    let evaluators = merge_weights(
        input
            .evaluators
            .iter()
            .map(|&(account, votes)| (account, u128::from(votes))),
    );
    for (pool, weights) in [(optimizer_pool, optimizers), (evaluator_pool, evaluators)] {
        match pay_pool(pool, &weights, &mut split.payouts) {
            Some(remainder) => to_proposer += u128::from(remainder),
            None => split.unminted = Amount(split.unminted.0 + pool),
        }
    }
    credit(&mut split.payouts, input.proposer, to_proposer);
    split.minted = Amount(subsidy - split.unminted.0);
    split
}

/// `amount × percent / 100`, rounded down (`percent ≤ 100`, so it cannot overflow).
fn percent_of(amount: u64, percent: u64) -> u64 {
    let share = u128::from(amount) * u128::from(percent) / 100;
    u64::try_from(share).unwrap_or(u64::MAX)
}

/// Sums the weights of duplicate accounts and drops zero weights. Saturating addition of
/// non-negative numbers does not depend on order, so the result is order independent.
fn merge_weights(entries: impl Iterator<Item = (AccountId, u128)>) -> BTreeMap<AccountId, u128> {
    let mut merged = BTreeMap::new();
    for (account, weight) in entries.filter(|&(_, w)| w > 0) {
        let slot = merged.entry(account).or_insert(0u128);
        *slot = slot.saturating_add(weight);
    }
    merged
}

/// Pays `pool` pro rata over `weights` (all positive) into `payouts` and returns the rounding
/// remainder, or `None` when there is no recipient and the pool must not be minted.
fn pay_pool(
    pool: u64,
    weights: &BTreeMap<AccountId, u128>,
    payouts: &mut BTreeMap<AccountId, Amount>,
) -> Option<u64> {
    let (total, shift) = scaled_total(weights);
    if total == 0 {
        return None;
    }
    let mut paid: u64 = 0;
    for (&account, &weight) in weights {
        let share = mul_div_floor(pool, weight >> shift, total);
        paid += share;
        credit(payouts, account, u128::from(share));
    }
    Some(pool - paid)
}

/// The total of `weights` and the right shift applied to every weight to make that total fit
/// in a `u128`. The shift is 0 for any realistic input; for astronomically large weights,
/// scaling all of them by the same power of two keeps the shares (almost exactly) pro rata and
/// guarantees that the shares never add up to more than the pool.
fn scaled_total(weights: &BTreeMap<AccountId, u128>) -> (u128, u32) {
    (0..u128::BITS)
        .find_map(|shift| {
            weights
                .values()
                .try_fold(0u128, |acc, &w| acc.checked_add(w >> shift))
                .map(|total| (total, shift))
        })
        // Unreachable: at shift 127 every weight is 0 or 1, and a map never holds 2^128 entries.
        .unwrap_or((0, 0))
}

/// Adds `amount` to an account's payout (saturating); zero amounts create no entry.
fn credit(payouts: &mut BTreeMap<AccountId, Amount>, account: AccountId, amount: u128) {
    if amount == 0 {
        return;
    }
    let slot = payouts.entry(account).or_insert(Amount::ZERO);
    let sum = u128::from(slot.0).saturating_add(amount);
    *slot = Amount(u64::try_from(sum).unwrap_or(u64::MAX));
}

/// `⌊a × b / c⌋` for `b ≤ c`, `c > 0`, exactly, even when `a × b` does not fit in `u128`.
///
/// The result is at most `a`, so it fits in a `u64`. The fast path covers every realistic
/// weight; the slow path is a bitwise long division of the 192-bit product.
fn mul_div_floor(a: u64, b: u128, c: u128) -> u64 {
    debug_assert!(c > 0 && b <= c);
    let quotient = match u128::from(a).checked_mul(b) {
        Some(product) => product / c,
        None => wide_mul_div(a, b, c),
    };
    u64::try_from(quotient).unwrap_or(u64::MAX)
}

/// Long division of the 192-bit product `a × b` by `c`, one bit at a time.
fn wide_mul_div(a: u64, b: u128, c: u128) -> u128 {
    let a = u128::from(a);
    let low_product = a * (b & u128::from(u64::MAX));
    let high_product = a * (b >> 64);
    // product = high_product × 2^64 + low_product, as three 64-bit limbs (most significant
    // first). Both addends of `mid_sum` are below 2^64, so it cannot overflow.
    let mid_sum = (high_product & u128::from(u64::MAX)) + (low_product >> 64);
    let top = (high_product >> 64) + (mid_sum >> 64);
    let limbs = [
        top as u64,
        mid_sum as u64,
        (low_product & u128::from(u64::MAX)) as u64,
    ];
    let mut remainder: u128 = 0;
    let mut quotient: u128 = 0;
    for limb in limbs {
        for bit in (0..64).rev() {
            let overflow = remainder >> 127 == 1;
            remainder = (remainder << 1) | u128::from((limb >> bit) & 1);
            quotient <<= 1;
            // When the shift overflowed, the true remainder is ≥ 2^128 > c; the wrapping
            // subtraction then yields the exact (smaller than c) result.
            if overflow || remainder >= c {
                remainder = remainder.wrapping_sub(c);
                quotient |= 1;
            }
        }
    }
    quotient
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bitcoin's famous total: 20,999,999.9769 DOIN.
    const TOTAL_ISSUANCE: u64 = 2_099_999_997_690_000;

    fn acct(n: u8) -> AccountId {
        AccountId([n; 32])
    }

    fn naive_issuance(height: u64) -> u64 {
        (1..=height).map(|h| block_subsidy(h).0).sum()
    }

    #[test]
    fn subsidy_schedule() {
        assert_eq!(block_subsidy(0), Amount::ZERO);
        assert_eq!(block_subsidy(1), Amount::from_doin(50));
        assert_eq!(block_subsidy(210_000), Amount::from_doin(50));
        assert_eq!(block_subsidy(210_001), Amount::from_doin(25));
        assert_eq!(block_subsidy(420_001), Amount(1_250_000_000));
        // 50e8 >> 32 = 1 unit; >> 33 = 0.
        assert_eq!(block_subsidy(32 * HALVING_INTERVAL + 1), Amount(1));
        assert_eq!(block_subsidy(33 * HALVING_INTERVAL + 1), Amount::ZERO);
        assert_eq!(block_subsidy(64 * HALVING_INTERVAL + 1), Amount::ZERO);
        assert_eq!(block_subsidy(u64::MAX), Amount::ZERO);
    }

    #[test]
    fn total_issuance_matches_bitcoin_and_stays_under_the_cap() {
        assert_eq!(scheduled_issuance(u64::MAX), Amount(TOTAL_ISSUANCE));
        assert_eq!(
            scheduled_issuance(33 * HALVING_INTERVAL),
            Amount(TOTAL_ISSUANCE)
        );
        assert!(Amount(TOTAL_ISSUANCE) <= MAX_SUPPLY);
        assert_eq!(scheduled_issuance(0), Amount::ZERO);
        assert_eq!(scheduled_issuance(1), Amount::from_doin(50));
        assert_eq!(
            scheduled_issuance(HALVING_INTERVAL),
            Amount::from_doin(50 * 210_000)
        );
        assert_eq!(
            scheduled_issuance(HALVING_INTERVAL + 2),
            Amount::from_doin(50 * 210_000 + 50)
        );
    }

    #[test]
    fn issuance_matches_brute_force_for_small_heights() {
        let mut sum = 0u64;
        for h in 0..=2_000u64 {
            sum += block_subsidy(h).0;
            assert_eq!(scheduled_issuance(h).0, sum, "height {h}");
        }
    }

    #[test]
    fn issuance_matches_era_by_era_sum() {
        // Summing whole eras of the per-block subsidy is the naive sum, one era at a time.
        let mut sum = 0u64;
        for era in 0..70u64 {
            let first = era * HALVING_INTERVAL + 1;
            sum += HALVING_INTERVAL * block_subsidy(first).0;
            assert_eq!(
                scheduled_issuance(first + HALVING_INTERVAL - 1).0,
                sum,
                "era {era}"
            );
        }
    }

    #[test]
    fn capped_subsidy_respects_the_cap() {
        assert_eq!(capped_subsidy(1, Amount::ZERO), Amount::from_doin(50));
        assert_eq!(
            capped_subsidy(1, MAX_SUPPLY.saturating_sub(Amount(7))),
            Amount(7)
        );
        assert_eq!(capped_subsidy(1, MAX_SUPPLY), Amount::ZERO);
        assert_eq!(capped_subsidy(1, Amount(u64::MAX)), Amount::ZERO);
        assert_eq!(capped_subsidy(0, Amount::ZERO), Amount::ZERO);
    }

    #[test]
    fn split_follows_65_30_5() {
        let input = RewardInput {
            proposer: acct(1),
            subsidy: Amount::from_doin(50),
            tips: Amount(123),
            optimizers: vec![(acct(2), 3), (acct(3), 1)],
            evaluators: vec![(acct(4), 1), (acct(5), 1)],
        };
        let split = split_block_reward(&input);
        assert_eq!(split.minted, Amount::from_doin(50));
        assert_eq!(split.unminted, Amount::ZERO);
        let p = &split.payouts;
        assert_eq!(p[&acct(2)], Amount(2_437_500_000)); // 32.5 × 3/4
        assert_eq!(p[&acct(3)], Amount(812_500_000)); // 32.5 × 1/4
        assert_eq!(p[&acct(4)], Amount(750_000_000)); // 15 / 2
        assert_eq!(p[&acct(5)], Amount(750_000_000));
        assert_eq!(p[&acct(1)], Amount(250_000_000 + 123)); // 5% + tips
    }

    #[test]
    fn rounding_remainders_go_to_the_proposer() {
        let input = RewardInput {
            proposer: acct(9),
            subsidy: Amount(100),
            tips: Amount::ZERO,
            optimizers: vec![(acct(1), 1), (acct(2), 1), (acct(3), 1)],
            evaluators: vec![(acct(4), 1), (acct(5), 2)],
        };
        let split = split_block_reward(&input);
        let p = &split.payouts;
        // Optimizer pool 65 → 21 each, remainder 2; evaluator pool 30 → 10 and 20.
        assert_eq!(p[&acct(1)], Amount(21));
        assert_eq!(p[&acct(4)], Amount(10));
        assert_eq!(p[&acct(5)], Amount(20));
        assert_eq!(p[&acct(9)], Amount(5 + 2));
        assert_eq!(split.minted, Amount(100));
    }

    #[test]
    fn empty_pools_are_not_minted() {
        let input = RewardInput {
            proposer: acct(1),
            subsidy: Amount::from_doin(50),
            tips: Amount(10),
            optimizers: vec![(acct(2), 0)],
            evaluators: Vec::new(),
        };
        let split = split_block_reward(&input);
        // 32.5 DOIN of optimizer pool + 15 DOIN of evaluator pool.
        assert_eq!(split.unminted, Amount(4_750_000_000));
        assert_eq!(split.minted, Amount(250_000_000));
        assert_eq!(split.payouts.len(), 1);
        assert_eq!(split.payouts[&acct(1)], Amount(250_000_010));
        assert!(!split.payouts.contains_key(&acct(2)));
    }

    #[test]
    fn roles_and_duplicates_merge() {
        let input = RewardInput {
            proposer: acct(1),
            subsidy: Amount(1_000),
            tips: Amount::ZERO,
            optimizers: vec![(acct(1), 1), (acct(2), 2), (acct(1), 1)],
            evaluators: vec![(acct(1), 5)],
        };
        let split = split_block_reward(&input);
        // Optimizers: acct 1 weight 2, acct 2 weight 2 → 325 each. Evaluator pool 300 to acct 1.
        assert_eq!(split.payouts[&acct(2)], Amount(325));
        assert_eq!(split.payouts[&acct(1)], Amount(325 + 300 + 50));
    }

    #[test]
    fn zero_subsidy_pays_only_tips() {
        let input = RewardInput {
            proposer: acct(1),
            subsidy: Amount::ZERO,
            tips: Amount(42),
            optimizers: vec![(acct(2), 5)],
            evaluators: vec![(acct(3), 5)],
        };
        let split = split_block_reward(&input);
        assert_eq!(split.minted, Amount::ZERO);
        assert_eq!(split.payouts.len(), 1);
        assert_eq!(split.payouts[&acct(1)], Amount(42));
    }

    #[test]
    fn huge_weights_divide_exactly() {
        let input = RewardInput {
            proposer: acct(1),
            subsidy: Amount(u64::MAX),
            tips: Amount::ZERO,
            optimizers: vec![(acct(2), u128::MAX), (acct(3), u128::MAX)],
            evaluators: Vec::new(),
        };
        // The total does not fit in a u128: weights are scaled down together, so the two
        // equal weights still get equal halves and nothing is overpaid.
        let split = split_block_reward(&input);
        assert_eq!(split.minted.0 + split.unminted.0, u64::MAX);
        assert_eq!(split.payouts[&acct(2)], split.payouts[&acct(3)]);
    }

    #[test]
    fn wide_mul_div_is_exact() {
        let cases: [(u64, u128, u128); 5] = [
            (u64::MAX, u128::MAX, u128::MAX),
            (u64::MAX, u128::MAX - 1, u128::MAX),
            (u64::MAX, 1u128 << 100, (1u128 << 101) + 3),
            (12_345, u128::MAX / 3, u128::MAX / 2),
            (1 << 63, (1 << 127) + 1, 1u128 << 127 | 12345),
        ];
        for (a, b, c) in cases {
            // Cross-check against splitting b into 64-bit halves with exact u128 math where
            // possible: (a×b)/c ≤ a and (a×b) mod c recomputed via the identity below.
            let q = wide_mul_div(a, b, c);
            assert!(q <= u128::from(a));
            // q × c ≤ a × b < (q + 1) × c, checked in 256-bit via the slow path on c's side.
            assert!(le_product(q, c, a, b), "q too big for {a} {b} {c}");
            assert!(!le_product(q + 1, c, a, b), "q too small for {a} {b} {c}");
        }
        assert_eq!(
            wide_mul_div(u64::MAX, u128::MAX, u128::MAX),
            u128::from(u64::MAX)
        );
        assert_eq!(wide_mul_div(10, 6, 4), 15);
    }

    /// `x × y ≤ a × b` in exact 256-bit arithmetic (x, y: u128; a: u64, b: u128).
    fn le_product(x: u128, y: u128, a: u64, b: u128) -> bool {
        wide(x, y) <= wide(u128::from(a), b)
    }

    /// Exact 256-bit product as (high, low).
    fn wide(x: u128, y: u128) -> (u128, u128) {
        let mask = u128::from(u64::MAX);
        let (x0, x1, y0, y1) = (x & mask, x >> 64, y & mask, y >> 64);
        let p00 = x0 * y0;
        let p01 = x0 * y1;
        let p10 = x1 * y0;
        let p11 = x1 * y1;
        let mid = (p00 >> 64) + (p01 & mask) + (p10 & mask);
        let low = (p00 & mask) | (mid << 64);
        let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
        (high, low)
    }

    fn account() -> impl Strategy<Value = AccountId> {
        // A small alphabet so duplicates and role overlaps actually happen.
        (0u8..6).prop_map(acct)
    }

    fn reward_input() -> impl Strategy<Value = RewardInput> {
        (
            account(),
            0..=MAX_SUPPLY.0,
            0..=MAX_SUPPLY.0,
            prop::collection::vec(
                (
                    account(),
                    prop_oneof![Just(0u128), 0u128..1_000, any::<u128>()],
                ),
                0..8,
            ),
            prop::collection::vec(
                (account(), prop_oneof![Just(0u64), 0u64..100, any::<u64>()]),
                0..8,
            ),
        )
            .prop_map(
                |(proposer, subsidy, tips, optimizers, evaluators)| RewardInput {
                    proposer,
                    subsidy: Amount(subsidy),
                    tips: Amount(tips),
                    optimizers,
                    evaluators,
                },
            )
    }

    proptest! {
        #[test]
        fn issuance_matches_naive_sum_near_era_boundaries(era in 0u64..70, offset in 0u64..3_000) {
            // Naive: whole eras before, then block-by-block within the era.
            let first = era * HALVING_INTERVAL + 1;
            let height = first - 1 + offset;
            let before: u64 = (0..era).map(|e| HALVING_INTERVAL * era_subsidy(e).0).sum();
            let within: u64 = (first..=height).map(|h| block_subsidy(h).0).sum();
            prop_assert_eq!(scheduled_issuance(height).0, before + within);
        }

        #[test]
        fn issuance_is_monotone_and_capped(a in any::<u64>(), b in any::<u64>()) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(scheduled_issuance(lo) <= scheduled_issuance(hi));
            prop_assert!(scheduled_issuance(hi) <= MAX_SUPPLY);
            prop_assert!(scheduled_issuance(hi).0 <= TOTAL_ISSUANCE);
        }

        #[test]
        fn issuance_steps_by_the_block_subsidy(h in 1u64..40 * HALVING_INTERVAL) {
            prop_assert_eq!(
                scheduled_issuance(h).0,
                scheduled_issuance(h - 1).0 + block_subsidy(h).0
            );
        }

        #[test]
        fn small_heights_match_brute_force(h in 0u64..20_000) {
            prop_assert_eq!(scheduled_issuance(h).0, naive_issuance(h));
        }

        #[test]
        fn capped_subsidy_never_breaks_the_cap(h in any::<u64>(), issued in any::<u64>()) {
            let s = capped_subsidy(h, Amount(issued));
            prop_assert!(s <= block_subsidy(h));
            if issued <= MAX_SUPPLY.0 {
                prop_assert!(issued + s.0 <= MAX_SUPPLY.0);
            } else {
                prop_assert_eq!(s, Amount::ZERO);
            }
        }

        #[test]
        fn split_conserves_coins(input in reward_input()) {
            let split = split_block_reward(&input);
            let paid: u128 = split.payouts.values().map(|a| u128::from(a.0)).sum();
            prop_assert_eq!(paid, u128::from(split.minted.0) + u128::from(input.tips.0));
            prop_assert_eq!(split.minted.0 + split.unminted.0, input.subsidy.0);
            prop_assert!(split.payouts.values().all(|a| a.0 > 0));
        }

        #[test]
        fn split_pays_nothing_for_zero_weight(input in reward_input()) {
            let split = split_block_reward(&input);
            let weight_of = |who: AccountId| -> u128 {
                let o: u128 = input.optimizers.iter().filter(|e| e.0 == who).map(|e| e.1.min(1)).sum();
                let e: u128 = input.evaluators.iter().filter(|e| e.0 == who).map(|e| u128::from(e.1.min(1))).sum();
                o + e
            };
            for account in split.payouts.keys() {
                prop_assert!(*account == input.proposer || weight_of(*account) > 0);
            }
        }

        #[test]
        fn split_is_order_independent(input in reward_input(), seed in any::<u64>()) {
            let mut shuffled = input.clone();
            shuffled.optimizers.reverse();
            shuffled.evaluators.reverse();
            let n = shuffled.optimizers.len();
            if n > 1 {
                shuffled.optimizers.rotate_left((seed as usize) % n);
            }
            let m = shuffled.evaluators.len();
            if m > 1 {
                shuffled.evaluators.rotate_left((seed as usize / 7) % m);
            }
            prop_assert_eq!(split_block_reward(&input), split_block_reward(&shuffled));
        }

        #[test]
        fn split_pools_are_minted_iff_someone_earned_them(input in reward_input()) {
            let split = split_block_reward(&input);
            let opt_pool = input.subsidy.0 * OPTIMIZER_PERCENT / 100;
            let eval_pool = input.subsidy.0 * EVALUATOR_PERCENT / 100;
            let has_opt = input.optimizers.iter().any(|e| e.1 > 0);
            let has_eval = input.evaluators.iter().any(|e| e.1 > 0);
            let expected_unminted = if has_opt { 0 } else { opt_pool } + if has_eval { 0 } else { eval_pool };
            prop_assert_eq!(split.unminted.0, expected_unminted);
        }

        #[test]
        fn split_shares_are_proportional(w1 in 1u128..1_000_000, w2 in 1u128..1_000_000, subsidy in 0u64..=MAX_SUPPLY.0) {
            let input = RewardInput {
                proposer: acct(0),
                subsidy: Amount(subsidy),
                tips: Amount::ZERO,
                optimizers: vec![(acct(1), w1), (acct(2), w2)],
                evaluators: Vec::new(),
            };
            let split = split_block_reward(&input);
            let pool = u128::from(subsidy * OPTIMIZER_PERCENT / 100);
            let get = |n| split.payouts.get(&acct(n)).map_or(0, |a| u128::from(a.0));
            prop_assert_eq!(get(1), pool * w1 / (w1 + w2));
            prop_assert_eq!(get(2), pool * w2 / (w1 + w2));
        }

        #[test]
        fn mul_div_matches_u128_when_it_fits(a in any::<u64>(), b in any::<u64>(), extra in any::<u64>()) {
            let b = u128::from(b);
            let c = b + u128::from(extra).max(1);
            prop_assert_eq!(wide_mul_div(a, b, c), u128::from(a) * b / c);
            prop_assert_eq!(u128::from(mul_div_floor(a, b, c)), u128::from(a) * b / c);
        }

        #[test]
        fn wide_mul_div_brackets_the_quotient(a in any::<u64>(), b in any::<u128>(), extra in any::<u128>()) {
            let c = b.saturating_add(extra).max(1);
            let q = wide_mul_div(a, b, c);
            prop_assert!(le_product(q, c, a, b));
            prop_assert!(!le_product(q + 1, c, a, b));
        }

        #[test]
        fn split_never_panics_on_extreme_amounts(
            subsidy in any::<u64>(),
            tips in any::<u64>(),
            optimizers in prop::collection::vec((account(), any::<u128>()), 0..6),
            evaluators in prop::collection::vec((account(), any::<u64>()), 0..6),
        ) {
            let input = RewardInput { proposer: acct(0), subsidy: Amount(subsidy), tips: Amount(tips), optimizers, evaluators };
            let split = split_block_reward(&input);
            prop_assert_eq!(split.minted.0 + split.unminted.0, subsidy);
        }
    }
}
