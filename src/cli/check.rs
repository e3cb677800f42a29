//! Flags that parse but do not fit together, refused before connecting
//! (exit 2), and the connection they describe.
//!
//! Owns: the rules across flags (a QoS or a retained flag for NATS, user
//! properties on MQTT 3.1.1, TLS files without a TLS URL, NATS-only
//! credentials on MQTT, malformed KEY=VALUE). Must not touch: the network.

use std::path::PathBuf;
use std::time::Duration;

use super::args::{ConnectArgs, MqttVersion};
use super::error::CliError;
use super::target::{self, Protocol, Target};

/// Everything needed to connect, checked.
#[derive(Clone, Debug)]
pub struct Connection {
    pub target: Target,
    pub version: MqttVersion,
    pub client_id: String,
    pub keep_alive: Duration,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub creds: Option<PathBuf>,
    pub nkey: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub connect_timeout: Duration,
}

/// The TLS material named on the command line (files read when connecting).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cafile: Option<PathBuf>,
    pub cert_key: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
}

impl TlsFiles {
    /// Nothing named: the client library's defaults (the system's roots).
    pub fn is_default(&self) -> bool {
        self.cafile.is_none() && self.cert_key.is_none() && !self.insecure
    }
}

pub fn connection(args: &ConnectArgs, command: &str) -> Result<Connection, CliError> {
    let target = target::parse(&args.url, args.port)?;
    let tls_flag = [
        ("--cafile", args.cafile.is_some()),
        ("--cert", args.cert.is_some()),
        ("--insecure", args.insecure),
    ]
    .into_iter()
    .find(|(_, set)| *set);
    if let (false, Some((flag, _))) = (target.tls, tls_flag) {
        return Err(CliError::usage(format!(
            "{flag} needs a TLS URL (mqtts:// or tls://), not '{}'",
            args.url
        )));
    }
    if target.protocol == Protocol::Mqtt {
        for (flag, set) in [
            ("--creds", args.creds.is_some()),
            ("--nkey", args.nkey.is_some()),
        ] {
            if set {
                return Err(CliError::usage(format!(
                    "{flag} is for NATS (nats:// or tls://); MQTT takes -u NAME -P PASSWORD"
                )));
            }
        }
    }
    if args.connect_timeout_s == 0 {
        return Err(CliError::usage(
            "--connect-timeout: 0 s leaves no time to connect",
        ));
    }
    let client_id = args
        .client_id
        .clone()
        .unwrap_or_else(|| format!("weft-{command}-{}", std::process::id()));
    Ok(Connection {
        version: args.protocol_version,
        client_id,
        keep_alive: Duration::from_secs(args.keep_alive_s.into()),
        user: args.user.clone().or(target.user.clone()),
        password: args.password.clone().or(target.password.clone()),
        token: args.token.clone(),
        creds: args.creds.clone(),
        nkey: args.nkey.clone(),
        tls: target.tls.then(|| TlsFiles {
            cafile: args.cafile.clone(),
            cert_key: args.cert.clone().zip(args.key.clone()),
            insecure: args.insecure,
        }),
        connect_timeout: Duration::from_secs(args.connect_timeout_s),
        target,
    })
}

/// `-D KEY=VALUE` and `-H KEY:VALUE` as pairs, in the order given (the
/// `-D`s first), refused where the protocol has no place for them.
pub fn properties(
    connection: &Connection,
    properties: &[String],
    headers: &[String],
) -> Result<Vec<(String, String)>, CliError> {
    let mut pairs = Vec::new();
    for (flag, list, sep) in [("-D", properties, '='), ("-H", headers, ':')] {
        for item in list {
            let (key, value) = item.split_once(sep).ok_or_else(|| {
                CliError::usage(format!("{flag} '{item}': expected KEY{sep}VALUE"))
            })?;
            let key = key.trim();
            if key.is_empty() {
                return Err(CliError::usage(format!("{flag} '{item}': empty key")));
            }
            // A header's value is written after "KEY: " (trimmed as HTTP does).
            let value = if sep == ':' { value.trim() } else { value };
            pairs.push((key.to_string(), value.to_string()));
        }
    }
    if !pairs.is_empty()
        && connection.target.protocol == Protocol::Mqtt
        && connection.version == MqttVersion::V311
    {
        return Err(CliError::usage(
            "-D/-H: MQTT 3.1.1 has no user properties (use -V 5)",
        ));
    }
    Ok(pairs)
}

/// QoS and retain exist on MQTT only.
pub fn mqtt_only(connection: &Connection, qos: u8, retain: bool) -> Result<(), CliError> {
    if connection.target.protocol == Protocol::Nats {
        if qos != 0 {
            return Err(CliError::usage(
                "-q: NATS core delivers at most once (QoS 0); QoS 1 and 2 are MQTT's",
            ));
        }
        if retain {
            return Err(CliError::usage("-r: NATS has no retained messages"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        c: ConnectArgs,
    }

    fn conn(args: &[&str]) -> Result<Connection, CliError> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap();
        connection(&cli.c, "pub")
    }

    fn usage(r: Result<impl std::fmt::Debug, CliError>, needle: &str) {
        match r {
            Err(CliError::Usage(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected a usage error with {needle}: {other:?}"),
        }
    }

    #[test]
    fn tls_flags_need_a_tls_url() {
        usage(conn(&["--cafile", "ca.pem"]), "--cafile needs a TLS URL");
        usage(conn(&["--url", "nats://h", "--insecure"]), "--insecure");
        let c = conn(&["--url", "mqtts://h", "--cafile", "ca.pem"]).unwrap();
        assert!(!c.tls.unwrap().is_default());
        assert!(conn(&["--url", "tls://h"])
            .unwrap()
            .tls
            .unwrap()
            .is_default());
        assert!(conn(&[]).unwrap().tls.is_none());
    }

    #[test]
    fn nats_credentials_are_refused_for_mqtt() {
        usage(conn(&["--creds", "x.creds"]), "--creds is for NATS");
        usage(conn(&["--nkey", "x.nk"]), "--nkey is for NATS");
        assert!(conn(&["--url", "nats://h", "--nkey", "x.nk"]).is_ok());
    }

    #[test]
    fn url_credentials_yield_to_flags() {
        let c = conn(&["--url", "nats://a:b@h", "-u", "flag"]).unwrap();
        assert_eq!(
            (c.user.as_deref(), c.password.as_deref()),
            (Some("flag"), Some("b"))
        );
    }

    #[test]
    fn properties_parse_and_311_refuses_them() {
        let c = conn(&[]).unwrap();
        let got = properties(&c, &["a=1=2".into()], &["Trace-Id: x ".into()]).unwrap();
        assert_eq!(
            got,
            [("a".into(), "1=2".into()), ("Trace-Id".into(), "x".into())]
        );
        usage(
            properties(&c, &["novalue".into()], &[]),
            "expected KEY=VALUE",
        );
        usage(properties(&c, &[], &["=x".into()]), "expected KEY:VALUE");
        usage(properties(&c, &["=x".into()], &[]), "empty key");
        let v311 = conn(&["-V", "3.1.1"]).unwrap();
        usage(properties(&v311, &["a=1".into()], &[]), "MQTT 3.1.1");
        assert!(properties(&v311, &[], &[]).unwrap().is_empty());
    }

    #[test]
    fn qos_and_retain_are_mqtts() {
        let nats = conn(&["--url", "nats://h"]).unwrap();
        usage(mqtt_only(&nats, 1, false), "QoS 1 and 2");
        usage(mqtt_only(&nats, 0, true), "retained");
        assert!(mqtt_only(&nats, 0, false).is_ok());
        assert!(mqtt_only(&conn(&[]).unwrap(), 2, true).is_ok());
    }
}
