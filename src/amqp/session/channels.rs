//! Sessions of the AMQP session machine: `begin` and `end` (the channel
//! map, a session error ending one session while the connection stays),
//! the client's session `flow` and `disposition` (handed on as requests),
//! and the glue's answers to an unsettled transfer (`accepted`,
//! `rejected`). Split from `session.rs` to keep each file to one concern;
//! the state types are the machine's. Must not touch: links and credit
//! (`links.rs`), the handshake (`handshake.rs`), the delivery side
//! (`amqp::outbound`).

use std::time::Instant;

use fe2o3_amqp_types::definitions::{Handle, Role};
use fe2o3_amqp_types::messaging::{DeliveryState, Rejected};
use fe2o3_amqp_types::performatives::{Begin, Disposition, End, Flow, Performative};

use super::{
    error, Ack, AmqpSession, Link, LinkFlow, LinkRef, LinkState, Outcome, Phase, Request, Session,
    FIRST_OUTGOING_ID, INCOMING_WINDOW,
};
use crate::amqp::frame;
use crate::session::Actions;

impl AmqpSession {
    /// An unsettled message was taken: `accepted`, settled.
    pub fn accepted(&mut self, ack: Ack, _now: Instant, out: &mut Actions<Request>) {
        if self.phase != Phase::Opened || self.session(ack.channel).is_none() {
            return;
        }
        out.write(|b| frame::write_accepted(b, ack.channel, ack.delivery_id, ack.delivery_id));
        self.give_back(ack.channel, ack.handle, out);
    }

    /// An unsettled message could not be taken: `rejected` with the
    /// condition, settled.
    pub fn rejected(
        &mut self,
        ack: Ack,
        condition: &'static str,
        description: &str,
        _now: Instant,
        out: &mut Actions<Request>,
    ) {
        if self.phase != Phase::Opened || self.session(ack.channel).is_none() {
            return;
        }
        Self::write_rejected(out, ack, condition, description);
        self.give_back(ack.channel, ack.handle, out);
    }

    pub(super) fn write_rejected(
        out: &mut Actions<Request>,
        ack: Ack,
        condition: &'static str,
        description: &str,
    ) {
        let disposition = Disposition {
            role: Role::Receiver,
            first: ack.delivery_id,
            last: None,
            settled: true,
            state: Some(DeliveryState::Rejected(Rejected {
                error: Some(error(condition, description)),
            })),
            batchable: false,
        };
        Self::write_performative(out, ack.channel, Performative::Disposition(disposition));
    }

    pub(super) fn on_begin(&mut self, channel: u16, begin: Begin, out: &mut Actions<Request>) {
        if begin.remote_channel.is_some() {
            // weft begins no session of its own: nothing to answer.
            self.fail(
                "amqp:not-allowed",
                "begin answers no begin of weft's".into(),
                out,
            );
            return;
        }
        if channel > self.channel_max {
            let description = format!("channel {channel} over channel-max {}", self.channel_max);
            self.fail("amqp:not-allowed", description, out);
            return;
        }
        if self.session(channel).is_some() || self.ending.contains(&channel) {
            self.fail("amqp:not-allowed", format!("channel {channel} in use"), out);
            return;
        }
        let index = usize::from(channel);
        if self.sessions.len() <= index {
            self.sessions.resize_with(index + 1, || None);
        }
        self.sessions[index] = Some(Session {
            next_incoming_id: begin.next_outgoing_id,
            incoming_window: INCOMING_WINDOW,
            next_outgoing_id: FIRST_OUTGOING_ID,
            outgoing_window: u32::MAX,
            links: Vec::new(),
        });
        let reply = Begin {
            remote_channel: Some(channel),
            next_outgoing_id: FIRST_OUTGOING_ID,
            incoming_window: INCOMING_WINDOW,
            outgoing_window: u32::MAX,
            handle_max: Handle(self.settings.limits.handles_max.saturating_sub(1)),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        };
        Self::write_performative(out, channel, Performative::Begin(reply));
        out.request(Request::Begin {
            channel,
            incoming_window: begin.incoming_window,
            next_incoming_id: FIRST_OUTGOING_ID,
        });
    }

    pub(super) fn on_end(&mut self, channel: u16, out: &mut Actions<Request>) {
        if self.drop_session(channel, out) {
            Self::write_performative(out, channel, Performative::End(End { error: None }));
            out.request(Request::End { channel });
        }
    }

    /// A session error (part 2.5.x: e.g. `amqp:session:handle-in-use`):
    /// weft ends the session with the condition, and the connection
    /// stays; the session's frames are dropped until the client's `end`.
    pub(super) fn end_with_error(
        &mut self,
        channel: u16,
        condition: &'static str,
        description: String,
        out: &mut Actions<Request>,
    ) {
        if !self.drop_session(channel, out) {
            return;
        }
        let end = End {
            error: Some(error(condition, description)),
        };
        Self::write_performative(out, channel, Performative::End(end));
        out.request(Request::End { channel });
        self.ending.push(channel);
    }

    /// Forgets a session: its receiver links unsubscribed, its assembly
    /// bytes released (the caller writes the `end`, then
    /// `Request::End`). Whether it was there.
    fn drop_session(&mut self, channel: u16, out: &mut Actions<Request>) -> bool {
        let Some(session) = self.sessions[usize::from(channel)].take() else {
            return false;
        };
        for (handle, link) in session.links.iter().enumerate() {
            match link.as_ref().map(|l| &l.state) {
                Some(LinkState::Outgoing { .. }) => {
                    let link = LinkRef {
                        channel,
                        handle: handle as u32,
                    };
                    out.request(Request::Unsubscribe {
                        link,
                        closed: false,
                    });
                }
                Some(LinkState::Incoming(incoming)) => {
                    self.assembly_bytes -= incoming.buffer.len();
                }
                _ => {}
            }
        }
        true
    }

    pub(super) fn on_flow(&mut self, channel: u16, flow: Flow, out: &mut Actions<Request>) {
        let mut link_flow = None;
        if let Some(Handle(handle)) = flow.handle {
            let session = self.session(channel).expect("checked by the caller");
            match session.links.get(handle as usize).and_then(Option::as_ref) {
                None => {
                    self.unattached(channel, handle, out);
                    return;
                }
                Some(Link {
                    state: LinkState::Outgoing { .. },
                }) => {
                    link_flow = Some(LinkFlow {
                        handle,
                        delivery_count: flow.delivery_count,
                        link_credit: flow.link_credit.unwrap_or(0),
                        drain: flow.drain,
                        echo: flow.echo,
                    });
                }
                Some(Link {
                    state: LinkState::Incoming(_),
                }) if flow.echo => self.write_credit(channel, handle, out),
                Some(_) => {}
            }
        }
        out.request(Request::Flow {
            channel,
            next_incoming_id: flow.next_incoming_id,
            incoming_window: flow.incoming_window,
            link: link_flow,
        });
    }

    pub(super) fn on_disposition(
        &mut self,
        channel: u16,
        d: Disposition,
        out: &mut Actions<Request>,
    ) {
        // role sender: the client settles its own transfers, which weft
        // settled already when it answered.
        if d.role != Role::Receiver {
            return;
        }
        #[allow(unreachable_patterns)]
        let outcome = d.state.map(|state| match state {
            DeliveryState::Accepted(_) => Some(Outcome::Accepted),
            DeliveryState::Rejected(_) => Some(Outcome::Rejected),
            DeliveryState::Released(_) => Some(Outcome::Released),
            DeliveryState::Modified(m) => Some(Outcome::Modified {
                delivery_failed: m.delivery_failed.unwrap_or(false),
                undeliverable_here: m.undeliverable_here.unwrap_or(false),
            }),
            // received, transactional: not an outcome.
            _ => None,
        });
        out.request(Request::Settle {
            channel,
            first: d.first,
            last: d.last.unwrap_or(d.first),
            settled: d.settled,
            outcome: outcome.flatten(),
        });
    }

    /// A frame names a handle the session does not have (part 2.7.3 and
    /// 2.7.4: a session error): the session ends with
    /// `amqp:session:unattached-handle`, then the connection closes.
    pub(super) fn unattached(&mut self, channel: u16, handle: u32, out: &mut Actions<Request>) {
        let condition = "amqp:session:unattached-handle";
        let description = format!("handle {handle} is not attached on channel {channel}");
        let end = End {
            error: Some(error(condition, description.clone())),
        };
        Self::write_performative(out, channel, Performative::End(end));
        self.fail(condition, description, out);
    }
}
