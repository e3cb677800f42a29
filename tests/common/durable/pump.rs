//! `Pump`: numbered publishes from a rumqttc client (3.1.1 or 5), with the
//! numbers whose acknowledgement came (the events a crash must not lose).

use super::*;

/// What a [`Pump`] knows about its publishes: each number published, the
/// packet id it went out with, and the numbers whose acknowledgement
/// (PUBACK, or PUBREC for QoS 2: the router holds the message from then
/// on) reached it.
#[derive(Default)]
struct PumpState {
    /// Numbers handed to the client, not yet seen going out.
    queued: VecDeque<u64>,
    /// Packet id → number, sent and not yet acknowledged.
    in_flight: HashMap<u16, u64>,
    acked: BTreeSet<u64>,
}

/// Publishes numbered payloads (`start`, `start + 1`, …) on one topic with
/// a rumqttc client (3.1.1 or 5), as fast as its in-flight window lets it
/// (with `pause` between publishes), until stopped or until its connection
/// ends (a killed router); records which numbers were acknowledged. rumqttc
/// gives each publish its packet id in the order they were handed to it and
/// reports it (`Outgoing::Publish(pkid)`), which maps acks to numbers.
pub struct Pump {
    state: Arc<Mutex<PumpState>>,
    stop: Arc<AtomicBool>,
    publisher: tokio::task::JoinHandle<u64>,
    eventloop: tokio::task::JoinHandle<()>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.publisher.abort();
        self.eventloop.abort();
    }
}

/// The MQTT version and QoS a [`Pump`] publishes with.
#[derive(Clone, Copy, Debug)]
pub enum PumpKind {
    V4Qos1,
    V5Qos2,
}

impl Pump {
    pub async fn start(
        addr: SocketAddr,
        id: &str,
        topic: &str,
        kind: PumpKind,
        start: u64,
        pause: Duration,
    ) -> Pump {
        let state: Arc<Mutex<PumpState>> = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (connack_tx, connack_rx) = tokio::sync::oneshot::channel::<()>();
        let (publish, eventloop): (PublishFn, _) = match kind {
            PumpKind::V4Qos1 => {
                let mut opts = MqttOptions::new(id, addr.ip().to_string(), addr.port());
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_inflight(20);
                let (client, eventloop) = AsyncClient::new(opts, 10);
                let state = state.clone();
                let task = tokio::spawn(v4_events(eventloop, state, connack_tx));
                let topic = topic.to_string();
                let publish: PublishFn = Box::new(move |n| {
                    let client = client.clone();
                    let topic = topic.clone();
                    Box::pin(async move {
                        client
                            .publish(topic, QoS::AtLeastOnce, false, n.to_string())
                            .await
                            .is_ok()
                    })
                });
                (publish, task)
            }
            PumpKind::V5Qos2 => {
                let qos = rumqttc::v5::mqttbytes::QoS::ExactlyOnce;
                let mut opts =
                    rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
                opts.set_keep_alive(Duration::from_secs(30));
                opts.set_outgoing_inflight_upper_limit(20);
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(opts, 10);
                let state = state.clone();
                let task = tokio::spawn(v5_events(eventloop, state, connack_tx));
                let topic = topic.to_string();
                let publish: PublishFn = Box::new(move |n| {
                    let client = client.clone();
                    let topic = topic.clone();
                    Box::pin(async move {
                        client
                            .publish(topic, qos, false, n.to_string())
                            .await
                            .is_ok()
                    })
                });
                (publish, task)
            }
        };
        tokio::time::timeout(WAIT, connack_rx)
            .await
            .unwrap_or_else(|_| panic!("{id}: no CONNACK in time"))
            .unwrap_or_else(|_| panic!("{id}: connection ended before CONNACK"));
        let publisher = {
            let state = state.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut n = start;
                while !stop.load(Ordering::SeqCst) {
                    state.lock().unwrap().queued.push_back(n);
                    if !publish(n).await {
                        break;
                    }
                    n += 1;
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
                n
            })
        };
        Pump {
            state,
            stop,
            publisher,
            eventloop,
        }
    }

    /// Stops publishing; returns the next number it would have used (every
    /// number it used is below it).
    pub async fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        // A publish blocked on a full window returns once its connection
        // ends or an ack frees room; a killed router ends the connection.
        match tokio::time::timeout(WAIT, &mut self.publisher).await {
            Ok(n) => n.expect("publisher task"),
            Err(_) => panic!("publisher did not stop in time"),
        }
    }

    /// Waits (bounded) until nothing handed to the client is left without
    /// its acknowledgement (on a live router).
    pub async fn drain(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            {
                let s = self.state.lock().unwrap();
                if s.queued.is_empty() && s.in_flight.is_empty() {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "acks missing: {} queued, {} in flight",
                    s.queued.len(),
                    s.in_flight.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The numbers whose acknowledgement arrived.
    pub fn acked(&self) -> BTreeSet<u64> {
        self.state.lock().unwrap().acked.clone()
    }

    /// Whether the client's connection has ended.
    pub fn ended(&self) -> bool {
        self.eventloop.is_finished()
    }
}

type PublishFn =
    Box<dyn Fn(u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send>;

impl PumpState {
    fn sent(&mut self, pkid: u16) {
        if let Some(n) = self.queued.pop_front() {
            self.in_flight.insert(pkid, n);
        }
    }

    /// An acknowledgement with a success reason (rumqttc ends the
    /// connection on an error reason instead).
    fn acked(&mut self, pkid: u16) {
        if let Some(n) = self.in_flight.remove(&pkid) {
            self.acked.insert(n);
        }
    }
}

async fn v4_events(
    mut eventloop: rumqttc::EventLoop,
    state: Arc<Mutex<PumpState>>,
    connack: tokio::sync::oneshot::Sender<()>,
) {
    let mut connack = Some(connack);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(());
                }
            }
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => state.lock().unwrap().sent(pkid),
            Ok(Event::Incoming(Packet::PubAck(a))) => state.lock().unwrap().acked(a.pkid),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

async fn v5_events(
    mut eventloop: rumqttc::v5::EventLoop,
    state: Arc<Mutex<PumpState>>,
    connack: tokio::sync::oneshot::Sender<()>,
) {
    use rumqttc::v5::mqttbytes::v5::Packet as P5;
    use rumqttc::v5::Event as E5;
    use rumqttc::Outgoing as O5;
    let mut connack = Some(connack);
    loop {
        match eventloop.poll().await {
            Ok(E5::Incoming(P5::ConnAck(_))) => {
                if let Some(tx) = connack.take() {
                    let _ = tx.send(());
                }
            }
            Ok(E5::Outgoing(O5::Publish(pkid))) => state.lock().unwrap().sent(pkid),
            Ok(E5::Incoming(P5::PubAck(a))) => state.lock().unwrap().acked(a.pkid),
            Ok(E5::Incoming(P5::PubRec(r))) => state.lock().unwrap().acked(r.pkid),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}
