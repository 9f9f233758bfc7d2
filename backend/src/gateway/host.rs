//! Which site a request is for, from its `Host` (HTTP/1.1) or `:authority` (HTTP/2).
//!
//! `SUB.DOMAIN` is the device whose subdomain is SUB; the bare domain, an IP address or any other name is the
//! control endpoint (where the localtunnel client asks for its tunnel). Anything that is not a valid host
//! name or address is refused before routing.

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A device's site, by its subdomain label (lower case).
    Site(String),
    /// The bare domain or a host that is not a subdomain of it.
    Control,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("the request names no host")]
    Missing,
    #[error("the Host header is not a valid host name")]
    Invalid,
}

/// Checks `--domain`: a DNS name of at least two labels, returned in lower case.
pub fn parse_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.len() > 253 || !domain.contains('.') || !domain.split('.').all(valid_label) {
        return Err(format!(
            "`{text}` is not a domain name like p2pvps.example (letters, digits, hyphens; two labels or more)"
        ));
    }
    Ok(domain)
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Splits `host[:port]` (or `[v6]:port`) and returns the host in lower case.
fn host_part(authority: &str) -> Result<String, HostError> {
    let authority = authority.trim();
    if authority.is_empty() {
        return Err(HostError::Missing);
    }
    let host = if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(HostError::Invalid)?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| HostError::Invalid)?;
        check_port(after)?;
        return Ok(format!("[{v6}]"));
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => {
                check_port(&format!(":{port}"))?;
                host
            }
            None => authority,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(HostError::Invalid);
    }
    Ok(host)
}

fn check_port(after: &str) -> Result<(), HostError> {
    match after.strip_prefix(':') {
        None if after.is_empty() => Ok(()),
        Some(port) if port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(HostError::Invalid),
    }
}

/// Routes a request's host against the gateway's domain (already lower case, from [`parse_domain`]).
pub fn route(authority: &str, domain: &str) -> Result<Route, HostError> {
    let host = host_part(authority)?;
    let Some(label) = host
        .strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Ok(Route::Control);
    };
    // One label only: `a.b.DOMAIN` names no device (and is not the control endpoint either).
    if label.contains('.') {
        return Err(HostError::Invalid);
    }
    Ok(Route::Site(label.to_owned()))
}

/// How sites are addressed publicly, for the URLs shown to users.
#[derive(Debug, Clone)]
pub struct WebAddress {
    pub scheme: &'static str,
    pub domain: String,
    /// Omitted when it is the scheme's default.
    pub port: Option<u16>,
}

impl WebAddress {
    pub fn url(&self, subdomain: &str) -> String {
        match self.port {
            Some(port) => format!("{}://{subdomain}.{}:{port}", self.scheme, self.domain),
            None => format!("{}://{subdomain}.{}", self.scheme, self.domain),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "p2pvps.example";

    #[test]
    fn subdomains_are_sites() {
        assert_eq!(
            route("pi-1.p2pvps.example", D),
            Ok(Route::Site("pi-1".into()))
        );
        assert_eq!(
            route("PI.P2PVPS.Example:8443", D),
            Ok(Route::Site("pi".into()))
        );
        assert_eq!(route("pi.p2pvps.example.", D), Ok(Route::Site("pi".into())));
    }

    #[test]
    fn the_bare_domain_and_other_hosts_are_the_control_endpoint() {
        assert_eq!(route("p2pvps.example", D), Ok(Route::Control));
        assert_eq!(route("127.0.0.1:8080", D), Ok(Route::Control));
        assert_eq!(route("[::1]:80", D), Ok(Route::Control));
        assert_eq!(route("other.example", D), Ok(Route::Control));
        // A name that merely ends like the domain is not under it.
        assert_eq!(route("xp2pvps.example", D), Ok(Route::Control));
    }

    #[test]
    fn malformed_hosts_are_refused() {
        for bad in [
            "a b.p2pvps.example",
            "pi.p2pvps.example:99999",
            "pi.p2pvps.example:x",
            "[::1",
            "[zz]:80",
            "-pi.p2pvps.example",
            "pi_1.p2pvps.example",
            "a.b.p2pvps.example",
            "user@pi.p2pvps.example",
        ] {
            assert_eq!(route(bad, D), Err(HostError::Invalid), "{bad}");
        }
        assert_eq!(route("", D), Err(HostError::Missing));
    }

    #[test]
    fn domains() {
        assert_eq!(parse_domain("P2PVPS.example.").unwrap(), "p2pvps.example");
        assert!(parse_domain("localhost").is_err());
        assert!(parse_domain("bad_name.example").is_err());
        assert!(parse_domain("").is_err());
    }
}
