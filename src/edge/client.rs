//! Who is calling, from where, over what: the one place that reads `X-Forwarded-*` and
//! `Forwarded`, and only when the peer is a trusted proxy (`server.trusted_proxies`).
//!
//! The edge middleware resolves a [`Client`] once per request and keeps it in the request's
//! extensions; throttling, logs, cookies, redirects and the WebSocket origin check all read it
//! from there with [`Client::of`].

use std::net::IpAddr;

use actix_web::HttpMessage;
use actix_web::http::header::{self, HeaderMap};
use ipnet::IpNet;

use crate::config::ProxyHeaders;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer, or behind trusted proxies the right-most address in
    /// the forwarding chain that is not one of them. `None` when unknown.
    pub ip: Option<IpAddr>,
    /// Whether the client's request came over TLS (here, or to a trusted proxy).
    pub https: bool,
    /// The host the client asked for (`Host`, or a trusted proxy's `X-Forwarded-Host`),
    /// lowercased, with its port if it named one.
    pub host: String,
}

impl Client {
    /// Resolves the client of a request that arrived from `peer` (over TLS when `tls`).
    pub fn resolve(
        peer: Option<IpAddr>,
        tls: bool,
        headers: &HeaderMap,
        proxies: &Proxies,
    ) -> Client {
        let own_host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let trusted = |ip: &IpAddr| proxies.nets.iter().any(|net| net.contains(ip));
        let mut client = Client {
            ip: peer,
            https: tls,
            host: own_host.to_ascii_lowercase(),
        };
        if !peer.is_some_and(|p| trusted(&p)) {
            return client;
        }
        let forwarded = match proxies.headers {
            ProxyHeaders::XForwarded => Forwarded::x_forwarded(headers),
            ProxyHeaders::Forwarded => Forwarded::standard(headers),
        };
        // Right to left: the nearest hops are our own proxies; the first stranger is the client.
        for hop in forwarded.chain.iter().rev() {
            match hop {
                Some(ip) if trusted(ip) => client.ip = Some(*ip),
                Some(ip) => {
                    client.ip = Some(*ip);
                    break;
                }
                // An obfuscated or unknown hop: nothing to the left of it can be believed.
                None => break,
            }
        }
        if let Some(proto) = forwarded.proto {
            client.https = proto.eq_ignore_ascii_case("https");
        }
        if let Some(host) = forwarded.host {
            client.host = host.to_ascii_lowercase();
        }
        client
    }

    /// The request's client, as the edge middleware resolved it (without the middleware, as
    /// the peer alone: nothing forwarded is believed).
    pub fn of(req: &actix_web::HttpRequest) -> Client {
        if let Some(client) = req.extensions().get::<Client>() {
            return client.clone();
        }
        let peer = req.peer_addr().map(|a| a.ip());
        Client::resolve(peer, false, req.headers(), &Proxies::default())
    }

    /// The key throttles and rate limits count under: the address, an IPv6 client per /64
    /// (one subscriber usually holds a whole /64).
    pub fn address_key(&self) -> String {
        match self.ip {
            Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            Some(IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .map_or_else(String::new, |v4| v4.to_string()),
            Some(ip) => ip.to_string(),
            None => "unknown".into(),
        }
    }

    /// The origin the client is on, e.g. `https://ocr.example.com`.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.host)
    }
}

/// The trusted proxies, and the one header family they set.
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    pub nets: Vec<IpNet>,
    pub headers: ProxyHeaders,
}

/// What the forwarding headers say: the chain of client addresses (left: the original
/// client), and the protocol and host the nearest proxy saw.
#[derive(Debug, Default)]
struct Forwarded {
    chain: Vec<Option<IpAddr>>,
    proto: Option<String>,
    host: Option<String>,
}

/// Every comma-separated value of every `name` header, in order.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

impl Forwarded {
    /// `X-Forwarded-For`, `X-Forwarded-Proto` and `X-Forwarded-Host`.
    fn x_forwarded(headers: &HeaderMap) -> Forwarded {
        Forwarded {
            chain: values(headers, "x-forwarded-for")
                .iter()
                .map(|v| node_address(v))
                .collect(),
            proto: values(headers, "x-forwarded-proto").pop(),
            host: values(headers, "x-forwarded-host").pop(),
        }
    }

    /// RFC 7239 `Forwarded`: `for=…;proto=…;host=…`, one element per hop.
    fn standard(headers: &HeaderMap) -> Forwarded {
        let mut forwarded = Forwarded::default();
        for element in values(headers, "forwarded") {
            let (mut proto, mut host) = (None, None);
            for pair in element.split(';') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match name.trim().to_ascii_lowercase().as_str() {
                    "for" => forwarded.chain.push(node_address(value)),
                    "proto" => proto = Some(value.to_owned()),
                    "host" => host = Some(value.to_owned()),
                    _ => {}
                }
            }
            // The last element is the nearest proxy's.
            forwarded.proto = proto;
            forwarded.host = host;
        }
        forwarded
    }
}

/// An address from a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`
/// or `2001:db8::1`; `None` for `unknown`, obfuscated names and garbage.
fn node_address(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    value.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn forwarding_headers_from_a_stranger_are_ignored() {
        let h = headers(&[
            ("host", "ocr.example.com"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=10.8.8.8;proto=https;host=evil.example"),
        ]);
        let proxies = trusting(&["127.0.0.1/32"], ProxyHeaders::XForwarded);
        let client = Client::resolve(ip("203.0.113.9"), false, &h, &proxies);
        assert_eq!(client.ip, ip("203.0.113.9"));
        assert!(!client.https);
        assert_eq!(client.host, "ocr.example.com");
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_stranger_is_the_client() {
        let proxies = trusting(&["127.0.0.1/32", "10.0.0.0/8"], ProxyHeaders::XForwarded);
        // The client forged the first entry; our proxies appended the real one and themselves.
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-for", "1.2.3.4, 198.51.100.7, 10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "OCR.example.com"),
        ]);
        let client = Client::resolve(ip("127.0.0.1"), false, &h, &proxies);
        assert_eq!(client.ip, ip("198.51.100.7"));
        assert!(client.https);
        assert_eq!(client.origin(), "https://ocr.example.com");

        let h = headers(&[(
            "forwarded",
            "for=1.2.3.4;proto=http, for=\"[2001:db8::1]:4711\";proto=https;host=ocr.example.com",
        )]);
        let standard = trusting(&["127.0.0.1/32"], ProxyHeaders::Forwarded);
        let client = Client::resolve(ip("127.0.0.1"), false, &h, &standard);
        assert_eq!(client.ip, ip("2001:db8::1"));
        assert!(client.https);
        assert_eq!(client.address_key(), "2001:db8:0:0::/64");

        // Every hop ours: the left-most is as far as we can see.
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.2")]);
        assert_eq!(
            Client::resolve(ip("127.0.0.1"), false, &h, &proxies).ip,
            ip("10.1.1.1")
        );
        // An unknown hop stops the walk at the proxy that reported it.
        let h = headers(&[("x-forwarded-for", "5.6.7.8, unknown, 10.0.0.2")]);
        assert_eq!(
            Client::resolve(ip("127.0.0.1"), false, &h, &proxies).ip,
            ip("10.0.0.2")
        );
    }

    #[test]
    fn only_the_configured_header_family_is_read() {
        // nginx overwrote X-Forwarded-*; the client's own Forwarded came along untouched.
        let h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-host", "ocr.example.com"),
            ("forwarded", "for=203.0.113.1;host=evil.example;proto=https"),
        ]);
        let nginx = trusting(&["127.0.0.1/32"], ProxyHeaders::XForwarded);
        let client = Client::resolve(ip("127.0.0.1"), false, &h, &nginx);
        assert_eq!(
            (client.ip, client.host.as_str(), client.https),
            (ip("198.51.100.7"), "ocr.example.com", false)
        );
        // And the other way round.
        let standard = trusting(&["127.0.0.1/32"], ProxyHeaders::Forwarded);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=198.51.100.7"),
        ]);
        assert_eq!(
            Client::resolve(ip("127.0.0.1"), false, &h, &standard).ip,
            ip("198.51.100.7")
        );
        // Neither header: the proxy itself.
        let h = headers(&[("forwarded", "garbage")]);
        assert_eq!(
            Client::resolve(ip("127.0.0.1"), false, &h, &standard).ip,
            ip("127.0.0.1")
        );
    }

    fn trusting(nets: &[&str], headers: ProxyHeaders) -> Proxies {
        Proxies {
            nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
            headers,
        }
    }

    #[test]
    fn node_addresses_parse_with_and_without_ports() {
        assert_eq!(node_address("192.0.2.1:4711"), ip("192.0.2.1"));
        assert_eq!(node_address("[2001:db8::1]:80"), ip("2001:db8::1"));
        assert_eq!(node_address("2001:db8::1"), ip("2001:db8::1"));
        assert_eq!(node_address("_hidden"), None);
        assert_eq!(node_address("unknown"), None);
    }
}
