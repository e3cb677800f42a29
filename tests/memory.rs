//! Memory of the running binary: what a wave of idle clients takes must go
//! back to the OS once they have left (each shard trims its heap on its
//! tick, `runtime.memory_trim_ms`). Resident memory is read from /proc; the
//! waits are bounded polls, never a speed assertion.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle clients of the wave (the test process holds as many sockets).
const CLIENTS: usize = 3000;

/// Opens `n` MQTT 3.1.1 connections (CONNECT, CONNACK, keep-alive 0), 200 at
/// a time.
async fn idle_clients(addr: std::net::SocketAddr, prefix: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(200) {
        let mut pending = Vec::new();
        for i in chunk * 200..((chunk + 1) * 200).min(n) {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(&connect_packet(&format!("{prefix}-{i}"), 0, 4, true))
                .await
                .unwrap();
            pending.push(s);
        }
        for mut s in pending {
            let mut ack = [0u8; 4];
            tokio::time::timeout(WAIT, s.read_exact(&mut ack))
                .await
                .expect("CONNACK in time")
                .unwrap();
            assert_eq!(ack, [0x20, 2, 0, 0]);
            held.push(s);
        }
    }
    held
}

/// The router's open connections, from /metrics.
async fn connections(weft: &Weft) -> u64 {
    let (_, text) = admin_get(weft.admin, "/metrics").await;
    text.lines()
        .filter(|l| l.starts_with("weft_connections{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

async fn wait_connections(weft: &Weft, want: u64) {
    let deadline = Instant::now() + WAIT;
    while connections(weft).await != want {
        assert!(
            Instant::now() < deadline,
            "connections never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_memory_goes_back_after_they_leave() {
    let weft = Weft::start(2, "");
    // A first small wave pays the one-time costs (thread caches, tables
    // sized once), so that the baseline is the router at rest.
    drop(idle_clients(weft.addr, "warm", 100).await);
    wait_connections(&weft, 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rest = weft.rss_bytes();

    let wave = idle_clients(weft.addr, "idle", CLIENTS).await;
    wait_connections(&weft, CLIENTS as u64).await;
    let held = weft.rss_bytes();
    let taken = held.saturating_sub(rest);
    // Each idle connection costs a few KiB: the wave must be visible, or
    // this test could not tell a leak from noise.
    assert!(
        taken >= CLIENTS as u64 * 1024,
        "{CLIENTS} idle connections took only {taken} bytes (rest {rest}, held {held})"
    );

    drop(wave);
    wait_connections(&weft, 0).await;
    // At least three quarters of what the wave took goes back to the OS.
    let bound = rest + taken / 4;
    let deadline = Instant::now() + WAIT;
    let mut now = weft.rss_bytes();
    while now > bound {
        assert!(
            Instant::now() < deadline,
            "RSS stayed at {} KiB after the clients left (rest {} KiB, held {} KiB, bound {} KiB)",
            now / 1024,
            rest / 1024,
            held / 1024,
            bound / 1024
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        now = weft.rss_bytes();
    }
    eprintln!(
        "RSS KiB: rest {}, {CLIENTS} idle clients {}, after they left {}",
        rest / 1024,
        held / 1024,
        now / 1024
    );

    // The router still serves a client afterwards.
    let mut c = connect(weft.addr, "after").await;
    c.subscribe("after/#", rumqttc::QoS::AtMostOnce).await;
}
