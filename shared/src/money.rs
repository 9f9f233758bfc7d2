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

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(Money::price(300, "usd").unwrap().currency.as_str(), "USD");
        assert_eq!(Money::price(0, "USD").unwrap_err().field, "price");
        assert_eq!(Money::price(-5, "USD").unwrap_err().field, "price");
        assert_eq!(Money::price(5, "US").unwrap_err().field, "currency");
        assert_eq!(Money::price(5, "U$D").unwrap_err().field, "currency");
    }
}
