//! Subdomain labels: each device's web name (`LABEL.DOMAIN`) and its `ssh -J` target name.

use crate::ValidationError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One DNS label (RFC 1123): 3-63 of `a-z 0-9 -`, not starting or ending with `-`, not a reserved name.
///
/// Lower-case only, because Host headers are case-insensitive and we compare labels as strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubdomainLabel(String);

impl SubdomainLabel {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 63;
    /// Names an operator is likely to need for the service itself, or that invite phishing.
    pub const RESERVED: &[&str] = &[
        "www",
        "api",
        "app",
        "admin",
        "dashboard",
        "graphql",
        "mail",
        "smtp",
        "imap",
        "ssh",
        "ftp",
        "ns1",
        "ns2",
        "localhost",
        "status",
        "metrics",
        "healthz",
        "static",
        "assets",
        "cdn",
        "login",
        "auth",
        "p2pvps",
    ];

    pub fn parse(input: &str) -> Result<Self, ValidationError> {
        let value = input.trim().to_ascii_lowercase();
        let err = |m: &str| ValidationError::new("subdomain", m);
        if value.len() < Self::MIN_LEN || value.len() > Self::MAX_LEN {
            return Err(err("must be 3 to 63 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("may contain only letters a-z, digits and '-'"));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(err("must not start or end with '-'"));
        }
        if Self::RESERVED.contains(&value.as_str()) {
            return Err(err("is reserved; choose another name"));
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SubdomainLabel {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SubdomainLabel> for String {
    fn from(value: SubdomainLabel) -> Self {
        value.0
    }
}

impl fmt::Display for SubdomainLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        assert_eq!(SubdomainLabel::parse("My-Pi4").unwrap().as_str(), "my-pi4");
        assert!(SubdomainLabel::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn refuses_the_rest() {
        for bad in ["ab", "-pi", "pi-", "pi_4", "pi.4", "www", "ADMIN", "pié"] {
            assert!(SubdomainLabel::parse(bad).is_err(), "{bad}");
        }
        assert!(SubdomainLabel::parse(&"a".repeat(64)).is_err());
    }
}
