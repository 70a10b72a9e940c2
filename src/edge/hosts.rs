//! The `Host` allowlist (`server.allowed_hosts`): a page on another name that resolves to
//! this server (DNS rebinding) must not reach it, least of all a fresh install whose first
//! account becomes the admin.

use std::net::IpAddr;

use crate::config::ServerConfig;

#[derive(Clone, Debug)]
pub struct Hosts {
    /// Lowercased names, each with a port (`name:port`, which must match exactly) or without
    /// (any port).
    names: Vec<String>,
    /// On a wildcard bind the server answers on every address it has: any IP literal is fine
    /// (rebinding needs a name).
    any_address: bool,
}

impl Hosts {
    pub fn from_config(server: &ServerConfig) -> Hosts {
        if !server.allowed_hosts.is_empty() {
            return Hosts {
                names: server
                    .allowed_hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .collect(),
                any_address: false,
            };
        }
        let mut names = Vec::new();
        if let Some(host) = server
            .public_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        {
            names.push(host);
        }
        let (bind_host, _) = split_port(&server.bind);
        let bind_host = bind_host.to_ascii_lowercase();
        let bind_ip = bind_host.parse::<IpAddr>().ok();
        let any_address = bind_ip.is_some_and(|ip| ip.is_unspecified());
        if bind_ip.is_none_or(|ip| ip.is_loopback()) {
            names.push("localhost".into());
        }
        names.push(bind_host);
        Hosts { names, any_address }
    }

    /// Whether a request may name `host` (`name`, `name:port`, `[v6]:port`).
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let (name, port) = split_port(&host);
        let port_ok = port
            .is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
        if name.is_empty() || !port_ok {
            return false;
        }
        if self.any_address && name.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.names
            .iter()
            .any(|allowed| allowed == &host || (split_port(allowed).1.is_none() && allowed == name))
    }
}

/// `host:port` → (`host`, `Some(port)`); brackets of an IPv6 literal are removed.
fn split_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(bind: &str, public_url: Option<&str>, allowed: &[&str]) -> ServerConfig {
        ServerConfig {
            bind: bind.into(),
            public_url: public_url.map(Into::into),
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn a_loopback_install_answers_its_own_names_only() {
        let hosts = Hosts::from_config(&server("127.0.0.1:8080", None, &[]));
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "127.0.0.1"] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "rebind.evil.example:8080",
            "",
            "10.0.0.1:8080",
            "evil.example",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn public_url_wildcard_binds_and_explicit_lists() {
        let hosts = Hosts::from_config(&server(
            "0.0.0.0:8080",
            Some("https://ocr.example.com"),
            &[],
        ));
        assert!(hosts.allows("ocr.example.com"));
        assert!(hosts.allows("192.0.2.10:8080"));
        assert!(hosts.allows("[2001:db8::1]:8080"));
        assert!(!hosts.allows("rebind.evil.example"));
        assert!(!hosts.allows("localhost:8080"));

        let hosts = Hosts::from_config(&server("0.0.0.0:8080", None, &["ocr.internal:8443"]));
        assert!(hosts.allows("ocr.internal:8443"));
        assert!(!hosts.allows("ocr.internal:8080"));
        assert!(!hosts.allows("192.0.2.10:8080"));
    }
}
