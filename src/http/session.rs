//! One HTTP connection's rules, as a session machine (`session::Machine`):
//! requests in, answers and requests to the router out, no IO.
//!
//! A connection serves requests one after the other (keep-alive,
//! pipelined requests answered in order) until one of them opens an event
//! stream: from then on it only writes (the stream's events, queued by the
//! router into its mailbox, and heartbeats) and the bytes the client
//! sends are ignored — or, after a WebSocket upgrade, read as frames by
//! `ws::WsStream` (pings answered, a close answered). A connection with no request for
//! `keep_alive_idle_ms` is closed.
//!
//! Routes: `POST /v1/topics/{topic}` (publish: a plain body, or
//! CloudEvents in binary, structured or batched mode, read by
//! `cloudevents::from_http`: 400/415/422 as it says) and `GET /v1/subscribe`
//! (event stream). What the router must do goes out as a [`Request`]; the
//! glue answers with [`HttpSession::answer`] (after authentication,
//! authorization and routing), which writes the response.
//!
//! Owns: routing a request to its action, its validation (topic, QoS,
//! filters), and what a connection does after an answer. Must not touch:
//! security and the router (the glue's), the bytes of answers
//! (`response`) and events (`deliver`).

use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::request::{self, Malformed};
use super::response::{self, Problem};
use super::HttpLimits;
use crate::event::{Event, EventMeta};
use crate::session::{Actions, CloseReason, Deadline, Machine};
use crate::topic::{self, TopicLimits};
use crate::trace::hop::{TRACEPARENT, TRACESTATE};
use crate::ws::handshake::Refusal;

/// What a request asks of the router.
#[derive(Debug)]
pub enum Request {
    Publish(Publish),
    Subscribe(Subscribe),
}

/// A publish: its events (one, or a CloudEvents batch's; topic
/// validated, QoS and retain set), and the credentials that must allow it.
#[derive(Debug)]
pub struct Publish {
    pub events: SmallVec<[Event; 1]>,
    /// The `Authorization` header as sent (None: anonymous).
    pub authorization: Option<Box<[u8]>>,
}

/// An event stream: its filters (MQTT form, validated), where to resume
/// (`Last-Event-ID`), and the credentials that must allow it.
#[derive(Debug)]
pub struct Subscribe {
    pub filters: SmallVec<[Box<str>; 1]>,
    /// Replay only the retained messages stamped after this id.
    pub after: Option<u64>,
    pub authorization: Option<Box<[u8]>>,
    /// Over WebSocket (the upgrade was valid; its 101 is the stream's
    /// head): each event one text message.
    pub websocket: bool,
}

/// The glue's answer to a [`Request`].
#[derive(Debug)]
pub enum Answer {
    /// The router took the event (with persistence on: it is durable).
    Accepted,
    /// The event stream is open: its head goes out, then its events.
    Stream,
    Problem(Problem),
}

pub struct HttpSession {
    limits: HttpLimits,
    topic_limits: TopicLimits,
    /// Closed at this time if no request came (None while streaming).
    idle_deadline: Option<Instant>,
    /// Streaming: the next heartbeat.
    heartbeat_at: Option<Instant>,
    /// The request being answered asked for the connection to close.
    close_after: bool,
    /// The subscribe being answered asked for a WebSocket: its 101 is
    /// the stream's head.
    upgrade: Option<crate::ws::handshake::Upgrade>,
    /// Streaming over WebSocket: the client's frames are read.
    ws: Option<super::ws::WsStream>,
}

/// The routes' prefixes.
const TOPICS: &str = "/v1/topics/";
const SUBSCRIBE: &str = "/v1/subscribe";

impl HttpSession {
    pub fn new(limits: HttpLimits, topic_limits: TopicLimits, now: Instant) -> HttpSession {
        HttpSession {
            limits,
            topic_limits,
            idle_deadline: Some(now + Duration::from_millis(limits.keep_alive_idle_ms)),
            heartbeat_at: None,
            close_after: false,
            upgrade: None,
            ws: None,
        }
    }

    pub fn streaming(&self) -> bool {
        self.heartbeat_at.is_some()
    }

    /// The glue's answer to the last request: its response, then the
    /// connection goes on (keep-alive) or closes.
    pub fn answer(&mut self, answer: Answer, now: Instant, out: &mut Actions<Request>) {
        let upgrade = self.upgrade.take();
        match answer {
            Answer::Accepted => out.write(|b| response::accepted(b, self.close_after)),
            Answer::Problem(p) => out.write(|b| response::problem(b, &p, self.close_after)),
            Answer::Stream => {
                match upgrade {
                    Some(u) => {
                        out.write(|b| crate::ws::handshake::accept_response(&u, b));
                        self.ws = Some(super::ws::WsStream::default());
                    }
                    None => out.write(response::event_stream),
                }
                self.idle_deadline = None;
                self.heartbeat_at = Some(now + self.heartbeat());
                return;
            }
        }
        if self.close_after {
            out.close(CloseReason::ClientDisconnect);
        }
    }

    fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.limits.sse_heartbeat_ms)
    }

    fn refuse(&mut self, problem: Problem, out: &mut Actions<Request>) {
        out.write(|b| response::problem(b, &problem, self.close_after));
        if self.close_after {
            out.close(CloseReason::ClientDisconnect);
        }
    }

    fn route(&mut self, req: &request::Request<'_>, out: &mut Actions<Request>) {
        if let Some(topic) = req.path.strip_prefix(TOPICS) {
            if req.method != "POST" {
                return self.refuse(not_allowed(req.method, "POST"), out);
            }
            match self.publish(req, topic) {
                Ok(p) => out.request(Request::Publish(p)),
                Err(p) => self.refuse(p, out),
            }
        } else if req.path == SUBSCRIBE {
            if req.method != "GET" {
                return self.refuse(not_allowed(req.method, "GET"), out);
            }
            match self.subscribe(req) {
                Ok(s) => out.request(Request::Subscribe(s)),
                Err(p) => {
                    self.upgrade = None;
                    self.refuse(p, out)
                }
            }
        } else {
            let detail = format!(
                "no route for {}: weft serves POST {TOPICS}{{topic}} and GET {SUBSCRIBE}",
                req.path
            );
            self.refuse(Problem::new(404, detail), out)
        }
    }

    fn publish(&self, req: &request::Request<'_>, raw: &str) -> Result<Publish, Problem> {
        let topic = super::percent::decode(raw)
            .ok_or_else(|| Problem::new(400, "the topic is not percent-encoded UTF-8"))?;
        topic::validate_name(&topic, &self.topic_limits)
            .map_err(|e| Problem::new(400, format!("topic {topic:?}: {e}")))?;
        let mut qos = 1;
        let mut retain = false;
        for (name, value) in super::percent::pairs(req.query) {
            match name {
                "qos" => qos = parse_qos(value)?,
                "retain" => retain = parse_flag("retain", value)?,
                _ => {}
            }
        }
        if let Some(v) = req.header_str("weft-qos") {
            qos = parse_qos(v)?;
        }
        if let Some(v) = req.header_str("weft-retain") {
            retain = parse_flag("weft-retain", v)?;
        }
        let content_type = req.header_str("content-type");
        let cloud_event = content_type.is_some_and(|ct| {
            ct.get(..23)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/cloudevents"))
        }) || req
            .headers
            .iter()
            .any(|(name, _)| name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ce-")));
        // W3C trace context (`trace`): the headers become the user
        // properties every other protocol reads them from. A CloudEvent
        // that has a `ce-traceparent` keeps it (the extension's starting
        // trace); one without gets the W3C headers as its attributes.
        let trace_fields: Vec<(Box<str>, Box<str>)> = req
            .headers
            .iter()
            .filter_map(|(name, value)| {
                let name = [TRACEPARENT, TRACESTATE]
                    .into_iter()
                    .find(|n| name.eq_ignore_ascii_case(n))?;
                let value = std::str::from_utf8(value).ok()?.trim();
                Some((name.into(), value.into()))
            })
            .collect();
        let with_trace = |mut meta: EventMeta| {
            let has = |name: &str| meta.user_properties.iter().any(|(k, _)| &**k == name);
            if trace_fields.iter().any(|(k, _)| &**k == TRACEPARENT) && !has(TRACEPARENT) {
                meta.user_properties.retain(|(k, _)| &**k != TRACESTATE);
                meta.user_properties.extend(trace_fields.iter().cloned());
            }
            meta
        };
        let mut events = SmallVec::new();
        if cloud_event {
            // Binary, structured or batched mode (`cloudevents`): each
            // event in the MQTT 5 binding's form.
            let incoming = crate::cloudevents::from_http(&req.headers, req.body)
                .map_err(|e| Problem::new(e.status(), e.to_string()))?;
            for i in incoming {
                let event = Event::new(&topic, &i.payload, qos, retain);
                events.push(event.with_meta(with_trace(i.meta.unwrap_or_default())));
            }
        } else {
            // A plain body: the event, its content type kept (what
            // `from_http` gives too, without a copy of the body).
            let event = Event::new(&topic, req.body, qos, retain);
            events.push(event.with_meta(with_trace(EventMeta {
                content_type: content_type.map(Into::into),
                ..EventMeta::default()
            })));
        }
        Ok(Publish {
            events,
            authorization: req.header("authorization").map(Into::into),
        })
    }

    fn subscribe(&mut self, req: &request::Request<'_>) -> Result<Subscribe, Problem> {
        let websocket = super::ws::asks_upgrade(req);
        if websocket {
            let upgrade =
                super::ws::upgrade(req, self.limits.head_bytes_max).map_err(|r| Problem {
                    websocket_version: matches!(r, Refusal::Version(_)),
                    ..Problem::new(r.status(), r.to_string())
                })?;
            self.upgrade = Some(upgrade);
        } else if let Some(accept) = req.header_str("accept") {
            let takes = accept.split(',').any(|t| {
                let t = t.split(';').next().unwrap_or("").trim();
                t.eq_ignore_ascii_case("text/event-stream") || t == "*/*" || t == "text/*"
            });
            if !takes {
                return Err(Problem::new(
                    406,
                    "an event stream is text/event-stream, which Accept does not take",
                ));
            }
        }
        let mut filters: SmallVec<[Box<str>; 1]> = SmallVec::new();
        let mut after = None;
        for (name, value) in super::percent::pairs(req.query) {
            let decoded = || {
                super::percent::decode(value).ok_or_else(|| {
                    Problem::new(400, format!("{name} is not percent-encoded UTF-8"))
                })
            };
            let filter: Box<str> = match name {
                "filter" => {
                    let f = decoded()?;
                    topic::validate_subscription(&f, &self.topic_limits)
                        .map_err(|e| Problem::new(400, format!("filter {f:?}: {e}")))?;
                    f.into()
                }
                "subject" => {
                    let s = decoded()?;
                    let f = crate::topic::subject::to_internal(
                        &s,
                        true,
                        self.topic_limits.topic_bytes_max,
                    )
                    .map_err(|e| Problem::new(400, format!("subject {s:?}: {e}")))?;
                    topic::validate_client_filter(&f, &self.topic_limits)
                        .map_err(|e| Problem::new(400, format!("subject {s:?}: {e}")))?;
                    f.into()
                }
                "last_event_id" => {
                    after = Some(parse_id(value)?);
                    continue;
                }
                _ => continue,
            };
            if filters.len() >= self.limits.filters_max {
                return Err(Problem::new(
                    400,
                    format!("more than {} filters", self.limits.filters_max),
                ));
            }
            if !filters.contains(&filter) {
                filters.push(filter);
            }
        }
        if filters.is_empty() {
            return Err(Problem::new(
                400,
                "name what to receive: ?filter=F (MQTT form) or ?subject=S (NATS form)",
            ));
        }
        if let Some(v) = req.header_str("last-event-id") {
            after = Some(parse_id(v)?);
        }
        Ok(Subscribe {
            filters,
            after,
            authorization: req.header("authorization").map(Into::into),
            websocket,
        })
    }
}

fn not_allowed(method: &str, allow: &'static str) -> Problem {
    Problem {
        allow: Some(allow),
        ..Problem::new(405, format!("{method} is not allowed here: {allow} is"))
    }
}

fn parse_qos(v: &str) -> Result<u8, Problem> {
    match v {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(Problem::new(400, format!("qos {v:?}: 0 or 1"))),
    }
}

fn parse_flag(name: &str, v: &str) -> Result<bool, Problem> {
    match v {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(Problem::new(400, format!("{name} {v:?}: true or false"))),
    }
}

fn parse_id(v: &str) -> Result<u64, Problem> {
    v.trim()
        .parse()
        .map_err(|_| Problem::new(400, format!("Last-Event-ID {v:?}: an event id is a number")))
}

impl Deadline for HttpSession {
    fn next_deadline(&self) -> Option<Instant> {
        self.heartbeat_at.or(self.idle_deadline)
    }
}

impl Machine for HttpSession {
    type Request = Request;
    type Packet<'a> = request::Request<'a>;
    type Malformed = Malformed;
    const NAME: &'static str = "HTTP";

    fn decode<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<Option<(Self::Packet<'a>, usize)>, Self::Malformed> {
        request::decode(buf, &self.limits)
    }

    fn packet_len(&self, buf: &[u8]) -> usize {
        if self.streaming() {
            return 0;
        }
        request::request_len(buf, &self.limits)
    }

    fn feed(
        &mut self,
        buf: &[u8],
        now: Instant,
        out: &mut Actions<Request>,
    ) -> Result<Option<usize>, Malformed> {
        if let Some(ws) = &mut self.ws {
            return Ok(ws.feed(buf, out));
        }
        if self.streaming() {
            // A stream only writes: what the client sends is dropped.
            return Ok((!buf.is_empty()).then_some(buf.len()));
        }
        match request::decode(buf, &self.limits)? {
            Some((req, used)) => {
                self.handle(req, now, out);
                Ok(Some(used))
            }
            None => Ok(None),
        }
    }

    fn handle(&mut self, req: request::Request<'_>, now: Instant, out: &mut Actions<Request>) {
        self.idle_deadline = Some(now + Duration::from_millis(self.limits.keep_alive_idle_ms));
        self.close_after = req.close;
        self.route(&req, out);
    }

    fn malformed(&mut self, error: &Malformed, _now: Instant, out: &mut Actions<Request>) {
        let problem = Problem::new(error.status(), error.to_string());
        out.write(|b| response::problem(b, &problem, true));
        out.close(CloseReason::ProtocolError);
    }

    fn handle_timeout(&mut self, now: Instant, out: &mut Actions<Request>) {
        if let Some(at) = self.heartbeat_at {
            if at <= now {
                match &self.ws {
                    Some(ws) => ws.heartbeat(out),
                    None => out.write(|b| b.extend_from_slice(super::deliver::HEARTBEAT)),
                }
                self.heartbeat_at = Some(now + self.heartbeat());
            }
            return;
        }
        if self.idle_deadline.is_some_and(|at| at <= now) {
            self.idle_deadline = None;
            out.close(CloseReason::KeepAliveTimeout);
        }
    }

    fn closing(&mut self, reason: CloseReason, out: &mut Actions<Request>) {
        if let Some(ws) = &mut self.ws {
            ws.closing(reason, out);
        }
    }
}

#[cfg(test)]
mod tests;
