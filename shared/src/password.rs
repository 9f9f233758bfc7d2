//! Password strength rules applied at sign-up (log-in accepts anything and lets the hash decide).

use crate::ValidationError;
use std::fmt;

/// A password that meets our minimum rules. Never printed: `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    /// Argon2 hashes any length, but an unbounded input is a cheap way to burn our CPU.
    pub const MAX_BYTES: usize = 1024;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let err = |m: &str| ValidationError::new("password", m);
        if input.chars().count() < Self::MIN_CHARS {
            return Err(err("must be at least 10 characters"));
        }
        if input.len() > Self::MAX_BYTES {
            return Err(err("must be at most 1024 bytes"));
        }
        if input.trim().is_empty() {
            return Err(err("must not be only spaces"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rules() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("          ").is_err());
        assert!(Password::parse(&"x".repeat(1025)).is_err());
        let ok = Password::parse("correct horse").unwrap();
        assert_eq!(format!("{ok:?}"), "Password(<hidden>)");
    }
}
