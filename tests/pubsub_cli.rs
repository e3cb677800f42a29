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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::pki::{tls_addr, Pki};
use common::*;
use serde_json::{json, Value};

/// Longest run of one `weft pub` / `weft sub`: bounds a hang, measures nothing.
const RUN_MAX: Duration = Duration::from_secs(30);

/// Waits for `child` (bounded by `RUN_MAX`, killed and failed beyond).
fn wait_exit(child: &mut Child, what: &str) -> i32 {
    let deadline = Instant::now() + RUN_MAX;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {RUN_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The result of one run: exit status, stdout, stderr.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// The arguments as `&str`s.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `weft pub ARGS` with `stdin` (or none), to its end.
fn publish(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(weft_bin())
        .arg("pub")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weft pub");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    let (out, err) = (reader(child.stdout.take()), reader(child.stderr.take()));
    let status = wait_exit(&mut child, &format!("weft pub {args:?}"));
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `weft pub ARGS` that must succeed.
fn publish_ok(args: &[&str], stdin: Option<&[u8]>) {
    let run = publish(args, stdin);
    assert_eq!(run.status, 0, "weft pub {args:?}: {run:?}");
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    let mut pipe = pipe.unwrap();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// A running `weft sub`.
struct Sub {
    child: Child,
    args: Vec<String>,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

impl Sub {
    /// Starts `weft sub ARGS` and waits until it says it is subscribed.
    fn ready(args: &[&str]) -> Sub {
        let mut sub = Sub::spawn(args);
        let deadline = Instant::now() + RUN_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sub.stderr.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("weft sub: subscribed to ");
                    sub.stderr_seen.push(line);
                    if done {
                        return sub;
                    }
                }
                Err(_) => {
                    let _ = sub.child.kill();
                    panic!(
                        "weft sub {:?} did not subscribe; stderr: {:?}",
                        sub.args, sub.stderr_seen
                    );
                }
            }
        }
    }

    fn spawn(args: &[&str]) -> Sub {
        let mut child = Command::new(weft_bin())
            .arg("sub")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("weft sub");
        let stdout = Some(reader(child.stdout.take()));
        let (tx, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Sub {
            child,
            args: args.iter().map(|a| a.to_string()).collect(),
            stdout,
            stderr,
            stderr_seen: Vec::new(),
        }
    }

    /// Waits for the end (bounded): status, stdout, stderr.
    fn finish(mut self) -> Run {
        let status = wait_exit(&mut self.child, &format!("weft sub {:?}", self.args));
        let stdout = self.stdout.take().unwrap().join().unwrap();
        // The reader thread ends with the pipe, after the exit.
        while let Ok(line) = self.stderr.recv_timeout(RUN_MAX) {
            self.stderr_seen.push(line);
        }
        let stderr = self.stderr_seen.join("\n");
        Run {
            status,
            stdout,
            stderr,
        }
    }

    /// Waits for the end, which must be status 0; the JSON lines of stdout.
    fn json_lines(self) -> Vec<Value> {
        let run = self.finish();
        assert_eq!(run.status, 0, "{run:?}");
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file with `bytes` in it, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("weft-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The same MQTT round trip for any broker: a retained message, then
/// four messages (a property, stdin lines, a binary file) at three QoS
/// levels, printed as JSON by one `weft sub -c 4`.
fn mqtt_round_trip(url: &str, version: &str, tag: &str) {
    let v5 = version == "5";
    let base = ["--url", url, "-V", version];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let retained_topic = format!("{tag}/retained");

    // Retained: published first, received by a later subscriber, flagged.
    publish_ok(
        &args(&with(&[
            "-t",
            &retained_topic,
            "-r",
            "-q",
            "1",
            "-m",
            "kept",
        ])),
        None,
    );
    let sub = Sub::ready(&args(&with(&[
        "-t",
        &retained_topic,
        "-c",
        "1",
        "--format",
        "json",
    ])));
    let got = sub.json_lines();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (&got[0]["topic"], &got[0]["payload"], &got[0]["retain"]),
        (&json!(retained_topic), &json!("kept"), &json!(true)),
        "{got:?}"
    );
    // An empty retained message clears it (as mosquitto_pub -r -n).
    publish_ok(&args(&with(&["-t", &retained_topic, "-r", "-n"])), None);

    let filter = format!("{tag}/+");
    let sub = Sub::ready(&args(&with(&[
        "-t", &filter, "-q", "2", "-c", "4", "--format", "json",
    ])));
    let topic = format!("{tag}/t");
    let mut first = with(&["-t", &topic, "-q", "1", "-m", "one"]);
    if v5 {
        first.extend(["-D".to_string(), "trace=abc".to_string()]);
    }
    publish_ok(&args(&first), None);
    publish_ok(
        &args(&with(&["-t", &topic, "-q", "2", "-l"])),
        Some(b"two\nthree\n"),
    );
    let binary = TempFile::new(&format!("{tag}-bin"), b"\xff\x00\x01");
    publish_ok(&args(&with(&["-t", &topic, "-f", binary.path()])), None);
    let got = sub.json_lines();
    let summary: Vec<(Value, Value, Value)> = got
        .iter()
        .map(|m| {
            let payload = m.get("payload").or(m.get("payload_base64")).unwrap();
            (m["topic"].clone(), payload.clone(), m["qos"].clone())
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(topic), json!("one"), json!(1)),
            (json!(topic), json!("two"), json!(2)),
            (json!(topic), json!("three"), json!(2)),
            (json!(topic), json!("/wAB"), json!(0)),
        ],
        "{got:?}"
    );
    assert!(got[3].get("payload").is_none(), "binary is base64: {got:?}");
    if v5 {
        assert_eq!(
            got[0]["properties"]["user_properties"],
            json!([["trace", "abc"]]),
            "{got:?}"
        );
    } else {
        assert!(
            got[0].get("properties").is_none(),
            "3.1.1 has none: {got:?}"
        );
    }
}

/// The same NATS round trip for any server: a header, then stdin lines,
/// printed as JSON by one `weft sub -c 3`. async-nats' flush ends when
/// the SUB is written, so `subscribed(filter)` asks the server's
/// monitoring whether it holds the subscription before anything is
/// published.
fn nats_round_trip(url: &str, tag: &str, extra: &[&str], subscribed: &dyn Fn(&str) -> bool) {
    let with = |more: &[&str]| -> Vec<String> {
        ["--url", url]
            .iter()
            .chain(extra)
            .chain(more)
            .map(|s| s.to_string())
            .collect()
    };
    let subject = format!("{tag}.t");
    let sub = Sub::ready(&args(&with(&[
        "-t",
        &format!("{tag}.>"),
        "-c",
        "3",
        "--format",
        "json",
    ])));
    let filter = format!("{tag}.>");
    wait_for(&format!("the server holds {filter}"), || {
        subscribed(&filter)
    });
    publish_ok(
        &args(&with(&["-t", &subject, "-H", "X-Trace:abc", "-m", "one"])),
        None,
    );
    publish_ok(&args(&with(&["-t", &subject, "-l"])), Some(b"two\nthree"));
    let got = sub.json_lines();
    let payloads: Vec<&Value> = got.iter().map(|m| &m["payload"]).collect();
    assert_eq!(
        payloads,
        [&json!("one"), &json!("two"), &json!("three")],
        "{got:?}"
    );
    assert!(got.iter().all(|m| m["topic"] == json!(subject)), "{got:?}");
    assert_eq!(got[0]["headers"]["X-Trace"], json!(["abc"]), "{got:?}");
}

fn weft_one_shard(toml: &str) -> Weft {
    Weft::start(1, toml)
}

/// Waits (bounded) until `check` holds.
fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + RUN_MAX;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {RUN_MAX:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The body of `GET path` at `addr` (HTTP/1.0; empty on any failure).
fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(RUN_MAX));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

/// Whether weft's admin view lists a subscription to `filter` (NATS
/// subscriptions are in place once listed: async-nats' flush only wrote
/// the SUB).
fn weft_holds(weft: &Weft) -> impl Fn(&str) -> bool + '_ {
    move |filter| {
        http_get(&weft.admin.to_string(), "/subscriptions")
            .contains(&format!("\"filter\": \"{filter}\""))
    }
}

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
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{line} (CI=true: scripts/test.sh installs it; this machine must run it)");
    }
    eprintln!("SKIPPED: {line}");
    if let Some(path) = std::env::var_os("WEFT_SKIP_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("WEFT_SKIP_REPORT {path:?}: {e}"));
        writeln!(f, "{line}").expect("write the skip report");
    }
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
