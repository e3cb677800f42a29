//! The harness of tests/pubsub_cli.rs: runs of the built `weft pub` /
//! `weft sub` (bounded), their output, and the round trips every broker
//! gets. (A module of the test, not a test of its own.)

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// Longest run of one `weft pub` / `weft sub`: bounds a hang, measures nothing.
pub(crate) const RUN_MAX: Duration = Duration::from_secs(30);

/// Waits for `child` (bounded by `RUN_MAX`, killed and failed beyond).
pub(crate) fn wait_exit(child: &mut Child, what: &str) -> i32 {
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
pub(crate) struct Run {
    pub(crate) status: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// The arguments as `&str`s.
pub(crate) fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `weft pub ARGS` with `stdin` (or none), to its end.
pub(crate) fn publish(args: &[&str], stdin: Option<&[u8]>) -> Run {
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
pub(crate) fn publish_ok(args: &[&str], stdin: Option<&[u8]>) {
    let run = publish(args, stdin);
    assert_eq!(run.status, 0, "weft pub {args:?}: {run:?}");
}

pub(crate) fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    let mut pipe = pipe.unwrap();
    std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = pipe.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// A running `weft sub`.
pub(crate) struct Sub {
    pub(crate) child: Child,
    pub(crate) args: Vec<String>,
    pub(crate) stdout: Option<std::thread::JoinHandle<String>>,
    pub(crate) stderr: mpsc::Receiver<String>,
    pub(crate) stderr_seen: Vec<String>,
}

impl Sub {
    /// Starts `weft sub ARGS` and waits until it says it is subscribed.
    pub(crate) fn ready(args: &[&str]) -> Sub {
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

    pub(crate) fn spawn(args: &[&str]) -> Sub {
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
    pub(crate) fn finish(mut self) -> Run {
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
    pub(crate) fn json_lines(self) -> Vec<Value> {
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
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    pub(crate) fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("weft-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    pub(crate) fn path(&self) -> &str {
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
pub(crate) fn mqtt_round_trip(url: &str, version: &str, tag: &str) {
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
pub(crate) fn nats_round_trip(
    url: &str,
    tag: &str,
    extra: &[&str],
    subscribed: &dyn Fn(&str) -> bool,
) {
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

pub(crate) fn weft_one_shard(toml: &str) -> Weft {
    Weft::start(1, toml)
}

/// Waits (bounded) until `check` holds.
pub(crate) fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + RUN_MAX;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {RUN_MAX:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The body of `GET path` at `addr` (HTTP/1.0; empty on any failure).
pub(crate) fn http_get(addr: &str, path: &str) -> String {
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
pub(crate) fn weft_holds(weft: &Weft) -> impl Fn(&str) -> bool + '_ {
    move |filter| {
        http_get(&weft.admin.to_string(), "/subscriptions")
            .contains(&format!("\"filter\": \"{filter}\""))
    }
}
