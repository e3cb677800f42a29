//! rumqttc behind one face for MQTT 3.1.1 and MQTT 5: the options from
//! the command line, a task that drives the event loop and turns its
//! events into the few facts `weft pub` / `weft sub` act on (`Wire`).
//!
//! Owns: the rumqttc options (client id, keep-alive, credentials, TLS,
//! packet size), the event translation for both versions, and one line of
//! text for each way a connection fails. Must not touch: what to publish
//! or print (`mqtt.rs`).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::sync::mpsc;

use super::args::MqttVersion;
use super::check::Connection;
use super::error::CliError;
use super::output::{self, Received};
use super::payload::PAYLOAD_BYTES_MAX;
use super::tls;

/// The largest packet either way: MQTT's own limit (the broker's
/// `Maximum Packet Size` may be lower; it says so by refusing).
const PACKET_BYTES_MAX: usize = 268_435_455;
/// Requests waiting for the event loop (publishes block beyond it).
const REQUESTS_MAX: usize = 64;
/// Events waiting for the command (the event loop waits beyond it).
const EVENTS_MAX: usize = 64;

/// What the command needs to know of the connection.
#[derive(Debug)]
pub enum Wire {
    /// The broker accepted the connection.
    ConnAck,
    /// A SUBACK: the filters it refused, with the reason.
    SubAck { refused: Vec<String> },
    /// An outgoing PUBLISH was written.
    Published,
    /// A publish is done: PUBACK (QoS 1), PUBCOMP (QoS 2), or PUBREC with
    /// a failure (MQTT 5); `refused` holds the broker's reason then.
    Acked { refused: Option<String> },
    /// An incoming PUBLISH (acknowledged already where its QoS asks).
    Message(Received),
    /// Our DISCONNECT was written: the connection is done.
    Disconnected,
    /// Anything else (pings, acks the library handles).
    Other,
}

pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Properties of an outgoing MQTT 5 PUBLISH.
#[derive(Clone, Debug, Default)]
pub struct PublishProperties {
    pub user: Vec<(String, String)>,
    pub content_type: Option<String>,
}

fn closed(e: impl std::fmt::Display) -> CliError {
    CliError::runtime(format!("connection closed: {e}"))
}

impl Client {
    pub async fn publish(
        &self,
        topic: &str,
        qos: u8,
        retain: bool,
        payload: Bytes,
        properties: &PublishProperties,
    ) -> Result<(), CliError> {
        match self {
            Client::V311(c) => c
                .publish_bytes(topic, qos4(qos), retain, payload)
                .await
                .map_err(closed),
            Client::V5(c) => {
                let props = p5::PublishProperties {
                    user_properties: properties.user.clone(),
                    content_type: properties.content_type.clone(),
                    ..Default::default()
                };
                c.publish_bytes_with_properties(topic, qos5(qos), retain, payload, props)
                    .await
                    .map_err(closed)
            }
        }
    }

    pub async fn subscribe(&self, filter: &str, qos: u8) -> Result<(), CliError> {
        match self {
            Client::V311(c) => c.subscribe(filter, qos4(qos)).await.map_err(closed),
            Client::V5(c) => c.subscribe(filter, qos5(qos)).await.map_err(closed),
        }
    }

    pub async fn disconnect(&self) -> Result<(), CliError> {
        match self {
            Client::V311(c) => c.disconnect().await.map_err(closed),
            Client::V5(c) => c.disconnect().await.map_err(closed),
        }
    }
}

/// Starts the connection: the client, and the events of the task that
/// drives it (an `Err` is the last one: why the connection ended).
pub fn connect(
    conn: &Connection,
) -> Result<(Client, mpsc::Receiver<Result<Wire, String>>), CliError> {
    let (tx, rx) = mpsc::channel(EVENTS_MAX);
    let target = &conn.target;
    let transport = match &conn.tls {
        Some(files) => Some(tls::mqtt_transport(files)?),
        None => None,
    };
    let where_ = target.host_port();
    let timeout_s = conn.connect_timeout.as_secs();
    // MQTT: a token is the password (with -u's name, or none).
    let password = conn.token.clone().or_else(|| conn.password.clone());
    let user = conn
        .user
        .clone()
        .or_else(|| password.as_ref().map(|_| String::new()));
    match conn.version {
        MqttVersion::V311 => {
            let mut o = rumqttc::MqttOptions::new(&conn.client_id, &target.host, target.port);
            o.set_keep_alive(conn.keep_alive);
            o.set_max_packet_size(PACKET_BYTES_MAX, PACKET_BYTES_MAX);
            if let Some(user) = user {
                o.set_credentials(user, password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, REQUESTS_MAX);
            let mut network = rumqttc::NetworkOptions::new();
            network.set_connection_timeout(timeout_s);
            eventloop.set_network_options(network);
            tokio::spawn(async move {
                let mut connected = false;
                loop {
                    let event = eventloop
                        .poll()
                        .await
                        .map(wire4)
                        .map_err(|e| describe4(e, connected, &where_, timeout_s));
                    connected |= matches!(event, Ok(Wire::ConnAck));
                    let last = matches!(event, Err(_) | Ok(Wire::Disconnected));
                    if tx.send(event).await.is_err() || last {
                        return;
                    }
                }
            });
            Ok((Client::V311(client), rx))
        }
        MqttVersion::V5 => {
            let mut o = rumqttc::v5::MqttOptions::new(&conn.client_id, &target.host, target.port);
            o.set_keep_alive(conn.keep_alive);
            o.set_max_packet_size(Some(PACKET_BYTES_MAX as u32));
            o.set_connection_timeout(timeout_s);
            if let Some(user) = user {
                o.set_credentials(user, password.unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, REQUESTS_MAX);
            tokio::spawn(async move {
                let mut connected = false;
                loop {
                    let (event, refused) = match eventloop.poll().await {
                        Ok(event) => (Ok(wire5(event)), false),
                        Err(e) => match refusal5(e) {
                            Ok(wire) => (Ok(wire), true),
                            Err(e) => (Err(describe5(e, connected, &where_, timeout_s)), false),
                        },
                    };
                    connected |= matches!(event, Ok(Wire::ConnAck));
                    // rumqttc ends the connection at a refusal (its next
                    // poll would connect again): the run ends there too.
                    let last = refused || matches!(event, Err(_) | Ok(Wire::Disconnected));
                    if tx.send(event).await.is_err() || last {
                        return;
                    }
                }
            });
            Ok((Client::V5(client), rx))
        }
    }
}

fn wire4(event: rumqttc::Event) -> Wire {
    use rumqttc::{Event, Outgoing, Packet};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => Wire::ConnAck,
        Event::Incoming(Packet::SubAck(s)) => Wire::SubAck {
            refused: s
                .return_codes
                .iter()
                .filter(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                .map(|_| "SUBACK Failure".to_string())
                .collect(),
        },
        Event::Incoming(Packet::PubAck(_)) | Event::Incoming(Packet::PubComp(_)) => {
            Wire::Acked { refused: None }
        }
        Event::Incoming(Packet::Publish(p)) => Wire::Message(Received {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            meta: None,
            reply: None,
        }),
        Event::Outgoing(Outgoing::Publish(_)) => Wire::Published,
        Event::Outgoing(Outgoing::Disconnect) => Wire::Disconnected,
        _ => Wire::Other,
    }
}

fn wire5(event: rumqttc::v5::Event) -> Wire {
    use p5::Packet;
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    match event {
        Event::Incoming(Packet::ConnAck(_)) => Wire::ConnAck,
        Event::Incoming(Packet::SubAck(s)) => Wire::SubAck {
            refused: s
                .return_codes
                .iter()
                .filter(|c| !matches!(c, p5::SubscribeReasonCode::Success(_)))
                .map(|c| format!("SUBACK {c:?}"))
                .collect(),
        },
        Event::Incoming(Packet::PubAck(a)) => Wire::Acked {
            refused: (!matches!(
                a.reason,
                p5::PubAckReason::Success | p5::PubAckReason::NoMatchingSubscribers
            ))
            .then(|| format!("PUBACK {:?}", a.reason)),
        },
        Event::Incoming(Packet::PubRec(r)) => {
            if matches!(
                r.reason,
                p5::PubRecReason::Success | p5::PubRecReason::NoMatchingSubscribers
            ) {
                Wire::Other
            } else {
                Wire::Acked {
                    refused: Some(format!("PUBREC {:?}", r.reason)),
                }
            }
        }
        Event::Incoming(Packet::PubComp(_)) => Wire::Acked { refused: None },
        Event::Incoming(Packet::Publish(p)) => {
            let props = p.properties.unwrap_or_default();
            Wire::Message(Received {
                topic: String::from_utf8_lossy(&p.topic).into_owned(),
                payload: p.payload,
                qos: p.qos as u8,
                retain: p.retain,
                meta: Some((
                    "properties",
                    output::mqtt5_properties(
                        &props.user_properties,
                        props.content_type.as_deref(),
                        props.response_topic.as_deref(),
                        props.message_expiry_interval,
                    ),
                )),
                reply: None,
            })
        }
        Event::Outgoing(Outgoing::Publish(_)) => Wire::Published,
        Event::Outgoing(Outgoing::Disconnect) => Wire::Disconnected,
        _ => Wire::Other,
    }
}

fn describe4(e: rumqttc::ConnectionError, connected: bool, at: &str, timeout_s: u64) -> String {
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(code) => format!("{at} refused the connection: {code:?}"),
        E::NetworkTimeout if !connected => format!("no answer from {at} within {timeout_s} s"),
        E::Io(e) if !connected => format!("cannot connect to {at}: {e}"),
        E::Tls(e) => format!("TLS with {at}: {e}"),
        e if !connected => format!("cannot connect to {at}: {e}"),
        e => format!("connection to {at} lost: {e}"),
    }
}

/// rumqttc 0.24 reports a v5 refusal (PUBACK, PUBREC or SUBACK with a
/// failure reason code) as an error of the connection: back to the fact.
/// (The error is large — more so with the tests' `websocket` feature — but
/// this runs once per refusal, not per event.)
#[allow(clippy::result_large_err)]
fn refusal5(e: rumqttc::v5::ConnectionError) -> Result<Wire, rumqttc::v5::ConnectionError> {
    use rumqttc::v5::{ConnectionError as E, StateError};
    match e {
        E::MqttState(StateError::PubAckFail { reason }) => Ok(Wire::Acked {
            refused: Some(format!("PUBACK {reason:?}")),
        }),
        E::MqttState(StateError::PubRecFail { reason }) => Ok(Wire::Acked {
            refused: Some(format!("PUBREC {reason:?}")),
        }),
        E::MqttState(StateError::SubFail { reason }) => Ok(Wire::SubAck {
            refused: vec![format!("SUBACK {reason:?}")],
        }),
        e => Err(e),
    }
}

fn describe5(e: rumqttc::v5::ConnectionError, connected: bool, at: &str, timeout_s: u64) -> String {
    use rumqttc::v5::{ConnectionError as E, StateError};
    match e {
        E::ConnectionRefused(code) => format!("{at} refused the connection: {code:?}"),
        E::Timeout(_) if !connected => format!("no answer from {at} within {timeout_s} s"),
        E::Io(e) if !connected => format!("cannot connect to {at}: {e}"),
        E::Tls(e) => format!("TLS with {at}: {e}"),
        E::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        }) => format!(
            "{at} disconnected: {reason_code:?}{}",
            reason_string.map(|r| format!(" ({r})")).unwrap_or_default()
        ),
        e if !connected => format!("cannot connect to {at}: {e}"),
        e => format!("connection to {at} lost: {e}"),
    }
}

/// Waits for the broker's CONNACK (or the reason there is none).
pub async fn connack(events: &mut mpsc::Receiver<Result<Wire, String>>) -> Result<(), CliError> {
    loop {
        match events.recv().await {
            Some(Ok(Wire::ConnAck)) => return Ok(()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(CliError::runtime(e)),
            None => return Err(CliError::runtime("the connection ended before CONNACK")),
        }
    }
}

/// After `disconnect`: waits (bounded) until the DISCONNECT is written.
pub async fn drain_disconnect(events: &mut mpsc::Receiver<Result<Wire, String>>, within: Duration) {
    let _ = tokio::time::timeout(within, async {
        while let Some(Ok(event)) = events.recv().await {
            if matches!(event, Wire::Disconnected) {
                return;
            }
        }
    })
    .await;
}

// The payload bound of `payload.rs` fits in one packet.
const _: () = assert!(PAYLOAD_BYTES_MAX < PACKET_BYTES_MAX);
