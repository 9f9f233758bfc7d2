//! The client's address when requests arrive through reverse proxies the operator trusts
//! (`--trusted-proxy`). Only from those peers are `Forwarded` (RFC 7239) and `X-Forwarded-For` read;
//! from anyone else they are ignored, so a client cannot pick the address its rate limits and audit
//! entries are kept under.

use axum::http::{HeaderMap, header};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&address))
    }

    /// The client: the peer, unless it is a trusted proxy; then the nearest address in the forwarding
    /// chain that is not itself a trusted proxy (read from the right, as each proxy appends its peer).
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_for(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(address) => {
                    client = *address;
                    if !self.trusts(*address) {
                        break;
                    }
                }
                // An unreadable or obfuscated hop (`for=unknown`): the last address read stands.
                None => break,
            }
        }
        client
    }
}

/// The `for` addresses of `Forwarded`, or else of `X-Forwarded-For`, in order (`None`: not an address).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for").then(|| parse_node(value))
                })
            })
            .collect();
    }
    values(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .map(|v| parse_node(v))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:80`, `"[2001:db8::1]:4711"`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// Parses `--trusted-proxy` values: CIDRs or single addresses.
pub fn parse_trusted(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or a CIDR (e.g. 10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(t: &str) -> IpAddr {
        t.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let trusted = TrustedProxies(vec![parse_trusted("10.0.0.0/8").unwrap()]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.1.1.1"),
        );
        // From the proxy: the nearest untrusted hop (the first value is the client's own claim).
        assert_eq!(trusted.client(ip("10.0.0.2"), &h), ip("198.51.100.7"));
        // From anyone else: the peer, whatever they claim.
        assert_eq!(trusted.client(ip("192.0.2.5"), &h), ip("192.0.2.5"));
        // Without the option: the peer.
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.2"), &h),
            ip("10.0.0.2")
        );
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\""),
        );
        assert_eq!(trusted.client(ip("10.0.0.2"), &h), ip("2001:db8::1"));
        h.insert(header::FORWARDED, HeaderValue::from_static("for=unknown"));
        assert_eq!(trusted.client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
        assert!(parse_trusted("nope").is_err());
        assert_eq!(
            parse_trusted("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
    }
}
