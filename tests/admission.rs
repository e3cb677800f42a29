//! Admission control on the running binary: connections per source
//! address, per listener, and the accept rate, each refused at accept and
//! counted in `weft_connections_refused_total{reason}`; a refused NATS
//! client reads nats-server's `-ERR 'maximum connections exceeded'`.
//!
//! The per-user limit is checked after authentication (anonymous clients
//! are no user): a user's connection past it is refused as not authorized,
//! whichever protocol it speaks.

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sum of `weft_connections_refused_total` samples labelled `reason`.
async fn refused(admin: SocketAddr, reason: &str) -> u64 {
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let label = format!("reason=\"{reason}\"");
    body.lines()
        .filter(|l| l.starts_with("weft_connections_refused_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// An MQTT connection that got its CONNACK (`Some`), or `None` when the
/// router closed it instead.
async fn mqtt_try(addr: SocketAddr, id: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.expect("TCP connect");
    // The router may have closed it at accept already: a failed write is
    // a refusal too.
    if s.write_all(&connect_packet(id, 60, 4, true)).await.is_err() {
        return None;
    }
    let mut connack = [0u8; 4];
    match tokio::time::timeout(WAIT, s.read_exact(&mut connack)).await {
        Err(_) => panic!("{id}: neither CONNACK nor close"),
        Ok(Ok(_)) => {
            assert_eq!(connack, [0x20, 2, 0, 0], "{id}: CONNACK accepted");
            Some(s)
        }
        Ok(Err(_)) => None,
    }
}

/// A raw NATS connection that got INFO and answered PONG to its CONNECT
/// and PING (`Some`), or `None` when the router refused it.
async fn nats_try(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).await.expect("TCP connect");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut sent = false;
    loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if text.starts_with("-ERR") {
            return None;
        }
        if text.contains("PONG\r\n") {
            return Some(s);
        }
        if !sent && text.starts_with("INFO ") && text.contains("\r\n") {
            sent = true;
            if s.write_all(b"CONNECT {}\r\nPING\r\n").await.is_err() {
                return None;
            }
        }
    }
}

/// Everything a connection reads until the router closes it.
async fn read_to_close(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("TCP connect");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("the router closes the connection");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_source_address() {
    let weft = Weft::start(2, "[security]\nconnections_per_source_max = 3\n");
    // Three from 127.0.0.1, over both protocols and shards' listeners.
    let a = mqtt_try(weft.addr, "a").await.expect("first accepted");
    let b = mqtt_try(weft.shard_addrs[1], "b").await.expect("second");
    let c = nats(weft.nats).await;
    nats_sync(&c).await;
    // The next is refused, whichever listener it comes to.
    assert!(mqtt_try(weft.addr, "d").await.is_none(), "fourth refused");
    assert_eq!(
        read_to_close(weft.nats).await,
        "-ERR 'maximum connections exceeded'\r\n"
    );
    wait_until("source refusals counted", WAIT, || async {
        match refused(weft.admin, "source").await {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} counted")),
        }
    })
    .await;
    assert_eq!(refused(weft.admin, "listener").await, 0);
    // The live three still work.
    c.publish("still.here", "x".into()).await.unwrap();
    nats_sync(&c).await;
    // One closes: once the router has seen it, a new one is accepted.
    drop(a);
    let e = wait_until("a new connection after one closed", WAIT, || async {
        mqtt_try(weft.addr, "e").await.ok_or("refused".to_string())
    })
    .await;
    drop((b, e));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_listener() {
    let weft = Weft::start(
        2,
        "[nats]\nconnections_max = 2\n[mqtt]\nconnections_max = 1\n",
    );
    let n1 = nats(weft.nats).await;
    let n2 = nats(weft.nats_shards[1]).await;
    nats_sync(&n1).await;
    nats_sync(&n2).await;
    // The NATS listener is full, on every shard's socket.
    for addr in [weft.nats, weft.nats_shards[0], weft.nats_shards[1]] {
        assert_eq!(
            read_to_close(addr).await,
            "-ERR 'maximum connections exceeded'\r\n",
            "{addr}"
        );
    }
    // The MQTT listener counts apart: one, then full.
    let m = mqtt_try(weft.addr, "m1")
        .await
        .expect("MQTT has its own limit");
    assert!(mqtt_try(weft.shard_addrs[1], "m2").await.is_none());
    wait_until("listener refusals counted", WAIT, || async {
        match refused(weft.admin, "listener").await {
            n if n >= 4 => Ok(()),
            n => Err(format!("{n} counted")),
        }
    })
    .await;
    // A NATS client leaves: another gets in.
    drop(n2);
    let n3 = wait_until("a NATS client after one left", WAIT, || async {
        nats_try(weft.nats).await.ok_or("refused".to_string())
    })
    .await;
    drop(n3);
    drop((m, n1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_rate_per_shard() {
    // One shard, one new connection a second: two in a row cannot both
    // pass (how fast they come is not asserted, only that one is refused).
    let weft = Weft::start(1, "[security]\naccept_rate_per_s = 1\n");
    let attempts = tokio::time::timeout(WAIT, async {
        for n in 1.. {
            if mqtt_try(weft.addr, &format!("r{n}")).await.is_none() {
                return n;
            }
        }
        unreachable!()
    })
    .await
    .expect("a connection over the rate refused");
    assert!(attempts >= 2, "the first connection is within the rate");
    wait_until("rate refusals counted", WAIT, || async {
        match refused(weft.admin, "rate").await {
            0 => Err("none counted".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    // The bucket refills: a later connection is accepted.
    let s = wait_until("a connection once the bucket refilled", WAIT, || async {
        mqtt_try(weft.addr, "later")
            .await
            .ok_or("refused".to_string())
    })
    .await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user() {
    let weft = Weft::start(
        2,
        "[security]\nconnections_per_user_max = 2\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"svc-token\"\n",
    );
    let nats = |addr: SocketAddr| async move {
        async_nats::ConnectOptions::with_token("svc-token".into())
            .connect(addr.to_string())
            .await
    };
    let first = nats(weft.nats).await.expect("first of svc");
    let mut o = rumqttc::MqttOptions::new("svc-mqtt", weft.addr.ip().to_string(), weft.addr.port());
    o.set_credentials("svc", "svc-token");
    let (second, mut events) = rumqttc::AsyncClient::new(o, 4);
    loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => panic!("second of svc: {e}"),
        }
    }
    // A third, over either protocol, on either shard: not authorized.
    let third = nats(weft.nats_shards[1]).await;
    assert!(
        third.as_ref().is_err_and(|e| e
            .to_string()
            .to_lowercase()
            .contains("authorization violation")),
        "{:?}",
        third.map(|_| ())
    );
    let mut o =
        rumqttc::MqttOptions::new("svc-mqtt-3", weft.addr.ip().to_string(), weft.addr.port());
    o.set_credentials("svc", "svc-token");
    let (_third, mut events) = rumqttc::AsyncClient::new(o, 4);
    let code = loop {
        match tokio::time::timeout(WAIT, events.poll()).await.unwrap() {
            Err(rumqttc::ConnectionError::ConnectionRefused(code)) => break code,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                panic!("a third svc connection")
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized);
    assert!(refused(weft.admin, "user").await >= 2);
    // One leaves: a new one is served.
    drop(first);
    wait_until("svc under its limit again", WAIT, || async {
        nats(weft.nats).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    drop(second);
}
