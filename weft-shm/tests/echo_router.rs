//! The client against a stand-in router in a thread (the real router is
//! exercised by the workspace's `tests/shm_smoke.rs` and `tests/shm.rs`):
//! the handshake over a real Unix socket, then a minimal NATS server on the
//! rings that answers PING and echoes each PUB as a MSG. With 4 KiB rings
//! both directions fill, so publisher and receiver threads of one client
//! both sleep and wake many times; every message must arrive, in order.

use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use weft_shm::ring::{Consumer, Producer};
use weft_shm::segment::Segment;
use weft_shm::{doorbell, handshake, Client, Options};

/// Serves one NATS-dialect client until its socket closes.
fn stand_in_router(listener: UnixListener, ring_bytes: u64) {
    let (sock, _) = listener.accept().unwrap();
    let mut hello = [0u8; 64];
    let n = nix::unistd::read(sock.as_raw_fd(), &mut hello).unwrap();
    assert_eq!(
        handshake::parse_hello(&hello[..n]),
        Ok(weft_shm::Dialect::Nats)
    );
    let (memfd, segment) = Segment::create(ring_bytes).unwrap();
    let to_router = doorbell::create().unwrap();
    let to_client = doorbell::create().unwrap();
    handshake::send_ok(
        sock.as_raw_fd(),
        ring_bytes,
        [
            memfd.as_raw_fd(),
            to_router.as_raw_fd(),
            to_client.as_raw_fd(),
        ],
    )
    .unwrap();
    let mut inbound = Consumer::new(segment.c2r());
    let mut outbound = Producer::new(segment.r2c());
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut sid = String::from("1");
    outbound.write(b"INFO {}\r\n").unwrap();
    outbound.publish();
    loop {
        // Parse whole operations; answer into `out`.
        while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8(buf[..eol].to_vec()).unwrap();
            let mut words = line.split(' ');
            match words.next().unwrap() {
                "CONNECT" | "UNSUB" => buf.drain(..eol + 2),
                "PING" => {
                    out.extend_from_slice(b"PONG\r\n");
                    buf.drain(..eol + 2)
                }
                "SUB" => {
                    sid = words.nth(1).unwrap().to_string();
                    buf.drain(..eol + 2)
                }
                "PUB" => {
                    let subject = words.next().unwrap().to_string();
                    let len: usize = words.next().unwrap().parse().unwrap();
                    if buf.len() < eol + 2 + len + 2 {
                        break;
                    }
                    let payload = buf[eol + 2..eol + 2 + len].to_vec();
                    out.extend_from_slice(format!("MSG {subject} {sid} {len}\r\n").as_bytes());
                    out.extend_from_slice(&payload);
                    out.extend_from_slice(b"\r\n");
                    buf.drain(..eol + 2 + len + 2)
                }
                other => panic!("unexpected {other}"),
            };
        }
        // Write what fits; read what came.
        let wrote = outbound.write(&out).unwrap();
        out.drain(..wrote);
        if outbound.publish() {
            doorbell::ring(to_client.as_fd());
        }
        let n = inbound.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        if inbound.release() {
            doorbell::ring(to_client.as_fd());
        }
        if n == 0 && (wrote == 0 || out.is_empty()) {
            // Sleep until the client rings (data in, or room out).
            let ready = inbound.start_sleeping().unwrap();
            let room = if out.is_empty() {
                0
            } else {
                outbound.start_waiting().unwrap()
            };
            if ready == 0 && room == 0 {
                // Until rung (a poll cut short by a signal returns
                // early), within one bound.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                loop {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let woken =
                        doorbell::wait(to_router.as_fd(), Some(sock.as_fd()), Some(left)).unwrap();
                    if woken.other {
                        return; // the client closed its socket
                    }
                    if woken.rung {
                        break;
                    }
                    assert!(
                        !left.is_zero(),
                        "the stand-in router's wait ran into its bound: a lost wake-up"
                    );
                }
            }
            inbound.stop_sleeping();
            outbound.stop_waiting();
        }
    }
}

#[test]
fn one_client_two_threads_through_full_rings_in_order() {
    let path = std::env::temp_dir().join(format!("weft-shm-echo-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let router = std::thread::spawn(move || stand_in_router(listener, 4096));
    let client = Client::connect(&path, Options::nats("echo")).unwrap();
    client.subscribe("echo.x").unwrap();
    const N: u32 = 20_000;
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                // Sizes from 4 bytes to past the ring (in pieces).
                let len = 4 + (i as usize * 37) % 5000;
                let mut payload = vec![(i % 251) as u8; len];
                payload[..4].copy_from_slice(&i.to_be_bytes());
                client.publish("echo.x", &payload).unwrap();
            }
            client.flush().unwrap();
        });
        for i in 0..N {
            let m = client
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .expect("in time");
            assert_eq!(m.topic, "echo.x");
            assert_eq!(m.payload[..4], i.to_be_bytes(), "message {i} in order");
            assert_eq!(m.payload.len(), 4 + (i as usize * 37) % 5000);
        }
    });
    assert!(client.try_recv().unwrap().is_none());
    assert_eq!(
        client.missed_wakes_for_tests(),
        0,
        "a sleep slice ran out while its condition was already true"
    );
    drop(client);
    router.join().unwrap();
    let _ = std::fs::remove_file(&path);
}
