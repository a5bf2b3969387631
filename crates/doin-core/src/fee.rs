//! The fee market: an EIP-1559 style base fee per transaction, burned, plus a tip to the
//! proposer.
//!
//! Why this shape: a base fee that every node computes from the parent block alone gives
//! wallets a predictable price and, because it is burned, gives a proposer no reason to stuff
//! its own blocks with fake transactions. The tip is the only part a proposer earns, so the
//! mempool orders by tip. Unlike Ethereum there is no gas: every transaction counts as one
//! unit of block fullness (payload size is bounded separately by `max_tx_bytes`).
//!
//! The base fee moves by at most 1/8 per block toward `target_block_txs`, so a sender who bids
//! [`suggested_bid`] stays includable for at least two full blocks.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::amount::Amount;
use crate::encode::{Decode, DecodeError, Encode, Reader};

/// The base fee changes by at most `1 / BASE_FEE_CHANGE_DENOMINATOR` per block (as EIP-1559).
pub const BASE_FEE_CHANGE_DENOMINATOR: u64 = 8;

/// What a transaction is willing to pay: at most `max_fee` in total, of which up to `tip` goes
/// to the proposer once the base fee is covered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct FeeBid {
    /// Most the sender pays for this transaction (base fee + tip), in base units.
    pub max_fee: Amount,
    /// Most the sender pays the proposer on top of the base fee, in base units.
    pub tip: Amount,
}

/// What a transaction actually paid: `burned` (the base fee) leaves the supply, `tip` goes to
/// the proposer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct FeeCharge {
    pub burned: Amount,
    pub tip: Amount,
}

impl FeeCharge {
    /// Everything debited from the sender. Never above the bid's `max_fee` for a charge made by
    /// [`charge`]; saturates rather than wraps for hand-built values.
    pub fn total(&self) -> Amount {
        Amount(self.burned.0.saturating_add(self.tip.0))
    }
}

/// Why a fee bid cannot pay for inclusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FeeError {
    /// The bid cannot even cover the burned base fee of the block.
    #[error("max_fee {max_fee} is below the base fee {base_fee}")]
    MaxFeeBelowBaseFee { max_fee: Amount, base_fee: Amount },
}

/// The base fee of the child of a block with `parent_tx_count` transactions.
///
/// At `target_tx_count` it is unchanged; above it rises by
/// `base × (n − t) / (t × 8)` (at least one unit, so a tiny base fee can still climb), with `n`
/// clamped to `2t` so one block moves it by at most 1/8; below it falls by
/// `base × (t − n) / (t × 8)`. The result is never below `min_base_fee` and saturates at the
/// largest amount. A target of 0 (rejected by `ChainParams::validate`) leaves the fee unchanged.
pub fn next_base_fee(
    parent_base_fee: Amount,
    parent_tx_count: u32,
    target_tx_count: u32,
    min_base_fee: Amount,
) -> Amount {
    let base = parent_base_fee.0;
    let target = u64::from(target_tx_count);
    let count = u64::from(parent_tx_count);
    let next = if target == 0 || count == target {
        base
    } else if count > target {
        let excess = count.min(target.saturating_mul(2)) - target;
        let delta = base_fee_delta(base, excess, target).max(1);
        base.saturating_add(delta)
    } else {
        base - base_fee_delta(base, target - count, target)
    };
    Amount(next.max(min_base_fee.0))
}

/// `base × gap / (target × 8)`, rounded down; `gap ≤ target`, so the result is ≤ `base / 8`.
fn base_fee_delta(base: u64, gap: u64, target: u64) -> u64 {
    let numerator = u128::from(base) * u128::from(gap);
    let denominator = u128::from(target) * u128::from(BASE_FEE_CHANGE_DENOMINATOR);
    u64::try_from(numerator / denominator).unwrap_or(u64::MAX)
}

/// What a transaction with `bid` pays in a block whose base fee is `base_fee`.
///
/// The base fee is burned in full; the proposer gets the bid's tip, cut down to whatever room
/// `max_fee` leaves above the base fee. A bid that cannot cover the base fee is refused.
pub fn charge(bid: &FeeBid, base_fee: Amount) -> Result<FeeCharge, FeeError> {
    let room = bid
        .max_fee
        .checked_sub(base_fee)
        .ok_or(FeeError::MaxFeeBelowBaseFee {
            max_fee: bid.max_fee,
            base_fee,
        })?;
    Ok(FeeCharge {
        burned: base_fee,
        tip: bid.tip.min(room),
    })
}

/// A bid that still clears the base fee after two consecutive full blocks: `max_fee` is
/// `base × (9/8)²` rounded up (never less than two full-block steps of [`next_base_fee`], which
/// matters for tiny base fees where the one-unit minimum increase dominates), plus the tip.
pub fn suggested_bid(base_fee: Amount, tip: Amount) -> FeeBid {
    let scaled = (u128::from(base_fee.0) * 81).div_ceil(64);
    let scaled = u64::try_from(scaled).unwrap_or(u64::MAX);
    let stepped = full_block_step(full_block_step(base_fee));
    let headroom = scaled.max(stepped.0);
    FeeBid {
        max_fee: Amount(headroom.saturating_add(tip.0)),
        tip,
    }
}

/// The base fee after one completely full block (twice the target).
fn full_block_step(base_fee: Amount) -> Amount {
    next_base_fee(base_fee, 2, 1, Amount::ZERO)
}

impl Encode for FeeBid {
    fn encode(&self, out: &mut Vec<u8>) {
        self.max_fee.encode(out);
        self.tip.encode(out);
    }
}

impl Decode for FeeBid {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(FeeBid {
            max_fee: Amount::decode(r)?,
            tip: Amount::decode(r)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: Amount = Amount(100);

    #[test]
    fn on_target_blocks_leave_the_base_fee_unchanged() {
        assert_eq!(next_base_fee(Amount(1_000), 10, 10, MIN), Amount(1_000));
    }

    #[test]
    fn full_blocks_raise_by_one_eighth() {
        assert_eq!(next_base_fee(Amount(800), 20, 10, MIN), Amount(900));
        // Beyond twice the target counts as twice the target.
        assert_eq!(next_base_fee(Amount(800), 1_000, 10, MIN), Amount(900));
        assert_eq!(next_base_fee(Amount(800), 15, 10, MIN), Amount(850));
    }

    #[test]
    fn empty_blocks_lower_by_one_eighth() {
        assert_eq!(next_base_fee(Amount(800), 0, 10, MIN), Amount(700));
        assert_eq!(next_base_fee(Amount(800), 5, 10, MIN), Amount(750));
    }

    #[test]
    fn increase_is_at_least_one_unit() {
        assert_eq!(next_base_fee(Amount(1), 11, 10, Amount(0)), Amount(2));
        assert_eq!(next_base_fee(Amount(0), 11, 10, Amount(0)), Amount(1));
    }

    #[test]
    fn never_below_the_minimum() {
        assert_eq!(next_base_fee(Amount(101), 0, 10, MIN), MIN);
        assert_eq!(next_base_fee(Amount(5), 10, 10, MIN), MIN);
    }

    #[test]
    fn extremes_do_not_panic() {
        assert_eq!(
            next_base_fee(Amount(u64::MAX), u32::MAX, u32::MAX - 1, MIN),
            Amount(u64::MAX)
        );
        assert_eq!(
            next_base_fee(Amount(u64::MAX), u32::MAX, 1, MIN),
            Amount(u64::MAX)
        );
        assert_eq!(next_base_fee(Amount(7), 3, 0, MIN), MIN);
        assert_eq!(next_base_fee(Amount(700), 3, 0, MIN), Amount(700));
    }

    #[test]
    fn charge_burns_the_base_fee_and_caps_the_tip() {
        let bid = FeeBid {
            max_fee: Amount(1_000),
            tip: Amount(300),
        };
        let c = charge(&bid, Amount(500)).unwrap();
        assert_eq!(c.burned, Amount(500));
        assert_eq!(c.tip, Amount(300));
        assert_eq!(c.total(), Amount(800));
        let c = charge(&bid, Amount(900)).unwrap();
        assert_eq!(c.tip, Amount(100));
        assert_eq!(c.total(), bid.max_fee);
        let c = charge(&bid, Amount(1_000)).unwrap();
        assert_eq!(c.tip, Amount(0));
    }

    #[test]
    fn charge_refuses_a_bid_below_the_base_fee() {
        let bid = FeeBid {
            max_fee: Amount(99),
            tip: Amount(50),
        };
        let err = charge(&bid, Amount(100)).unwrap_err();
        assert_eq!(
            err,
            FeeError::MaxFeeBelowBaseFee {
                max_fee: Amount(99),
                base_fee: Amount(100)
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("max_fee") && msg.contains("base fee"), "{msg}");
    }

    #[test]
    fn suggested_bid_has_two_blocks_of_headroom() {
        let bid = suggested_bid(Amount(6_400), Amount(10));
        assert_eq!(bid.max_fee, Amount(8_100 + 10));
        assert_eq!(bid.tip, Amount(10));
        // Rounded up.
        assert_eq!(suggested_bid(Amount(65), Amount(0)).max_fee, Amount(83));
        // Tiny fees: the one-unit minimum step dominates.
        assert_eq!(suggested_bid(Amount(1), Amount(0)).max_fee, Amount(3));
        assert_eq!(
            suggested_bid(Amount(u64::MAX), Amount(u64::MAX)).max_fee,
            Amount(u64::MAX)
        );
    }

    #[test]
    fn fee_bid_encoding_is_max_fee_then_tip() {
        let bid = FeeBid {
            max_fee: Amount(0x0102),
            tip: Amount(3),
        };
        let bytes = bid.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(&bytes[..8], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[8..], &3u64.to_le_bytes());
        assert_eq!(FeeBid::from_bytes(&bytes), Ok(bid));
        assert!(FeeBid::from_bytes(&bytes[..15]).is_err());
    }

    #[test]
    fn fee_bid_json_round_trip() {
        let bid = FeeBid {
            max_fee: Amount(5),
            tip: Amount(2),
        };
        let json = serde_json::to_string(&bid).unwrap();
        assert_eq!(json, r#"{"max_fee":5,"tip":2}"#);
        assert_eq!(serde_json::from_str::<FeeBid>(&json).unwrap(), bid);
    }

    proptest! {
        #[test]
        fn base_fee_moves_at_most_one_eighth(
            base in any::<u64>(),
            count in any::<u32>(),
            target in 1u32..,
            min in any::<u64>(),
        ) {
            let min = Amount(min.min(base));
            let next = next_base_fee(Amount(base), count, target, min).0;
            prop_assert!(next >= min.0);
            prop_assert!(next.abs_diff(base) <= base / 8 + 1);
            match count.cmp(&target) {
                std::cmp::Ordering::Equal => prop_assert_eq!(next, base),
                std::cmp::Ordering::Greater => prop_assert!(next > base || base == u64::MAX),
                std::cmp::Ordering::Less => prop_assert!(next <= base),
            }
        }

        #[test]
        fn base_fee_never_below_minimum(
            base in any::<u64>(),
            count in any::<u32>(),
            target in any::<u32>(),
            min in any::<u64>(),
        ) {
            prop_assert!(next_base_fee(Amount(base), count, target, Amount(min)).0 >= min);
        }

        #[test]
        fn charge_never_exceeds_max_fee(max_fee in any::<u64>(), tip in any::<u64>(), base in any::<u64>()) {
            let bid = FeeBid { max_fee: Amount(max_fee), tip: Amount(tip) };
            match charge(&bid, Amount(base)) {
                Ok(c) => {
                    prop_assert_eq!(c.burned.0, base);
                    prop_assert!(c.tip.0 <= tip);
                    prop_assert!(c.total().0 <= max_fee);
                }
                Err(_) => prop_assert!(max_fee < base),
            }
        }

        #[test]
        fn suggested_bid_survives_two_full_blocks(base in 0u64..=u64::MAX / 2, tip in 0u64..=u64::MAX / 4) {
            let bid = suggested_bid(Amount(base), Amount(tip));
            // Full tip at today's base fee.
            prop_assert_eq!(charge(&bid, Amount(base)).unwrap().tip.0, tip);
            // Still includable after two full blocks.
            let mut fee = Amount(base);
            for _ in 0..2 {
                fee = next_base_fee(fee, 200, 100, Amount::ZERO);
                prop_assert!(charge(&bid, fee).is_ok());
            }
        }

        #[test]
        fn fee_bid_round_trips(max_fee in any::<u64>(), tip in any::<u64>()) {
            let bid = FeeBid { max_fee: Amount(max_fee), tip: Amount(tip) };
            prop_assert_eq!(FeeBid::from_bytes(&bid.to_bytes()), Ok(bid));
        }
    }
}
