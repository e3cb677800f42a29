//! Liveness of shared-memory sessions against a real router:
//!
//! * a NATS-dialect shm client that only publishes (so never reads the
//!   server's PINGs) is not closed as stale: shm sessions get no server
//!   PINGs (the Unix socket tells the router when the client dies);
//! * after the router is gone, `publish`/`flush` report `Error::Closed`
//!   within a bounded number of calls instead of dropping messages.
//!
//! Bounded waits only; nothing asserts a time.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

fn socket_path(name: &str) -> PathBuf {
    common::shm::socket_path("live", name)
}

/// Connects once the router's listener is up (bounded).
fn connect(path: &PathBuf, options: weft_shm::Options) -> weft_shm::Client {
    common::shm::connect(path, options, WAIT)
}

/// `nats.ping_interval_ms = 10`, `pings_outstanding_max = 2`: a session
/// that PINGs would be stale after ~30 ms of not reading. The publisher
/// spreads its messages over many intervals and never reads; the
/// subscriber gets every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_nats_shm_client_is_not_closed_as_stale() {
    let path = socket_path("pings");
    let weft = Weft::launch_args(
        1,
        "[nats]\nping_interval_ms = 10\npings_outstanding_max = 2\n",
        &["--shm-listen", path.to_str().unwrap()],
    );
    let nats = nats(weft.nats).await;
    let mut sub = nats.subscribe("live.>").await.unwrap();
    nats_sync(&nats).await;
    const N: u64 = 40;
    let publisher = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let c = connect(&path, weft_shm::Options::nats("publish-only"));
            for i in 0..N {
                c.publish("live.n", i.to_string().as_bytes())
                    .unwrap_or_else(|e| panic!("publish {i}: {e}"));
                c.flush().unwrap_or_else(|e| panic!("flush {i}: {e}"));
                // Spread over many PING intervals (not a wait for a
                // condition: the pace of a slow publisher).
                std::thread::sleep(Duration::from_millis(10));
            }
            c
        }
    });
    for i in 0..N {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} in time"))
            .expect("open");
        assert_eq!(
            &m.payload[..],
            i.to_string().as_bytes(),
            "in order, none lost"
        );
    }
    let _client = publisher.await.unwrap();
}

/// The router is killed (SIGKILL: the kernel closes its end of the Unix
/// socket): `flush` says `Closed` (bounded wait: the close comes with the
/// dead process's io_uring teardown), and `publish` alone notices too,
/// far before it fills the 1 MiB ring — so it is the socket check that
/// reports it, not a wait for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_flush_report_a_router_that_is_gone() {
    let path = socket_path("gone");
    let mut weft = Weft::launch_args(1, "", &["--shm-listen", path.to_str().unwrap()]);
    let (a, b) = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let a = connect(&path, weft_shm::Options::nats("gone-flush"));
            let b = connect(&path, weft_shm::Options::mqtt("gone-publish"));
            a.publish("gone.a", b"before").unwrap();
            a.flush().unwrap();
            b.publish("gone/b", b"before").unwrap();
            (a, b)
        }
    })
    .await
    .unwrap();
    weft.signal(nix::sys::signal::Signal::SIGKILL);
    weft.terminate();
    tokio::task::spawn_blocking(move || {
        // The kernel closes the router's end of the sockets when it tears
        // down the dead process's io_uring (asynchronously): bounded wait.
        let mut polls = WAIT.as_millis() / 5;
        loop {
            match a.flush() {
                Err(weft_shm::Error::Closed) => break,
                Ok(()) => {
                    polls -= 1;
                    assert!(polls > 0, "flush never said Closed");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("flush: {e}"),
            }
        }
        // `b` never flushes: its publishes alone must notice, in batches
        // of CLOSED_CHECK_EVERY, and long before its ring is full (about
        // 70 000 of these), which would have made publish wait and see.
        let every = weft_shm::CLOSED_CHECK_EVERY as usize;
        let mut calls = 0;
        let closed = 'outer: loop {
            for _ in 0..every {
                calls += 1;
                match b.publish("gone/b", b"after") {
                    Ok(()) => {}
                    Err(weft_shm::Error::Closed) => break 'outer true,
                    Err(e) => panic!("publish: {e}"),
                }
            }
            if calls >= 100 * every {
                break false;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert!(closed, "publish never said Closed in {calls} calls");
        // And it stays closed.
        assert!(matches!(
            b.publish("gone/b", b"x"),
            Err(weft_shm::Error::Closed)
        ));
        assert!(matches!(
            b.try_publish("gone/b", b"x"),
            Err(weft_shm::Error::Closed)
        ));
    })
    .await
    .unwrap();
}

/// `shm.hello_timeout_ms` bounds the whole hello line, not each byte: a
/// client trickling its hello one byte at a time, each well inside the
/// limit, is refused with an `ERR` naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_hello_is_cut_off_by_shm_hello_timeout_ms() {
    use std::io::{Read, Write};
    let path = socket_path("hello");
    let _weft = Weft::launch_args(
        1,
        "[shm]\nhello_timeout_ms = 100\n",
        &["--shm-listen", path.to_str().unwrap()],
    );
    tokio::task::spawn_blocking(move || {
        let mut polls = WAIT.as_millis() / 20;
        let mut sock = loop {
            match std::os::unix::net::UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) => {
                    polls -= 1;
                    assert!(polls > 0, "connect: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        // Each byte 30 ms after the last: the line takes ~450 ms whole.
        for b in b"WEFT-SHM 1 nats\n" {
            if sock.write_all(&[*b]).is_err() {
                break; // already closed by the router
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut reply = Vec::new();
        let _ = sock.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.starts_with("ERR") && reply.contains("shm.hello_timeout_ms"),
            "the router's reply: {reply:?}"
        );
    })
    .await
    .unwrap();
}
