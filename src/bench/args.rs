//! The command line of `weft bench` ([`BenchArgs`]) and its validation
//! into the [`Plan`] every client thread reads.
//!
//! Owns: options, their defaults and the errors for bad combinations (exit
//! status 2). Must not touch: sockets, threads; nothing here runs a client.

use std::time::Duration;

use super::schedule::parse_cpu_list;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Mqtt,
    Nats,
    /// AMQP 1.0 (also `--amqp`): one link per client; `--qos 0`
    /// pre-settled, `--qos 1` unsettled (accepted by the receiver).
    Amqp,
}

/// How clients reach the server.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP (or TLS, WebSocket) to HOST:PORT.
    Tcp,
    /// weft's shared-memory transport (the `weft-shm` client): --server is
    /// the router's Unix socket path (`--shm-listen`); MQTT (QoS 0) or NATS.
    Shm,
}

/// Options of `weft bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// How clients reach the server: tcp, or shm (shared memory; --server
    /// is then the router's `--shm-listen` socket path).
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    pub transport: Transport,
    /// Shared memory: how long a client spins on an empty (or full) ring
    /// before it sleeps on its eventfd.
    #[arg(long, default_value_t = 0, value_name = "MICROSECONDS")]
    pub spin_us: u32,
    /// Shared memory, 1 publisher and 1 subscriber, --rate: one thread
    /// drives both clients (sends when a message is due, polls the
    /// subscription otherwise), so that neither sleeps nor waits for the
    /// other's core: the latency of the router alone.
    #[arg(long)]
    pub one_thread: bool,
    /// Protocol spoken to the server.
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub protocol: Protocol,
    /// Server address, HOST:PORT [default: 127.0.0.1:1883 for mqtt,
    /// 127.0.0.1:4222 for nats]; with --transport shm the router's Unix
    /// socket path (required).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Subscribers connect here instead of --server (e.g. another router of
    /// a mesh); publishers stay on --server [default: --server].
    #[arg(long, value_name = "HOST:PORT")]
    pub sub_server: Option<String>,
    /// With --sub-server other than --server: how long publishers send
    /// probe messages (every 20 ms) waiting for every subscriber to receive
    /// one before the measured run starts; 0 = no probing.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub probe_timeout_ms: u64,
    /// Number of publishers (one connection and thread each).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pubs: usize,
    /// Number of subscribers (one connection and thread each).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub subs: usize,
    /// Messages per publisher [default: 100000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub msgs: Option<u64>,
    /// Run for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Payload bytes per message (at least 8 with --rate).
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    pub size: usize,
    /// MQTT QoS of publishes and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Topic (MQTT) or subject (NATS) [default: weft/bench or weft.bench].
    #[arg(long, visible_alias = "topic", value_name = "NAME")]
    pub subject: Option<String>,
    /// Messages per second per publisher; 0 = as fast as possible. With a
    /// rate, end-to-end latency is measured.
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    pub rate: u64,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Write per-second latency histograms (ns) as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<std::path::PathBuf>,
    /// Pin client threads round-robin to these cores, e.g. 1 or 2-3.
    #[arg(long, value_name = "LIST")]
    pub pin_cores: Option<String>,
    /// QoS 1 (and --js): most unacknowledged PUBLISHes per publisher.
    #[arg(
        long,
        visible_alias = "inflight",
        default_value_t = 256,
        value_name = "N"
    )]
    pub window: usize,
    /// MQTT: subscribers keep a persistent session (clean session 0), so
    /// that a durable broker keeps their events on disk.
    #[arg(long)]
    pub persistent: bool,
    /// NATS: publish each message with a reply inbox and count the answers
    /// as acknowledgements (a JetStream stream on the subject answers with
    /// its PubAck), at most --window unanswered per publisher, as MQTT
    /// QoS 1; an answer carrying "error" fails the publisher.
    #[arg(long)]
    pub js: bool,
    /// Bytes per write when publishing as fast as possible.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub batch: usize,
    /// After the publishers finish, a subscriber waits this long without
    /// receiving anything before counting the rest as lost.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub quiet_ms: u64,
    /// Exit with status 1 if any message was lost.
    #[arg(long)]
    pub fail_on_loss: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// Connect over TLS, trusting the CA certificates in this PEM file
    /// (the server is named by the host part of --server: a name or IP
    /// its certificate carries).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,
    /// Over WebSocket: --server (and --sub-server) are WebSocket listeners
    /// (weft's --mqtt-ws-listen / --nats-ws-listen, mosquitto's
    /// `protocol websockets`), upgraded at --ws-path.
    #[arg(long)]
    pub ws: bool,
    /// The path of the WebSocket upgrade [default: /mqtt for mqtt, / for nats].
    #[arg(long, value_name = "PATH", requires = "ws")]
    pub ws_path: Option<String>,
    /// AMQP 1.0 (`--protocol amqp`): --server is an AMQP listener (weft's
    /// --amqp-listen, RabbitMQ's AMQP 1.0 plugin); --subject is the
    /// address of every link [default: /topic/bench]; --qos 0 sends
    /// pre-settled, --qos 1 unsettled (counting `accepted` dispositions
    /// within --window).
    #[arg(long)]
    pub amqp: bool,
    /// AMQP: authenticate with SASL PLAIN as this user (default: ANONYMOUS).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// AMQP: the password for --user.
    #[arg(long, value_name = "PASSWORD", requires = "user")]
    pub password: Option<String>,
}

/// The validated plan of a run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub proto: Protocol,
    pub transport: Transport,
    /// Shared memory: the clients' spin before sleeping (`--spin-us`).
    pub spin_us: u32,
    /// Shared memory: one thread drives the publisher and the subscriber
    /// (`--one-thread`).
    pub one_thread: bool,
    pub server: String,
    /// Where subscribers connect (the same as `server` unless --sub-server).
    pub sub_server: String,
    pub subject: String,
    pub pubs: usize,
    pub subs: usize,
    pub msgs: Option<u64>,
    pub duration_ns: Option<u64>,
    pub size: usize,
    pub qos: u8,
    pub rate: u64,
    pub window: u64,
    /// Subscribers connect with clean session 0 (`--persistent`).
    pub persistent: bool,
    /// NATS publishes carry a reply inbox and wait for its answer (`--js`).
    pub js: bool,
    pub batch: usize,
    pub quiet_ns: u64,
    pub pin: Vec<usize>,
    /// Probe before the run, giving up after this long (None: no probe).
    pub probe_timeout: Option<Duration>,
    /// TLS (`--tls-ca`).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// AMQP SASL PLAIN credentials (`--user`, `--password`).
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Plan {
    pub(super) fn from_args(a: &BenchArgs) -> Result<Plan, String> {
        if a.pubs == 0 && a.subs == 0 {
            return Err("nothing to do: --pubs and --subs are both 0".into());
        }
        let proto = a.proto();
        if a.transport == Transport::Shm {
            shm_checks(a, proto)?;
        } else if a.spin_us != 0 {
            return Err("--spin-us applies to --transport shm only".into());
        } else if a.one_thread {
            return Err("--one-thread applies to --transport shm only".into());
        }
        if a.amqp && a.protocol != Protocol::Mqtt && a.protocol != Protocol::Amqp {
            return Err("--amqp with --protocol nats: choose one".into());
        }
        if proto == Protocol::Amqp {
            if a.ws {
                return Err(
                    "--ws applies to MQTT and NATS (AMQP over WebSocket is not supported)".into(),
                );
            }
            if a.persistent || a.js {
                return Err(
                    "--persistent and --js do not apply to AMQP (--qos 1: unsettled)".into(),
                );
            }
            if a.sub_server
                .as_ref()
                .is_some_and(|s| Some(s) != a.server.as_ref())
            {
                return Err(
                    "--sub-server elsewhere needs a probe phase, which --amqp has not".into(),
                );
            }
            if a.size > 60_000 {
                return Err("--size above 60000 with --amqp (the tool sends single-frame transfers of at most 64 KiB)".into());
            }
        } else if a.user.is_some() && a.transport == Transport::Tcp {
            return Err("--user applies to AMQP and --transport shm only".into());
        }
        if a.proto_is_nats() && a.qos != 0 {
            return Err("--qos applies to MQTT only (NATS core is at most once)".into());
        }
        if a.rate > 0 && a.size < 8 {
            return Err(
                "--rate needs --size of at least 8 (the send time travels in the payload)".into(),
            );
        }
        if a.persistent && a.proto_is_nats() {
            return Err(
                "--persistent applies to MQTT only (a session with clean session 0)".into(),
            );
        }
        if a.js && !a.proto_is_nats() {
            return Err("--js applies to NATS only (MQTT acknowledges with --qos 1)".into());
        }
        if a.window == 0 || a.window > 65_535 {
            return Err("--window must be between 1 and 65535".into());
        }
        let duration_ns = match a.duration {
            Some(d) if !(d > 0.0 && d.is_finite()) => {
                return Err("--duration must be a positive number of seconds".into())
            }
            Some(d) => Some((d * 1e9) as u64),
            None => None,
        };
        let pin = match &a.pin_cores {
            Some(s) => parse_cpu_list(s)?,
            None => Vec::new(),
        };
        let (server, subject) = match proto {
            Protocol::Mqtt => ("127.0.0.1:1883", "weft/bench"),
            Protocol::Nats => ("127.0.0.1:4222", "weft.bench"),
            Protocol::Amqp => ("127.0.0.1:5672", "/topic/bench"),
        };
        let server = a.server.clone().unwrap_or_else(|| server.into());
        let sub_server = a.sub_server.clone().unwrap_or_else(|| server.clone());
        // Over WebSocket the address becomes a ws:// URL (`stream` dials it).
        let (server, sub_server) = match (a.ws, &a.tls_ca) {
            (false, _) => (server, sub_server),
            (true, Some(_)) => return Err("--ws with --tls-ca (wss) is not supported".into()),
            (true, None) => {
                let default = match a.protocol {
                    Protocol::Mqtt | Protocol::Amqp => "/mqtt",
                    Protocol::Nats => "/",
                };
                let path = a.ws_path.as_deref().unwrap_or(default);
                if !path.starts_with('/') {
                    return Err(format!("--ws-path {path}: a path starts with '/'"));
                }
                (
                    format!("ws://{server}{path}"),
                    format!("ws://{sub_server}{path}"),
                )
            }
        };
        let probe = sub_server != server && a.pubs > 0 && a.subs > 0 && a.probe_timeout_ms > 0;
        Ok(Plan {
            proto,
            transport: a.transport,
            spin_us: a.spin_us,
            one_thread: a.one_thread,
            server,
            sub_server,
            subject: a.subject.clone().unwrap_or_else(|| subject.into()),
            pubs: a.pubs,
            subs: a.subs,
            msgs: match (a.msgs, duration_ns) {
                (Some(m), _) => Some(m),
                (None, None) => Some(100_000),
                (None, Some(_)) => None,
            },
            duration_ns,
            size: a.size,
            qos: a.qos,
            rate: a.rate,
            window: a.window as u64,
            persistent: a.persistent,
            js: a.js,
            batch: a.batch.max(1),
            quiet_ns: a.quiet_ms.saturating_mul(1_000_000),
            pin,
            probe_timeout: probe.then(|| Duration::from_millis(a.probe_timeout_ms)),
            tls: match &a.tls_ca {
                Some(path) => Some(super::stream::client_config(path)?),
                None => None,
            },
            user: a.user.clone(),
            password: a.password.clone(),
        })
    }
}

impl Plan {
    /// How many messages a publisher on `sched` sends: `--msgs`, or those
    /// due before `--duration` ends.
    pub fn sends(&self, sched: &super::schedule::Schedule, start_ns: u64) -> u64 {
        match (self.msgs, self.duration_ns) {
            (Some(m), _) => m,
            (None, Some(d)) => sched.count_before(start_ns + d),
            (None, None) => unreachable!("a count or a duration"),
        }
    }

    /// Whether publishers wait for an answer to each message (MQTT QoS 1
    /// PUBACK, NATS `--js` reply), with a bounded window and ack latency.
    pub fn acked(&self) -> bool {
        self.qos == 1 || self.js
    }
}

/// What `--transport shm` does not do, each refused by name; and the socket
/// path it needs.
fn shm_checks(a: &BenchArgs, proto: Protocol) -> Result<(), String> {
    let refuse = |what: &str| Err(format!("{what} does not apply to --transport shm"));
    if proto == Protocol::Amqp {
        return refuse("AMQP (--amqp, --protocol amqp)");
    }
    match &a.server {
        None => {
            return Err(
                "--transport shm needs --server PATH (the router's --shm-listen socket)".into(),
            )
        }
        Some(p) if p.is_empty() => return Err("--transport shm: --server is an empty path".into()),
        Some(_) => {}
    }
    if a.qos != 0 {
        return refuse("--qos 1 (shared-memory MQTT clients publish at QoS 0)");
    }
    if a.ws || a.ws_path.is_some() {
        return refuse("--ws");
    }
    if a.tls_ca.is_some() {
        return refuse("--tls-ca");
    }
    if a.js || a.persistent {
        return refuse("--js / --persistent");
    }
    if a.one_thread && (a.pubs != 1 || a.subs != 1 || a.rate == 0) {
        return Err("--one-thread needs --pubs 1 --subs 1 and a --rate (a latency run)".into());
    }
    if a.sub_server
        .as_ref()
        .is_some_and(|s| Some(s) != a.server.as_ref())
    {
        return refuse("--sub-server elsewhere (no probe phase over shared memory)");
    }
    Ok(())
}

/// "HOST:PORT", or "HOST:PORT (subs at HOST:PORT)" with --sub-server.
pub(crate) fn servers(server: &str, sub_server: &str) -> String {
    if sub_server == server {
        server.to_string()
    } else {
        format!("{server} (subs at {sub_server})")
    }
}

impl BenchArgs {
    fn proto_is_nats(&self) -> bool {
        self.protocol == Protocol::Nats
    }

    /// `--protocol`, or AMQP with `--amqp`.
    fn proto(&self) -> Protocol {
        if self.amqp {
            Protocol::Amqp
        } else {
            self.protocol
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("arguments parse");
        Plan::from_args(&cli.bench).expect("a valid plan")
    }

    #[test]
    fn sub_server_defaults_to_server_and_probes_only_when_elsewhere() {
        let p = plan(&["--server", "10.0.0.1:1883"]);
        assert_eq!(p.sub_server, "10.0.0.1:1883");
        assert_eq!(p.probe_timeout, None);
        let p = plan(&["--protocol", "nats"]);
        assert_eq!(
            (p.server.as_str(), p.sub_server.as_str()),
            ("127.0.0.1:4222", "127.0.0.1:4222")
        );
        let p = plan(&["--sub-server", "127.0.0.1:1883"]);
        assert_eq!(p.probe_timeout, None, "the same server: no probe");
        let p = plan(&["--sub-server", "127.0.0.1:2883"]);
        assert_eq!(p.server, "127.0.0.1:1883");
        assert_eq!(p.probe_timeout, Some(Duration::from_secs(10)));
        let p = plan(&["--sub-server", "127.0.0.1:2883", "--probe-timeout-ms", "0"]);
        assert_eq!(p.probe_timeout, None);
        let p = plan(&["--sub-server", "127.0.0.1:2883", "--pubs", "0"]);
        assert_eq!(p.probe_timeout, None, "nobody to send probes");
        assert_eq!(servers("a:1", "a:1"), "a:1");
        assert_eq!(servers("a:1", "b:2"), "a:1 (subs at b:2)");
    }

    #[test]
    fn amqp_defaults_and_its_unsettled_mode() {
        let p = plan(&["--amqp"]);
        assert_eq!(p.proto, Protocol::Amqp);
        assert_eq!(
            (p.server.as_str(), p.subject.as_str()),
            ("127.0.0.1:5672", "/topic/bench")
        );
        assert!(!p.acked(), "pre-settled by default");
        let p = plan(&[
            "--protocol",
            "amqp",
            "--qos",
            "1",
            "--user",
            "guest",
            "--password",
            "guest",
        ]);
        assert!(
            p.acked(),
            "unsettled: accepted dispositions are acknowledgements"
        );
        assert_eq!(p.user.as_deref(), Some("guest"));
    }

    #[test]
    fn acknowledged_modes_and_their_protocols() {
        assert!(!plan(&[]).acked());
        assert!(plan(&["--qos", "1"]).acked());
        let p = plan(&["--protocol", "nats", "--js", "--inflight", "64"]);
        assert!(p.acked() && p.js);
        assert_eq!(p.window, 64, "--inflight is --window");
        assert!(plan(&["--persistent", "--qos", "1"]).persistent);
        let refused = |args: &[&str]| {
            let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
                .expect("arguments parse");
            Plan::from_args(&cli.bench).expect_err("refused")
        };
        assert!(refused(&["--js"]).contains("NATS only"));
        assert!(refused(&["--amqp", "--ws"]).contains("WebSocket"));
        assert!(refused(&["--amqp", "--sub-server", "10.0.0.1:5672"]).contains("probe"));
        assert!(refused(&["--user", "u"]).contains("AMQP and --transport shm only"));
        assert!(refused(&["--protocol", "nats", "--persistent"]).contains("MQTT only"));
    }

    fn refused(args: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("arguments parse");
        Plan::from_args(&cli.bench).expect_err("refused")
    }

    #[test]
    fn tcp_stays_the_default_and_unchanged() {
        let p = plan(&[]);
        assert_eq!(p.transport, Transport::Tcp);
        assert_eq!(p.spin_us, 0);
        assert_eq!(
            (p.server.as_str(), p.subject.as_str()),
            ("127.0.0.1:1883", "weft/bench")
        );
        let p = plan(&["--transport", "tcp", "--protocol", "nats"]);
        assert_eq!(
            (p.transport, p.server.as_str()),
            (Transport::Tcp, "127.0.0.1:4222")
        );
        assert!(refused(&["--spin-us", "5"]).contains("--transport shm only"));
    }

    #[test]
    fn shm_needs_a_socket_path_and_refuses_what_it_does_not_do() {
        let p = plan(&[
            "--transport",
            "shm",
            "--server",
            "/run/weft/shm.sock",
            "--rate",
            "100000",
            "--spin-us",
            "50",
        ]);
        assert_eq!(p.transport, Transport::Shm);
        assert_eq!(p.server, "/run/weft/shm.sock");
        assert_eq!(
            p.sub_server, "/run/weft/shm.sock",
            "subscribers on the same socket"
        );
        assert_eq!(
            (p.proto, p.subject.as_str()),
            (Protocol::Mqtt, "weft/bench")
        );
        assert_eq!((p.spin_us, p.rate), (50, 100_000));
        assert_eq!(p.probe_timeout, None);
        assert!(!p.one_thread);
        let p = plan(&["--transport", "shm", "--server", "s", "--protocol", "nats"]);
        assert_eq!(
            (p.proto, p.subject.as_str()),
            (Protocol::Nats, "weft.bench")
        );
        let p = plan(&[
            "--transport",
            "shm",
            "--server",
            "s",
            "--user",
            "u",
            "--password",
            "p",
        ]);
        assert_eq!(
            (p.user.as_deref(), p.password.as_deref()),
            (Some("u"), Some("p"))
        );
        assert!(refused(&["--transport", "shm"]).contains("needs --server PATH"));
        assert!(refused(&["--transport", "shm", "--server", ""]).contains("empty path"));
        let shm = |extra: &[&str]| {
            let mut args = vec!["--transport", "shm", "--server", "/tmp/s"];
            args.extend_from_slice(extra);
            refused(&args)
        };
        assert!(shm(&["--amqp"]).contains("AMQP"));
        assert!(shm(&["--protocol", "amqp"]).contains("AMQP"));
        assert!(shm(&["--qos", "1"]).contains("--qos 1"));
        assert!(shm(&["--ws"]).contains("--ws"));
        assert!(shm(&["--tls-ca", "ca.pem"]).contains("--tls-ca"));
        assert!(shm(&["--protocol", "nats", "--js"]).contains("--js"));
        assert!(shm(&["--persistent"]).contains("--persistent"));
        assert!(shm(&["--sub-server", "/tmp/other"]).contains("--sub-server"));
        assert!(shm(&["--one-thread"]).contains("a --rate"));
        assert!(shm(&["--one-thread", "--rate", "10", "--subs", "2"]).contains("--subs 1"));
        let p = plan(&[
            "--transport",
            "shm",
            "--server",
            "s",
            "--one-thread",
            "--rate",
            "10",
        ]);
        assert!(p.one_thread);
        assert!(refused(&["--one-thread", "--rate", "10"]).contains("--transport shm only"));
    }
}
