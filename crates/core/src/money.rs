//! Money as integer minor units of an ISO 4217 currency. There is no floating point here.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The currencies Konbini accepts, with their ISO 4217 minor-unit exponent.
///
/// A short, explicit list: an unknown code is an input error, never a silent default.
const CURRENCIES: &[(&str, u8)] = &[
    ("JPY", 0),
    ("KRW", 0),
    ("TWD", 2),
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("SGD", 2),
    ("THB", 2),
];

/// A supported ISO 4217 currency. Only constructible from a known code.
///
/// ```
/// use konbini_core::Currency;
/// let jpy = Currency::parse("JPY").unwrap();
/// assert_eq!(jpy.exponent(), 0);
/// assert!(Currency::parse("XXX").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(&'static str, u8);

impl Currency {
    /// Japanese yen, the default currency (exponent 0).
    pub const JPY: Currency = Currency("JPY", 0);

    /// Parses an upper-case ISO 4217 code from the supported list.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, e)| Currency(c, *e))
            .ok_or(MoneyError::UnknownCurrency)
    }
    /// The three-letter code.
    pub fn code(&self) -> &'static str {
        self.0
    }
    /// Number of decimal places of the minor unit (JPY 0, USD 2).
    pub fn exponent(&self) -> u8 {
        self.1
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}
impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why an amount or currency was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a positive integer of minor units")]
    NotPositive,
    #[error("amount is too large")]
    TooLarge,
    #[error("unknown or unsupported currency")]
    UnknownCurrency,
    #[error("currencies differ")]
    CurrencyMismatch,
    #[error("arithmetic overflow")]
    Overflow,
}

/// The largest single amount Konbini handles: 10^12 minor units (¥1 trillion). Far above any
/// limit, far below i64::MAX, so sums of many amounts cannot overflow in practice and checked
/// arithmetic still guards the rest.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// A strictly positive amount of minor units in one currency, at most [`MAX_AMOUNT_MINOR`].
///
/// Requests that move money carry an `Amount`; zero, negative and absurd values cannot be
/// represented, so the rest of the code never re-checks them.
///
/// ```
/// use konbini_core::{Amount, Currency};
/// let a = Amount::new(500, Currency::JPY).unwrap();
/// assert_eq!(a.minor(), 500);
/// assert!(Amount::new(0, Currency::JPY).is_err());
/// assert!(Amount::new(-5, Currency::JPY).is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Amount {
    minor: i64,
    currency: Currency,
}

impl Amount {
    pub fn new(minor: i64, currency: Currency) -> Result<Amount, MoneyError> {
        if minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        if minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Amount { minor, currency })
    }
    pub fn minor(&self) -> i64 {
        self.minor
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// Checked sum of two amounts of the same currency.
    pub fn checked_add(self, other: Amount) -> Result<Amount, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let sum = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Amount::new(sum, self.currency)
    }
}

/// Checked multiplication of a unit price by a quantity, used for basket lines.
pub fn line_total(unit_price_minor: i64, quantity: i64) -> Result<i64, MoneyError> {
    if unit_price_minor < 0 || quantity <= 0 {
        return Err(MoneyError::NotPositive);
    }
    let total = unit_price_minor
        .checked_mul(quantity)
        .ok_or(MoneyError::Overflow)?;
    if total > MAX_AMOUNT_MINOR {
        return Err(MoneyError::TooLarge);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("USD").map(|c| c.exponent()), Ok(2));
        assert_eq!(Currency::parse("jpy"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::parse(""), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::parse("ＪＰＹ"), Err(MoneyError::UnknownCurrency));
    }

    #[test]
    fn amounts_reject_edges() {
        assert_eq!(
            Amount::new(i64::MIN, Currency::JPY),
            Err(MoneyError::NotPositive)
        );
        assert_eq!(
            Amount::new(i64::MAX, Currency::JPY),
            Err(MoneyError::TooLarge)
        );
        assert!(Amount::new(MAX_AMOUNT_MINOR, Currency::JPY).is_ok());
        assert_eq!(
            Amount::new(MAX_AMOUNT_MINOR + 1, Currency::JPY),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(line_total(i64::MAX, 2), Err(MoneyError::Overflow));
        assert_eq!(line_total(100, 0), Err(MoneyError::NotPositive));
        assert_eq!(line_total(100, 3), Ok(300));
    }

    proptest! {
        #[test]
        fn add_is_exact_or_refused(a in 1i64..=MAX_AMOUNT_MINOR, b in 1i64..=MAX_AMOUNT_MINOR) {
            let x = Amount::new(a, Currency::JPY).unwrap();
            let y = Amount::new(b, Currency::JPY).unwrap();
            match x.checked_add(y) {
                Ok(s) => prop_assert_eq!(s.minor(), a + b),
                Err(e) => { prop_assert_eq!(e, MoneyError::TooLarge); prop_assert!(a + b > MAX_AMOUNT_MINOR) }
            }
        }
    }
}
