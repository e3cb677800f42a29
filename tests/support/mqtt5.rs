//! The MQTT 5 side shared by tests/mqtt5.rs and tests/mqtt5_will.rs: a
//! rumqttc v5 client that hands on every incoming packet (a server
//! DISCONNECT too), and raw v5 packets encoded and decoded with weft's own
//! v5 codec for what the client cannot send.

#![allow(dead_code)] // each test file uses its part

use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Filter, Packet as P5};
use rumqttc::v5::{AsyncClient, Event as E5, MqttOptions};
use tokio::sync::mpsc;
use weft::mqtt::v5 as wv5;

use crate::common::WAIT;

pub struct Client5 {
    pub client: AsyncClient,
    pub rx: mpsc::UnboundedReceiver<P5>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Client5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn connect5(
    addr: std::net::SocketAddr,
    id: &str,
    setup: impl FnOnce(&mut MqttOptions),
) -> (Client5, P5) {
    let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    setup(&mut opts);
    let (client, mut eventloop) = AsyncClient::new(opts, 100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(E5::Incoming(p)) => {
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // rumqttc reports a server DISCONNECT as an error: hand it
                // on as the packet it was.
                Err(rumqttc::v5::ConnectionError::MqttState(
                    rumqttc::v5::StateError::ServerDisconnect { reason_code, .. },
                )) => {
                    let d = rumqttc::v5::mqttbytes::v5::Disconnect {
                        reason_code,
                        properties: None,
                    };
                    let _ = tx.send(P5::Disconnect(d));
                    return;
                }
                Err(_) => return,
            }
        }
    });
    let ack = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(ack, P5::ConnAck(_)), "{ack:?}");
    (Client5 { client, rx, task }, ack)
}

impl Client5 {
    pub async fn next(&mut self) -> P5 {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("in time")
            .expect("open")
    }

    pub async fn subscribe(&mut self, filter: Filter) {
        self.client.subscribe_many(vec![filter]).await.unwrap();
        loop {
            if let P5::SubAck(_) = self.next().await {
                return;
            }
        }
    }

    pub async fn next_publish(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        loop {
            if let P5::Publish(p) = self.next().await {
                return p;
            }
        }
    }
}

pub fn v5_connect(
    id: &str,
    props: wv5::Properties<'static>,
    will: Option<Box<wv5::Will<'static>>>,
    clean: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    wv5::encode(
        &wv5::Packet::Connect(wv5::Connect {
            clean_start: clean,
            keep_alive_s: 30,
            properties: props,
            client_id: id,
            will,
            username: None,
            password: None,
        }),
        &mut out,
    )
    .unwrap();
    out
}

pub fn decoded(bytes: &[u8]) -> wv5::Packet<'_> {
    wv5::decode(bytes, &Default::default()).unwrap().unwrap().0
}
