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

/// Bounds of the idle connection's cost (see the two tests below): type
/// sizes and counted bytes, no time.
const SERVE_FUTURE_MAX: usize = 1536;
const IDLE_HEAP_MAX: i64 = 3072;

/// The size of the future `f` returns, without building one.
fn future_size<A, B, F: Fn(A, B) -> R, R>(_f: F) -> usize {
    std::mem::size_of::<R>()
}

/// An idle connection's task is its future: rare paths' state (the 4 KiB
/// drain buffer of the last words, the establish and subscribe round
/// trips) is boxed, not part of it. Sizes of types, not times: cannot
/// flake. (The 2026-12-07 regression: `last_words` inline in
/// `driver::finish` made the future 5.4 KiB in this build.)
#[test]
fn idle_connection_future_is_small() {
    type Tcp = super::super::transport::Tcp;
    let serve_tcp = future_size(super::serve);
    // What the accept loop spawns: the connection's task is this future.
    let task = {
        fn t(
            permit: super::super::admission::Permit,
            c: (Rc<ShardCtx>, TcpStream),
        ) -> impl std::future::Future<Output = ()> {
            super::super::accept::under_permit(permit, super::serve(c.0, c.1))
        }
        future_size(t)
    };
    let writer = {
        fn w(
            ctx: Rc<ShardCtx>,
            m: (Rc<super::super::mailbox::Mailbox>, Rc<Tcp>),
        ) -> impl std::future::Future<Output = bool> {
            super::super::io::write_loop(ctx, m.0, m.1)
        }
        future_size(w)
    };
    let last_words = {
        fn l(t: &'static Tcp, b: &'static [u8]) -> impl std::future::Future<Output = ()> {
            super::super::io::last_words(t, b)
        }
        future_size(l)
    };
    eprintln!(
        "connection task future {task} B, serve(tcp) future {serve_tcp} B, write_loop(tcp) {writer} B, last_words {last_words} B, \
         MqttSession {} B, Mailbox {} B, MqttGlue {} B, Pending {} B, Action {} B, \
         Connection<Tcp> {} B, Tcp {} B",
        std::mem::size_of::<crate::mqtt::session::MqttSession>(),
        std::mem::size_of::<super::super::mailbox::Mailbox>(),
        std::mem::size_of::<MqttGlue>(),
        std::mem::size_of::<Pending>(),
        std::mem::size_of::<crate::session::Action<Request>>(),
        std::mem::size_of::<driver::Connection<Tcp>>(),
        std::mem::size_of::<Tcp>(),
    );
    {
        use std::future::Future;
        fn sz<F: Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        // Built, never polled, inside a glommio executor (ctx needs one).
        run_test(|| async {
            let ctx = one_shard(Config::default()).await;
            let (_c, s) = transport_mem::pair(64);
            let mut conn = driver::Connection::new(ctx.clone(), Rc::new(s));
            let mut machine =
                MqttSession::new(Settings::from_config(&ctx.config()), Instant::now());
            let mut glue = MqttGlue::default();
            let mut out = Actions::default();
            let mut congested = Vec::new();
            eprintln!(
                "glue.wait {}",
                sz(&glue.wait(&mut conn, &mut machine, &mut out))
            );
            eprintln!("ctx.barrier {}", sz(&ctx.barrier()));
            eprintln!(
                "durable_ack::reached {}",
                sz(&super::super::durable_ack::reached(&ctx))
            );
            eprintln!(
                "ctx.publish {}",
                sz(&ctx.publish(crate::event::Event::new("a", b"", 0, false), &mut congested))
            );
            eprintln!("ctx.pause_for {}", sz(&ctx.pause_for(&mut congested)));
            eprintln!(
                "end_session {}",
                sz(&end_session(
                    &ctx,
                    &ctx.register(Protocol::Mqtt, "x".into()),
                    None,
                    Actions::default()
                ))
            );
            eprintln!(
                "Handoff {} ShardMsg {}",
                std::mem::size_of::<Handoff>(),
                std::mem::size_of::<super::super::ctx::ShardMsg>()
            );
            eprintln!(
                "driver::run {}",
                sz(&driver::run(&mut conn, &mut machine, &mut glue))
            );
        });
    }
    assert!(last_words > 4096, "the drain buffer is in last_words");
    assert!(
        serve_tcp < last_words,
        "last_words is boxed, not inline in the connection's future"
    );
    // Not twice the serve future (an `async fn` wrapper keeping its
    // argument beside the awaited copy: rust-lang/rust#62958).
    assert!(
        task < serve_tcp + 64,
        "the task holds one serve future: {task} B vs {serve_tcp} B"
    );
    assert!(
        serve_tcp <= SERVE_FUTURE_MAX,
        "an MQTT connection's future: {serve_tcp} B"
    );
    assert!(writer <= 512, "the writer task's future: {writer} B");
}

/// What an idle MQTT 3.1.1 connection holds on the heap (requested bytes,
/// counted by the lib tests' allocator on the shard's thread): its two
/// tasks, mailbox and table slots, and no read buffer (lent by the
/// shard's pool only while data moves; the pool keeps at most
/// `limits.read_buffers_spare_max`). Counted, not timed: the bound cannot
/// flake.
#[test]
fn idle_connection_holds_little() {
    const N: usize = 100;
    const SPARE: usize = 4;
    run_test(|| async {
        let mut config = Config::default();
        config.limits.read_buffers_spare_max = SPARE;
        let ctx = one_shard(config).await;
        let mut clients = Vec::with_capacity(N);
        let mut servers = Vec::with_capacity(N);
        let mut tasks = Vec::with_capacity(N);
        let mut hellos = Vec::with_capacity(N);
        for i in 0..N {
            let (client, server) = transport_mem::pair(64);
            clients.push(client);
            servers.push(Rc::new(server));
            hellos.push(connect(&format!("idle-{i}")));
        }
        // Warm up: one connection in and out (shard-wide tables grow once).
        let (c, s) = transport_mem::pair(64);
        let t = serve(&ctx, Rc::new(s));
        c.write_all(&connect("warm")).await.unwrap();
        let seen = RefCell::new(Vec::new());
        read_at_least(&c, &seen, 4).await;
        drop(c);
        t.await;
        drop(seen);
        let before = crate::mesh::alloc_tests::live_bytes();
        for ((client, server), hello) in clients.iter().zip(servers.drain(..)).zip(&hellos) {
            tasks.push(serve(&ctx, server));
            client.write_all(hello).await.unwrap();
        }
        for client in &clients {
            let mut ack = [0u8; 4];
            let mut got = 0;
            while got < 4 {
                got += client.read(&mut ack[got..]).await.unwrap();
            }
            assert_eq!(ack, [0x20, 2, 0, 0]);
        }
        let after = crate::mesh::alloc_tests::live_bytes();
        let per = (after - before) / N as i64;
        eprintln!("an idle MQTT 3.1.1 connection holds {per} B on the heap");
        assert_eq!(ctx.live_sessions(), N);
        // Every reader waits with nothing pending: its buffer went back to
        // the pool (which keeps at most `SPARE`; here the connections took
        // turns with one).
        let spare = ctx.spare_read_buffers();
        assert!((1..=SPARE).contains(&spare), "{spare} spare read buffers");
        assert!(per <= IDLE_HEAP_MAX, "{per} B per idle connection");
        drop(clients);
        for t in tasks {
            t.await;
        }
    });
}
