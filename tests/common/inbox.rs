//! Inboxes: MQTT and NATS subscribers that record what arrives, fences
//! (a probe published until it arrives), and counts of sequence numbers.

use super::*;

/// One message received by an [`Inbox`]: MQTT topic or NATS subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct InboxState {
    msgs: Vec<Msg>,
    subacks: usize,
    unsubacks: usize,
    ended: bool,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Collects everything a subscriber receives, in a background task, so a
/// test can wait for conditions over it and look for duplicates.
#[derive(Clone)]
pub struct Inbox {
    pub name: String,
    state: std::sync::Arc<std::sync::Mutex<InboxState>>,
    _task: std::sync::Arc<AbortOnDrop>,
}

impl Inbox {
    /// Takes over an MQTT client (subscribed already, or subscribing later
    /// through the returned handle: acks are counted, see
    /// [`Inbox::wait_acks`]).
    pub fn mqtt(mut client: Client) -> (AsyncClient, Inbox) {
        let handle = client.client.clone();
        let name = client.id.clone();
        let state = std::sync::Arc::new(std::sync::Mutex::new(InboxState::default()));
        let sink = state.clone();
        let task = tokio::spawn(async move {
            while let Some(p) = client.recv_any().await {
                let mut s = sink.lock().unwrap();
                match p {
                    Packet::Publish(p) => s.msgs.push(Msg {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    }),
                    Packet::SubAck(_) => s.subacks += 1,
                    Packet::UnsubAck(_) => s.unsubacks += 1,
                    _ => {}
                }
            }
            sink.lock().unwrap().ended = true;
        });
        let inbox = Inbox {
            name,
            state,
            _task: std::sync::Arc::new(AbortOnDrop(task)),
        };
        (handle, inbox)
    }

    /// Collects a NATS subscription.
    pub fn nats(name: &str, mut sub: async_nats::Subscriber) -> Inbox {
        use futures::StreamExt;
        let state = std::sync::Arc::new(std::sync::Mutex::new(InboxState::default()));
        let sink = state.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                sink.lock().unwrap().msgs.push(Msg {
                    topic: m.subject.to_string(),
                    payload: m.payload.to_vec(),
                });
            }
            sink.lock().unwrap().ended = true;
        });
        Inbox {
            name: name.to_string(),
            state,
            _task: std::sync::Arc::new(AbortOnDrop(task)),
        }
    }

    pub fn msgs(&self) -> Vec<Msg> {
        self.state.lock().unwrap().msgs.clone()
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap().msgs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages received on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Msg> {
        let s = self.state.lock().unwrap();
        s.msgs
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// How many messages have a topic starting with `prefix`.
    pub fn count_prefix(&self, prefix: &str) -> usize {
        let s = self.state.lock().unwrap();
        s.msgs
            .iter()
            .filter(|m| m.topic.starts_with(prefix))
            .count()
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over the messages so far
    /// (a copy: `ok` may use the inbox itself).
    pub async fn wait_until(&self, what: &str, ok: impl Fn(&[Msg]) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (msgs, ended) = {
                let s = self.state.lock().unwrap();
                (s.msgs.clone(), s.ended)
            };
            if ok(&msgs) {
                return;
            }
            if ended || tokio::time::Instant::now() >= deadline {
                let tail: Vec<_> = msgs.iter().rev().take(10).collect();
                panic!(
                    "{}: {what}: not reached ({}; {} messages, last ones {tail:?})",
                    self.name,
                    if ended { "connection ended" } else { "in time" },
                    msgs.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until at least `subacks` SUBACKs and `unsubacks` UNSUBACKs
    /// have arrived (MQTT inboxes).
    pub async fn wait_acks(&self, subacks: usize, unsubacks: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.subacks >= subacks && s.unsubacks >= unsubacks {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{}: acks not received ({} SUBACK, {} UNSUBACK)",
                    self.name,
                    s.subacks,
                    s.unsubacks
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Publishes `topic` (payload = a counter) through `publish` every ~50 ms
/// until every inbox in `inboxes` has received one: interest has then
/// travelled. Returns how many probes were published. Bounded by `WAIT`.
pub async fn fence<F, Fut>(publish: F, topic: &str, inboxes: &[&Inbox]) -> usize
where
    F: Fn(String, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    fence_as(publish, topic, topic, inboxes).await
}

/// [`fence`] where the inboxes see the probe under another name
/// (`received_as`: e.g. the NATS subject of an MQTT topic).
pub async fn fence_as<F, Fut>(
    publish: F,
    topic: &str,
    received_as: &str,
    inboxes: &[&Inbox],
) -> usize
where
    F: Fn(String, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sent = 0usize;
    loop {
        publish(topic.to_string(), sent.to_string().into_bytes()).await;
        sent += 1;
        let probe_end = tokio::time::Instant::now() + Duration::from_millis(50);
        while tokio::time::Instant::now() < probe_end {
            if inboxes.iter().all(|i| !i.on(received_as).is_empty()) {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if tokio::time::Instant::now() >= deadline {
            let missing: Vec<_> = inboxes
                .iter()
                .filter(|i| i.on(received_as).is_empty())
                .map(|i| i.name.clone())
                .collect();
            panic!("probe {topic:?}: {sent} published, never reached {missing:?}");
        }
    }
}

/// The MQTT publishing function for [`fence`].
pub fn mqtt_publisher(
    client: &AsyncClient,
) -> impl Fn(String, Vec<u8>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + '_
{
    move |topic, payload| {
        let client = client.clone();
        Box::pin(async move {
            client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        })
    }
}

/// Counts how often each payload (a decimal sequence number) was received
/// on `topic`.
pub fn seq_counts(inbox: &Inbox, topic: &str) -> std::collections::BTreeMap<u64, usize> {
    seq_counts_in(&inbox.msgs(), topic)
        .unwrap_or_else(|bad| panic!("{}: payload {bad:?} on {topic}", inbox.name))
}

/// [`seq_counts`] over messages; `Err` with a payload that is no number.
pub fn seq_counts_in(
    msgs: &[Msg],
    topic: &str,
) -> Result<std::collections::BTreeMap<u64, usize>, Vec<u8>> {
    let mut counts = std::collections::BTreeMap::new();
    for m in msgs.iter().filter(|m| m.topic == topic) {
        let n: u64 = std::str::from_utf8(&m.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| m.payload.clone())?;
        *counts.entry(n).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Asserts that no sequence number arrived twice on `topic`, and that
/// every one in `must` arrived (exactly once).
pub fn assert_once(inbox: &Inbox, topic: &str, must: impl IntoIterator<Item = u64>) {
    let counts = seq_counts(inbox, topic);
    let dups: Vec<_> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        dups.is_empty(),
        "{}: duplicates on {topic} (seq, times): {dups:?}",
        inbox.name
    );
    let missing: Vec<u64> = must
        .into_iter()
        .filter(|n| !counts.contains_key(n))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: missing on {topic}: {missing:?}",
        inbox.name
    );
}
