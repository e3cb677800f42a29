//! `weft pub` and `weft sub` (src/cli/) as a reader runs them: the built
//! binary, against a running weft over MQTT 3.1.1, MQTT 5 and NATS (TLS,
//! credentials and permissions included), and the same round trips
//! against mosquitto and nats-server started here on free ports with a
//! temporary configuration.
//!
//! A peer that is not installed (Debian: `mosquitto`, `nats-server`;
//! scripts/test.sh installs them) fails the test in CI (`CI=true`);
//! elsewhere the test says so on stderr and appends a line to
//! `WEFT_SKIP_REPORT` (scripts/test.sh prints those at the end), never a
//! silent pass.
//!
//! An MQTT `weft sub` is known to be subscribed when it prints `weft sub:
//! subscribed to …` on stderr (after the SUBACKs; every router here runs
//! one shard, so the subscription is in place for every publisher then).
//! NATS has no SUBACK: a NATS subscriber is in place once the server's
//! monitoring lists it (weft's `/subscriptions`, nats-server's `/connz`).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pki::{tls_addr, Pki};
use common::*;
#[path = "support/pubsub.rs"]
mod pubsub;
use pubsub::*;

#[test]
fn mqtt_5_and_311_round_trips_against_weft() {
    let weft = weft_one_shard("");
    let url = format!("mqtt://{}", weft.addr);
    mqtt_round_trip(&url, "5", "v5");
    mqtt_round_trip(&url, "3.1.1", "v311");
}

#[test]
fn nats_round_trip_and_across_protocols_against_weft() {
    let weft = weft_one_shard("");
    nats_round_trip(
        &format!("nats://{}", weft.nats),
        "n",
        &[],
        &weft_holds(&weft),
    );

    // MQTT 5 in (-p replaces the URL's port), NATS out: the user property
    // arrives as a header.
    let sub = Sub::ready(&[
        "--url",
        &format!("nats://{}", weft.nats),
        "-t",
        "x.*",
        "-c",
        "1",
        "-v",
    ]);
    wait_for("x.* held", || weft_holds(&weft)("x.*"));
    let port = weft.addr.port().to_string();
    publish_ok(&["-p", &port, "-t", "x/y", "-m", "across"], None);
    let run = sub.finish();
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "x.y across\n"),
        "{run:?}"
    );

    // -c N at the publisher, --interval between, and --count at the
    // subscriber: it exits after exactly N.
    let sub = Sub::ready(&["-p", &port, "-t", "n/c", "-c", "3"]);
    publish_ok(
        &[
            "-p",
            &port,
            "-t",
            "n/c",
            "-m",
            "again",
            "-c",
            "3",
            "--interval",
            "5",
        ],
        None,
    );
    let run = sub.finish();
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "again\nagain\nagain\n"),
        "{run:?}"
    );
}

#[test]
fn a_queue_group_shares_the_messages() {
    let weft = weft_one_shard("");
    let nats = format!("nats://{}", weft.nats);
    let mqtt = format!("mqtt://{}", weft.addr);
    for (url, topic) in [(&nats, "q.t"), (&mqtt, "q/t")] {
        // Two members, one message each: together they print both.
        let a = Sub::ready(&["--url", url, "-t", topic, "--queue", "g", "-c", "1"]);
        let b = Sub::ready(&["--url", url, "-t", topic, "--queue", "g", "-c", "1"]);
        let mut left = [a, b];
        let mut printed = Vec::new();
        // Publish until both have exited (a group gives each message to one).
        let deadline = Instant::now() + RUN_MAX;
        while left
            .iter_mut()
            .any(|s| s.child.try_wait().unwrap().is_none())
        {
            assert!(
                Instant::now() < deadline,
                "the group did not get two messages"
            );
            publish_ok(&["--url", url, "-t", topic, "-m", "m"], None);
        }
        for sub in left {
            let run = sub.finish();
            assert_eq!(run.status, 0, "{run:?}");
            printed.push(run.stdout);
        }
        assert_eq!(printed, ["m\n", "m\n"], "{url}");
    }
}

#[test]
fn tls_for_mqtt_and_nats() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let toml = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{c}\"\nkey = \"{k}\"\n\
         [nats.tls]\ncert = \"{c}\"\nkey = \"{k}\"\n",
        c = server.cert,
        k = server.key
    );
    let mut launch = Launch::new(1, &toml);
    launch.capture_stderr = true;
    launch.log_level = Some("info".into());
    let weft = Weft::launch_with(launch);
    let tls = tls_addr(&weft);
    let mqtts = format!("mqtts://localhost:{}", tls.port());
    let sub = Sub::ready(&[
        "--url", &mqtts, "--cafile", &ca.path, "-t", "s/#", "-c", "2", "-v",
    ]);
    publish_ok(
        &[
            "--url", &mqtts, "--cafile", &ca.path, "-t", "s/1", "-m", "checked",
        ],
        None,
    );
    // --insecure: no CA given, the certificate is not checked.
    let by_ip = format!("mqtts://127.0.0.1:{}", tls.port());
    publish_ok(
        &[
            "--url",
            &by_ip,
            "--insecure",
            "-V",
            "3.1.1",
            "-t",
            "s/2",
            "-m",
            "unchecked",
        ],
        None,
    );
    let run = sub.finish();
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "s/1 checked\ns/2 unchecked\n"),
        "{run:?}"
    );
    // A CA that did not sign the server's certificate: status 1, one line.
    let other = pki.ca("other");
    let run = publish(
        &[
            "--url",
            &mqtts,
            "--cafile",
            &other.path,
            "-t",
            "s/3",
            "-m",
            "x",
        ],
        None,
    );
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("weft pub: error: "), "{run:?}");

    nats_round_trip(
        &format!("tls://127.0.0.1:{}", weft.nats.port()),
        "tls",
        &["--cafile", &ca.path],
        &weft_holds(&weft),
    );
}

#[test]
fn credentials_refusals_and_denials() {
    let hash = weft::security::auth::hash_password(b"wonderland").unwrap();
    let edge = nkeys::KeyPair::new_user();
    let toml = format!(
        "[[security.users]]\nname = \"alice\"\npassword = \"{hash}\"\n\
         publish = {{ allow = [\"sensors/#\"] }}\nsubscribe = {{ deny = [\"secret/#\"] }}\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"tok-123\"\n\
         [[security.users]]\nname = \"edge\"\nnkey = \"{edge_public}\"\n",
        edge_public = edge.public_key()
    );
    let weft = weft_one_shard(&toml);
    let port = weft.addr.port().to_string();
    let alice = ["-p", port.as_str(), "-u", "alice", "-P", "wonderland"];
    let sub = Sub::ready(&[&alice[..], &["-t", "sensors/#", "-c", "1", "-v"]].concat());
    publish_ok(
        &[&alice[..], &["-t", "sensors/t1", "-m", "21.5"]].concat(),
        None,
    );
    let run = sub.finish();
    assert_eq!(
        (run.status, run.stdout.as_str()),
        (0, "sensors/t1 21.5\n"),
        "{run:?}"
    );

    let refused = |args: &[&str], needle: &str| {
        let run = publish(args, None);
        assert_eq!(run.status, 1, "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
        assert!(run.stderr.contains(needle), "{args:?}: {needle}: {run:?}");
    };
    let p = port.as_str();
    refused(
        &[
            "-p",
            p,
            "-u",
            "alice",
            "-P",
            "guess",
            "-t",
            "sensors/t1",
            "-m",
            "x",
        ],
        "refused the connection: BadUserNamePassword",
    );
    refused(
        &["-p", p, "-V", "3.1.1", "-t", "sensors/t1", "-m", "x"],
        "refused the connection: NotAuthorized",
    );
    // Outside her rights: MQTT 5 says so in the PUBACK.
    refused(
        &[&alice[..], &["-q", "1", "-t", "alarms/x", "-m", "x"]].concat(),
        "the broker refused the message on 'alarms/x': PUBACK NotAuthorized",
    );
    // A subscription she may not hold: the SUBACK says so, in 5 and 3.1.1.
    for (version, reason) in [("5", "SUBACK NotAuthorized"), ("3.1.1", "SUBACK Failure")] {
        let run = Sub::spawn(&[&alice[..], &["-V", version, "-t", "secret/x"]].concat()).finish();
        assert_eq!(run.status, 1, "{run:?}");
        assert_eq!(
            run.stderr,
            format!("weft sub: error: the broker refused the subscription to 'secret/x': {reason}"),
            "{run:?}"
        );
    }

    // NATS: a token, and a wrong one.
    let nats = format!("nats://{}", weft.nats);
    let sub = Sub::ready(&["--url", &nats, "--token", "tok-123", "-t", "a.b", "-c", "1"]);
    wait_for("a.b held", || weft_holds(&weft)("a.b"));
    publish_ok(
        &[
            "--url", &nats, "--token", "tok-123", "-t", "a.b", "-m", "ok",
        ],
        None,
    );
    assert_eq!(sub.finish().stdout, "ok\n");
    refused(
        &["--url", &nats, "--token", "wrong", "-t", "a.b", "-m", "x"],
        "cannot connect to",
    );
    // The URL's user information is a user and password.
    let url = format!("nats://alice:wonderland@{}", weft.nats);
    publish_ok(&["--url", &url, "-t", "sensors.t2", "-m", "x"], None);
    // A NATS subscription refused: the server's -ERR ends the run.
    let run = Sub::spawn(&["--url", &url, "-t", "secret.x"]).finish();
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr.ends_with(
            "weft sub: error: the server said: nats: Permissions Violation for Subscription to \"secret.x\""
        ),
        "{run:?}"
    );
    // An nkey: the seed signs the server's nonce.
    let seed = TempFile::new("seed", edge.seed().unwrap().as_bytes());
    let nkey = ["--url", nats.as_str(), "--nkey", seed.path()];
    let sub = Sub::ready(&[&nkey[..], &["-t", "e.1", "-c", "1"]].concat());
    wait_for("e.1 held", || weft_holds(&weft)("e.1"));
    publish_ok(&[&nkey[..], &["-t", "e.1", "-m", "signed"]].concat(), None);
    assert_eq!(sub.finish().stdout, "signed\n");
}

#[test]
fn exit_codes_for_refused_connections_bad_flags_and_timeouts() {
    // A port nobody listens on: 1, one line naming the address.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("mqtt://127.0.0.1:{port}"),
        format!("nats://127.0.0.1:{port}"),
    ] {
        for command in [&["pub", "-m", "x"][..], &["sub"][..]] {
            let out = Command::new(weft_bin())
                .args(&command[..1])
                .args(["--url", &url, "-t", "a"])
                .args(&command[1..])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{command:?} {url}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(
                stderr.starts_with(&format!(
                    "weft {}: error: cannot connect to 127.0.0.1:{port}",
                    command[0]
                )),
                "{stderr}"
            );
        }
    }
    // Usage errors: 2, before any connection is tried.
    for args in [
        &["pub", "-t", "a", "-m", "x", "--no-such-flag"][..],
        &["pub", "-t", "a"],                          // no payload
        &["pub", "-t", "a", "-m", "x", "-f", "file"], // two payloads
        &["pub", "-t", "a", "-m", "x", "-q", "3"],
        &["pub", "-t", "a", "-m", "x", "-V", "3.1.1", "-D", "k=v"],
        &["pub", "-t", "a", "-m", "x", "-D", "novalue"],
        &[
            "pub",
            "--url",
            "nats://127.0.0.1:1",
            "-t",
            "a",
            "-m",
            "x",
            "-q",
            "1",
        ],
        &[
            "pub",
            "--url",
            "nats://127.0.0.1:1",
            "-t",
            "a",
            "-m",
            "x",
            "-r",
        ],
        &["pub", "--url", "http://h", "-t", "a", "-m", "x"],
        &["pub", "-t", "a", "-m", "x", "--cafile", "ca.pem"],
        &["sub"],
        &["sub", "-t", "a", "-c", "0"],
        &["sub", "-t", "a", "--format", "xml"],
    ] {
        let out = Command::new(weft_bin()).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.is_empty(), "{args:?}: says why");
    }

    // --timeout with nothing arriving: 1; with fewer than --count: 1.
    let weft = weft_one_shard("");
    let p = weft.addr.port().to_string();
    let run = Sub::ready(&["-p", &p, "-t", "quiet", "--timeout", "1"]).finish();
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr
            .ends_with("weft sub: error: no message within 1 s"),
        "{run:?}"
    );
    let sub = Sub::ready(&["-p", &p, "-t", "few", "--timeout", "1", "-c", "2"]);
    publish_ok(&["-p", &p, "-t", "few", "-m", "1"], None);
    let run = sub.finish();
    assert_eq!((run.status, run.stdout.as_str()), (1, "1\n"), "{run:?}");
    assert!(
        run.stderr.ends_with("timed out after 1 s: 1 of 2 messages"),
        "{run:?}"
    );
}

// ---- the same round trips against mosquitto and nats-server ----

/// A peer broker's binary: on the PATH or in the sbin directories Debian
/// installs daemons to.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The peer is missing: fail in CI, else report the skip (stderr and
/// `WEFT_SKIP_REPORT`).
fn skip(test: &str, reason: &str) {
    let line = format!("pubsub_cli::{test}: {reason}");
    let required = std::env::var("CI")
        .is_ok_and(|v| v == "true")
        .then_some("CI=true: scripts/test.sh installs it; this machine must run it");
    report_skip(&line, required);
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process, killed on drop, with its temporary directory.
struct Peer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Peer {
    /// Starts `binary` with the arguments `args(port, dir)` give, on a
    /// free 127.0.0.1 port, and waits until the port accepts.
    fn start(binary: &Path, name: &str, args: impl Fn(u16, &Path) -> Vec<String>) -> Peer {
        let dir = std::env::temp_dir().join(format!("weft-peer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(binary)
            .args(args(port, &dir))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        let mut peer = Peer { child, port, dir };
        let deadline = Instant::now() + RUN_MAX;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = peer.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(peer.dir.join("log")).unwrap_or_default();
                panic!("{name} exited ({status}) before serving:\n{log}");
            }
            assert!(Instant::now() < deadline, "{name} did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        peer
    }
}

#[test]
fn the_same_round_trips_against_mosquitto() {
    let Some(binary) = find_binary("mosquitto") else {
        return skip(
            "the_same_round_trips_against_mosquitto",
            "mosquitto is not installed (Debian: apt-get install mosquitto)",
        );
    };
    let peer = Peer::start(&binary, "mosquitto", |port, dir| {
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        vec!["-c".into(), conf.display().to_string()]
    });
    let url = format!("mqtt://127.0.0.1:{}", peer.port);
    mqtt_round_trip(&url, "5", "v5");
    mqtt_round_trip(&url, "3.1.1", "v311");
}

#[test]
fn the_same_round_trip_against_nats_server() {
    let Some(binary) = find_binary("nats-server") else {
        return skip(
            "the_same_round_trip_against_nats_server",
            "nats-server is not installed (Debian: apt-get install nats-server)",
        );
    };
    let monitor = free_port();
    let peer = Peer::start(&binary, "nats-server", |port, dir| {
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!("listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\n"),
        )
        .unwrap();
        vec!["-c".into(), conf.display().to_string()]
    });
    // The subject as the monitoring endpoint writes it (Go's JSON escapes '>').
    let monitor = format!("127.0.0.1:{monitor}");
    let holds = |filter: &str| {
        http_get(&monitor, "/connz?subs=1")
            .contains(&format!("\"{}\"", filter.replace('>', "\\u003e")))
    };
    nats_round_trip(&format!("nats://127.0.0.1:{}", peer.port), "n", &[], &holds);
}
