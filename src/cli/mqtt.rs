//! `weft pub` and `weft sub` over MQTT (3.1.1 or 5): publish and wait for
//! what the QoS promises, or subscribe and print until the count, the
//! timeout or the end of the connection.
//!
//! Owns: the order of a run (CONNACK, then publishes or SUBSCRIBEs, then
//! a clean DISCONNECT) and when it is done: QoS 0 when every PUBLISH is
//! written, QoS 1 at its PUBACK, QoS 2 at its PUBCOMP; a refusal (MQTT 5
//! reason code) ends the run with status 1. Must not touch: rumqttc's
//! types (`mqtt_client.rs`).

use std::io::Write;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::args::{Format, PubArgs, SubArgs};
use super::check::Connection;
use super::ending::{sleep_until, stdout_closed, timed_out};
use super::error::{say, CliError};
use super::mqtt_client::{self, PublishProperties, Wire};
use super::output;
use super::payload::Payloads;

/// Longest wait for our DISCONNECT to be written at the end.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);

pub async fn publish<R: AsyncRead + Unpin>(
    conn: &Connection,
    args: &PubArgs,
    properties: PublishProperties,
    mut payloads: Payloads<R>,
) -> Result<(), CliError> {
    let (client, mut events) = mqtt_client::connect(conn)?;
    mqtt_client::connack(&mut events).await?;
    let interval = Duration::from_millis(args.interval);
    let producer = async {
        let mut published = 0u64;
        while let Some(payload) = payloads.next().await? {
            if published > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            client
                .publish(&args.topic, args.qos, args.retain, payload, &properties)
                .await?;
            published += 1;
        }
        Ok::<u64, CliError>(published)
    };
    let mut producer = std::pin::pin!(producer);
    let (mut written, mut acked) = (0u64, 0u64);
    let mut total: Option<u64> = None;
    let mut deadline = Instant::now();
    loop {
        if let Some(total) = total {
            let done = if args.qos == 0 { written } else { acked };
            if done >= total {
                break;
            }
        }
        tokio::select! {
            result = &mut producer, if total.is_none() => {
                total = Some(result?);
                deadline = Instant::now() + Duration::from_secs(args.timeout);
            }
            event = events.recv() => match event {
                Some(Ok(Wire::Published)) => written += 1,
                Some(Ok(Wire::Acked { refused: None })) => acked += 1,
                Some(Ok(Wire::Acked { refused: Some(why) })) => {
                    return Err(CliError::runtime(format!(
                        "the broker refused the message on '{}': {why}",
                        args.topic
                    )));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(CliError::runtime(e)),
                None => return Err(CliError::runtime("the connection ended")),
            },
            () = tokio::time::sleep_until(deadline), if total.is_some() => {
                let total = total.unwrap_or_default();
                return Err(CliError::runtime(format!(
                    "{} of {total} messages not acknowledged within {} s",
                    total - acked.min(total),
                    args.timeout
                )));
            }
        }
    }
    // A connection that ended already has nothing to disconnect.
    let _ = client.disconnect().await;
    mqtt_client::drain_disconnect(&mut events, DISCONNECT_WAIT).await;
    Ok(())
}

/// The filter as subscribed: `$share/GROUP/FILTER` with `--queue`.
fn shared(filter: &str, queue: Option<&str>) -> String {
    match queue {
        Some(group) => format!("$share/{group}/{filter}"),
        None => filter.to_string(),
    }
}

pub async fn subscribe(conn: &Connection, args: &SubArgs, format: Format) -> Result<(), CliError> {
    let (client, mut events) = mqtt_client::connect(conn)?;
    mqtt_client::connack(&mut events).await?;
    let filters: Vec<String> = args
        .topic
        .iter()
        .map(|f| shared(f, args.queue.as_deref()))
        .collect();
    for filter in &filters {
        client.subscribe(filter, args.qos).await?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut received = 0u64;
    let mut subacks = 0usize;
    let mut deadline: Option<Instant> = None;
    let outcome = loop {
        if args.count.is_some_and(|c| received >= c) {
            break Ok(());
        }
        let event = tokio::select! {
            event = events.recv() => event,
            () = sleep_until(deadline) => break timed_out(args, received),
        };
        match event {
            Some(Ok(Wire::SubAck { refused })) => {
                if let Some(why) = refused.first() {
                    break Err(CliError::runtime(format!(
                        "the broker refused the subscription to '{}': {why}",
                        filters[subacks.min(filters.len() - 1)]
                    )));
                }
                subacks += 1;
                if subacks == filters.len() {
                    if !args.quiet {
                        say(&format!(
                            "weft sub: subscribed to {} at {}",
                            filters.join(", "),
                            conn.target.host_port()
                        ));
                    }
                    deadline = args
                        .timeout
                        .map(|s| Instant::now() + Duration::from_secs(s));
                }
            }
            Some(Ok(Wire::Message(message))) => {
                received += 1;
                if let Err(e) = output::write(&mut out, format, &message) {
                    break stdout_closed(e);
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(CliError::runtime(e)),
            None => return Err(CliError::runtime("the connection ended")),
        }
    };
    let _ = out.flush();
    // A connection that ended already has nothing to disconnect.
    let _ = client.disconnect().await;
    mqtt_client::drain_disconnect(&mut events, DISCONNECT_WAIT).await;
    outcome
}
