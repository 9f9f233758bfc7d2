//! Money in integer minor units: floating point never touches a price or a balance.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO 4217-style code (`USD`) or a crypto ticker (`BTC`, `BCH`): 3 to 5 upper-case ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim().to_ascii_uppercase();
        if !(3..=5).contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                "currency",
                "must be a currency code of 3-5 letters, like USD",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point of the currency's usual notation: 8 for the bitcoin family
    /// (satoshis), 2 otherwise.
    pub fn decimals(&self) -> u32 {
        match self.0.as_str() {
            "BTC" | "BCH" | "LTC" | "ZEC" => 8,
            _ => 2,
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.0
    }
}

/// An amount in the currency's smallest unit (cents, satoshis).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    /// A price: strictly positive and below a sanity cap, so a typo cannot list a Pi for a fortune.
    pub fn price(minor: i64, currency: &str) -> Result<Self, ValidationError> {
        const MAX_MINOR: i64 = 100_000_000_000;
        if minor <= 0 {
            return Err(ValidationError::new("price", "must be greater than zero"));
        }
        if minor > MAX_MINOR {
            return Err(ValidationError::new("price", "is too large"));
        }
        Ok(Self {
            minor,
            currency: Currency::parse(currency)?,
        })
    }
}

impl Money {
    /// A price typed in the currency's usual notation (`3`, `3.5`, `0.00012`), as the dashboard's form
    /// takes it.
    pub fn parse_price(amount: &str, currency: &str) -> Result<Self, ValidationError> {
        let decimals = Currency::parse(currency)?.decimals();
        let bad = || ValidationError::new("price", "must be a number like 3.50");
        let amount = amount.trim();
        let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
        if whole.is_empty() && fraction.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        if fraction.len() > decimals as usize {
            return Err(ValidationError::new(
                "price",
                format!("has more than {decimals} decimal places"),
            ));
        }
        let scale = 10_i64.pow(decimals);
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole
                .parse()
                .map_err(|_| ValidationError::new("price", "is too large"))?
        };
        let fraction: i64 = format!("{fraction:0<width$}", width = decimals as usize)
            .parse()
            .map_err(|_| bad())?;
        let minor = whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(|| ValidationError::new("price", "is too large"))?;
        Self::price(minor, currency)
    }

    /// The amount in the currency's usual notation: `3.50 USD`.
    pub fn to_decimal_string(&self) -> String {
        let decimals = self.currency.decimals();
        let scale = 10_i64.pow(decimals);
        let sign = if self.minor < 0 { "-" } else { "" };
        let abs = self.minor.unsigned_abs();
        format!(
            "{sign}{}.{:0width$} {}",
            abs / scale as u64,
            abs % scale as u64,
            self.currency.0,
            width = decimals as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prices() {
        assert_eq!(Money::parse_price("3.5", "usd").unwrap().minor, 350);
        assert_eq!(Money::parse_price("3", "USD").unwrap().minor, 300);
        assert_eq!(Money::parse_price(".25", "USD").unwrap().minor, 25);
        assert_eq!(Money::parse_price("0.00012", "BTC").unwrap().minor, 12_000);
        assert_eq!(
            Money::parse_price("3.555", "USD").unwrap_err().field,
            "price"
        );
        assert_eq!(
            Money::parse_price("3,50", "USD").unwrap_err().field,
            "price"
        );
        assert_eq!(Money::parse_price("", "USD").unwrap_err().field, "price");
        assert_eq!(Money::parse_price("-1", "USD").unwrap_err().field, "price");
        assert_eq!(Money::parse_price("0", "USD").unwrap_err().field, "price");
        assert_eq!(
            Money::parse_price("99999999999999999999", "USD")
                .unwrap_err()
                .field,
            "price"
        );
        assert_eq!(Money::parse_price("1", "U").unwrap_err().field, "currency");
        assert_eq!(
            Money::price(350, "USD").unwrap().to_decimal_string(),
            "3.50 USD"
        );
        assert_eq!(
            Money::price(12_000, "BTC").unwrap().to_decimal_string(),
            "0.00012000 BTC"
        );
    }

    #[test]
    fn prices() {
        assert_eq!(Money::price(300, "usd").unwrap().currency.as_str(), "USD");
        assert_eq!(Money::price(0, "USD").unwrap_err().field, "price");
        assert_eq!(Money::price(-5, "USD").unwrap_err().field, "price");
        assert_eq!(Money::price(5, "US").unwrap_err().field, "currency");
        assert_eq!(Money::price(5, "U$D").unwrap_err().field, "currency");
    }
}

/// Splits a renter's payment into the platform's fee (`fee_bps` basis points, rounded down) and the owner's
/// earning (the rest), in minor units: the two always add up to the payment.
pub fn split_fee(paid_minor: i64, fee_bps: u32) -> (i64, i64) {
    let fee = i64::try_from(i128::from(paid_minor) * i128::from(fee_bps.min(10_000)) / 10_000)
        .unwrap_or(0);
    (fee, paid_minor - fee)
}

#[cfg(test)]
mod fee_tests {
    use super::split_fee;

    #[test]
    fn fee_and_earning_add_up() {
        assert_eq!(split_fee(300, 1000), (30, 270));
        assert_eq!(split_fee(9, 1000), (0, 9));
        assert_eq!(split_fee(19, 1000), (1, 18));
        assert_eq!(split_fee(100, 0), (0, 100));
        assert_eq!(split_fee(100, 20_000), (100, 0), "capped at 100 %");
        for paid in [1_i64, 7, 99, 12_345, i64::MAX / 2] {
            let (fee, owner) = split_fee(paid, 1234);
            assert_eq!(fee + owner, paid);
            assert!(fee >= 0 && owner >= 0);
        }
    }
}
