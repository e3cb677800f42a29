//! The driver runs a session machine (NATS) over an in-memory transport:
//! the seam works without a socket. A one-shard context on a glommio
//! executor stands in for the router.

use std::cell::RefCell;
use std::sync::Arc;

use super::super::ctx::Global;
use super::super::transport_mem::{self, MemoryEnd};
use super::super::{driver_nats, join_peer, rings};
use super::*;
use crate::config::Config;

async fn one_shard(config: Config) -> Rc<ShardCtx> {
    let ends = rings::full(1, 64).expect("rings").pop().expect("one peer");
    join_peer(
        ends,
        Arc::new(config),
        Arc::default(),
        Arc::new(Global::default()),
    )
    .await
    .expect("joined")
}

/// A NATS connection served on the driver over `server`, counted as the
/// accept loop counts it (the driver releases the count at the end).
fn serve(ctx: &Rc<ShardCtx>, server: Rc<MemoryEnd>) -> glommio::Task<()> {
    ctx.global_connections()
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Counters::add(&ctx.counters.connections, 1);
    glommio::spawn_local(driver_nats::serve_on(ctx.clone(), server))
}

/// What the client end reads until `until` is in it, or the end of the
/// stream; bounded, so a broken driver fails the test instead of hanging.
async fn read_until(end: &MemoryEnd, seen: &RefCell<Vec<u8>>, until: &str) -> String {
    let reading = async {
        let mut buf = [0u8; 4096];
        loop {
            if String::from_utf8_lossy(&seen.borrow()).contains(until) {
                return false;
            }
            match end.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => seen.borrow_mut().extend_from_slice(&buf[..n]),
            }
        }
    };
    let bound = async {
        glommio::timer::sleep(std::time::Duration::from_secs(20)).await;
        panic!(
            "no {until:?} from the driver; got {:?}",
            String::from_utf8_lossy(&seen.borrow())
        );
    };
    futures_lite::future::or(reading, bound).await;
    String::from_utf8_lossy(&seen.borrow()).into_owned()
}

/// Runs `body` on a glommio executor of its own thread.
fn run_test<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(body)
        .expect("executor")
        .join()
        .expect("test body");
}

#[test]
fn nats_over_memory_pipes() {
    run_test(|| async {
        let ctx = one_shard(Config::default()).await;
        let (client, server) = transport_mem::pair(1024);
        let conn = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        let text = read_until(&client, &seen, "\r\n").await;
        assert!(text.starts_with("INFO {"), "{text}");
        client
            .write_all(b"CONNECT {\"verbose\":true}\r\nSUB a.* 1\r\nPUB a.b 5\r\nhello\r\nPING\r\n")
            .await
            .unwrap();
        let text = read_until(&client, &seen, "PONG\r\n").await;
        let after_info = &text[text.find("\r\n").unwrap() + 2..];
        // CONNECT, SUB, PUB acknowledged in order; the delivery is queued
        // behind the PUB's +OK and before the PONG.
        assert_eq!(
            after_info,
            "+OK\r\n+OK\r\n+OK\r\nMSG a.b 1 5\r\nhello\r\nPONG\r\n"
        );
        // A payload larger than the read buffer's first size arrives whole.
        let big = vec![b'x'; 3000];
        let mut pubs = format!("PUB a.c {}\r\n", big.len()).into_bytes();
        pubs.extend_from_slice(&big);
        pubs.extend_from_slice(b"\r\nPING\r\n");
        seen.borrow_mut().clear();
        let (_, text) = futures_lite::future::zip(client.write_all(&pubs), async {
            read_until(&client, &seen, "PONG\r\n").await
        })
        .await;
        assert!(
            text.starts_with("+OK\r\nMSG a.c 1 3000\r\nxxx"),
            "{}",
            &text[..40]
        );
        assert!(text.ends_with("\r\nPONG\r\n"));
        drop(client);
        conn.await;
        assert_eq!(ctx.live_sessions(), 0, "the session was released");
    });
}

#[test]
fn protocol_error_gets_its_last_words_then_the_end() {
    run_test(|| async {
        let ctx = one_shard(Config::default()).await;
        let (client, server) = transport_mem::pair(1024);
        let server = Rc::new(server);
        let conn = serve(&ctx, server.clone());
        let seen = RefCell::new(Vec::new());
        client.write_all(b"PING\r\n").await.unwrap();
        read_until(&client, &seen, "PONG\r\n").await;
        // What follows the bad line is never read.
        client.write_all(b"FOO\r\nPING\r\n").await.unwrap();
        // Read to the end of the stream: the driver half-closed it.
        let text = read_until(&client, &seen, "never").await;
        assert!(
            text.ends_with("\r\nPONG\r\n-ERR 'Unknown Protocol Operation'\r\n"),
            "{text}"
        );
        conn.await;
        assert!(!server.reset.get(), "last words drain, they do not reset");
    });
}

#[test]
fn stale_connection_from_the_ping_timer() {
    run_test(|| async {
        let mut config = Config::default();
        config.nats.ping_interval_ms = 10;
        config.nats.pings_outstanding_max = 2;
        let ctx = one_shard(config).await;
        let (client, server) = transport_mem::pair(1024);
        let conn = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        // The client never answers: two PINGs, then the stale close.
        let text = read_until(&client, &seen, "never").await;
        let after_info = &text[text.find("\r\n").unwrap() + 2..];
        assert_eq!(after_info, "PING\r\nPING\r\n-ERR 'Stale Connection'\r\n");
        conn.await;
    });
}

#[test]
fn answered_pings_keep_the_connection() {
    run_test(|| async {
        let mut config = Config::default();
        // Long enough that the answer, on the same executor, comes first.
        config.nats.ping_interval_ms = 200;
        config.nats.pings_outstanding_max = 1;
        let ctx = one_shard(config).await;
        let (client, server) = transport_mem::pair(1024);
        let conn = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        // Five PINGs answered: each answer resets the count, so a client
        // that answers is never stale (with one PING allowed outstanding).
        for n in 1..=5 {
            let text = read_until(&client, &seen, &"PING\r\n".repeat(n)).await;
            assert!(!text.contains("-ERR"), "{text}");
            client.write_all(b"PONG\r\n").await.unwrap();
        }
        drop(client);
        conn.await;
    });
}

#[test]
fn slow_consumer_gets_what_was_begun_then_its_err() {
    run_test(|| async {
        let mut config = Config::default();
        config.limits.queued_messages_max = 20;
        config.limits.queued_bytes_max = 8 * 1024;
        config.limits.slow_consumer_policy = crate::config::SlowConsumerPolicy::Disconnect;
        let ctx = one_shard(config).await;
        // The subscriber's pipe holds 2 KiB: the rest waits in its mailbox.
        let (slow, server) = transport_mem::pair(2048);
        let sub = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        slow.write_all(b"SUB s 1\r\nPING\r\n").await.unwrap();
        read_until(&slow, &seen, "PONG\r\n").await;
        seen.borrow_mut().clear();
        // A few PUBs per read, so the subscriber's writer runs between
        // them and has a batch begun when the queue overflows.
        let (publisher, server) = transport_mem::pair(1024);
        let publishing = serve(&ctx, Rc::new(server));
        let one = format!("PUB s 200\r\n{}\r\n", "x".repeat(200));
        let reading = async {
            // A consumer that reads, but slower than the publisher sends.
            let mut buf = [0u8; 512];
            loop {
                match slow.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.borrow_mut().extend_from_slice(&buf[..n]),
                }
                glommio::timer::sleep(std::time::Duration::from_micros(200)).await;
            }
        };
        let flooding = async {
            for _ in 0..500 {
                if publisher.write_all(one.as_bytes()).await.is_err() {
                    break;
                }
            }
        };
        futures_lite::future::zip(reading, flooding).await;
        sub.await;
        let text = String::from_utf8_lossy(&seen.borrow()).into_owned();
        // Whole messages, then the error, then the end of the stream.
        let body = text
            .strip_suffix("-ERR 'Slow Consumer'\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "ends with the error: {:?}",
                    &text[text.len().saturating_sub(80)..]
                )
            });
        let msg = format!("MSG s 1 200\r\n{}\r\n", "x".repeat(200));
        assert!(!body.is_empty());
        assert_eq!(body.len() % msg.len(), 0, "whole messages only");
        assert!(body.split_inclusive("x\r\n").all(|m| m == msg));
        drop(publisher);
        publishing.await;
    });
}
