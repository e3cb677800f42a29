//! `weft wait`: blocks until routers are ready, for scripts that start
//! routers in the background (`weft run … &`) and must not talk to them
//! before they serve (the README's walkthroughs, supervisors, CI).
//!
//! Owns: the readiness probes, each a short blocking client of its own:
//! the admin endpoint's `/readyz` (and, with `--links N`, its `/links`),
//! an MQTT CONNECT answered by a CONNACK, a NATS INFO line. A bound but
//! not yet serving listener accepts TCP connections into its backlog, so
//! a bare TCP connect would prove too little. Must not touch: the router's
//! internals; this runs in a process of its own, against any weft.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Options of `weft wait`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WaitArgs {
    /// Admin endpoint (HOST:PORT) whose /readyz must answer 200 (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub admin: Vec<String>,
    /// MQTT listener (HOST:PORT) that must answer a CONNECT with a CONNACK (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub mqtt: Vec<String>,
    /// NATS listener (HOST:PORT) that must send its INFO line (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub nats: Vec<String>,
    /// With --admin: also wait until each of those routers has at least N
    /// mesh links up (its /links).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub links: usize,
    /// Give up after this long: exit status 1, naming what was not ready.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Longest single probe (connect, then each read or write).
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// Pause between two rounds of probes.
const POLL: Duration = Duration::from_millis(50);
/// Largest admin response read (a /links view of 64 links is a few KiB).
const RESPONSE_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, Clone)]
enum Target {
    Admin(String),
    Mqtt(String),
    Nats(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Admin(a) => write!(f, "admin {a}"),
            Target::Mqtt(a) => write!(f, "mqtt {a}"),
            Target::Nats(a) => write!(f, "nats {a}"),
        }
    }
}

pub fn run(args: WaitArgs) -> ExitCode {
    let targets: Vec<Target> = args
        .admin
        .iter()
        .cloned()
        .map(Target::Admin)
        .chain(args.mqtt.iter().cloned().map(Target::Mqtt))
        .chain(args.nats.iter().cloned().map(Target::Nats))
        .collect();
    if targets.is_empty() {
        eprintln!("weft: error: wait: name at least one of --admin, --mqtt, --nats");
        return ExitCode::from(2);
    }
    if args.links > 0 && args.admin.is_empty() {
        eprintln!("weft: error: wait: --links needs --admin (the links are read from /links)");
        return ExitCode::from(2);
    }
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    // What is still not ready, with the last reason seen.
    let mut pending: Vec<(Target, String)> = targets
        .into_iter()
        .map(|t| (t, "not tried".to_string()))
        .collect();
    loop {
        for (target, why) in pending.iter_mut() {
            *why = match probe(target, args.links) {
                Ok(()) => String::new(),
                Err(e) => e,
            };
        }
        pending.retain(|(_, why)| !why.is_empty());
        if pending.is_empty() {
            return ExitCode::SUCCESS;
        }
        if Instant::now() >= deadline {
            let what: Vec<String> = pending
                .iter()
                .map(|(t, why)| format!("{t}: {why}"))
                .collect();
            eprintln!(
                "weft: wait: not ready after {} ms: {}",
                args.timeout_ms,
                what.join("; ")
            );
            return ExitCode::from(1);
        }
        std::thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

fn probe(target: &Target, links: usize) -> Result<(), String> {
    match target {
        Target::Admin(addr) => {
            let (status, _) = http_get(addr, "/readyz")?;
            if status != 200 {
                return Err(format!("/readyz answered {status}"));
            }
            if links > 0 {
                let (status, body) = http_get(addr, "/links")?;
                if status != 200 {
                    return Err(format!("/links answered {status}"));
                }
                let view: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| format!("/links is not JSON: {e}"))?;
                let up = view["links"]
                    .as_array()
                    .map_or(0, |l| l.iter().filter(|l| l["state"] == "up").count());
                if up < links {
                    return Err(format!("{up} of {links} links up"));
                }
            }
            Ok(())
        }
        Target::Mqtt(addr) => {
            let mut s = connect(addr)?;
            // CONNECT, MQTT 3.1.1, clean session, keep-alive 10 s, empty
            // client id (the server assigns one).
            s.write_all(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 0])
                .map_err(|e| format!("CONNECT not sent: {e}"))?;
            let mut connack = [0u8; 4];
            s.read_exact(&mut connack)
                .map_err(|e| format!("no CONNACK: {e}"))?;
            if connack[0] != 0x20 || connack[3] != 0 {
                return Err(format!("CONNECT refused: {connack:02x?}"));
            }
            let _ = s.write_all(&[0xE0, 0]); // DISCONNECT
            Ok(())
        }
        Target::Nats(addr) => {
            let mut s = connect(addr)?;
            let mut first = [0u8; 5];
            s.read_exact(&mut first)
                .map_err(|e| format!("no INFO: {e}"))?;
            if &first != b"INFO " {
                return Err(format!(
                    "answered {:?}, not INFO",
                    String::from_utf8_lossy(&first)
                ));
            }
            Ok(())
        }
    }
}

fn connect(addr: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e}"))?
        .collect();
    let mut last = "resolves to no address".to_string();
    for a in addrs {
        match TcpStream::connect_timeout(&a, PROBE_TIMEOUT) {
            Ok(s) => {
                s.set_read_timeout(Some(PROBE_TIMEOUT))
                    .and_then(|()| s.set_write_timeout(Some(PROBE_TIMEOUT)))
                    .map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// A GET over HTTP/1.0 (no chunked encoding, the server closes): the
/// status code and the body.
fn http_get(addr: &str, path: &str) -> Result<(u16, Vec<u8>), String> {
    http_get_with(addr, path, None, PROBE_TIMEOUT)
}

/// [`http_get`] with a bearer token (`admin.token`) and a read timeout of
/// its own (`weft explain` waits for the mesh).
pub(crate) fn http_get_with(
    addr: &str,
    path: &str,
    token: Option<&str>,
    read_timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").as_bytes())
        .map_err(|e| format!("GET {path} not sent: {e}"))?;
    let mut response = Vec::new();
    s.take(RESPONSE_BYTES_MAX)
        .read_to_end(&mut response)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no complete response"))?;
    let head = String::from_utf8_lossy(&response[..text_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: bad status line"))?;
    Ok((status, response[text_end + 4..].to_vec()))
}
