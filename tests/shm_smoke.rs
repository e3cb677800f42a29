//! The shared-memory transport end to end, briefly: a real router with
//! `--shm-listen`, a `weft-shm` client in each dialect and an async-nats
//! client exchanging messages both ways. The full suite (kill -9, slow
//! readers, a scribbled segment, benchmarks) is `tests/shm.rs`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

fn socket_path(name: &str) -> PathBuf {
    common::shm::socket_path("smoke", name)
}

/// Connects once the router's listener is up (bounded).
fn connect(path: &PathBuf, options: weft_shm::Options) -> weft_shm::Client {
    common::shm::connect(path, options, WAIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shm_clients_meet_nats_both_ways() {
    let path = socket_path("nats");
    let weft = Weft::launch_args(2, "", &["--shm-listen", path.to_str().unwrap()]);
    let nats = nats(weft.nats).await;
    let mut from_shm = nats.subscribe("shm.out").await.unwrap();
    nats_sync(&nats).await;

    let shm = std::sync::Arc::new(
        tokio::task::spawn_blocking({
            let path = path.clone();
            move || {
                let c = connect(&path, weft_shm::Options::nats("smoke-nats"));
                c.subscribe("shm.in").expect("subscribe");
                c
            }
        })
        .await
        .unwrap(),
    );
    let mqtt_dialect = tokio::task::spawn_blocking({
        let path = path.clone();
        move || {
            let c = connect(&path, weft_shm::Options::mqtt("smoke-mqtt"));
            c.subscribe("shm/in").expect("subscribe");
            c
        }
    })
    .await
    .unwrap();

    // shm (NATS dialect) -> async-nats.
    shm.publish("shm.out", b"from shared memory").unwrap();
    shm.flush().unwrap();
    let m = tokio::time::timeout(WAIT, from_shm.next())
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(&m.payload[..], b"from shared memory");

    // async-nats -> shm (both dialects: shm.in is shm/in to MQTT).
    nats.publish("shm.in", "to shared memory".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let got = tokio::task::spawn_blocking({
        let shm = shm.clone();
        move || shm.recv_timeout(WAIT)
    })
    .await
    .unwrap()
    .unwrap()
    .expect("a message in time");
    assert_eq!(got.topic, "shm.in");
    assert_eq!(got.payload, b"to shared memory");
    let got = tokio::task::spawn_blocking(move || {
        let m = mqtt_dialect.recv_timeout(WAIT);
        (m, mqtt_dialect)
    })
    .await
    .unwrap();
    let (m, mqtt_dialect) = got;
    let m = m.unwrap().expect("the MQTT-dialect client's copy in time");
    assert_eq!(m.topic, "shm/in");
    assert_eq!(m.payload, b"to shared memory");

    // shm (MQTT dialect) -> shm (NATS dialect), many, in order.
    for i in 0..1000u32 {
        mqtt_dialect.publish("shm/in", &i.to_be_bytes()).unwrap();
    }
    mqtt_dialect.flush().unwrap();
    let shm2 = shm.clone();
    tokio::task::spawn_blocking(move || {
        for i in 0..1000u32 {
            let m = shm2.recv_timeout(WAIT).unwrap().expect("in time");
            assert_eq!(m.payload, i.to_be_bytes(), "message {i}");
        }
    })
    .await
    .unwrap();
    drop(weft);
    let _ = std::fs::remove_file(&path);
}
