//! Who sent a request, and how they reached the hub, behind proxies.
//!
//! Behind a load balancer the hub's peer is the proxy: the client's address, and the scheme and
//! host it used, are in headers the proxy adds (`Forwarded`, RFC 7239, or `X-Forwarded-For`,
//! `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Real-IP`). Anyone can send those headers, so they
//! are read only with `use_forwarded_headers` and only when the peer is one of
//! `trusted_proxies`; from any other peer they are ignored.
//!
//! A chain of addresses is read from the right (the hop nearest the hub) to the left: trusted
//! proxies are skipped, and the first address that is not one is the client. What a client
//! wrote itself into the header stays on the left of what its proxy appended, so it is never
//! taken. When every hop is trusted, the leftmost is the client.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;

use crate::config::TrustedProxies;

/// Where a request came from and how its client addressed the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address; `None` when neither the peer nor a trusted header gives one.
    pub address: Option<IpAddr>,
    /// `http` or `https`, as the client used it.
    pub scheme: &'static str,
    /// The host (and port) the client asked for; empty when the request named none.
    pub host: String,
}

/// One hop of a forwarding chain: its address, and the scheme and host the hop received the
/// request with (`Forwarded` carries them per hop).
#[derive(Debug, Default)]
struct Hop {
    address: Option<IpAddr>,
    proto: Option<&'static str>,
    host: Option<String>,
}

/// Resolves the client of a request whose peer is `peer`, over TLS when `secure`, whose own
/// host is `host`. `trusted` is `None` unless `use_forwarded_headers` is on.
pub fn resolve(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    secure: bool,
    host: &str,
    trusted: Option<&TrustedProxies>,
) -> ClientInfo {
    let direct = ClientInfo {
        address: peer.map(|peer| peer.ip()),
        scheme: if secure { "https" } else { "http" },
        host: host.to_owned(),
    };
    let Some(trusted) = trusted else { return direct };
    if !direct.address.is_some_and(|peer| trusted.contains(peer)) {
        return direct;
    }
    let hops = forwarded_hops(headers).unwrap_or_else(|| x_forwarded_hops(headers));
    // From the nearest hop outwards, past the trusted proxies.
    let mut chosen = None;
    for hop in hops.iter().rev() {
        chosen = Some(hop);
        match hop.address {
            Some(address) if trusted.contains(address) => continue,
            _ => break,
        }
    }
    let Some(hop) = chosen else { return direct };
    ClientInfo {
        // An `unknown` or obfuscated hop: the nearest address known is kept.
        address: hop.address.or(direct.address),
        scheme: hop.proto.unwrap_or(direct.scheme),
        host: hop.host.clone().unwrap_or(direct.host),
    }
}

/// The hops of `Forwarded` headers (RFC 7239), leftmost first; `None` without one.
fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let mut values = headers.get_all("forwarded").filter_map(|v| v.to_str().ok()).peekable();
    values.peek()?;
    let mut hops = Vec::new();
    for element in values.flat_map(|value| value.split(',')) {
        let mut hop = Hop::default();
        for pair in element.split(';') {
            let Some((name, value)) = pair.split_once('=') else { continue };
            let value = value.trim().trim_matches('"');
            match name.trim().to_ascii_lowercase().as_str() {
                "for" => hop.address = node_address(value),
                "proto" => hop.proto = scheme(value),
                "host" => hop.host = valid_host(value),
                _ => {}
            }
        }
        hops.push(hop);
    }
    Some(hops)
}

/// The hops of `X-Forwarded-For` (or `X-Real-IP` without it), with the scheme and host of
/// `X-Forwarded-Proto` (or `X-Forwarded-Scheme`) and `X-Forwarded-Host` on the client's hop: the value at the same
/// position when the lists are as long as the chain, else the nearest proxy's (the last).
fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop> {
    let list = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let mut addresses = list("x-forwarded-for");
    if addresses.is_empty() {
        addresses = list("x-real-ip").into_iter().take(1).collect();
    }
    let mut protos = list("x-forwarded-proto");
    if protos.is_empty() {
        protos = list("x-forwarded-scheme");
    }
    let hosts = list("x-forwarded-host");
    let count = addresses.len();
    let pick = |values: &[String], index: usize| -> Option<String> {
        if values.len() == count { values.get(index) } else { values.last() }.cloned()
    };
    addresses
        .iter()
        .enumerate()
        .map(|(index, address)| Hop {
            address: node_address(address),
            proto: pick(&protos, index).as_deref().and_then(scheme),
            host: pick(&hosts, index).as_deref().and_then(valid_host),
        })
        .collect()
}

/// The address of a node: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`;
/// `None` for `unknown`, an obfuscated name (`_hidden`) or anything else.
fn node_address(node: &str) -> Option<IpAddr> {
    node.parse::<IpAddr>()
        .ok()
        .or_else(|| node.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| node.strip_prefix('[')?.split_once(']')?.0.parse().ok())
}

fn scheme(value: &str) -> Option<&'static str> {
    if value.eq_ignore_ascii_case("https") {
        Some("https")
    } else if value.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// `host[:port]` made of the characters a host may hold; anything else is ignored rather than
/// echoed into URLs.
fn valid_host(value: &str) -> Option<String> {
    let valid = !value.is_empty()
        && value.len() <= 255
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
    valid.then(|| value.to_owned())
}

/// The settings of the hub serving `req`.
fn config(req: &actix_web::HttpRequest) -> Option<&crate::config::Config> {
    req.app_data::<actix_web::web::Data<crate::hub::Hub>>().map(|hub| &*hub.config)
}

/// The client's address of `req`, per the hub's settings (what logs and traces show).
pub fn client_address(req: &actix_web::HttpRequest) -> Option<IpAddr> {
    match config(req).and_then(|config| config.trusted_proxies.as_ref()) {
        None => req.peer_addr().map(|peer| peer.ip()),
        Some(_) => client_info(req).address,
    }
}

/// The client of `req`, per the hub's settings.
pub fn client_info(req: &actix_web::HttpRequest) -> ClientInfo {
    let config = config(req);
    let host = req
        .uri()
        .authority()
        .map(|authority| authority.as_str().to_owned())
        .or_else(|| req.headers().get("host")?.to_str().ok().map(str::to_owned))
        .unwrap_or_default();
    resolve(
        req.headers(),
        req.peer_addr(),
        config.is_some_and(|config| config.https()),
        &host,
        config.and_then(|config| config.trusted_proxies.as_ref()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        map
    }

    fn proxies(text: &str) -> TrustedProxies {
        TrustedProxies::parse(text).expect("valid proxies")
    }

    const PROXY: &str = "10.0.0.5:41000";

    fn client(pairs: &[(&str, &str)], peer: &str, trusted: Option<&TrustedProxies>) -> ClientInfo {
        resolve(&headers(pairs), Some(peer.parse().expect("a peer")), false, "hub:8080", trusted)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    #[test]
    fn networks_are_parsed_and_matched() {
        let trusted = proxies("10.0.0.0/8, 192.0.2.7 fd00::/8,127.0.0.1/32");
        for inside in ["10.1.2.3", "192.0.2.7", "fd12::1", "127.0.0.1", "::ffff:10.9.9.9"] {
            assert!(trusted.contains(inside.parse().expect("ip")), "{inside}");
        }
        for outside in ["11.0.0.1", "192.0.2.8", "fe80::1", "::1", "127.0.0.2"] {
            assert!(!trusted.contains(outside.parse().expect("ip")), "{outside}");
        }
        // Listed as IPv6-mapped IPv4 (found by fuzz/config_values): matched as the IPv4 it is.
        let mapped = proxies("::ffff:192.0.2.9, ::ffff:10.0.0.0/104");
        for inside in ["192.0.2.9", "::ffff:192.0.2.9", "10.200.0.1", "::ffff:10.1.1.1"] {
            assert!(mapped.contains(inside.parse().expect("ip")), "{inside}");
        }
        assert!(!mapped.contains("11.0.0.1".parse().expect("ip")));
        assert!(proxies("0.0.0.0/0").contains("203.0.113.1".parse().expect("ip")));
        assert!(proxies("10.0.0.0/12").contains("10.15.255.255".parse().expect("ip")));
        assert!(!proxies("10.0.0.0/12").contains("10.16.0.0".parse().expect("ip")));
        for bad in ["10.0.0.0/33", "fd00::/129", "example.com", "10.0.0.0/x"] {
            let error = TrustedProxies::parse(bad).expect_err("refused");
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn without_the_setting_or_from_an_untrusted_peer_headers_are_ignored() {
        let spoof = [
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
        ];
        let direct =
            ClientInfo { address: ip("10.0.0.5"), scheme: "http", host: "hub:8080".into() };
        assert_eq!(client(&spoof, PROXY, None), direct);
        let elsewhere = proxies("192.0.2.0/24");
        assert_eq!(client(&spoof, PROXY, Some(&elsewhere)), direct);
    }

    #[test]
    fn a_trusted_proxy_is_believed() {
        let trusted = proxies("10.0.0.0/8");
        let info = client(
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "app.example.com"),
            ],
            PROXY,
            Some(&trusted),
        );
        let expected = ClientInfo {
            address: ip("203.0.113.9"),
            scheme: "https",
            host: "app.example.com".into(),
        };
        assert_eq!(info, expected);
        let info = client(
            &[("x-real-ip", "203.0.113.9"), ("x-forwarded-scheme", "https")],
            PROXY,
            Some(&trusted),
        );
        assert_eq!((info.address, info.scheme), (ip("203.0.113.9"), "https"));
        let forwarded = [("forwarded", r#"for="[2001:db8::17]:4711";proto=https;host=a.example"#)];
        let info = client(&forwarded, PROXY, Some(&trusted));
        let expected =
            ClientInfo { address: ip("2001:db8::17"), scheme: "https", host: "a.example".into() };
        assert_eq!(info, expected);
        // Forwarded wins over the X- headers when both are present.
        let both = [("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "203.0.113.9")];
        assert_eq!(client(&both, PROXY, Some(&trusted)).address, ip("198.51.100.1"));
    }

    #[test]
    fn what_a_client_writes_itself_is_never_taken() {
        let trusted = proxies("10.0.0.0/8");
        // The client sent "X-Forwarded-For: 1.1.1.1"; its proxy appended the real address,
        // then an inner proxy its own.
        let chain = [("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")];
        assert_eq!(client(&chain, PROXY, Some(&trusted)).address, ip("203.0.113.9"));
        // Split over several header lines, the same chain.
        let lines = [("x-forwarded-for", "1.1.1.1"), ("x-forwarded-for", "203.0.113.9, 10.0.0.2")];
        assert_eq!(client(&lines, PROXY, Some(&trusted)).address, ip("203.0.113.9"));
        let forwarded = [(
            "forwarded",
            "for=1.1.1.1;proto=http;host=evil.example, for=203.0.113.9;proto=https;host=app.example, for=10.0.0.2;proto=http",
        )];
        let expected =
            ClientInfo { address: ip("203.0.113.9"), scheme: "https", host: "app.example".into() };
        assert_eq!(client(&forwarded, PROXY, Some(&trusted)), expected);
        // Every hop trusted: the leftmost is the client.
        let inside = [("x-forwarded-for", "10.1.1.1, 10.0.0.2")];
        assert_eq!(client(&inside, PROXY, Some(&trusted)).address, ip("10.1.1.1"));
    }

    #[test]
    fn values_that_are_not_addresses_schemes_or_hosts_are_ignored() {
        let trusted = proxies("10.0.0.0/8");
        let info = client(
            &[("forwarded", "for=unknown;proto=gopher;host=\"a b<script>\"")],
            PROXY,
            Some(&trusted),
        );
        let direct =
            ClientInfo { address: ip("10.0.0.5"), scheme: "http", host: "hub:8080".into() };
        assert_eq!(info, direct);
        let garbage = [("x-forwarded-for", "not-an-address")];
        assert_eq!(client(&garbage, PROXY, Some(&trusted)).address, ip("10.0.0.5"));
        assert_eq!(client(&[], PROXY, Some(&trusted)), direct);
    }
}
