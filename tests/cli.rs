//! The command line as a new user meets it, against the real binary:
//! `check-config` refuses what `run` refuses; host names in listen and
//! link addresses; the run flags without the word `run`; JSON logs; the
//! readiness helpers (`--ready-file`, `weft wait`).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

fn weft(args: &[&str]) -> Output {
    Command::new(weft_bin()).args(args).output().unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit status 2 and one stderr line that names `key`.
fn refused_naming(out: &Output, key: &str, what: &str) {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one line: {stderr}");
    assert!(
        stderr.starts_with(&format!("weft: error: {key}")),
        "{what}: should name {key}: {stderr}"
    );
}

/// A port nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `weft run` with every listener on a free port, plus `args`.
fn run_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--mqtt-listen",
        "127.0.0.1:0",
        "--nats-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--shards",
        "1",
        "--cores",
        "0",
    ];
    v.extend_from_slice(args);
    v
}

/// A CA and one router certificate for 127.0.0.1, as PEM files in a
/// directory of their own: (dir, cert path, key path, CA path).
fn pem_files() -> (std::path::PathBuf, String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = std::env::temp_dir().join(format!("weft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["a".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let cert = write("a.pem", cert.pem());
    let key = write("a.key", key.serialize_pem());
    let ca = write("ca.pem", ca.pem());
    (dir, cert, key, ca)
}

#[test]
fn check_config_refuses_what_run_refuses() {
    let (dir, cert, key, ca) = pem_files();
    let tls = |cert: &str, key: &str, ca: &str| {
        format!("[mesh.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\nca = \"{ca}\"\n")
    };
    // A file with only [mesh.tls], the mesh turned on by flags (as in the
    // README's TLS walkthrough).
    let cases = [
        (
            "a missing certificate",
            tls(&format!("{}/missing.pem", dir.display()), &key, &ca),
            "mesh.tls.cert",
        ),
        (
            "a half-filled [mesh.tls]",
            format!("[mesh.tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n"),
            "mesh.tls.ca",
        ),
        (
            "swapped cert and key",
            tls(&key, &cert, &ca),
            "mesh.tls.cert",
        ),
    ];
    for (what, toml, key) in cases {
        let file = write_config(&toml);
        let path = file.0.display().to_string();
        refused_naming(
            &weft(&["check-config", &path]),
            key,
            &format!("check-config with {what}"),
        );
        refused_naming(
            &weft(&run_args(&[
                "--config",
                &path,
                "--mesh-listen",
                "127.0.0.1:0",
            ])),
            key,
            &format!("run with {what}"),
        );
    }
    // The good file is valid: the check refuses only what is wrong.
    let good = write_config(&tls(&cert, &key, &ca));
    let out = weft(&["check-config", &good.0.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_in_listen_and_link_addresses() {
    let mut launch = Launch::new(1, "");
    launch.mqtt_listen = "localhost:0".into();
    launch.args = ["--router-id", "A", "--mesh-listen", "localhost:0"]
        .map(String::from)
        .to_vec();
    let a = Weft::launch_with(launch);
    assert!(a.addr.ip().is_loopback(), "{}", a.addr);
    let mesh = a.mesh.expect("A's mesh listener");
    assert!(mesh.ip().is_loopback(), "{mesh}");
    let mut c = connect(a.addr, "by-name").await;
    c.subscribe("t", rumqttc::QoS::AtMostOnce).await;
    c.publish("t", rumqttc::QoS::AtMostOnce, "x").await;
    assert_eq!(c.next_publish().await.topic, "t");
    // B dials A by name.
    let b = Weft::launch_args(
        1,
        "",
        &[
            "--router-id",
            "B",
            "--link",
            &format!("localhost:{}", mesh.port()),
        ],
    );
    let view = wait_links_up(&b, 1).await;
    assert_eq!(view.links[0].peer.as_deref(), Some("A"), "{view:#?}");
}

#[test]
fn unresolvable_addresses() {
    // A listener's name is resolved at start: a failure stops the start.
    for (flag, value, key) in [
        ("--mqtt-listen", "no-such-host.invalid:1883", "mqtt.listen"),
        (
            "--admin-listen",
            "no-such-host.invalid:8222",
            "admin.listen",
        ),
        ("--mesh-listen", "localhost", "mesh.listen"),
        ("--link", "localhost:port", "mesh.links"),
    ] {
        let mut args = run_args(&[]);
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag, value]),
        }
        refused_naming(&weft(&args), key, &format!("{flag} {value}"));
    }
    // A link's name is resolved at every dial: the router runs, says why
    // the link is not up, and keeps trying.
    let mut launch = Launch::new(1, "");
    launch.args = ["--router-id", "B", "--link", "no-such-host.invalid:7422"]
        .map(String::from)
        .to_vec();
    launch.log_level = Some("warn".into());
    launch.capture_stderr = true;
    let mut b = Weft::launch_with(launch);
    let line = b.wait_for_log("cannot resolve link address");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("no-such-host.invalid:7422"), "{line}");
    assert!(b.is_running());
    assert!(b.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_flags_work_without_run() {
    let mut child = Command::new(weft_bin())
        .args(&run_args(&[])[1..])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let addr: std::net::SocketAddr = line
        .strip_prefix("weft: mqtt listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut c = connect(addr, "no-run-word").await;
    c.subscribe("t", rumqttc::QoS::AtMostOnce).await;
    let _ = child.kill();
    let _ = child.wait();
    // Flags before a subcommand are refused, not ignored.
    let out = weft(&["--shards", "1", "check-config", "x.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    let help = String::from_utf8_lossy(&weft(&["--help"]).stdout).into_owned();
    assert!(help.contains("--mqtt-listen"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_a_line() {
    let mut launch = Launch::new(1, "");
    launch.args = ["--log-format", "json"].map(String::from).to_vec();
    launch.log_level = Some("info".into());
    launch.capture_stderr = true;
    let mut w = Weft::launch_with(launch);
    w.wait_for_log("admin listening on");
    drop(connect(w.addr, "logged").await);
    assert!(w.terminate().success());
    // The stderr reader ends with the process: wait for its last lines.
    w.wait_stderr_end();
    let lines = w.stderr_lines();
    assert!(lines.len() >= 3, "{lines:#?}");
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "level: {line}");
        messages.push(
            v["message"]
                .as_str()
                .unwrap_or_else(|| panic!("message: {line}"))
                .to_string(),
        );
    }
    // The listener lines are in the log stream too, in order.
    let mqtt = messages
        .iter()
        .position(|m| m.starts_with("mqtt listening on"));
    let admin = messages
        .iter()
        .position(|m| m.starts_with("admin listening on"));
    assert!(mqtt.is_some() && mqtt < admin, "{messages:#?}");
    let bad = write_config("[log]\nformat = \"yaml\"\n");
    refused_naming(
        &weft(&["check-config", &bad.0.display().to_string()]),
        "log.format",
        "log.format = yaml",
    );
}

#[test]
fn ready_file_and_wait() {
    let ready = std::env::temp_dir().join(format!("weft-ready-{}", std::process::id()));
    // A file left by an earlier (killed) run is not taken for this one's.
    std::fs::write(&ready, "stale\n").unwrap();
    let mut launch = Launch::new(1, "");
    launch.args = vec!["--ready-file".into(), ready.display().to_string()];
    let mut w = Weft::launch_with(launch);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match std::fs::read_to_string(&ready) {
            Ok(pid) if pid != "stale\n" => {
                assert_eq!(pid.trim(), w.pid().to_string());
                break;
            }
            _ => {}
        }
        assert!(std::time::Instant::now() < deadline, "no ready file");
        std::thread::sleep(Duration::from_millis(10));
    }

    let (admin, mqtt, nats) = (w.admin.to_string(), w.addr.to_string(), w.nats.to_string());
    let out = weft(&["wait", "--admin", &admin, "--mqtt", &mqtt, "--nats", &nats]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // Not ready: status 1, naming what and why.
    let closed = format!("127.0.0.1:{}", closed_port());
    let out = weft(&["wait", "--mqtt", &closed, "--timeout-ms", "300"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("mqtt {closed}")),
        "{}",
        stderr_of(&out)
    );
    let out = weft(&[
        "wait",
        "--admin",
        &admin,
        "--links",
        "1",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("0 of 1 links up"),
        "{}",
        stderr_of(&out)
    );
    let out = weft(&["wait"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));

    assert!(w.terminate().success());
    assert!(!ready.exists(), "the ready file is removed at exit");
}

// The binary as a process, from tests/mqtt.rs: bad configuration and
// flags, SIGTERM, a port in use.

#[test]
fn bad_config_and_flags_exit_2_naming_the_key() {
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["run".into(), "--shards".into(), "x".into()],
            "--shards",
        ),
        (
            vec!["run".into(), "--mqtt-listen".into(), "nowhere".into()],
            "mqtt.listen",
        ),
        (
            vec!["run".into(), "--cores".into(), "3-1".into()],
            "runtime.cores",
        ),
        (
            vec!["run".into(), "--log-level".into(), "loud".into()],
            "log.level",
        ),
        (vec!["run".into(), "--bogus".into()], "--bogus"),
        (
            vec!["run".into(), "--router-id".into(), "two words".into()],
            "mesh.router_id",
        ),
        (
            vec!["run".into(), "--link".into(), "nowhere".into()],
            "mesh.links",
        ),
        (
            vec![
                "run".into(),
                "--mesh-listen".into(),
                "127.0.0.1:0".into(),
                "--bridge-cores".into(),
                "0,1".into(),
            ],
            "mesh.bridge_cores",
        ),
    ];
    let unknown = write_config("[limits]\nqueued_bytes_maxx = 1\n");
    let wrong_type = write_config("[limits]\ninflight_max = \"many\"\n");
    let too_small = write_config("[limits]\nqueued_bytes_max = 10\n");
    let bad_prefix = write_config("[[mesh.policy]]\npeer = \"B\"\nimport_prefix = \"x/#\"\n");
    let bad_filter = write_config("[[mesh.policy]]\npeer = \"B\"\nexport_deny = [\"a/#/b\"]\n");
    let mut cases = cases;
    for (file, key) in [
        (&unknown, "queued_bytes_maxx"),
        (&wrong_type, "inflight_max"),
        (&too_small, "limits.queued_bytes_max"),
        (&bad_prefix, "mesh.policy.import_prefix"),
        (&bad_filter, "mesh.policy.export_deny"),
    ] {
        cases.push((
            vec![
                "run".into(),
                "--config".into(),
                file.0.display().to_string(),
            ],
            key,
        ));
        cases.push((
            vec!["check-config".into(), file.0.display().to_string()],
            key,
        ));
    }
    for (args, key) in cases {
        let out = std::process::Command::new(weft_bin())
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(key), "{args:?} should name {key}: {stderr}");
    }
    let good = write_config("[limits]\ninflight_max = 10\n");
    let out = std::process::Command::new(weft_bin())
        .args(["check-config"])
        .arg(&good.0)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = std::process::Command::new(weft_bin())
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--config",
        "--mqtt-listen",
        "--shards",
        "--cores",
        "--log-level",
        "--router-id",
        "--mesh-name",
        "--mesh-listen",
        "--link",
        "--bridge-cores",
    ] {
        assert!(help.contains(flag), "help lists {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_and_exits_zero() {
    let mut weft = Weft::start(2, "");
    let mut sub = Raw::connected(weft.shard_addrs[0], "stay", 0).await;
    sub.send(&subscribe_packet("x", 0)).await;
    sub.read_exact(5).await;
    let status = weft.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(sub.closed_by_server().await);
    assert!(!weft.is_running());
}

/// A port another process listens on is refused (SO_REUSEPORT would
/// otherwise let two routers silently share it).
#[test]
fn a_port_in_use_is_refused() {
    let first = Weft::start(1, "");
    let out = std::process::Command::new(weft_bin())
        .args(["run", "--mqtt-listen", &first.addr.to_string()])
        .args([
            "--nats-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot bind MQTT listener {}", first.addr))
            && stderr.contains("in use"),
        "{stderr}"
    );
}
