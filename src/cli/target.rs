//! Where `weft pub` / `weft sub` connect: `--url` (and `-p`) parsed into
//! a protocol, TLS or not, a host and a port.
//!
//! Owns: the URL forms `mqtt://`, `mqtts://` (MQTT over TLS), `nats://`
//! and `tls://` (NATS over TLS), a bare `HOST[:PORT]` (MQTT), user
//! information in the URL (`nats://user:pass@host`), and each scheme's
//! default port. Must not touch: connecting (the protocol files do).

use super::error::CliError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Mqtt,
    Nats,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub protocol: Protocol,
    pub tls: bool,
    /// A name or an address; IPv6 without its brackets.
    pub host: String,
    pub port: u16,
    /// `user[:password]@` from the URL, when given there.
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// `host:port` as a socket address is written (IPv6 in brackets).
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL as the NATS client takes it (no user information: the
    /// credentials go through the connect options).
    pub fn nats_url(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        format!("{scheme}://{}", self.host_port())
    }
}

/// The URL used when `--url` is not given.
pub const DEFAULT_URL: &str = "mqtt://127.0.0.1:1883";

/// Parses `url`; `port`, when given (`-p`), replaces the URL's port.
pub fn parse(url: &str, port: Option<u16>) -> Result<Target, CliError> {
    let bad = |why: &str| CliError::usage(format!("--url '{url}': {why}"));
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("mqtt".to_string(), url),
    };
    let (protocol, tls, default_port) = match scheme.as_str() {
        "mqtt" | "tcp" => (Protocol::Mqtt, false, 1883),
        "mqtts" | "ssl" => (Protocol::Mqtt, true, 8883),
        "nats" => (Protocol::Nats, false, 4222),
        "tls" => (Protocol::Nats, true, 4222),
        other => {
            return Err(bad(&format!(
                "unknown scheme '{other}' (mqtt://, mqtts://, nats:// or tls://)"
            )))
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') {
        return Err(bad("a path or query has no meaning here"));
    }
    let (userinfo, authority) = match rest.rsplit_once('@') {
        Some((u, a)) => (Some(u), a),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let (host, url_port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("':' expected after ']'"))?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let url_port = match url_port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("'{p}' is not a port (1-65535)")))?,
        ),
        None => None,
    };
    Ok(Target {
        protocol,
        tls,
        host: host.to_string(),
        port: port.or(url_port).unwrap_or(default_port),
        user,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        parse(url, None).unwrap()
    }

    #[test]
    fn schemes_give_protocol_tls_and_default_port() {
        let cases = [
            ("mqtt://h", Protocol::Mqtt, false, 1883),
            ("mqtts://h", Protocol::Mqtt, true, 8883),
            ("nats://h", Protocol::Nats, false, 4222),
            ("tls://h", Protocol::Nats, true, 4222),
            ("h", Protocol::Mqtt, false, 1883),
            ("MQTTS://h:1", Protocol::Mqtt, true, 1),
        ];
        for (url, protocol, tls, port) in cases {
            let got = t(url);
            assert_eq!(
                (got.protocol, got.tls, got.port, got.host.as_str()),
                (protocol, tls, port, "h"),
                "{url}"
            );
        }
    }

    #[test]
    fn port_flag_replaces_the_urls_port() {
        assert_eq!(parse("nats://h:4223", Some(9)).unwrap().port, 9);
        assert_eq!(
            parse("127.0.0.1", Some(1885)).unwrap().host_port(),
            "127.0.0.1:1885"
        );
    }

    #[test]
    fn ipv6_and_user_information() {
        let got = t("nats://bob:s3:cret@[::1]:4333/");
        assert_eq!(got.host, "::1");
        assert_eq!(got.port, 4333);
        assert_eq!(got.host_port(), "[::1]:4333");
        assert_eq!(got.user.as_deref(), Some("bob"));
        assert_eq!(got.password.as_deref(), Some("s3:cret"));
        assert_eq!(got.nats_url(), "nats://[::1]:4333");
        assert_eq!(t("tls://token@h").user.as_deref(), Some("token"));
    }

    #[test]
    fn bad_urls_are_usage_errors_naming_the_url() {
        for (url, why) in [
            ("http://h", "unknown scheme 'http'"),
            ("mqtt://h:99999", "'99999' is not a port"),
            ("mqtt://h:0", "'0' is not a port"),
            ("mqtt://:1883", "no host"),
            ("mqtt://h/topic", "path"),
            ("nats://[::1", "closing ']'"),
        ] {
            match parse(url, None) {
                Err(CliError::Usage(msg)) => {
                    assert!(msg.contains(why) && msg.contains(url), "{url}: {msg}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
