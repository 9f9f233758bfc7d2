//! E-mail addresses: the login name of every user.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A syntactically valid e-mail address, trimmed and lower-cased so that uniqueness is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Longest address accepted (RFC 5321's path limit).
    pub const MAX_LEN: usize = 254;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim().to_lowercase();
        let err = |m: &str| ValidationError::new("email", m);
        if value.is_empty() {
            return Err(err("enter an e-mail address"));
        }
        if value.len() > Self::MAX_LEN {
            return Err(err("must be at most 254 characters"));
        }
        let parsed: email_address::EmailAddress = value
            .parse()
            .map_err(|_| err("is not a valid e-mail address (expected name@example.com)"))?;
        // Addresses without a dot in the domain ("a@localhost") or with a display name are valid RFC 5322 but
        // never what a user of a public service means.
        if !parsed.domain().contains('.')
            || parsed.display_part() != ""
            || value.contains(['<', '>', ' '])
        {
            return Err(err(
                "is not a valid e-mail address (expected name@example.com)",
            ));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_whitespace() {
        assert_eq!(
            Email::parse("  Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            "",
            "   ",
            "ann",
            "ann@",
            "@example.com",
            "ann@localhost",
            "a b@example.com",
            "Ann <a@b.com>",
        ] {
            let e = Email::parse(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
