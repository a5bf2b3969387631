//! (in progress)
use crate::amount::Amount;
pub const MAX_SUPPLY: Amount = Amount::from_doin(21_000_000);
