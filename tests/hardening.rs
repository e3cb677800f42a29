//! What an operator does to a router (issue 10): run it out of file
//! descriptors and scrape it, and restart it straight after `kill -9` on
//! the same fixed ports, as a supervisor would.

mod common;

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use common::ports::free_port_block;
use common::*;
use nix::sys::signal::Signal;
use rumqttc::QoS;
use tokio::io::AsyncReadExt;

/// The descriptor limit the router runs under, and more idle clients than
/// it can hold.
const NOFILE: usize = 256;
const IDLE_CLIENTS: usize = 300;

/// The router under a descriptor limit it knows at start.
fn launch_under(nofile: usize) -> Weft {
    launch_under_limits(nofile, nofile)
}

/// The router under soft and hard descriptor limits (`prlimit`).
fn launch_under_limits(soft: usize, hard: usize) -> Weft {
    let mut launch = Launch::new(2, "");
    launch.prefix = vec![
        "prlimit".into(),
        format!("--nofile={soft}:{hard}"),
        "--".into(),
    ];
    launch.log_level = Some("warn".into());
    launch.capture_stderr = true;
    Weft::launch_with(launch)
}

/// `n` idle MQTT clients, their CONNECT sent.
async fn idle_clients(weft: &Weft, n: usize) -> Vec<Raw> {
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let mut raw = Raw::open(weft.addr).await;
        raw.send(&connect_packet(&format!("idle-{i}"), 0, 4, true))
            .await;
        idle.push(raw);
    }
    idle
}

/// Every admin view, five times over: each answers 200 and the router
/// lives on.
async fn scrape_everything(weft: &mut Weft) {
    let paths = [
        "/metrics",
        "/healthz",
        "/readyz",
        "/links",
        "/connections?limit=5",
        "/subscriptions?limit=5",
    ];
    let mut answered = 0;
    for round in 0..5 {
        for path in paths {
            let (status, _) = match tokio::spawn(admin_get(weft.admin, path)).await {
                Ok(answer) => answer,
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    panic!(
                        "GET {path} (round {round}): {e}; router running: {}; its last lines: {:#?}",
                        weft.is_running(),
                        tail(weft)
                    )
                }
            };
            assert!(weft.is_running(), "after GET {path}: {:#?}", tail(weft));
            assert_eq!(status, 200, "GET {path} (round {round})");
            answered += 1;
        }
    }
    assert_eq!(answered, 5 * paths.len());
}

/// The idle clients leave; once the router has closed their descriptors a
/// new client is served (before, it may still be refused: closed at once),
/// and a publish/subscribe round trip works.
async fn serves_after(weft: &mut Weft, idle: Vec<Raw>) {
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    // The router has seen them all go (its open-connection gauge).
    loop {
        let (_, body) = admin_get(weft.admin, "/metrics").await;
        let open = metric_sum(&body, "weft_connections");
        if open == 0.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} connections still open after the idle clients left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    loop {
        let mut probe = Raw::open(weft.addr).await;
        probe.send(&connect_packet("probe", 0, 4, true)).await;
        let mut first = [0u8; 4];
        match tokio::time::timeout(WAIT, probe.stream.read_exact(&mut first)).await {
            Ok(Ok(_)) if first == [0x20, 2, 0, 0] => break,
            Ok(Ok(_)) => panic!("unexpected answer {first:?}"),
            Ok(Err(_)) => {}
            Err(_) => panic!("a client after the idle ones left got no answer"),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refusing clients after the idle ones left: {:#?}",
            tail(weft)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sub = connect(weft.addr, "after-sub").await;
    sub.subscribe("after/#", QoS::AtLeastOnce).await;
    let publisher = connect(weft.addr, "after-pub").await;
    publisher
        .publish("after/1", QoS::AtLeastOnce, "still here")
        .await;
    let got = sub.next_publish().await;
    assert_eq!(got.topic, "after/1");
    assert_eq!(&got.payload[..], b"still here");
    let (status, body) = admin_get(weft.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("weft_connections_accepted_total"), "{body}");
    assert!(weft.is_running(), "{:?}", tail(weft));
}

fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A descriptor limit below `limits.connections_max`: the start says so in
/// one line with what it holds, and the shards hold that many connections
/// and refuse the rest at once (counted), never leaving one waiting in the
/// backlog; admin requests are answered throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_descriptor_limit_are_refused() {
    let mut weft = launch_under(NOFILE);
    let line = weft.wait_for_log("descriptor limit");
    assert!(
        line.contains(&format!("descriptor limit {NOFILE}")) && line.contains("does not cover"),
        "{line}"
    );
    let holds: usize = line
        .split("holds about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("how many it holds: {line}"));
    let mut idle = idle_clients(&weft, IDLE_CLIENTS).await;
    // Each got its CONNACK, or was refused (closed at once).
    let (mut served, mut refused) = (0usize, 0usize);
    for raw in &mut idle {
        let mut first = [0u8; 4];
        match tokio::time::timeout(WAIT, raw.stream.read_exact(&mut first)).await {
            Ok(Ok(_)) => {
                assert_eq!(first, [0x20, 2, 0, 0], "a CONNACK accepting the client");
                served += 1;
            }
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!(
                "a client past the descriptor limit is still waiting ({served} served, {refused} refused so far)"
            ),
        }
    }
    eprintln!("{line}\nidle clients: {served} served, {refused} refused");
    assert_eq!(served, holds, "served what the start line said it holds");
    assert_eq!(refused, IDLE_CLIENTS - holds);
    weft.wait_for_log("connection refused: the descriptor limit holds no more connections");
    let (_, body) = admin_get(weft.admin, "/metrics").await;
    assert_eq!(
        metric_sum(&body, "weft_connections_refused_total"),
        refused as f64
    );
    scrape_everything(&mut weft).await;
    serves_after(&mut weft, idle).await;
}

/// Descriptors that run out all the same (the limit lowered under a
/// running router, here with `prlimit --pid`): accepts fail, and nothing
/// outside the shards takes the router down. Every admin request is
/// answered while it is out of descriptors (the HTTP layer before, tiny_http,
/// aborted the process at the first scrape), and it serves again once the
/// clients leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptor_exhaustion_leaves_the_router_serving() {
    let mut weft = launch_under(4096);
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &weft.pid().to_string(),
            &format!("--nofile={NOFILE}:{NOFILE}"),
        ])
        .status()
        .expect("prlimit");
    assert!(status.success());
    let idle = idle_clients(&weft, IDLE_CLIENTS).await;
    let line = weft.wait_for_log("out of file descriptors");
    scrape_everything(&mut weft).await;
    eprintln!("{line}\nadmin requests answered while out of descriptors: 30");
    serves_after(&mut weft, idle).await;
}

fn tail(weft: &Weft) -> Vec<String> {
    let lines = weft.stderr_lines();
    lines[lines.len().saturating_sub(10)..].to_vec()
}

const RESTARTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_binds_the_same_ports() {
    // Every listener weft binds, on fixed ports: MQTT and NATS (shared and
    // per shard), admin and mesh.
    let base = free_port_block(8);
    let mut launch = Launch::new(
        2,
        &format!(
            "[mqtt]\nshard_port_base = {}\n\
             [nats]\nlisten = \"127.0.0.1:{}\"\nshard_port_base = {}\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\n",
            base + 1,
            base + 3,
            base + 4,
            base + 6
        ),
    );
    launch.mqtt_listen = format!("127.0.0.1:{base}");
    launch.args = vec!["--mesh-listen".into(), format!("127.0.0.1:{}", base + 7)];
    launch.log_level = Some("info".into());
    launch.capture_stderr = true;
    let start = |launch: &Launch| {
        std::panic::catch_unwind(AssertUnwindSafe(|| Weft::launch_with(launch.clone()))).map_err(
            |e| {
                e.downcast_ref::<String>()
                    .cloned()
                    .unwrap_or_else(|| "launch panicked".into())
            },
        )
    };
    let mut weft = start(&launch).expect("first start");
    let mut _client = connect(weft.addr, "restart-0").await;
    let mut failures = Vec::new();
    let mut waited = 0;
    for round in 1..=RESTARTS {
        // kill -9 with a client connected, reaped (as a supervisor sees it
        // die), then started again at once.
        weft.signal(Signal::SIGKILL);
        drop(weft);
        weft = match start(&launch) {
            Ok(w) => w,
            Err(why) => {
                let line = why.lines().find(|l| l.contains("error")).unwrap_or(&why);
                failures.push(format!("round {round}: {line}"));
                // Not what is measured: a later start for the next round.
                tokio::time::sleep(Duration::from_millis(500)).await;
                start(&launch).expect("a start after a pause")
            }
        };
        assert_eq!(weft.addr.port(), base);
        assert_eq!(
            weft.shard_addrs
                .iter()
                .map(|a| a.port())
                .collect::<Vec<_>>(),
            vec![base + 1, base + 2]
        );
        assert_eq!(weft.nats.port(), base + 3);
        assert_eq!(weft.admin.port(), base + 6);
        assert_eq!(weft.mesh.map(|a| a.port()), Some(base + 7));
        _client = connect(weft.addr, &format!("restart-{round}")).await;
        if let Some(l) = weft
            .stderr_lines()
            .iter()
            .find(|l| l.contains("was in use"))
        {
            waited += 1;
            eprintln!("round {round}: {l}");
        }
    }
    eprintln!("restarts that waited for a port: {waited} of {RESTARTS}");
    assert!(
        failures.is_empty(),
        "{} of {RESTARTS} restarts failed: {failures:#?}",
        failures.len()
    );
}

/// A port another live process listens on is still refused, once the
/// retry time has passed, with the reason in one line.
#[test]
fn a_port_held_by_a_live_process_is_refused_after_the_retry() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let config = write_config("[runtime]\nbind_retry_ms = 200\n[admin]\nenabled = false\n");
    let out = std::process::Command::new(weft_bin())
        .args(["run", "--config"])
        .arg(&config.0)
        .args(["--mqtt-listen", &format!("127.0.0.1:{port}")])
        .args([
            "--nats-listen",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--cores",
            "0",
        ])
        .output()
        .expect("run weft");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("error:"))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(
        line.contains(&format!("cannot bind MQTT listener 127.0.0.1:{port}"))
            && line.contains("still in use after")
            && line.contains("runtime.bind_retry_ms"),
        "{line}"
    );
    drop(held);
}

/// Graceful shutdown (SIGTERM, SIGINT) ends connections that never sent
/// CONNECT at once, MQTT and NATS alike, instead of waiting out their
/// connect timeout (60 s here, longer than the test waits for the exit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_connections_before_connect() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let mut weft = Weft::start(2, "[limits]\nconnect_timeout_ms = 60000\n");
        let mut silent = Vec::new();
        for addr in [weft.addr, weft.nats]
            .into_iter()
            .chain(weft.shard_addrs.clone())
        {
            silent.push(Raw::open(addr).await);
        }
        // Accepted: served by the shards (each counted as a connection).
        wait_until("the silent connections accepted", WAIT, || async {
            let (_, body) = admin_get(weft.admin, "/metrics").await;
            match metric_sum(&body, "weft_connections") as usize {
                n if n >= silent.len() => Ok(()),
                n => Err(format!("{n} of {} counted", silent.len())),
            }
        })
        .await;
        weft.signal(signal);
        // Bounded by WAIT (far below the 60 s connect timeout): a router
        // held by the silent connections never gets here.
        let what =
            format!("{signal}: weft exits (not held by connections that never sent CONNECT)");
        wait_until(&what, WAIT, || {
            let running = weft.is_running();
            async move {
                match running {
                    false => Ok(()),
                    true => Err("still running".to_owned()),
                }
            }
        })
        .await;
        for mut raw in silent {
            assert!(raw.closed_by_server().await);
        }
    }
}

/// The default `limits.connections_max` (100000) above a hard descriptor
/// limit (here 300, soft 64): the start raises the soft limit to the hard
/// one, says in one warning line which key the limit does not cover and
/// how many connections it holds, and that is the maximum it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_descriptor_limit_goes_to_the_hard_one_and_connections_max_is_capped() {
    let weft = launch_under_limits(64, 300);
    let line = weft.wait_for_log("descriptor limit");
    assert!(line.contains("WARN"), "a warning: {line}");
    assert!(
        line.contains("descriptor limit 300 does not cover limits.connections_max 100000"),
        "{line}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", weft.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["300", "300"],
        "soft limit raised to the hard one: {open_files}"
    );
    let holds: usize = line
        .split("holds about ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("how many it holds: {line}"));
    assert!(holds > 64 && holds < 300, "{line}");
}
