//! `Recorder`: an MQTT client that records what a crash test judges (DUP
//! and retain flags, the connection a copy arrived on).

use super::*;

/// One PUBLISH a [`Recorder`] received.
#[derive(Clone, Debug)]
pub struct Got {
    pub topic: String,
    pub payload: Vec<u8>,
    pub dup: bool,
    pub retain: bool,
    pub qos: u8,
    /// Which of the recorder's connections it arrived on (0 = the first).
    pub connection: usize,
}

impl Got {
    /// The payload as a decimal number.
    pub fn number(&self) -> u64 {
        std::str::from_utf8(&self.payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("payload {:?} on {}", self.payload, self.topic))
    }
}

#[derive(Default)]
struct RecorderState {
    got: Vec<Got>,
    subacks: Vec<Vec<rumqttc::SubscribeReasonCode>>,
    ended: bool,
}

/// An MQTT 3.1.1 client (rumqttc) that reconnects on demand under one
/// client id and records every PUBLISH with its flags and the connection
/// it came on; it acknowledges each QoS 1 delivery once recorded.
pub struct Recorder {
    pub id: String,
    state: Arc<Mutex<RecorderState>>,
    connections: usize,
    current: Option<(AsyncClient, tokio::task::JoinHandle<()>)>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some((_, task)) = self.current.take() {
            task.abort();
        }
    }
}

impl Recorder {
    pub fn new(id: &str) -> Recorder {
        Recorder {
            id: id.to_string(),
            state: Default::default(),
            connections: 0,
            current: None,
        }
    }

    /// Connects (the previous connection, if any, dropped first); returns
    /// the CONNACK's session-present flag.
    pub async fn connect(&mut self, addr: SocketAddr, clean: bool) -> bool {
        self.drop_connection();
        let mut opts = MqttOptions::new(&self.id, addr.ip().to_string(), addr.port());
        opts.set_clean_session(clean);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(1 << 20, 1 << 20);
        opts.set_inflight(100);
        // Manual acks: a PUBACK leaves only after the copy is recorded, so a
        // dropped connection never takes an acknowledged copy with it
        // (rumqttc's automatic acks go out for a whole read batch before the
        // application has seen each PUBLISH of it).
        opts.set_manual_acks(true);
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let acker = client.clone();
        let connection = self.connections;
        self.connections += 1;
        let state = self.state.clone();
        state.lock().unwrap().ended = false;
        let (ack_tx, ack_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ack_tx = Some(ack_tx);
            // Acks the request channel had no room for yet (bounded by the
            // client's in-flight window).
            let mut unsent: VecDeque<rumqttc::Publish> = VecDeque::new();
            loop {
                while let Some(p) = unsent.front() {
                    if acker.try_ack(p).is_err() {
                        break;
                    }
                    unsent.pop_front();
                }
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        if let Some(tx) = ack_tx.take() {
                            let _ = tx.send(a);
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        state.lock().unwrap().got.push(Got {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            dup: p.dup,
                            retain: p.retain,
                            qos: p.qos as u8,
                            connection,
                        });
                        unsent.push_back(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        state.lock().unwrap().subacks.push(a.return_codes)
                    }
                    Ok(_) => {}
                    Err(_) => {
                        state.lock().unwrap().ended = true;
                        return;
                    }
                }
            }
        });
        let ack = tokio::time::timeout(WAIT, ack_rx)
            .await
            .unwrap_or_else(|_| panic!("{}: no CONNACK in time", self.id))
            .unwrap_or_else(|_| panic!("{}: connection ended before CONNACK", self.id));
        assert_eq!(
            ack.code,
            rumqttc::ConnectReturnCode::Success,
            "{}: CONNACK",
            self.id
        );
        self.current = Some((client, task));
        ack.session_present
    }

    /// Subscribes and waits for the SUBACK (which must grant it).
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) {
        let before = self.state.lock().unwrap().subacks.len();
        let (client, _) = self.current.as_ref().expect("connected");
        client.subscribe(filter, qos).await.unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(codes) = self.state.lock().unwrap().subacks.get(before) {
                assert!(
                    matches!(codes[..], [rumqttc::SubscribeReasonCode::Success(_)]),
                    "{}: SUBACK for {filter}: {codes:?}",
                    self.id
                );
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: no SUBACK for {filter}",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Closes the TCP connection without DISCONNECT (as a crash of the
    /// client would): in-flight deliveries stay unacknowledged.
    pub fn drop_connection(&mut self) {
        if let Some((_, task)) = self.current.take() {
            task.abort();
        }
    }

    /// Sends DISCONNECT, then drops the connection.
    pub async fn disconnect(&mut self) {
        if let Some((client, task)) = self.current.take() {
            let _ = client.disconnect().await;
            // Let the event loop write it; it ends on its own after that.
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.current.is_some() && !self.state.lock().unwrap().ended
    }

    pub fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// What arrived on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.topic == topic)
            .collect()
    }

    /// Waits (bounded by `WAIT`) until `ok` holds over what arrived;
    /// whether it did.
    pub async fn reached(&self, ok: impl Fn(&[Got]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if ok(&self.got()) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// [`Recorder::reached`], or a panic naming `what`.
    pub async fn wait_until(&self, what: &str, ok: impl Fn(&[Got]) -> bool) {
        if !self.reached(ok).await {
            let got = self.got();
            let tail: Vec<_> = got.iter().rev().take(5).collect();
            panic!(
                "{}: {what}: not reached in time ({} PUBLISH received; last: {tail:?})",
                self.id,
                got.len()
            );
        }
    }
}
