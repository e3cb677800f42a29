//! The bridge's part of route explain: carries out the explain machine's
//! actions (`mesh::explain`): EXPLAIN and EXPLAIN_REPLY frames on the
//! links, questions to this router's shards and answers to the admin
//! thread, both through `Global::explain` (`shard::explain_board`),
//! polled on the bridge's tick (every 50 ms).

use std::time::Instant;

use super::Bridge;
use crate::mesh::explain::{Out, ReplyBody, Request};
use crate::mesh::link::{self, Frame};
use crate::mesh::route::explain::Unreached;
use crate::mesh::route::LinkId;

impl Bridge {
    /// An EXPLAIN or EXPLAIN_REPLY frame from `link`.
    pub(super) fn on_explain_frame(&self, link: LinkId, frame: Frame<'_>) {
        let mut out = Vec::new();
        match frame {
            Frame::Explain(x) => {
                let req = Request {
                    origin: x.origin.to_owned(),
                    request: x.request,
                    seek: x.seek.map(str::to_owned),
                    hops: x.hops,
                    budget_ms: x.budget_ms,
                    topic: x.topic.to_owned(),
                    dests: x.dests.iter().map(|d| (*d).to_owned()).collect(),
                };
                let router = self.router.borrow();
                self.explainer.borrow_mut().on_request(
                    &router,
                    link,
                    req,
                    Instant::now(),
                    &mut out,
                );
            }
            Frame::ExplainReply {
                origin,
                request,
                body,
            } => self
                .explainer
                .borrow_mut()
                .on_reply(link, origin, request, body, &mut out),
            other => debug_assert!(false, "{} is no explain frame", other.name()),
        }
        self.carry_explain(out);
    }

    /// A link ended: what it owed is written off.
    pub(super) fn explain_link_down(&self, link: LinkId) {
        let mut out = Vec::new();
        self.explainer.borrow_mut().link_down(link, &mut out);
        self.carry_explain(out);
    }

    /// The tick's explain chores: the admin's new requests, the shards'
    /// answers, deadlines.
    pub(super) fn explain_tick(&self) {
        let board = &self.ctx.global.explain;
        let now = Instant::now();
        let mut out = Vec::new();
        for ask in board.bridge_requests() {
            let request = self.next_explain.get();
            self.next_explain.set(request + 1);
            let router = self.router.borrow();
            let started = self.explainer.borrow_mut().start(
                &router,
                ask.ticket,
                request,
                &ask.topic,
                ask.from.as_deref(),
                now,
                &mut out,
            );
            if !started {
                board.bridge_answer(ask.ticket, busy(&self.router_id));
            }
        }
        let shards = self.ctx.global.client_shards;
        let asks = std::mem::take(&mut *self.explain_asks.borrow_mut());
        for (key, id) in asks {
            match board.take(id, shards) {
                Some(a) => self.explainer.borrow_mut().on_shards(
                    key,
                    a.deliveries,
                    a.refused,
                    a.truncated,
                    &mut out,
                ),
                None if self.explainer.borrow().waits_for_shards(key) => {
                    self.explain_asks.borrow_mut().push((key, id))
                }
                // Timed out: the question goes.
                None => board.cancel(id),
            }
        }
        self.explainer.borrow_mut().tick(now, &mut out);
        self.carry_explain(out);
    }

    fn carry_explain(&self, out: Vec<Out>) {
        let board = &self.ctx.global.explain;
        for o in out {
            match o {
                Out::Send { link, request } => {
                    let Some(l) = self.links.borrow().get(&link).cloned() else {
                        let mut again = Vec::new();
                        self.explainer.borrow_mut().link_down(link, &mut again);
                        self.carry_explain(again);
                        continue;
                    };
                    let dests: Vec<&str> = request.dests.iter().map(String::as_str).collect();
                    self.push_frame(
                        &l,
                        &Frame::Explain(link::Explain {
                            origin: &request.origin,
                            request: request.request,
                            seek: request.seek.as_deref(),
                            hops: request.hops,
                            budget_ms: request.budget_ms,
                            topic: &request.topic,
                            dests,
                        }),
                    );
                }
                Out::Reply {
                    link,
                    origin,
                    request,
                    body,
                } => {
                    if let Some(l) = self.links.borrow().get(&link).cloned() {
                        self.push_frame(
                            &l,
                            &Frame::ExplainReply {
                                origin: &origin,
                                request,
                                body: &body,
                            },
                        );
                    }
                }
                Out::AskShards { key, topic } => match board.ask(&topic) {
                    Some(id) => self.explain_asks.borrow_mut().push((key, id)),
                    None => {
                        // Full: this router's part stays open until its
                        // deadline (`shards_timeout`).
                    }
                },
                Out::Done { ticket, body } => board.bridge_answer(ticket, body),
            }
        }
    }
}

fn busy(router: &str) -> ReplyBody {
    ReplyBody {
        routers: Vec::new(),
        unreached: vec![Unreached {
            router: router.to_owned(),
            reason: "busy".into(),
        }],
    }
}
