//! MQTT on the driver over an in-memory transport: no socket, a one-shard
//! context on a glommio executor standing in for the router. The session
//! rules are tested in `mqtt::session::tests`; these check the glue.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::super::ctx::Global;
use super::super::stats::Counters;
use super::super::transport_mem::{self, MemoryEnd};
use super::super::{join_peer, rings};
use super::*;
use crate::config::Config;
use crate::mqtt::codec::{self, Packet as P3};
use crate::mqtt::v5;

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

fn serve(ctx: &Rc<ShardCtx>, server: Rc<MemoryEnd>) -> glommio::Task<()> {
    ctx.global_connections()
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Counters::add(&ctx.counters.connections, 1);
    glommio::spawn_local(serve_on(ctx.clone(), server))
}

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

/// Reads until `seen` holds at least `n` bytes, or the end of the stream;
/// bounded, so a broken glue fails the test instead of hanging.
async fn read_at_least(end: &MemoryEnd, seen: &RefCell<Vec<u8>>, n: usize) -> Vec<u8> {
    let reading = async {
        let mut buf = [0u8; 4096];
        while seen.borrow().len() < n {
            match end.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => seen.borrow_mut().extend_from_slice(&buf[..k]),
            }
        }
    };
    let bound = async {
        glommio::timer::sleep(std::time::Duration::from_secs(20)).await;
        panic!("{n} bytes never came; got {:?}", seen.borrow());
    };
    futures_lite::future::or(reading, bound).await;
    std::mem::take(&mut *seen.borrow_mut())
}

fn v311(p: &P3<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    codec::encode(p, &mut out);
    out
}

fn connect(id: &str) -> Vec<u8> {
    v311(&P3::Connect(codec::Connect {
        protocol_name: codec::PROTOCOL_NAME,
        level: 4,
        clean_session: true,
        keep_alive_s: 0,
        client_id: id,
        will: None,
        username: None,
        password: None,
    }))
}

/// CONNECT, SUBSCRIBE, a QoS 1 PUBLISH to itself, PINGREQ: every answer in
/// order through the driver and the glue, then the session is released.
#[test]
fn mqtt_over_memory_pipes() {
    run_test(|| async {
        let ctx = one_shard(Config::default()).await;
        let (client, server) = transport_mem::pair(1024);
        let conn = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        client.write_all(&connect("mem")).await.unwrap();
        assert_eq!(read_at_least(&client, &seen, 4).await, [0x20, 2, 0, 0]);
        let mut packets = v311(&P3::Subscribe {
            packet_id: 1,
            filters: vec![("a/#", 1)],
        });
        packets.extend(v311(&P3::Publish(codec::Publish {
            dup: false,
            qos: 1,
            retain: false,
            topic: "a/b",
            packet_id: 7,
            payload: b"hi",
        })));
        packets.extend([0xc0, 0]);
        client.write_all(&packets).await.unwrap();
        let mut delivery = Vec::new();
        codec::put_publish(&mut delivery, false, 1, false, b"a/b", 1, b"hi");
        let mut want = vec![0x90, 3, 0, 1, 1];
        // The delivery is queued while the publish is routed, before its
        // PUBACK; PINGRESP last.
        want.extend(&delivery);
        want.extend([0x40, 2, 0, 7, 0xd0, 0]);
        assert_eq!(read_at_least(&client, &seen, want.len()).await, want);
        client.write_all(&[0x40, 2, 0, 1, 0xe0, 0]).await.unwrap();
        conn.await;
        assert_eq!(ctx.live_sessions(), 0, "the session was released");
    });
}

/// A second connection of the same client id takes the session over: the
/// first gets DISCONNECT 0x8E (MQTT 5) as its last words.
#[test]
fn takeover_over_memory_pipes() {
    run_test(|| async {
        let ctx = one_shard(Config::default()).await;
        let connect5 = || {
            let mut out = Vec::new();
            v5::encode(
                &v5::Packet::Connect(v5::Connect {
                    clean_start: true,
                    keep_alive_s: 0,
                    properties: Default::default(),
                    client_id: "twice",
                    will: None,
                    username: None,
                    password: None,
                }),
                &mut out,
            )
            .unwrap();
            out
        };
        let (first, server) = transport_mem::pair(1024);
        let first_conn = serve(&ctx, Rc::new(server));
        let seen = RefCell::new(Vec::new());
        first.write_all(&connect5()).await.unwrap();
        let ack = read_at_least(&first, &seen, 2).await;
        assert_eq!(ack[0], 0x20, "CONNACK");
        let (second, server) = transport_mem::pair(1024);
        let second_conn = serve(&ctx, Rc::new(server));
        second.write_all(&connect5()).await.unwrap();
        let words = read_at_least(&first, &seen, 3).await;
        assert_eq!(words, [0xe0, 1, v5::reason::SESSION_TAKEN_OVER]);
        first_conn.await;
        let seen2 = RefCell::new(Vec::new());
        assert_eq!(read_at_least(&second, &seen2, 1).await[0], 0x20);
        drop(second);
        second_conn.await;
        assert_eq!(ctx.live_sessions(), 0);
    });
}
