//! MQTT's outbound state of one session, sans-IO: the in-flight window of
//! QoS 1 and 2 deliveries with their packet ids, PUBREC → PUBREL, what a
//! persistent session carries to its next connection (resends with DUP and
//! the same ids, MQTT-4.4.0-1), and MQTT 5's per-delivery extras (topic
//! aliases towards the client, subscription identifiers).
//!
//! Owns: packet ids and in-flight deliveries of one session. Must not
//! touch: the queue and its limits (the shard's mailbox holds this state
//! and calls in when it writes a batch or gets an acknowledgement),
//! sockets, clocks. Bounded: the window holds at most
//! `min(limits.inflight_max, the client's Receive Maximum)` deliveries;
//! aliases at most the client's Topic Alias Maximum.
//! Hot path: `write` runs per MQTT delivery; a 3.1.1 or plain 5 delivery
//! allocates nothing here. Rerun `weft bench` (MQTT QoS 0 and 1) after
//! changing it.

use std::collections::VecDeque;

use smallvec::SmallVec;

use super::deliver;
use crate::event::Event;

/// One QoS 1 or 2 delivery in flight.
#[derive(Debug, Clone)]
pub struct Flight {
    pub id: u16,
    pub event: Event,
    pub qos: u8,
    /// QoS 2: PUBREC came, PUBREL sent, waiting for PUBCOMP.
    pub released: bool,
}

/// What a persistent session carries from one connection to the next.
#[derive(Debug, Default, Clone)]
pub struct Backlog {
    /// Sent, not acknowledged: resent with DUP and the same packet id (or
    /// PUBREL again, for a released QoS 2 delivery).
    pub inflight: Vec<Flight>,
    /// Not sent yet (QoS >= 1 only).
    pub queued: Vec<(Event, u8)>,
}

/// The PUBREL that answers a PUBREC (MQTT-4.3.3-3); the same in 3.1.1 and
/// 5 (reason code 0 omitted).
pub fn pubrel(packet_id: u16) -> [u8; 4] {
    let id = packet_id.to_be_bytes();
    [0x62, 2, id[0], id[1]]
}

/// Subscription identifiers by filter (MQTT 5), as the session's
/// subscriptions hold them.
pub type SubscriptionIds = hashbrown::HashMap<Box<str>, u32>;

#[derive(Debug)]
pub struct Outbound {
    /// MQTT protocol level: 4 (3.1.1) or 5; PUBLISH packets are encoded
    /// accordingly.
    pub version: u8,
    /// MQTT 5: the client's Receive Maximum (caps the in-flight window).
    pub receive_max: u16,
    /// MQTT 5: the client's Maximum Packet Size (0 = none); larger
    /// deliveries are discarded (MQTT-3.1.2-25).
    pub max_packet: u32,
    /// MQTT 5: the client's Topic Alias Maximum.
    pub alias_max: u16,
    /// Deliveries sent and not acknowledged, oldest first.
    inflight: VecDeque<Flight>,
    last_packet_id: u16,
    /// Topic aliases this server assigned, towards the client.
    aliases: hashbrown::HashMap<Box<str>, u16>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            version: 4,
            receive_max: u16::MAX,
            max_packet: 0,
            alias_max: 0,
            inflight: VecDeque::new(),
            last_packet_id: 0,
            aliases: hashbrown::HashMap::new(),
        }
    }
}

impl Outbound {
    /// Bytes a delivery at `qos` takes in this session's version.
    pub fn wire_len(&self, event: &Event, qos: u8) -> usize {
        if self.version == 5 {
            deliver::wire_len_v5(event, qos)
        } else {
            deliver::wire_len(event, qos)
        }
    }

    /// Whether a delivery of `len` bytes exceeds the client's Maximum
    /// Packet Size.
    pub fn too_large(&self, len: usize) -> bool {
        self.max_packet > 0 && len > self.max_packet as usize
    }

    /// True when no more QoS 1 or 2 deliveries may be sent before an
    /// acknowledgement.
    pub fn window_full(&self, inflight_max: usize) -> bool {
        self.inflight.len() >= inflight_max.min(usize::from(self.receive_max))
    }

    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// Appends the PUBLISH of a new delivery; at QoS 1 and 2 it takes a
    /// packet id and stays in flight until acknowledged.
    pub fn write(
        &mut self,
        buf: &mut Vec<u8>,
        event: Event,
        qos: u8,
        retain: bool,
        ids: &SubscriptionIds,
    ) {
        let id = if qos > 0 { self.next_packet_id() } else { 0 };
        self.encode(buf, &event, qos, id, false, retain, ids);
        if qos > 0 {
            self.inflight.push_back(Flight {
                id,
                event,
                qos,
                released: false,
            });
        }
    }

    /// Appends the resend of a delivery a previous connection left in
    /// flight: the same packet id with DUP, or its PUBREL again.
    pub fn rewrite(&mut self, buf: &mut Vec<u8>, flight: Flight, ids: &SubscriptionIds) {
        if flight.released {
            buf.extend_from_slice(&pubrel(flight.id));
        } else {
            self.encode(buf, &flight.event, flight.qos, flight.id, true, false, ids);
        }
        self.inflight.push_back(flight);
    }

    #[allow(clippy::too_many_arguments)]
    fn encode(
        &mut self,
        buf: &mut Vec<u8>,
        event: &Event,
        qos: u8,
        id: u16,
        dup: bool,
        retain: bool,
        ids: &SubscriptionIds,
    ) {
        if self.version == 5 {
            let (matching, alias) = self.v5_extras(event, ids);
            deliver::write_v5(event, buf, qos, id, dup, retain, &matching, alias);
        } else {
            deliver::write(event, buf, qos, id, dup, retain);
        }
    }

    /// MQTT 5 per-delivery properties: the identifiers of the session's
    /// subscriptions matching the topic (MQTT-3.3.4-3), and a topic alias
    /// (assigned on first use while the client's maximum allows; `true` =
    /// send the topic along to set it).
    fn v5_extras(
        &mut self,
        event: &Event,
        ids: &SubscriptionIds,
    ) -> (SmallVec<[u32; 2]>, Option<(u16, bool)>) {
        let topic = event.topic();
        let matching = ids
            .iter()
            .filter(|(f, _)| crate::topic::filter_matches(unshared(f), topic))
            .map(|(_, id)| *id)
            .collect();
        let alias = if self.alias_max == 0 {
            None
        } else {
            match self.aliases.get(topic) {
                Some(a) => Some((*a, false)),
                None if self.aliases.len() < usize::from(self.alias_max) => {
                    let a = self.aliases.len() as u16 + 1;
                    self.aliases.insert(topic.into(), a);
                    Some((a, true))
                }
                None => None,
            }
        };
        (matching, alias)
    }

    fn next_packet_id(&mut self) -> u16 {
        // The window is at most `inflight_max` ids, so a free one is near.
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1).max(1);
            let id = self.last_packet_id;
            if !self.inflight.iter().any(|f| f.id == id) {
                return id;
            }
        }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2, after PUBREL): frees the packet
    /// id. False if no such delivery was in flight.
    pub fn acknowledge(&mut self, packet_id: u16) -> bool {
        let Some(at) = self
            .inflight
            .iter()
            .position(|f| f.id == packet_id && (f.qos == 1 || f.released))
        else {
            return false;
        };
        self.inflight.remove(at);
        true
    }

    /// Ends a delivery the client refused (MQTT 5 PUBREC with an error).
    pub fn forget(&mut self, packet_id: u16) {
        self.inflight.retain(|f| f.id != packet_id);
    }

    /// PUBREC of a QoS 2 delivery: it is released (the caller queues
    /// [`pubrel`]). False if no such delivery was waiting for it.
    pub fn received(&mut self, packet_id: u16) -> bool {
        match self
            .inflight
            .iter_mut()
            .find(|f| f.id == packet_id && f.qos == 2)
        {
            Some(flight) => {
                flight.released = true;
                true
            }
            None => false,
        }
    }

    /// The deliveries in flight, oldest first, for the session's next
    /// connection.
    pub fn take_inflight(&mut self) -> impl Iterator<Item = Flight> + '_ {
        self.inflight.drain(..)
    }
}

/// The filter of a subscription, without its `$share/{group}/` prefix.
fn unshared(full: &str) -> &str {
    full.strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(full, |(_, filter)| filter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::v5;

    fn no_ids() -> SubscriptionIds {
        SubscriptionIds::new()
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_zero() {
        let mut o = Outbound::default();
        let e = Event::new("t", b"x", 1, false);
        let mut buf = Vec::new();
        o.last_packet_id = u16::MAX - 1;
        o.write(&mut buf, e.clone(), 1, false, &no_ids());
        o.write(&mut buf, e.clone(), 1, false, &no_ids());
        let ids: Vec<u16> = o.inflight.iter().map(|f| f.id).collect();
        assert_eq!(ids, [u16::MAX, 1], "0 is never a packet id");
        // Wrapped around to an id still in flight: it is skipped.
        o.last_packet_id = u16::MAX - 1;
        o.write(&mut buf, e.clone(), 1, false, &no_ids());
        assert_eq!(o.inflight.back().unwrap().id, 2);
        // QoS 0 takes no id and stays out of the window.
        o.write(&mut buf, e, 0, false, &no_ids());
        assert_eq!(o.in_flight(), 3);
    }

    #[test]
    fn window_is_the_smaller_of_the_limit_and_receive_maximum() {
        let mut o = Outbound::default();
        let e = Event::new("t", b"x", 1, false);
        let mut buf = Vec::new();
        o.receive_max = 2;
        o.write(&mut buf, e.clone(), 1, false, &no_ids());
        assert!(!o.window_full(64));
        assert!(o.window_full(1));
        o.write(&mut buf, e, 1, false, &no_ids());
        assert!(o.window_full(64));
        assert!(o.acknowledge(1));
        assert!(!o.window_full(64));
        assert!(!o.acknowledge(1), "acknowledged once");
    }

    #[test]
    fn qos2_pubrec_releases_then_pubcomp_frees() {
        let mut o = Outbound::default();
        let mut buf = Vec::new();
        o.write(
            &mut buf,
            Event::new("t", b"x", 2, false),
            2,
            false,
            &no_ids(),
        );
        assert!(!o.acknowledge(1), "PUBCOMP before PUBREC frees nothing");
        assert!(!o.received(9));
        assert!(o.received(1));
        assert_eq!(pubrel(1), [0x62, 2, 0, 1]);
        // Carried to the next connection: the PUBREL is sent again.
        let flights: Vec<Flight> = o.take_inflight().collect();
        let mut next = Outbound::default();
        buf.clear();
        next.rewrite(&mut buf, flights[0].clone(), &no_ids());
        assert_eq!(buf, pubrel(1));
        assert!(next.acknowledge(1), "PUBCOMP frees it");
        assert_eq!(next.in_flight(), 0);
    }

    #[test]
    fn resend_keeps_its_id_with_dup() {
        let mut o = Outbound::default();
        let mut buf = Vec::new();
        o.write(
            &mut buf,
            Event::new("a/b", b"x", 1, false),
            1,
            false,
            &no_ids(),
        );
        let flight = o.take_inflight().next().unwrap();
        buf.clear();
        let mut next = Outbound::default();
        next.rewrite(&mut buf, flight, &no_ids());
        let (packet, _) = crate::mqtt::codec::decode(&buf, &Default::default())
            .unwrap()
            .unwrap();
        let crate::mqtt::codec::Packet::Publish(p) = packet else {
            panic!("a PUBLISH: {packet:?}");
        };
        assert!(p.dup);
        assert_eq!(p.packet_id, 1);
    }

    #[test]
    fn v5_aliases_up_to_the_clients_maximum_and_matching_ids() {
        let mut o = Outbound {
            version: 5,
            alias_max: 1,
            ..Outbound::default()
        };
        let mut ids = SubscriptionIds::new();
        ids.insert("a/+".into(), 7);
        ids.insert("$share/g/a/#".into(), 9);
        ids.insert("b/#".into(), 3);
        let decode = |buf: &[u8]| {
            let (p, _) = v5::decode(buf, &v5::DecodeLimits::default())
                .unwrap()
                .unwrap();
            match p {
                v5::Packet::Publish(p) => (p.topic.to_string(), p.properties.topic_alias, {
                    let mut s = p.properties.subscription_identifiers.clone();
                    s.sort();
                    s
                }),
                other => panic!("a PUBLISH: {other:?}"),
            }
        };
        let mut buf = Vec::new();
        o.write(&mut buf, Event::new("a/b", b"x", 0, false), 0, false, &ids);
        assert_eq!(decode(&buf), ("a/b".into(), Some(1), vec![7, 9]));
        buf.clear();
        // The alias is set: the topic goes empty.
        o.write(&mut buf, Event::new("a/b", b"x", 0, false), 0, false, &ids);
        assert_eq!(decode(&buf), (String::new(), Some(1), vec![7, 9]));
        buf.clear();
        // The maximum is reached: no alias for another topic.
        o.write(&mut buf, Event::new("b/c", b"x", 0, false), 0, false, &ids);
        assert_eq!(decode(&buf), ("b/c".into(), None, vec![3]));
    }
}
