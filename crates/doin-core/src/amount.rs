//! Coin amounts in integer base units. 1 DOIN = 10^8 units; there is no float money.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::encode::{put, Decode, DecodeError, Encode, Reader};

/// Base units per DOIN.
pub const UNITS_PER_DOIN: u64 = 100_000_000;

/// An amount of DOIN in base units. Arithmetic is checked: overflow is an error, never a wrap.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Amount(pub u64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_doin(doin: u64) -> Amount {
        Amount(doin * UNITS_PER_DOIN)
    }

    pub const fn units(self) -> u64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    pub fn min(self, other: Amount) -> Amount {
        Amount(self.0.min(other.0))
    }

    /// `self × numerator / denominator`, rounded down, computed without overflow.
    pub fn mul_div(self, numerator: u64, denominator: u64) -> Amount {
        assert!(denominator > 0, "mul_div by zero");
        Amount((u128::from(self.0) * u128::from(numerator) / u128::from(denominator)) as u64)
    }
}

/// Why a DOIN amount string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount {input:?}: {reason} (examples: \"1.5\", \"0.0001\", \"2 DOIN\", \"150000u\" for base units)")]
pub struct ParseAmountError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses whole DOIN with up to eight decimals (`"1.5"`, `"2 DOIN"`), or base units with a `u`
/// suffix (`"150000u"`). Exact: no floating point is involved.
impl std::str::FromStr for Amount {
    type Err = ParseAmountError;

    fn from_str(input: &str) -> Result<Amount, ParseAmountError> {
        let err = |reason| ParseAmountError {
            input: input.chars().take(64).collect(),
            reason,
        };
        let s = input.trim();
        if let Some(units) = s.strip_suffix('u') {
            return units
                .trim()
                .parse::<u64>()
                .map(Amount)
                .map_err(|_| err("base units must be a whole number"));
        }
        let s = s
            .strip_suffix("DOIN")
            .or_else(|| s.strip_suffix("doin"))
            .unwrap_or(s)
            .trim();
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits_only = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() && frac.is_empty() || !digits_only(whole) || !digits_only(frac) {
            return Err(err("expected digits with an optional decimal point"));
        }
        if frac.len() > 8 {
            return Err(err("at most 8 decimals (1 base unit = 0.00000001 DOIN)"));
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err("too large"))?
        };
        let frac_units: u64 = format!("{frac:0<8}")
            .parse()
            .map_err(|_| err("bad decimals"))?;
        whole
            .checked_mul(UNITS_PER_DOIN)
            .and_then(|w| w.checked_add(frac_units))
            .map(Amount)
            .ok_or_else(|| err("too large"))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows whole DOIN with up to eight decimals, trailing zeros trimmed: `12.5 DOIN`.
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNITS_PER_DOIN;
        let frac = self.0 % UNITS_PER_DOIN;
        if frac == 0 {
            write!(f, "{whole} DOIN")
        } else {
            let digits = format!("{frac:08}");
            write!(f, "{whole}.{} DOIN", digits.trim_end_matches('0'))
        }
    }
}

impl std::iter::Sum for Amount {
    /// Panics on overflow: sums are over amounts bounded by the supply cap.
    fn sum<I: Iterator<Item = Amount>>(iter: I) -> Amount {
        iter.fold(Amount::ZERO, |acc, a| {
            acc.checked_add(a).expect("amount sum overflow")
        })
    }
}

impl Encode for Amount {
    fn encode(&self, out: &mut Vec<u8>) {
        put::u64(out, self.0);
    }
}

impl Decode for Amount {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Amount(r.u64("amount")?))
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parses_doin_and_units_exactly() {
        assert_eq!("1.5".parse::<Amount>().unwrap(), Amount(150_000_000));
        assert_eq!("0.00000001".parse::<Amount>().unwrap(), Amount(1));
        assert_eq!("2 DOIN".parse::<Amount>().unwrap(), Amount::from_doin(2));
        assert_eq!(".5".parse::<Amount>().unwrap(), Amount(50_000_000));
        assert_eq!("150000u".parse::<Amount>().unwrap(), Amount(150_000));
        for bad in [
            "",
            ".",
            "1.000000001",
            "-1",
            "1e3",
            "abc",
            "184467440737.1",
            "1.2.3",
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad:?} parsed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display() {
        assert_eq!(Amount::from_doin(50).to_string(), "50 DOIN");
        assert_eq!(Amount(1).to_string(), "0.00000001 DOIN");
        assert_eq!(Amount(1_250_000_000).to_string(), "12.5 DOIN");
    }

    #[test]
    fn checked_arithmetic() {
        assert_eq!(Amount(u64::MAX).checked_add(Amount(1)), None);
        assert_eq!(Amount(0).checked_sub(Amount(1)), None);
        assert_eq!(
            Amount(u64::MAX).mul_div(3, 4),
            Amount((u128::from(u64::MAX) * 3 / 4) as u64)
        );
    }
}
