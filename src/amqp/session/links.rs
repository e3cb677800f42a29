//! Links of the AMQP session machine: attach and detach for both roles,
//! the credit weft grants a client's sender, and transfers (assembly,
//! limits, `Request::Publish`). Split from `session.rs` to keep each file
//! to one concern; the state types are the machine's.

use std::time::Instant;

use fe2o3_amqp_types::definitions::{Handle, ReceiverSettleMode, Role, SenderSettleMode};
use fe2o3_amqp_types::messaging::{
    Source, TargetArchetype, TerminusDurability, TerminusExpiryPolicy,
};
use fe2o3_amqp_types::performatives::{Attach, Detach, Flow, Performative};

use super::{
    error, Ack, AmqpSession, Incoming, Link, LinkRef, LinkState, Partial, Request, Subscribed,
    ASSEMBLY_MESSAGES_MAX, INCOMING_WINDOW,
};
use crate::amqp::frame;
use crate::amqp::{address, message};
use crate::security::{Denied, Subscription};
use crate::session::Actions;

impl AmqpSession {
    /// The attach weft answers with: the client's, roles swapped.
    fn reply_to(&self, attach: &Attach) -> Attach {
        Attach {
            name: attach.name.clone(),
            handle: attach.handle.clone(),
            role: match attach.role {
                Role::Sender => Role::Receiver,
                Role::Receiver => Role::Sender,
            },
            snd_settle_mode: attach.snd_settle_mode.clone(),
            rcv_settle_mode: ReceiverSettleMode::First,
            source: match attach.role {
                // weft sends: its source is the authoritative one (3.5.3).
                Role::Receiver => attach
                    .source
                    .as_deref()
                    .map(|s| Box::new(reply_source(s, self.settings.durable_supported))),
                Role::Sender => attach.source.clone(),
            },
            target: attach.target.clone(),
            unsettled: None,
            incomplete_unsettled: false,
            initial_delivery_count: (attach.role == Role::Receiver).then_some(0),
            max_message_size: Some(self.settings.limits.message_bytes_max as u64),
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }
    }

    /// Refuses a link: the attach answered (with no terminus, part
    /// 2.6.3), then a detach (closed) with the error.
    fn refuse_link(
        &mut self,
        channel: u16,
        mut reply: Attach,
        condition: &'static str,
        description: String,
        out: &mut Actions<Request>,
    ) {
        let handle = reply.handle.0;
        match reply.role {
            Role::Receiver => reply.target = None,
            Role::Sender => reply.source = None,
        }
        Self::write_performative(out, channel, Performative::Attach(reply));
        self.detach_with_error(channel, handle, condition, description, out);
    }

    /// weft detaches a link (closed) with an error; its frames in flight
    /// are dropped until the client's detach.
    fn detach_with_error(
        &mut self,
        channel: u16,
        handle: u32,
        condition: &'static str,
        description: String,
        out: &mut Actions<Request>,
    ) {
        let detach = Detach {
            handle: Handle(handle),
            closed: true,
            error: Some(error(condition, description)),
        };
        Self::write_performative(out, channel, Performative::Detach(detach));
        if let Some(link) = self
            .session_mut(channel)
            .and_then(|s| s.links.get_mut(handle as usize))
            .and_then(Option::as_mut)
        {
            if let LinkState::Incoming(incoming) =
                std::mem::replace(&mut link.state, LinkState::Detached)
            {
                self.assembly_bytes -= incoming.buffer.len();
            }
        }
    }

    pub(super) fn on_attach(&mut self, channel: u16, attach: Attach, out: &mut Actions<Request>) {
        let handle = attach.handle.0;
        let handles_max = self.settings.limits.handles_max;
        if handle >= handles_max {
            let description = format!("handle {handle} over handle-max {}", handles_max - 1);
            self.fail("amqp:connection:framing-error", description, out);
            return;
        }
        let session = self.session_mut(channel).expect("checked by the caller");
        let index = handle as usize;
        if session.links.get(index).is_some_and(Option::is_some) {
            // A session error (part 2.7.3): that session ends, the
            // connection stays.
            let condition = "amqp:session:handle-in-use";
            let description = format!("handle {handle} in use on channel {channel}");
            self.end_with_error(channel, condition, description, out);
            return;
        }
        if session.links.len() <= index {
            session.links.resize_with(index + 1, || None);
        }
        let reply = self.reply_to(&attach);
        let link = LinkRef { channel, handle };
        match attach.role {
            Role::Sender => self.attach_incoming(link, &attach, reply, out),
            Role::Receiver => self.attach_outgoing(link, &attach, reply, out),
        }
    }

    fn set_link(&mut self, link: LinkRef, state: LinkState) {
        let session = self
            .session_mut(link.channel)
            .expect("checked by the caller");
        session.links[link.handle as usize] = Some(Link { state });
    }

    /// The client's sender link: weft receives on its target's topic.
    fn attach_incoming(
        &mut self,
        link: LinkRef,
        attach: &Attach,
        reply: Attach,
        out: &mut Actions<Request>,
    ) {
        self.set_link(link, LinkState::Detached);
        #[allow(unreachable_patterns)]
        let address = match attach.target.as_deref() {
            Some(TargetArchetype::Target(t)) => t.address.as_deref(),
            None => None,
            Some(_) => {
                let description = "transactions are not supported".into();
                return self.refuse_link(
                    link.channel,
                    reply,
                    "amqp:not-implemented",
                    description,
                    out,
                );
            }
        };
        let topic = match address::target(address, &self.settings.topic_limits) {
            Ok(address::Target::Topic(topic)) => Some(topic),
            Ok(address::Target::Anonymous) => None,
            Err(e) => {
                let description = address_error(e);
                return self.refuse_link(
                    link.channel,
                    reply,
                    "amqp:invalid-field",
                    description,
                    out,
                );
            }
        };
        if let (Some(topic), Some(grants)) = (&topic, &self.grants) {
            if !grants.may_publish(topic) {
                out.request(Request::Denied(Denied::Publish));
                let description = format!("no right to publish to {topic:?}");
                return self.refuse_link(
                    link.channel,
                    reply,
                    "amqp:unauthorized-access",
                    description,
                    out,
                );
            }
        }
        let incoming = Incoming {
            topic,
            credit: 0, // until weft's first flow, below
            delivery_count: attach.initial_delivery_count.unwrap_or(0),
            held: 0,
            pending: false,
            partial: None,
            buffer: Vec::new(),
        };
        self.set_link(link, LinkState::Incoming(Box::new(incoming)));
        Self::write_performative(out, link.channel, Performative::Attach(reply));
        self.write_credit(link.channel, link.handle, out);
    }

    /// The client's receiver link: a subscription, answered by
    /// [`AmqpSession::subscribed`].
    fn attach_outgoing(
        &mut self,
        link: LinkRef,
        attach: &Attach,
        mut reply: Attach,
        out: &mut Actions<Request>,
    ) {
        self.set_link(link, LinkState::Detached);
        let Some(terminus) = attach.source.as_deref() else {
            let description = "a receiver link needs a source".into();
            return self.refuse_link(link.channel, reply, "amqp:invalid-field", description, out);
        };
        let Some(address) = terminus.address.as_deref() else {
            let description = "a receiver link's source needs an address".into();
            return self.refuse_link(link.channel, reply, "amqp:invalid-field", description, out);
        };
        let source = match address::source(address, &self.settings.topic_limits) {
            Ok(source) => source,
            Err(e) => {
                let description = address_error(e);
                return self.refuse_link(
                    link.channel,
                    reply,
                    "amqp:invalid-field",
                    description,
                    out,
                );
            }
        };
        let subscription = self
            .grants
            .as_ref()
            .map_or(Subscription::Granted, |g| g.subscription(&source.filter));
        if subscription == Subscription::Denied {
            out.request(Request::Denied(Denied::Subscribe));
            let description = format!("no right to read {address:?}");
            return self.refuse_link(
                link.channel,
                reply,
                "amqp:unauthorized-access",
                description,
                out,
            );
        }
        // weft sends pre-settled only when the client asks for it; mixed
        // is answered as unsettled (weft chooses per link, not per
        // delivery).
        let qos = match attach.snd_settle_mode {
            SenderSettleMode::Settled => 0,
            _ => {
                reply.snd_settle_mode = SenderSettleMode::Unsettled;
                1
            }
        };
        let durable = (terminus.durable != TerminusDurability::None
            || terminus.expiry_policy == TerminusExpiryPolicy::Never)
            .then(|| format!("{}/{}", self.client_container, attach.name).into_boxed_str());
        self.set_link(
            link,
            LinkState::Outgoing {
                reply: Some(Box::new(reply)),
            },
        );
        out.request(Request::Subscribe {
            link,
            filter: source.filter,
            queue: source.queue,
            qos,
            checked: subscription == Subscription::Checked,
            durable,
        });
    }

    /// The router's answer to `Subscribe` for `link`: the attach reply, or
    /// attach then detach with the error.
    pub fn subscribed(
        &mut self,
        link: LinkRef,
        answer: Subscribed,
        _now: Instant,
        out: &mut Actions<Request>,
    ) {
        let Some(Link {
            state: LinkState::Outgoing { reply },
        }) = self
            .session_mut(link.channel)
            .and_then(|s| s.links.get_mut(link.handle as usize))
            .and_then(Option::as_mut)
        else {
            return;
        };
        let Some(reply) = reply.take() else {
            return;
        };
        match answer {
            Subscribed::Yes => {
                Self::write_performative(out, link.channel, Performative::Attach(*reply))
            }
            Subscribed::TooMany => {
                let description = "too many subscriptions".into();
                self.refuse_link(
                    link.channel,
                    *reply,
                    "amqp:resource-limit-exceeded",
                    description,
                    out,
                )
            }
            Subscribed::Refused => {
                let description = "subscription refused".into();
                self.refuse_link(link.channel, *reply, "amqp:not-allowed", description, out)
            }
        }
    }

    pub(super) fn on_detach(&mut self, channel: u16, detach: Detach, out: &mut Actions<Request>) {
        let handle = detach.handle.0;
        let session = self.session_mut(channel).expect("checked by the caller");
        let Some(link) = session
            .links
            .get_mut(handle as usize)
            .and_then(Option::take)
        else {
            return self.unattached(channel, handle, out);
        };
        if let Some(e) = &detach.error {
            tracing::debug!(condition = ?e.condition, description = ?e.description, "AMQP detach from the client");
        }
        match link.state {
            // weft detached it first: this detach is the answer.
            LinkState::Detached => return,
            LinkState::Outgoing { .. } => {
                let link = LinkRef { channel, handle };
                out.request(Request::Unsubscribe {
                    link,
                    closed: detach.closed,
                });
            }
            LinkState::Incoming(incoming) => self.assembly_bytes -= incoming.buffer.len(),
        }
        let reply = Detach {
            handle: Handle(handle),
            closed: detach.closed,
            error: None,
        };
        Self::write_performative(out, channel, Performative::Detach(reply));
    }

    /// A flow granting a client's sender link weft's credit
    /// (`sender_credit` less the unsettled deliveries it holds, from the
    /// delivery-count now), with the session's state: what weft tells is
    /// what a transfer is checked against from now on.
    pub(super) fn write_credit(&mut self, channel: u16, handle: u32, out: &mut Actions<Request>) {
        let sender_credit = self.settings.limits.sender_credit;
        let Some(session) = self.session_mut(channel) else {
            return;
        };
        session.incoming_window = INCOMING_WINDOW;
        let (next_incoming_id, next_outgoing_id, outgoing_window) = (
            session.next_incoming_id,
            session.next_outgoing_id,
            session.outgoing_window,
        );
        let Some(Link {
            state: LinkState::Incoming(incoming),
        }) = session
            .links
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        incoming.credit = sender_credit.saturating_sub(incoming.held);
        incoming.pending = false;
        let flow = Flow {
            next_incoming_id: Some(next_incoming_id),
            incoming_window: INCOMING_WINDOW,
            next_outgoing_id,
            outgoing_window,
            handle: Some(Handle(handle)),
            delivery_count: Some(incoming.delivery_count),
            link_credit: Some(incoming.credit),
            available: None,
            drain: false,
            echo: false,
            properties: None,
        };
        Self::write_performative(out, channel, Performative::Flow(flow));
    }

    /// A transfer frame (decoded by hand: the hot path).
    pub(super) fn on_transfer(
        &mut self,
        channel: u16,
        body: &[u8],
        _now: Instant,
        out: &mut Actions<Request>,
    ) {
        let transfer = match frame::decode_transfer(body) {
            Ok(t) => t,
            Err(e) => return self.fail("amqp:decode-error", e.to_string(), out),
        };
        if self.phase != super::Phase::Opened {
            return self.fail("amqp:not-allowed", "a transfer before open".into(), out);
        }
        let limits = self.settings.limits;
        let (origin, topic_limits) = (self.settings.origin, self.settings.topic_limits);
        // The field, not `session_mut`: `assembly_bytes` is used beside it.
        let Some(session) = self
            .sessions
            .get_mut(usize::from(channel))
            .and_then(Option::as_mut)
        else {
            if self.ending.contains(&channel) {
                return; // weft ended it: dropped until the client's end
            }
            let description = format!("channel {channel} has no session");
            return self.fail("amqp:not-found", description, out);
        };
        session.next_incoming_id = session.next_incoming_id.wrapping_add(1);
        session.incoming_window = session.incoming_window.saturating_sub(1);
        let window_low = session.incoming_window < INCOMING_WINDOW / 2;
        let handle = transfer.handle;
        let incoming = match session
            .links
            .get_mut(handle as usize)
            .and_then(Option::as_mut)
        {
            None => return self.unattached(channel, handle, out),
            Some(Link {
                state: LinkState::Detached,
            }) => return,
            Some(Link {
                state: LinkState::Outgoing { .. },
            }) => {
                let description = format!("transfer on handle {handle}, weft's sender link");
                return self.fail("amqp:not-allowed", description, out);
            }
            Some(Link {
                state: LinkState::Incoming(incoming),
            }) => incoming,
        };
        let partial = match incoming.partial {
            Some(p) => p,
            None => {
                // The first frame of a delivery takes one credit.
                let Some(delivery_id) = transfer.delivery_id else {
                    let description = "the first transfer of a delivery needs a delivery-id".into();
                    return self.fail("amqp:invalid-field", description, out);
                };
                if incoming.credit == 0 {
                    let description = "transfer without link credit".into();
                    let condition = "amqp:link:transfer-limit-exceeded";
                    return self.detach_with_error(channel, handle, condition, description, out);
                }
                incoming.credit -= 1;
                incoming.delivery_count = incoming.delivery_count.wrapping_add(1);
                Partial {
                    delivery_id,
                    settled: transfer.settled.unwrap_or(false),
                }
            }
        };
        let settled = partial.settled || transfer.settled == Some(true);
        let held = incoming.buffer.len();
        if transfer.aborted {
            // Dropped; its credit is granted again as for a message taken.
            self.assembly_bytes -= held;
            incoming.partial = None;
            incoming.buffer = Vec::new();
            self.credit_check(channel, handle, false, out);
            return;
        }
        let assembled = held + transfer.payload.len();
        if assembled > limits.message_bytes_max {
            self.assembly_bytes -= held;
            incoming.partial = None;
            incoming.buffer = Vec::new();
            let description = format!("message over {} bytes", limits.message_bytes_max);
            let condition = "amqp:link:message-size-exceeded";
            return self.detach_with_error(channel, handle, condition, description, out);
        }
        if transfer.more {
            let bound = limits
                .message_bytes_max
                .saturating_mul(ASSEMBLY_MESSAGES_MAX);
            if self.assembly_bytes + transfer.payload.len() > bound {
                // Many links each assembling a message: the connection's
                // bound, not one link's.
                let description = format!("messages in assembly over {bound} bytes");
                return self.fail("amqp:resource-limit-exceeded", description, out);
            }
            self.assembly_bytes += transfer.payload.len();
            incoming.buffer.extend_from_slice(transfer.payload);
            incoming.partial = Some(partial);
            return;
        }
        incoming.partial = None;
        let qos = u8::from(!settled);
        let ack = (!settled).then_some(Ack {
            channel,
            delivery_id: partial.delivery_id,
            handle,
        });
        // A single-frame message is read from the frame itself.
        let bytes = if incoming.buffer.is_empty() {
            transfer.payload
        } else {
            incoming.buffer.extend_from_slice(transfer.payload);
            &incoming.buffer[..]
        };
        // The sections' shape first: serde_amqp 0.18 panics (debug) on a
        // list claiming more fields than fit (see `frame::check_shape`).
        let result = match frame::check_message(bytes) {
            Ok(()) => {
                message::to_event(bytes, incoming.topic.as_deref(), qos, origin, &topic_limits)
            }
            Err(e) => Err(message::MessageError(e.0)),
        };
        self.assembly_bytes -= held;
        // Freed, not kept for the next message: a kept buffer per link
        // is memory `assembly_bytes` does not see (every link of every
        // session could keep one), and a multi-frame message is big
        // enough that one allocation does not matter.
        incoming.buffer = Vec::new();
        let anonymous = incoming.topic.is_none();
        match result {
            Ok(event) => {
                let denied = anonymous
                    && self
                        .grants
                        .as_ref()
                        .is_some_and(|g| !g.may_publish(event.topic()));
                if denied {
                    out.request(Request::Denied(Denied::Publish));
                    if let Some(ack) = ack {
                        let description = format!("no right to publish to {:?}", event.topic());
                        Self::write_rejected(out, ack, "amqp:unauthorized-access", &description);
                    }
                } else {
                    if ack.is_some() {
                        // It holds its credit until the glue answers it;
                        // counted before the request: the glue may answer
                        // at once (`accepted`, then `give_back`).
                        if let Some(incoming) = self.incoming_mut(channel, handle) {
                            incoming.held += 1;
                        }
                    }
                    out.request(Request::Publish { event, ack });
                }
            }
            Err(message::MessageError(why)) => match ack {
                Some(ack) => Self::write_rejected(out, ack, "amqp:decode-error", why),
                None => {
                    let description = why.to_string();
                    return self.detach_with_error(
                        channel,
                        handle,
                        "amqp:decode-error",
                        description,
                        out,
                    );
                }
            },
        }
        self.credit_check(channel, handle, window_low, out);
    }

    fn incoming_mut(&mut self, channel: u16, handle: u32) -> Option<&mut Incoming> {
        match self
            .session_mut(channel)
            .and_then(|s| s.links.get_mut(handle as usize))
            .and_then(Option::as_mut)
        {
            Some(Link {
                state: LinkState::Incoming(incoming),
            }) => Some(incoming),
            _ => None,
        }
    }

    /// An unsettled delivery on a client's sender link was answered: its
    /// credit may be granted again.
    pub(super) fn give_back(&mut self, channel: u16, handle: u32, out: &mut Actions<Request>) {
        let Some(incoming) = self.incoming_mut(channel, handle) else {
            return;
        };
        incoming.held = incoming.held.saturating_sub(1);
        self.credit_check(channel, handle, false, out);
    }

    /// Writes a credit flow when one is due: the grant (`sender_credit`
    /// less what is held) adds half of `sender_credit` to what the client
    /// has left, or the client has none left and some can be granted (or
    /// `force`: the session window wants refreshing). Among frames read
    /// together, it waits for the last of them (`flush_credit`).
    fn credit_check(&mut self, channel: u16, handle: u32, force: bool, out: &mut Actions<Request>) {
        let sender_credit = self.settings.limits.sender_credit;
        let half = (sender_credit / 2).max(1);
        let in_batch = self.in_batch;
        let Some(incoming) = self.incoming_mut(channel, handle) else {
            return;
        };
        let grant = sender_credit.saturating_sub(incoming.held);
        let due = force
            || (grant > incoming.credit
                && (incoming.credit == 0 || grant - incoming.credit >= half));
        if !due {
            return;
        }
        if !in_batch {
            return self.write_credit(channel, handle, out);
        }
        if !incoming.pending {
            incoming.pending = true;
            self.credit_due.push(LinkRef { channel, handle });
        }
    }

    /// The end of the frames read together: the credit flows due.
    pub(super) fn flush_credit(&mut self, out: &mut Actions<Request>) {
        if self.credit_due.is_empty() {
            return;
        }
        let mut due = std::mem::take(&mut self.credit_due);
        if self.phase == super::Phase::Opened {
            for link in due.drain(..) {
                if self
                    .incoming_mut(link.channel, link.handle)
                    .is_some_and(|i| i.pending)
                {
                    self.write_credit(link.channel, link.handle, out);
                }
            }
        }
        due.clear();
        self.credit_due = due;
    }
}

/// The source weft answers a receiver link's attach with (weft is the
/// sender, so its source is what holds, part 3.5.3): the address echoed,
/// and only what weft honours. No filter (weft applies none of a source's
/// filters: the address says what is read), no default outcome or
/// capabilities; `durable` and `expiry-policy` as requested only where
/// the glue says durable receivers are supported, else the defaults
/// (none, session-end), so a client does not believe its terminus
/// outlives the link.
pub(super) fn reply_source(requested: &Source, durable_supported: bool) -> Source {
    let mut source = Source {
        address: requested.address.clone(),
        ..Source::default()
    };
    if durable_supported {
        source.durable = requested.durable.clone();
        source.expiry_policy = requested.expiry_policy.clone();
    }
    source
}

fn address_error(e: address::AddressError) -> String {
    match e {
        address::AddressError::Empty => "empty address".into(),
        address::AddressError::Invalid(why) => why,
    }
}
