//! `weft pub` and `weft sub` over NATS (`nats://`, `tls://`), with
//! async-nats: publish with headers and flush (every message written to
//! the socket), or subscribe (a queue group with `--queue`) and print.
//!
//! Owns: the connect options (name, credentials, TLS), the flush at the
//! end of a publish, and ending a run when the server reports an error or
//! the connection drops: a CLI exits with status 1 and the reason rather
//! than reconnecting in silence, as a long-running client would. Must not
//! touch: MQTT.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use async_nats::{ConnectOptions, Event, HeaderMap, HeaderName, HeaderValue};
use futures_lite::StreamExt;
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::args::{Format, PubArgs, SubArgs};
use super::check::Connection;
use super::ending::{sleep_until, stdout_closed, timed_out};
use super::error::{say, CliError};
use super::output::{self, Received};
use super::payload::Payloads;
use super::tls;

/// Connection events kept for the run (the first failure is all it needs).
const EVENTS_MAX: usize = 16;
/// Messages between the subscriptions and stdout (a full channel leaves
/// them in async-nats' own bounded buffer, then the server's).
const MESSAGES_MAX: usize = 64;

/// Connects; `problems` receives the server's errors and disconnections.
async fn connect(
    conn: &Connection,
) -> Result<(async_nats::Client, mpsc::Receiver<String>), CliError> {
    let (tx, rx) = mpsc::channel(EVENTS_MAX);
    let mut options = ConnectOptions::new()
        .name(&conn.client_id)
        .connection_timeout(conn.connect_timeout)
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let problem = match event {
                    Event::Disconnected => Some("the connection was lost".to_string()),
                    Event::ServerError(e) => Some(format!("the server said: {e}")),
                    Event::SlowConsumer(_) => {
                        Some("messages were dropped: this subscriber is too slow".to_string())
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    let _ = tx.try_send(problem);
                }
            }
        });
    if let Some(path) = &conn.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| CliError::runtime(format!("--creds {}: {e}", path.display())))?;
    }
    if let Some(path) = &conn.nkey {
        let seed = std::fs::read_to_string(path)
            .map_err(|e| CliError::runtime(format!("--nkey {}: {e}", path.display())))?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some(token) = &conn.token {
        options = options.token(token.clone());
    }
    if let Some(user) = &conn.user {
        options =
            options.user_and_password(user.clone(), conn.password.clone().unwrap_or_default());
    }
    if let Some(files) = &conn.tls {
        options = options.require_tls(true);
        if !files.is_default() {
            options = options.tls_client_config(tls::nats::config(files)?);
        }
    }
    let at = conn.target.host_port();
    let client = options
        .connect(conn.target.nats_url())
        .await
        .map_err(|e| CliError::runtime(format!("cannot connect to {at}: {e}")))?;
    Ok((client, rx))
}

/// The headers of `-H` / `-D`, each checked as NATS requires.
fn headers(pairs: &[(String, String)]) -> Result<Option<HeaderMap>, CliError> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    for (key, value) in pairs {
        let name =
            HeaderName::from_str(key).map_err(|e| CliError::usage(format!("-H '{key}': {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| CliError::usage(format!("-H '{key}:{value}': {e}")))?;
        map.append(name, value);
    }
    Ok(Some(map))
}

/// A problem the connection reported (a server error, a disconnection),
/// if one came already. NATS core has no acknowledgement and async-nats'
/// `flush` ends when the bytes are written, not at a server round trip:
/// a publish or a subscription the server refuses is reported when its
/// `-ERR` arrives before the run ends (as with `nats pub`); `sub` keeps
/// listening for it.
fn pending(problems: &mut mpsc::Receiver<String>) -> Result<(), CliError> {
    match problems.try_recv() {
        Ok(problem) => Err(CliError::runtime(problem)),
        Err(_) => Ok(()),
    }
}

pub async fn publish<R: AsyncRead + Unpin>(
    conn: &Connection,
    args: &PubArgs,
    pairs: &[(String, String)],
    mut payloads: Payloads<R>,
) -> Result<(), CliError> {
    let headers = headers(pairs)?;
    let (client, mut problems) = connect(conn).await?;
    let interval = Duration::from_millis(args.interval);
    let failed = |e: &dyn std::fmt::Display| CliError::runtime(format!("publish: {e}"));
    let mut published = 0u64;
    while let Some(payload) = payloads.next().await? {
        if published > 0 && !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
        let subject = args.topic.clone();
        match &headers {
            Some(h) => {
                client
                    .publish_with_headers(subject, h.clone(), payload)
                    .await
            }
            None => client.publish(subject, payload).await,
        }
        .map_err(|e| failed(&e))?;
        published += 1;
        pending(&mut problems)?;
    }
    // Every message written to the socket (see `pending`).
    match tokio::time::timeout(Duration::from_secs(args.timeout), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(failed(&e)),
        Err(_) => {
            return Err(CliError::runtime(format!(
                "the server did not confirm the messages within {} s",
                args.timeout
            )))
        }
    }
    pending(&mut problems)?;
    drop(client);
    Ok(())
}

pub async fn subscribe(conn: &Connection, args: &SubArgs, format: Format) -> Result<(), CliError> {
    let (client, mut problems) = connect(conn).await?;
    let mut subscribers = Vec::with_capacity(args.topic.len());
    for subject in &args.topic {
        let subscriber = match &args.queue {
            Some(group) => client.queue_subscribe(subject.clone(), group.clone()).await,
            None => client.subscribe(subject.clone()).await,
        }
        .map_err(|e| CliError::runtime(format!("subscribe '{subject}': {e}")))?;
        subscribers.push(subscriber);
    }
    // The SUBs written: the server reads them before anything this
    // connection sends later (see `pending` for a refusal).
    client
        .flush()
        .await
        .map_err(|e| CliError::runtime(format!("subscribe: {e}")))?;
    pending(&mut problems)?;
    if !args.quiet {
        say(&format!(
            "weft sub: subscribed to {} at {}",
            args.topic.join(", "),
            conn.target.host_port()
        ));
    }
    // One channel for every subject's messages, in arrival order.
    let (tx, mut messages) = mpsc::channel(MESSAGES_MAX);
    for mut subscriber in subscribers {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(m) = subscriber.next().await {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let deadline = args
        .timeout
        .map(|s| Instant::now() + Duration::from_secs(s));
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut received = 0u64;
    let outcome = loop {
        if args.count.is_some_and(|c| received >= c) {
            break Ok(());
        }
        tokio::select! {
            message = messages.recv() => {
                let Some(m) = message else {
                    break Err(CliError::runtime("the subscription ended"));
                };
                received += 1;
                let headers = m.headers.as_ref().map(|h| {
                    let mut o = serde_json::Map::new();
                    for (name, values) in h.iter() {
                        o.insert(
                            name.to_string(),
                            values.iter().map(|v| serde_json::json!(v.as_str())).collect(),
                        );
                    }
                    ("headers", serde_json::Value::Object(o))
                });
                let message = Received {
                    topic: m.subject.to_string(),
                    payload: m.payload,
                    qos: 0,
                    retain: false,
                    meta: headers,
                    reply: m.reply.map(|r| r.to_string()),
                };
                if let Err(e) = output::write(&mut out, format, &message) {
                    break stdout_closed(e);
                }
            }
            problem = problems.recv() => {
                break Err(CliError::runtime(problem.unwrap_or_else(|| "the connection ended".into())));
            }
            () = sleep_until(deadline) => break timed_out(args, received),
        }
    };
    let _ = out.flush();
    outcome
}
