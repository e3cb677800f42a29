//! Route explain across the mesh: a sans-IO machine that carries an
//! explain request along the path an event's copies would take and
//! gathers the routers' reports back, hop by hop (README, "Route explain").
//!
//! Model: a request is started here for the admin endpoint
//! ([`Explainer::start`]) or arrives over a link ([`Explainer::on_request`]).
//! - *Seek* (`--from ROUTER`, the request names another router): flooded
//!   over every live link but the one it came in on, each router taking a
//!   given (origin, request) once (a bounded set of recent ones, kept for
//!   twice the timeout); the router it names explains as if the event
//!   were published there. Every other router answers with what its
//!   floods brought back (empty when they found nothing).
//! - *Trace*: the routing core says what this router does with the event
//!   (`route::Router::explain_publish` / `explain_arrival`, the plan code
//!   of publish itself); the shards are asked for the local subscribers
//!   ([`Out::AskShards`]) and the request goes on over the links the copies
//!   would take, for the same destinations.
//! - Every request gets exactly one EXPLAIN_REPLY over the link it came
//!   in on, once its own part and every onward reply are in, or at its
//!   deadline: the time left (`budget_ms`) travels with the request and
//!   each hop gives the next three quarters of its own, so the farther
//!   routers answer (or are written off as `timeout`) before the nearer
//!   ones must.
//!
//! Bounds: at most `explains_max` requests in progress (a further one is
//! answered at once as `busy`), a reply (this router's and all beyond it)
//! of at most `reply_bytes_max` bytes of JSON (reports past it are left
//! out and named `reply_too_large`), the dedup set at `SEEN_MAX`.
//! No clock and no sockets: time is an argument, actions are values.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::route::explain::{LocalDelivery, LocalRefusal, RouterReport, Unreached};
use super::route::{LinkId, Router};

/// Recent (origin, request) pairs remembered for the seek flood.
pub const SEEN_MAX: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExplainConfig {
    /// `mesh.explain_timeout_ms`.
    pub timeout: Duration,
    /// `mesh.explains_max`.
    pub explains_max: usize,
    /// `mesh.explain_reply_bytes_max`.
    pub reply_bytes_max: usize,
}

/// An explain request as it crosses a link (owned [`super::link::Explain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub origin: String,
    pub request: u64,
    pub seek: Option<String>,
    pub hops: u8,
    pub budget_ms: u32,
    pub topic: String,
    pub dests: Vec<String>,
}

/// What one router sends back: its report and those of the routers beyond.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyBody {
    pub routers: Vec<RouterReport>,
    pub unreached: Vec<Unreached>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Send `request` over `link` (an EXPLAIN frame).
    Send { link: LinkId, request: Request },
    /// Answer the EXPLAIN that came over `link` (an EXPLAIN_REPLY frame).
    Reply {
        link: LinkId,
        origin: String,
        request: u64,
        body: Vec<u8>,
    },
    /// Ask this router's shards which subscribers match `topic`; answer
    /// with [`Explainer::on_shards`] and the same `key`.
    AskShards { key: u64, topic: String },
    /// The request started with `ticket` is answered.
    Done { ticket: u64, body: ReplyBody },
}

enum Requester {
    Local(u64),
    Link(LinkId),
}

struct Pending {
    requester: Requester,
    origin: String,
    request: u64,
    deadline: Instant,
    /// Replies awaited: link → the routers it was sent for.
    waiting: BTreeMap<LinkId, Vec<String>>,
    /// This router's report, while the shards have not answered.
    own: Option<RouterReport>,
    body: ReplyBody,
    bytes: usize,
}

pub struct Explainer {
    router_id: String,
    config: ExplainConfig,
    /// By key (also the shards' key).
    pending: BTreeMap<u64, Pending>,
    next_key: u64,
    /// Seek requests taken: (origin, request) → until when, oldest first.
    seen: VecDeque<((String, u64), Instant)>,
}

impl Explainer {
    pub fn new(router_id: impl Into<String>, config: ExplainConfig) -> Explainer {
        Explainer {
            router_id: router_id.into(),
            config,
            pending: BTreeMap::new(),
            next_key: 1,
            seen: VecDeque::new(),
        }
    }

    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// A request for the admin endpoint: explain `topic` as published
    /// here, or at `from`. `request` must be unique to this router (the
    /// runtime starts its counter at the wall clock). False if
    /// `explains_max` are in progress.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        core: &Router,
        ticket: u64,
        request: u64,
        topic: &str,
        from: Option<&str>,
        now: Instant,
        out: &mut Vec<Out>,
    ) -> bool {
        if self.pending.len() >= self.config.explains_max {
            return false;
        }
        let req = Request {
            origin: self.router_id.clone(),
            request,
            seek: from.filter(|f| *f != self.router_id).map(str::to_owned),
            hops: 0,
            budget_ms: u32::try_from(self.config.timeout.as_millis()).unwrap_or(u32::MAX),
            topic: topic.to_owned(),
            dests: Vec::new(),
        };
        self.begin(core, Requester::Local(ticket), None, req, now, out);
        true
    }

    /// An EXPLAIN arrived over `link`.
    pub fn on_request(
        &mut self,
        core: &Router,
        link: LinkId,
        req: Request,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if self.pending.len() >= self.config.explains_max {
            let body = ReplyBody {
                routers: Vec::new(),
                unreached: vec![Unreached {
                    router: self.router_id.clone(),
                    reason: "busy".into(),
                }],
            };
            out.push(reply(link, &req.origin, req.request, &body));
            return;
        }
        self.begin(core, Requester::Link(link), Some(link), req, now, out);
    }

    fn begin(
        &mut self,
        core: &Router,
        requester: Requester,
        from: Option<LinkId>,
        req: Request,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        let key = self.next_key;
        self.next_key += 1;
        let budget = Duration::from_millis(u64::from(req.budget_ms));
        let onward_ms = req.budget_ms - req.budget_ms / 4;
        let mut p = Pending {
            requester,
            origin: req.origin.clone(),
            request: req.request,
            deadline: now + budget,
            waiting: BTreeMap::new(),
            own: None,
            body: ReplyBody::default(),
            bytes: 0,
        };
        let seeking = req.seek.as_deref().filter(|s| *s != self.router_id);
        if let Some(target) = seeking {
            let tag = (req.origin.clone(), req.request);
            self.forget_seen(now);
            if self.seen.iter().any(|(t, _)| *t == tag) {
                // Found by another path: that one answers.
                self.pending.insert(key, p);
                self.finish(key, out);
                return;
            }
            if self.seen.len() >= SEEN_MAX {
                self.seen.pop_front();
            }
            self.seen.push_back((tag, now + budget * 2));
            for (link, peer) in core.live_links() {
                if Some(link) == from {
                    continue;
                }
                out.push(Out::Send {
                    link,
                    request: Request {
                        seek: Some(target.to_owned()),
                        budget_ms: onward_ms,
                        ..req.clone()
                    },
                });
                p.waiting.insert(link, vec![peer]);
            }
        } else {
            // Published here (a start, or a seek that found this router),
            // or a copy arriving over a link.
            let hop = match (from, &req.seek) {
                (Some(link), None) => core.explain_arrival(link, &req.topic, &req.dests, req.hops),
                _ => core.explain_publish(&req.topic),
            };
            let hops = if from.is_some() && req.seek.is_none() {
                req.hops.saturating_add(1)
            } else {
                0
            };
            for (link, dests) in &hop.copies {
                out.push(Out::Send {
                    link: *link,
                    request: Request {
                        origin: req.origin.clone(),
                        request: req.request,
                        seek: None,
                        hops,
                        budget_ms: onward_ms,
                        topic: hop.report.topic.clone(),
                        dests: dests.clone(),
                    },
                });
                p.waiting.insert(*link, dests.clone());
            }
            p.body.unreached.extend(hop.unreached);
            if hop.local {
                out.push(Out::AskShards {
                    key,
                    topic: hop.report.topic.clone(),
                });
                p.own = Some(hop.report);
            } else {
                add_report(&mut p, hop.report, self.config.reply_bytes_max);
            }
        }
        self.pending.insert(key, p);
        self.finish_if_done(key, out);
    }

    /// The shards' answer for `key`: the subscribers matching.
    pub fn on_shards(
        &mut self,
        key: u64,
        deliveries: Vec<LocalDelivery>,
        refused: Vec<LocalRefusal>,
        truncated: bool,
        out: &mut Vec<Out>,
    ) {
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        let Some(mut own) = p.own.take() else {
            return;
        };
        own.deliveries = deliveries;
        own.refused = refused;
        own.truncated = truncated;
        // This router's report goes first.
        let before = p.body.routers.len();
        add_report(p, own, self.config.reply_bytes_max);
        if p.body.routers.len() > before {
            let mine = p.body.routers.pop().expect("just added");
            p.body.routers.insert(0, mine);
        }
        self.finish_if_done(key, out);
    }

    /// Whether the request `key` still waits for the shards' answer.
    pub fn waits_for_shards(&self, key: u64) -> bool {
        self.pending.get(&key).is_some_and(|p| p.own.is_some())
    }

    /// An EXPLAIN_REPLY arrived over `link`.
    pub fn on_reply(
        &mut self,
        link: LinkId,
        origin: &str,
        request: u64,
        body: &[u8],
        out: &mut Vec<Out>,
    ) {
        let key = self.pending.iter().find_map(|(&k, p)| {
            (p.origin == origin && p.request == request && p.waiting.contains_key(&link))
                .then_some(k)
        });
        let Some(key) = key else {
            return; // late (after the deadline) or unasked
        };
        let max = self.config.reply_bytes_max;
        let p = self.pending.get_mut(&key).expect("found above");
        let routers = p.waiting.remove(&link).unwrap_or_default();
        match serde_json::from_slice::<ReplyBody>(body) {
            Ok(reply) => {
                for r in reply.routers {
                    add_report(p, r, max);
                }
                p.body.unreached.extend(reply.unreached);
            }
            Err(_) => p
                .body
                .unreached
                .extend(routers.into_iter().map(|router| Unreached {
                    router,
                    reason: "bad_reply".into(),
                })),
        }
        self.finish_if_done(key, out);
    }

    /// `link` went down: its replies will not come.
    pub fn link_down(&mut self, link: LinkId, out: &mut Vec<Out>) {
        let keys: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.waiting.contains_key(&link))
            .map(|(&k, _)| k)
            .collect();
        for key in keys {
            let p = self.pending.get_mut(&key).expect("listed above");
            let routers = p.waiting.remove(&link).unwrap_or_default();
            p.body
                .unreached
                .extend(routers.into_iter().map(|router| Unreached {
                    router,
                    reason: "link_down".into(),
                }));
            self.finish_if_done(key, out);
        }
    }

    /// Requests past their deadline answer with what they have; the
    /// routers still awaited are `timeout`.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Out>) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        for key in due {
            let me = self.router_id.clone();
            let max = self.config.reply_bytes_max;
            let p = self.pending.get_mut(&key).expect("listed above");
            for (_, routers) in std::mem::take(&mut p.waiting) {
                p.body
                    .unreached
                    .extend(routers.into_iter().map(|router| Unreached {
                        router,
                        reason: "timeout".into(),
                    }));
            }
            if let Some(own) = p.own.take() {
                add_report(p, own, max);
                p.body.unreached.push(Unreached {
                    router: me,
                    reason: "shards_timeout".into(),
                });
            }
            self.finish(key, out);
        }
        self.forget_seen(now);
    }

    fn forget_seen(&mut self, now: Instant) {
        while self.seen.front().is_some_and(|(_, until)| *until <= now) {
            self.seen.pop_front();
        }
    }

    fn finish_if_done(&mut self, key: u64, out: &mut Vec<Out>) {
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.waiting.is_empty() && p.own.is_none())
        {
            self.finish(key, out);
        }
    }

    fn finish(&mut self, key: u64, out: &mut Vec<Out>) {
        let Some(p) = self.pending.remove(&key) else {
            return;
        };
        match p.requester {
            Requester::Local(ticket) => out.push(Out::Done {
                ticket,
                body: p.body,
            }),
            Requester::Link(link) => out.push(reply(link, &p.origin, p.request, &p.body)),
        }
    }
}

/// Adds a router's report within the byte bound; past it the router is
/// named as `reply_too_large` instead.
fn add_report(p: &mut Pending, report: RouterReport, max: usize) {
    let size = serde_json::to_vec(&report).map_or(usize::MAX, |b| b.len());
    // Room kept for the unreached list and the envelope.
    if p.bytes.saturating_add(size) > max.saturating_sub(1024) {
        p.body.unreached.push(Unreached {
            router: report.router,
            reason: "reply_too_large".into(),
        });
        return;
    }
    p.bytes += size;
    p.body.routers.push(report);
}

fn reply(link: LinkId, origin: &str, request: u64, body: &ReplyBody) -> Out {
    Out::Reply {
        link,
        origin: origin.to_owned(),
        request,
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
