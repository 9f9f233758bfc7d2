//! Device names: what an owner calls a device (unique per owner, shown in listings).

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// 1 to 64 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceName(String);

impl DeviceName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim();
        let err = |m: &str| ValidationError::new("name", m);
        if value.is_empty() {
            return Err(err("enter a name for the device"));
        }
        if value.chars().count() > Self::MAX_CHARS {
            return Err(err("must be at most 64 characters"));
        }
        if value.chars().any(char::is_control) {
            return Err(err("must not contain control characters (tabs, new lines)"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceName {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<DeviceName> for String {
    fn from(value: DeviceName) -> Self {
        value.0
    }
}

impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_limits() {
        assert_eq!(
            DeviceName::parse("  Pi 4 (kitchen) ").unwrap().as_str(),
            "Pi 4 (kitchen)"
        );
        assert!(DeviceName::parse(" ").is_err());
        assert!(DeviceName::parse("a\nb").is_err());
        assert!(DeviceName::parse(&"é".repeat(64)).is_ok());
        assert!(DeviceName::parse(&"é".repeat(65)).is_err());
    }
}
