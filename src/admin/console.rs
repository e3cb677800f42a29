//! The web console's data: `GET /console/state` (one [`ConsoleState`] as
//! JSON) and `GET /console/events` (a server-sent event stream: one
//! `state` event every `admin.console_interval_ms`, `: ping` comments).
//!
//! Owns, on the admin thread: the last sample (the shards' counters and
//! latency histograms, to turn into rates and window percentiles), the
//! console request in flight to the shards, and the flag that makes the
//! shards feed their busiest-topics sketches (`Global::console_active`).
//! Nothing is computed while no stream is open and nobody asked for
//! [`ARM_HOLD_MIN`]: the flag is then cleared and the sample dropped.
//!
//! The shards answer a console request on their housekeeping tick (the
//! views mechanism, `ShardStats::console`); for the streams the request is
//! polled from the server's loop ([`Console::tick`]), never waited for,
//! so the admin thread keeps answering other requests meanwhile.
//!
//! Bounds: a state holds one row per shard, at most
//! `stats::SLOW_CONSUMERS_MAX` slow consumers, `admin.console_topics_max`
//! topics (at most 256), and the mesh as the bridge's view bounds it
//! (`mesh.links_max`). Topics and client ids (up to 64 KiB each, six
//! times that as JSON escapes) are cut to [`TEXT_BYTES_MAX`] bytes on a
//! character boundary, their row then marked `"truncated": true`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{sse, AdminState};
use crate::shard::stats::{self, ConsoleView, SlowConsumer, Snapshot, TopicRate};

/// After the last ask (or stream), the shards keep their sketches this
/// long at least (three intervals if longer), so that a page polling
/// `/console/state` sees topics.
pub const ARM_HOLD_MIN: Duration = Duration::from_secs(10);
/// How long a console request waits for the shards (a stopping shard does
/// not answer: its row then shows no queues).
const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// How often a request in flight is looked at.
const ANSWER_POLL: Duration = Duration::from_millis(5);
/// Longest topic or client id a state shows (bytes, cut on a character
/// boundary; the row says `"truncated": true`).
pub const TEXT_BYTES_MAX: usize = 200;
/// A `: ping` comment on every stream this often.
const PING_INTERVAL: Duration = Duration::from_secs(15);

/// What `/console/state` answers (field names are the page's contract).
#[derive(Debug, Serialize)]
pub struct ConsoleState {
    pub router_id: String,
    /// Wall-clock time of the sample, ms since the Unix epoch.
    pub time_ms: u64,
    pub interval_ms: u64,
    /// The mesh as [`mesh`] sees it (null: the mesh is off).
    pub mesh: Option<serde_json::Value>,
    pub shards: Vec<ShardRow>,
    pub slow_consumers: Vec<SlowConsumer>,
    pub topics: Vec<TopicRate>,
}

#[derive(Debug, Serialize)]
pub struct ShardRow {
    pub shard: usize,
    pub connections: u64,
    /// Publishes received (`weft_messages_in_total`) per second since the
    /// previous sample; 0 in the first.
    pub publishes_per_s: f64,
    /// Deliveries queued (`weft_messages_out_total`) per second.
    pub deliveries_per_s: f64,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Sends that found a ring full and waited, since start.
    pub ring_waits: u64,
    /// Router-internal latency since the previous sample (since start in
    /// the first); 0 when no event was delivered meanwhile.
    pub latency_us: Percentiles,
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
}

/// The mesh part of the state: the link-state graph of `GET /topology`
/// ([`super::topology`]); None with the mesh off or before the bridge's
/// first tick.
pub fn mesh(state: &AdminState) -> Option<serde_json::Value> {
    super::topology::topology(state).and_then(|t| serde_json::to_value(t).ok())
}

/// The shards' counters and histograms, each shard's counters with the
/// instant they were read.
struct Sample {
    /// Per shard: the tick that answered the console request (its
    /// counters are the ones it published on that tick), or the admin's
    /// `at` for a shard that did not answer. Rates divide by the shard's
    /// own time between answers: the admin's instant would add the jitter
    /// of when each shard's 50 ms tick came round.
    at: Vec<Instant>,
    snaps: Vec<Snapshot>,
    latency: Vec<hdrhistogram::Histogram<u64>>,
}

impl Sample {
    fn take(state: &AdminState, at: Instant, views: &[ConsoleView]) -> Sample {
        let counters = |i: usize| views.iter().find(|v| v.shard == i)?.counters;
        Sample {
            at: (0..state.stats.len())
                .map(|i| counters(i).map_or(at, |(t, _)| t))
                .collect(),
            snaps: state
                .stats
                .iter()
                .enumerate()
                .map(|(i, s)| counters(i).map_or_else(|| s.snapshot(), |(_, c)| c))
                .collect(),
            latency: state
                .stats
                .iter()
                .map(|s| match s.latency.lock() {
                    Ok(h) => h.clone(),
                    Err(_) => stats::latency_histogram(),
                })
                .collect(),
        }
    }
}

/// A console request to the shards: the answers come in on their ticks.
struct Asked {
    deadline: Instant,
    got: Vec<Option<ConsoleView>>,
}

/// The admin thread's console state (see the module doc).
pub struct Console {
    interval: Duration,
    topics_max: usize,
    last: Option<Sample>,
    asked: Option<Asked>,
    /// Last `/console/state`, or last turn with a stream open.
    last_ask: Option<Instant>,
    /// When the streams get their next state.
    next_state: Option<Instant>,
    next_ping: Option<Instant>,
    /// A state built for a `/console/state` while the streams' request
    /// was in flight (it answered both), for the streams.
    ready: Option<Vec<u8>>,
}

impl Console {
    pub fn new(interval: Duration, topics_max: usize) -> Self {
        Console {
            interval,
            topics_max,
            last: None,
            asked: None,
            last_ask: None,
            next_state: None,
            next_ping: None,
            ready: None,
        }
    }

    fn arm(&mut self, state: &AdminState, now: Instant) {
        self.last_ask = Some(now);
        state.global.console_active.store(true, Ordering::Relaxed);
    }

    /// A stream opened: its first state as soon as the shards answer.
    pub fn stream_opened(&mut self, state: &AdminState, now: Instant) {
        self.arm(state, now);
        self.next_state = Some(now);
    }

    /// `GET /console/state`: asks the shards and waits for them (at most
    /// [`ANSWER_WAIT`]).
    pub fn state_now(&mut self, state: &AdminState) -> Vec<u8> {
        let now = Instant::now();
        self.arm(state, now);
        let streams_waiting = self.asked.is_some();
        self.ask(state, now);
        while !self.answered(state, Instant::now()) {
            std::thread::sleep(ANSWER_POLL);
        }
        let built = self.build(state);
        let json = serde_json::to_string(&built).unwrap_or_default();
        if streams_waiting {
            self.ready = Some(sse::event("state", &json));
        }
        json.into_bytes()
    }

    fn ask(&mut self, state: &AdminState, now: Instant) {
        if self.asked.is_some() {
            return;
        }
        for s in &state.stats {
            if let Ok(mut slot) = s.console.lock() {
                *slot = None;
            }
            s.console_requested.store(true, Ordering::Release);
        }
        self.asked = Some(Asked {
            deadline: now + ANSWER_WAIT,
            got: vec![None; state.stats.len()],
        });
    }

    /// Takes the answers come in; true when all are in or the wait is
    /// over.
    fn answered(&mut self, state: &AdminState, now: Instant) -> bool {
        let Some(asked) = self.asked.as_mut() else {
            return true;
        };
        for (slot, s) in asked.got.iter_mut().zip(&state.stats) {
            if slot.is_none() {
                *slot = s.console.lock().ok().and_then(|mut v| v.take());
            }
        }
        asked.got.iter().all(Option::is_some) || now >= asked.deadline
    }

    /// The state from the answers taken (the request is then over) and a
    /// new sample.
    fn build(&mut self, state: &AdminState) -> ConsoleState {
        let views: Vec<ConsoleView> = self
            .asked
            .take()
            .map(|a| a.got.into_iter().flatten().collect())
            .unwrap_or_default();
        let sample = Sample::take(state, Instant::now(), &views);
        let built = assemble(
            state,
            &views,
            self.last.as_ref(),
            &sample,
            self.interval,
            self.topics_max,
        );
        self.last = Some(sample);
        built
    }

    /// The server loop's turn: disarm when idle, ask the shards when a
    /// state is due, and hand out a state or a ping for the streams.
    pub fn tick(&mut self, state: &AdminState, now: Instant, streams: usize) -> Option<Vec<u8>> {
        if streams > 0 {
            self.last_ask = Some(now);
        } else {
            self.next_state = None;
            self.next_ping = None;
            self.ready = None;
            let hold = ARM_HOLD_MIN.max(self.interval * 3);
            if self
                .last_ask
                .is_some_and(|at| now.duration_since(at) >= hold)
            {
                state.global.console_active.store(false, Ordering::Relaxed);
                self.last_ask = None;
                self.last = None;
                self.asked = None;
            }
            return None;
        }
        let mut out = self.ready.take().unwrap_or_default();
        if self.next_state.is_none_or(|at| now >= at) && self.asked.is_none() {
            self.ask(state, now);
            self.next_state = Some(now + self.interval);
        }
        if self.asked.is_some() && self.answered(state, now) {
            let built = self.build(state);
            let json = serde_json::to_string(&built).unwrap_or_default();
            out.extend_from_slice(&sse::event("state", &json));
        }
        if self.next_ping.is_none_or(|at| now >= at) {
            if self.next_ping.is_some() {
                out.extend_from_slice(sse::PING);
            }
            self.next_ping = Some(now + PING_INTERVAL);
        }
        (!out.is_empty()).then_some(out)
    }

    /// When the loop should turn next for the streams.
    pub fn wake_at(&self, streams: usize) -> Option<Instant> {
        if streams == 0 {
            return None;
        }
        if self.asked.is_some() {
            return Some(Instant::now() + ANSWER_POLL);
        }
        [self.next_state, self.next_ping]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Builds the state from the shards' answers and two samples.
fn assemble(
    state: &AdminState,
    views: &[ConsoleView],
    last: Option<&Sample>,
    now: &Sample,
    interval: Duration,
    topics_max: usize,
) -> ConsoleState {
    let mut shards = Vec::with_capacity(now.snaps.len());
    for (i, snap) in now.snaps.iter().enumerate() {
        let before = last.and_then(|l| l.snaps.get(i));
        let secs = last.and_then(|l| l.at.get(i)).map_or(0.0, |t| {
            now.at[i].saturating_duration_since(*t).as_secs_f64()
        });
        let rate = |new: u64, old: Option<u64>| match old {
            Some(old) if secs > 0.0 => new.saturating_sub(old) as f64 / secs,
            _ => 0.0,
        };
        let view = views.iter().find(|v| v.shard == i);
        let mut window = now.latency[i].clone();
        if let Some(old) = last.and_then(|l| l.latency.get(i)) {
            if window.subtract(old).is_err() {
                window = now.latency[i].clone();
            }
        }
        let q = |q: f64| {
            if window.is_empty() {
                0
            } else {
                window.value_at_quantile(q) / 1000
            }
        };
        shards.push(ShardRow {
            shard: i,
            connections: snap.connections,
            publishes_per_s: rate(snap.messages_in, before.map(|b| b.messages_in)),
            deliveries_per_s: rate(snap.messages_out, before.map(|b| b.messages_out)),
            queued_messages: view.map_or(0, |v| v.queued_messages),
            queued_bytes: view.map_or(0, |v| v.queued_bytes),
            ring_waits: snap.ring_full_waits,
            latency_us: Percentiles {
                p50: q(0.5),
                p99: q(0.99),
                p999: q(0.999),
            },
        });
    }
    let mut slow: Vec<SlowConsumer> = views
        .iter()
        .flat_map(|v| v.slow_consumers.iter().cloned())
        .collect();
    slow.sort_by(|a, b| {
        (b.queued_messages, b.dropped)
            .cmp(&(a.queued_messages, a.dropped))
            .then_with(|| a.client_id.cmp(&b.client_id))
    });
    slow.truncate(stats::SLOW_CONSUMERS_MAX);
    for c in &mut slow {
        c.truncated |= clip(&mut c.client_id);
    }
    ConsoleState {
        router_id: state.router_id.clone(),
        time_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        interval_ms: interval.as_millis() as u64,
        mesh: mesh(state),
        shards,
        slow_consumers: slow,
        topics: busiest(views, topics_max),
    }
}

/// The shards' topic rates summed by topic, busiest first, at most `max`.
fn busiest(views: &[ConsoleView], max: usize) -> Vec<TopicRate> {
    let mut by_topic: HashMap<&str, f64> = HashMap::new();
    for t in views.iter().flat_map(|v| &v.topics) {
        *by_topic.entry(t.topic.as_str()).or_default() += t.events_per_s;
    }
    let mut out: Vec<TopicRate> = by_topic
        .into_iter()
        .map(|(topic, events_per_s)| TopicRate {
            topic: topic.to_owned(),
            events_per_s,
            truncated: false,
        })
        .collect();
    out.sort_by(|a, b| {
        b.events_per_s
            .total_cmp(&a.events_per_s)
            .then_with(|| a.topic.cmp(&b.topic))
    });
    out.truncate(max);
    for t in &mut out {
        t.truncated |= clip(&mut t.topic);
    }
    out
}

/// Cuts `s` to at most [`TEXT_BYTES_MAX`] bytes on a character boundary;
/// true if it was cut.
fn clip(s: &mut String) -> bool {
    if s.len() <= TEXT_BYTES_MAX {
        return false;
    }
    let mut end = TEXT_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn admin_state(shards: usize) -> AdminState {
        AdminState {
            stats: (0..shards).map(|_| Arc::default()).collect(),
            global: Arc::default(),
            mesh_view: Arc::default(),
            page_size_max: 10,
            http: super::super::http::Limits {
                request_bytes_max: 1024,
                timeout: Duration::from_secs(1),
                streams_max: 1,
                stream_bytes_max: 1 << 16,
            },
            token: String::new(),
            router_id: "r1".into(),
            console_interval: Duration::from_millis(100),
            console_topics_max: 4,
            console_streams: Default::default(),
            console_streams_slow: Default::default(),
            explain_timeout: Duration::from_secs(1),
            default_account: String::new(),
        }
    }

    /// Answers a console request as a shard's tick would.
    fn shard_answers(state: &AdminState, shard: usize, topics: &[(&str, f64)]) {
        let s = &state.stats[shard];
        assert!(s.console_requested.swap(false, Ordering::AcqRel), "asked");
        *s.console.lock().unwrap() = Some(ConsoleView {
            shard,
            queued_messages: 7,
            topics: topics
                .iter()
                .map(|(t, r)| TopicRate {
                    topic: t.to_string(),
                    events_per_s: *r,
                    truncated: false,
                })
                .collect(),
            ..Default::default()
        });
    }

    fn state_of(event: &[u8]) -> serde_json::Value {
        let text = std::str::from_utf8(event).unwrap();
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or_else(|| panic!("no data: {text}"));
        serde_json::from_str(data).unwrap()
    }

    /// In virtual time: a stream arms the shards' sketches and gets a
    /// state once every shard answered, one per interval; with no stream
    /// and nobody asking, the flag is cleared after the hold.
    #[test]
    fn streams_get_states_then_the_console_disarms() {
        let state = admin_state(2);
        let mut c = Console::new(state.console_interval, state.console_topics_max);
        let t0 = Instant::now();
        assert_eq!(c.tick(&state, t0, 0), None);
        assert!(!state.global.console_active.load(Ordering::Relaxed));
        c.stream_opened(&state, t0);
        assert!(state.global.console_active.load(Ordering::Relaxed));
        // The request goes out; no shard answered yet: no state.
        assert_eq!(c.tick(&state, t0, 1), None);
        assert!(c.wake_at(1).is_some());
        shard_answers(&state, 0, &[("a", 2.0), ("b", 1.0)]);
        assert_eq!(c.tick(&state, t0, 1), None, "shard 1 has not answered");
        shard_answers(&state, 1, &[("b", 3.0)]);
        let first = state_of(&c.tick(&state, t0, 1).expect("a state"));
        assert_eq!(first["router_id"], "r1");
        assert_eq!(first["interval_ms"], 100);
        assert_eq!(first["shards"].as_array().unwrap().len(), 2);
        assert_eq!(first["shards"][1]["queued_messages"], 7);
        assert_eq!(first["topics"][0]["topic"], "b");
        assert_eq!(first["topics"][0]["events_per_s"], 4.0);
        assert!(first["mesh"].is_null());
        // Nothing more until the interval is over.
        let t1 = t0 + Duration::from_millis(50);
        assert_eq!(c.tick(&state, t1, 1), None);
        assert!(!state.stats[0].console_requested.load(Ordering::Relaxed));
        let t2 = t0 + Duration::from_millis(100);
        assert_eq!(c.tick(&state, t2, 1), None);
        shard_answers(&state, 0, &[]);
        shard_answers(&state, 1, &[]);
        let second = state_of(&c.tick(&state, t2, 1).expect("a second state"));
        assert!(second["topics"].as_array().unwrap().is_empty());
        // The stream closes: armed through the hold, then not.
        let t3 = t2 + ARM_HOLD_MIN - Duration::from_millis(1);
        assert_eq!(c.tick(&state, t3, 0), None);
        assert!(state.global.console_active.load(Ordering::Relaxed));
        assert_eq!(c.tick(&state, t2 + ARM_HOLD_MIN, 0), None);
        assert!(!state.global.console_active.load(Ordering::Relaxed));
        assert_eq!(c.wake_at(0), None);
    }

    /// A shard that never answers (stopping) delays a state by the wait
    /// only; its row shows no queues.
    #[test]
    fn a_silent_shard_does_not_hold_the_state() {
        let state = admin_state(2);
        let mut c = Console::new(state.console_interval, state.console_topics_max);
        let t0 = Instant::now();
        c.stream_opened(&state, t0);
        assert_eq!(c.tick(&state, t0, 1), None);
        shard_answers(&state, 0, &[]);
        assert_eq!(c.tick(&state, t0 + Duration::from_millis(10), 1), None);
        let s = state_of(&c.tick(&state, t0 + ANSWER_WAIT, 1).expect("a state"));
        assert_eq!(s["shards"][0]["queued_messages"], 7);
        assert_eq!(s["shards"][1]["queued_messages"], 0);
    }

    /// Rates and window percentiles from two known samples, exactly.
    /// Latency values are chosen so that the histogram's bucket (3
    /// significant digits) does not move their whole microseconds.
    #[test]
    fn assemble_rates_and_window_percentiles() {
        let state = admin_state(1);
        let t0 = Instant::now();
        let mut old_h = stats::latency_histogram();
        // Before the window: 1000 slow events (must not count).
        old_h.record_n(1_000_000, 1000).unwrap();
        let mut new_h = old_h.clone();
        new_h.record_n(80_000, 980).unwrap();
        new_h.record_n(300_000, 15).unwrap();
        new_h.record_n(900_000, 5).unwrap();
        let snap = |messages_in, messages_out| Snapshot {
            messages_in,
            messages_out,
            connections: 3,
            ring_full_waits: 9,
            ..Default::default()
        };
        let old = Sample {
            at: vec![t0],
            snaps: vec![snap(100, 0)],
            latency: vec![old_h],
        };
        let new = Sample {
            at: vec![t0 + Duration::from_secs(2)],
            snaps: vec![snap(300, 1000)],
            latency: vec![new_h],
        };
        let built = assemble(&state, &[], Some(&old), &new, state.console_interval, 4);
        let row = &built.shards[0];
        assert_eq!(row.publishes_per_s, 100.0);
        assert_eq!(row.deliveries_per_s, 500.0);
        assert_eq!((row.connections, row.ring_waits), (3, 9));
        assert_eq!(
            (row.latency_us.p50, row.latency_us.p99, row.latency_us.p999),
            (80, 300, 900)
        );
        // The first state: no rates, percentiles since start.
        let first = assemble(&state, &[], None, &new, state.console_interval, 4);
        assert_eq!(first.shards[0].publishes_per_s, 0.0);
        assert_eq!(first.shards[0].latency_us.p999, 1000);
    }

    /// A shard's rates divide by the time between its own answers (the
    /// ticks that published its counters), not the admin's clock.
    #[test]
    fn rates_use_the_shards_own_instants() {
        let state = admin_state(1);
        let t0 = Instant::now();
        let answer = |at, messages_in| ConsoleView {
            shard: 0,
            counters: Some((
                at,
                Snapshot {
                    messages_in,
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        let old = Sample::take(&state, t0 + Duration::from_secs(5), &[answer(t0, 0)]);
        let new = Sample::take(
            &state,
            t0 + Duration::from_secs(6),
            &[answer(t0 + Duration::from_millis(500), 100)],
        );
        let built = assemble(&state, &[], Some(&old), &new, state.console_interval, 4);
        assert_eq!(built.shards[0].publishes_per_s, 200.0);
    }

    /// Topics and client ids of any length (64 KiB, escaped six times
    /// over in JSON) are cut on a character boundary and marked: a state
    /// of the most topics allowed stays small.
    #[test]
    fn long_topics_and_client_ids_are_cut() {
        let state = admin_state(1);
        let t0 = Instant::now();
        let long = |i: usize| format!("{i}/{}", "\u{1}é".repeat(30_000));
        let views = [ConsoleView {
            shard: 0,
            slow_consumers: vec![SlowConsumer {
                shard: 0,
                protocol: "mqtt",
                client_id: long(0),
                queued_messages: 1,
                queued_bytes: 1,
                dropped: 0,
                truncated: false,
            }],
            topics: (0..256)
                .map(|i| TopicRate {
                    topic: long(i),
                    events_per_s: 1.0,
                    truncated: false,
                })
                .chain(std::iter::once(TopicRate {
                    topic: "short/é".into(),
                    events_per_s: 2.0,
                    truncated: false,
                }))
                .collect(),
            ..Default::default()
        }];
        let now = Sample::take(&state, t0, &views);
        let built = assemble(&state, &views, None, &now, state.console_interval, 256);
        assert_eq!(built.topics.len(), 256);
        assert_eq!(built.topics[0].topic, "short/é");
        assert!(!built.topics[0].truncated);
        for t in &built.topics[1..] {
            assert!(t.truncated && t.topic.len() <= TEXT_BYTES_MAX, "{t:?}");
            assert!(t.topic.len() > TEXT_BYTES_MAX - 4);
        }
        let c = &built.slow_consumers[0];
        assert!(c.truncated && c.client_id.len() <= TEXT_BYTES_MAX);
        let json = serde_json::to_value(&built).unwrap();
        assert_eq!(json["topics"][1]["truncated"], true);
        assert!(json["topics"][0].get("truncated").is_none());
        assert_eq!(json["slow_consumers"][0]["truncated"], true);
        // 257 rows of at most 200 bytes, 6 bytes each as escapes.
        let bytes = serde_json::to_string(&built).unwrap().len();
        assert!(bytes < 400 * 1024, "{bytes}");
    }

    /// A `/console/events` request does not arm the console by itself:
    /// only a stream added (after the server's room check) does.
    #[test]
    fn a_refused_stream_does_not_arm_the_console() {
        use crate::admin::http::Service as _;
        let state = Arc::new(admin_state(1));
        let mut service = crate::admin::Service {
            console: Console::new(state.console_interval, state.console_topics_max),
            state: state.clone(),
        };
        let request = crate::admin::http::Request {
            method: "GET",
            target: "/console/events",
            authorization: None,
        };
        assert!(matches!(
            service.handle(&request),
            crate::admin::http::Reply::Stream { .. }
        ));
        assert!(!state.global.console_active.load(Ordering::Relaxed));
        service.stream_added(Instant::now());
        assert!(state.global.console_active.load(Ordering::Relaxed));
    }

    #[test]
    fn topics_merge_across_shards() {
        let view = |shard, topics: &[(&str, f64)]| ConsoleView {
            shard,
            topics: topics
                .iter()
                .map(|(t, r)| TopicRate {
                    topic: t.to_string(),
                    events_per_s: *r,
                    truncated: false,
                })
                .collect(),
            ..Default::default()
        };
        let views = [
            view(0, &[("a", 5.0), ("b", 4.0)]),
            view(1, &[("b", 3.0), ("c", 1.0)]),
        ];
        let top = busiest(&views, 2);
        assert_eq!(
            top.iter()
                .map(|t| (t.topic.as_str(), t.events_per_s))
                .collect::<Vec<_>>(),
            [("b", 7.0), ("a", 5.0)]
        );
    }
}
