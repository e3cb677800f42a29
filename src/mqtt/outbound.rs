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
    /// The packet id given last: the next is the first free one after it.
    last_packet_id: u16,
    /// How many ids after `last_packet_id` are known not to be in flight
    /// (an acknowledgement frees more; counting them would cost a scan, so
    /// they are found at the next scan).
    free_ahead: u16,
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
            free_ahead: 0,
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
    ) -> u16 {
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
        id
    }

    /// The deliveries in flight, left in place (oldest first).
    pub fn inflight_copy(&self) -> Vec<Flight> {
        self.inflight.iter().cloned().collect()
    }

    /// Appends the resend of a delivery a previous connection left in
    /// flight: the same packet id with DUP, or its PUBREL again.
    pub fn rewrite(&mut self, buf: &mut Vec<u8>, flight: Flight, ids: &SubscriptionIds) {
        // Its id may lie in the free run ahead (a resumed session's resends
        // carry the ids of its last connection): the run ends before it.
        self.free_ahead = self
            .free_ahead
            .min(ids_ahead(self.last_packet_id, flight.id) - 1);
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

    /// The first packet id after the last one given that is not in
    /// flight (1 follows 65535; 0 is never an id). O(1) amortised: the ids
    /// given go round the 65535 in order and the window holds at most
    /// `inflight_max` of them, so one scan of the window finds a free run
    /// that usually lasts most of a lap; a delivery still unanswered a lap
    /// later costs one more scan when the run reaches it.
    fn next_packet_id(&mut self) -> u16 {
        if self.free_ahead == 0 {
            self.find_free_run();
        }
        self.free_ahead -= 1;
        let id = next_id(self.last_packet_id);
        self.last_packet_id = id;
        debug_assert!(
            !self.inflight.iter().any(|f| f.id == id),
            "packet id {id} is in flight"
        );
        id
    }

    /// Moves `last_packet_id` to just before the first free id after it
    /// and sets `free_ahead` to the length of the free run from there.
    #[cold]
    fn find_free_run(&mut self) {
        // At most `inflight_max` (<= 65535) ids are in flight, and a full
        // window takes no new delivery: a free id exists.
        debug_assert!(self.inflight.len() < usize::from(u16::MAX));
        loop {
            let last = self.last_packet_id;
            let nearest = self
                .inflight
                .iter()
                .map(|f| ids_ahead(last, f.id))
                .min()
                .unwrap_or(u16::MAX);
            if nearest > 1 {
                self.free_ahead = nearest - 1;
                return;
            }
            // The next id is in flight: step over it.
            self.last_packet_id = next_id(last);
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

/// The packet id after `id`: 1 to 65535, then 1 again (0 is not an id).
fn next_id(id: u16) -> u16 {
    id.wrapping_add(1).max(1)
}

/// How many steps of [`next_id`] lead from `from` to `to`: 1 to 65535 (a
/// whole lap when they are the same id).
fn ids_ahead(from: u16, to: u16) -> u16 {
    // The ids 1..=65535 on a ring: 1 is at place 0, 65535 at 65534, and
    // 0 (before any id was given) at 65535's place, since 1 follows both.
    const IDS: u32 = u16::MAX as u32;
    let place = |id: u16| (u32::from(id) + IDS - 1) % IDS;
    match (place(to) + IDS - place(from)) % IDS {
        0 => u16::MAX,
        n => n as u16,
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

    /// Writes `n` QoS 1 deliveries, each acknowledged at once; their ids.
    fn write_acked(o: &mut Outbound, n: usize) -> Vec<u16> {
        let e = Event::new("t", b"x", 1, false);
        let mut buf = Vec::new();
        (0..n)
            .map(|_| {
                o.write(&mut buf, e.clone(), 1, false, &no_ids());
                let id = o.inflight.back().unwrap().id;
                assert!(o.acknowledge(id));
                buf.clear();
                id
            })
            .collect()
    }

    /// Writes a QoS `qos` (1 or 2) delivery left in flight; its id.
    fn write_kept(o: &mut Outbound, qos: u8) -> u16 {
        let mut buf = Vec::new();
        o.write(
            &mut buf,
            Event::new("t", b"x", qos, false),
            qos,
            false,
            &no_ids(),
        );
        o.inflight.back().unwrap().id
    }

    #[test]
    fn packet_ids_wrap_from_65535_to_1_never_0() {
        let mut o = Outbound::default();
        let ids = write_acked(&mut o, 65_536);
        assert_eq!(&ids[..2], [1, 2]);
        assert_eq!(
            &ids[65_533..],
            [65_534, 65_535, 1],
            "0 is never a packet id"
        );
        // QoS 0 takes no id and stays out of the window.
        let mut buf = Vec::new();
        o.write(
            &mut buf,
            Event::new("t", b"x", 0, false),
            0,
            false,
            &no_ids(),
        );
        assert_eq!(o.in_flight(), 0);
        assert_eq!(write_kept(&mut o, 1), 2);
    }

    #[test]
    fn packet_ids_skip_deliveries_unanswered_a_lap_later() {
        let mut o = Outbound::default();
        // 1, 2, 3 and 5 stay unanswered while the ids go round.
        let stuck: Vec<u16> = (0..3).map(|_| write_kept(&mut o, 1)).collect();
        assert_eq!(stuck, [1, 2, 3]);
        assert_eq!(write_acked(&mut o, 1), [4]);
        assert_eq!(write_kept(&mut o, 2), 5);
        let lap = write_acked(&mut o, 65_535 - 5);
        assert_eq!(lap.last(), Some(&65_535));
        // Round again: the ids in flight are stepped over.
        assert_eq!(write_acked(&mut o, 3), [4, 6, 7]);
        // Some answered meanwhile: free again on the next lap.
        assert!(o.acknowledge(2));
        let lap = write_acked(&mut o, 65_535 - 7);
        assert_eq!(lap.last(), Some(&65_535));
        assert_eq!(write_acked(&mut o, 3), [2, 4, 6]);
        assert_eq!(o.in_flight(), 3, "1, 3 and 5");
    }

    #[test]
    fn packet_ids_skip_the_resends_of_a_resumed_session() {
        // The last connection left 2 and 4 in flight; the next one resends
        // them and gives new ids around them.
        let e = Event::new("t", b"x", 1, false);
        let mut buf = Vec::new();
        let mut o = Outbound::default();
        for id in [2, 4] {
            let flight = Flight {
                id,
                event: e.clone(),
                qos: 1,
                released: false,
            };
            o.rewrite(&mut buf, flight, &no_ids());
        }
        let new: Vec<u16> = (0..3).map(|_| write_kept(&mut o, 1)).collect();
        assert_eq!(new, [1, 3, 5]);
        // A resend written after new deliveries (queued behind them): the
        // run of free ids found before ends at it.
        let mut o = Outbound::default();
        assert_eq!(write_kept(&mut o, 1), 1);
        let flight = Flight {
            id: 2,
            event: e,
            qos: 1,
            released: false,
        };
        o.rewrite(&mut buf, flight, &no_ids());
        assert_eq!(write_kept(&mut o, 1), 3);
    }

    /// Random writes, acknowledgements and resends over many laps: a new
    /// id is never 0 and never one in flight (checked against the window).
    #[test]
    fn packet_ids_are_unique_in_the_window_over_random_runs() {
        let mut o = Outbound::default();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut random = move |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let e = Event::new("t", b"x", 1, false);
        let mut buf = Vec::new();
        let window = 64;
        for _ in 0..400_000 {
            buf.clear();
            match random(8) {
                0..=3 if o.in_flight() < window => {
                    let id = write_kept(&mut o, 1);
                    assert_ne!(id, 0);
                    let uses = o.inflight.iter().filter(|f| f.id == id).count();
                    assert_eq!(uses, 1, "id {id} given twice");
                }
                4 if o.in_flight() < window => {
                    // A resend of an id not in flight.
                    let id = (random(65_535) + 1) as u16;
                    if !o.inflight.iter().any(|f| f.id == id) {
                        let flight = Flight {
                            id,
                            event: e.clone(),
                            qos: 1,
                            released: false,
                        };
                        o.rewrite(&mut buf, flight, &no_ids());
                    }
                }
                // Mostly the oldest answered, sometimes one left behind.
                _ if o.in_flight() > 0 => {
                    let at = if random(16) == 0 {
                        random(o.in_flight())
                    } else {
                        0
                    };
                    let id = o.inflight[at].id;
                    assert!(o.acknowledge(id));
                }
                _ => {}
            }
        }
    }

    #[test]
    fn ids_ahead_counts_round_the_ring() {
        assert_eq!(ids_ahead(0, 1), 1, "1 comes first");
        assert_eq!(ids_ahead(1, 2), 1);
        assert_eq!(ids_ahead(65_535, 1), 1);
        assert_eq!(ids_ahead(1, 65_535), 65_534);
        assert_eq!(ids_ahead(7, 7), u16::MAX, "a whole lap");
        assert_eq!(ids_ahead(0, 65_535), u16::MAX);
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
