//! Where a webhook may go, and the client that takes it there.
//!
//! A webhook URL is chosen by a user, and the server posts to it: without a guard, it reaches
//! what only the servers can (the cloud's metadata service, Redis, the admin port). So:
//! - a URL must be `http` or `https`, with a host and no credentials;
//! - its host is resolved, and refused if **any** of its addresses is loopback, private,
//!   link-local (the metadata service), shared, multicast or reserved;
//! - the client connects only to the addresses it vetted (its resolver is the guard, so a name
//!   that changes its answer between the check and the connection gains nothing), follows no
//!   redirect, uses no proxy, stops reading after [`MAX_RESPONSE`] and gives up after
//!   `webhooks.timeout_secs`.
//!
//! `webhooks.allow_private_targets` lifts the address rule, for tests and development.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::config::WebhooksConfig;

/// The longest URL accepted.
pub const MAX_URL: usize = 2000;
/// Bytes of an answer read at most; the rest is not waited for.
const MAX_RESPONSE: usize = 64 * 1024;
/// Bytes of an answer kept in the delivery log.
const LOGGED_RESPONSE: usize = 1024;
/// How long a name may take to resolve.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Addresses a webhook never reaches (unless private targets are allowed).
static BLOCKED: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        // NAT64 and 6to4 embed an IPv4 address that may be a private one.
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    ]
    .iter()
    .map(|net| net.parse().expect("the blocked ranges are valid"))
    .collect()
});

/// Whether a webhook may not reach `ip`. An IPv4 address written as IPv6 (mapped, `::ffff:a.b.c.d`,
/// or compatible, `::a.b.c.d`) is judged as IPv4.
pub fn is_blocked(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    BLOCKED.iter().any(|net| net.contains(&ip))
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Refused(String),
}

const REFUSAL: &str = "webhooks may not reach those";

/// The address rule, for the resolver and for literal addresses alike.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

fn vet(host: &str, addrs: &[SocketAddr], allow_private: bool) -> Result<(), Refused> {
    if addrs.is_empty() {
        return Err(Refused(format!("{host} has no address.")));
    }
    match addrs.iter().find(|a| is_blocked(a.ip())) {
        Some(a) if !allow_private => Err(Refused(format!(
            "{host} resolves to {}, a loopback, private, link-local or reserved address; {REFUSAL}.",
            a.ip()
        ))),
        _ => Ok(()),
    }
}

/// Checks a URL a user gives: its form, then where its host resolves now. The same rule is
/// applied again at every attempt, by the client.
pub async fn check(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    let parsed = parse(url)?;
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match parsed.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(ip.into(), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(ip.into(), port)],
        _ => lookup(&host, port)
            .await
            .map_err(|_| TargetError::Invalid(format!("The host {host} cannot be resolved.")))?,
    };
    vet(&host, &addrs, allow_private).map_err(|e| TargetError::Refused(e.0))?;
    Ok(parsed)
}

fn parse(url: &str) -> Result<Url, TargetError> {
    let invalid = |why: &str| TargetError::Invalid(format!("The URL {why}."));
    if url.len() > MAX_URL {
        return Err(invalid("is longer than 2,000 characters"));
    }
    let parsed = Url::parse(url).map_err(|e| invalid(&format!("cannot be read ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must start with http:// or https://"));
    }
    if parsed.host().is_none() {
        return Err(invalid("has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            "may not hold a user name or password (the signature authenticates the sender)",
        ));
    }
    Ok(parsed)
}

/// The host's addresses, within [`LOOKUP_TIMEOUT`]: a name whose servers never answer must not
/// hold a request (or a sender) for the system resolver's own, longer, timeouts.
async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(found) => Ok(found?.collect()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no address for {host} within {} s",
                LOOKUP_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// A resolver that answers only with vetted addresses: the connection goes where the check
/// looked, whatever the name resolves to a moment later.
struct VettingResolver {
    allow_private: bool,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs = lookup(&host, 0).await?;
            vet(&host, &addrs, allow_private)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// How an attempt went.
#[derive(Debug)]
pub struct Outcome {
    /// `None`: no answer (refused target, connection error, timeout).
    pub status: Option<u16>,
    /// The answer's `Retry-After`, in seconds or as a date.
    pub retry_after: Option<Duration>,
    /// The start of the answer's body, for the log.
    pub response: Option<String>,
    /// Why there was no answer.
    pub error: Option<String>,
    pub latency: Duration,
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// The webhook HTTP client (one per worker: it keeps connections).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    allow_private: bool,
}

impl Client {
    pub fn new(config: &WebhooksConfig) -> Result<Client, reqwest::Error> {
        let timeout = Duration::from_secs(config.timeout_secs);
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(VettingResolver {
                allow_private: config.allow_private_targets,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("ocrd-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Client {
            http,
            allow_private: config.allow_private_targets,
        })
    }

    /// Posts `body` to `url` with `headers`; never fails, the outcome says what happened.
    pub async fn post(&self, url: &str, headers: &[(&str, String)], body: String) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status: None,
            retry_after: None,
            response: None,
            error: Some(error),
            latency: started.elapsed(),
        };
        // A literal address never meets the resolver: it is judged here.
        let parsed = match parse(url) {
            Ok(parsed) => parsed,
            Err(e) => return failed(e.to_string()),
        };
        let literal = match parsed.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && let Err(e) = vet(
                &ip.to_string(),
                &[SocketAddr::new(ip, 0)],
                self.allow_private,
            )
        {
            return failed(format!("Refused: {e}"));
        }
        let mut request = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                // A body cut short still leaves the status, which is what counts.
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(LOGGED_RESPONSE);
        Outcome {
            status: Some(status),
            retry_after,
            // As text the database takes: PostgreSQL refuses NUL in text.
            response: Some(String::from_utf8_lossy(&body).replace('\0', "\u{fffd}")),
            error: None,
            latency: started.elapsed(),
        }
    }
}

/// A failed request in words, naming a refused target as such.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = source {
        // Boxed on its way through the connector, the resolver's error may not downcast.
        if cause.downcast_ref::<Refused>().is_some() || cause.to_string().contains(REFUSAL) {
            return format!("Refused: {cause}");
        }
        source = cause.source();
    }
    if e.is_timeout() {
        "No answer within webhooks.timeout_secs.".to_owned()
    } else if e.is_connect() {
        "The connection could not be made.".to_owned()
    } else {
        format!("The request failed: {e}")
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_mapped_addresses_are_blocked() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::7f00:1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "fec0::1",
        ] {
            assert!(is_blocked(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"] {
            assert!(!is_blocked(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        let later = (chrono::Utc::now() + chrono::TimeDelta::seconds(600)).to_rfc2822();
        let read = retry_after(&later).unwrap().as_secs();
        assert!((590..=600).contains(&read), "{read}");
        assert_eq!(retry_after("soon"), None);
    }
}
