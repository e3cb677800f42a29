//! The EVENT frame's body codec (type 4, see `kind`): the event's
//! identity, path, destinations and groups, topic, flags, optional stamp,
//! optional metadata and payload, in the layout of the module comment of
//! `link.rs`. Split from `link.rs` by concern; the bounds (hops,
//! destinations, checked by `Reader`) are [`LinkLimits`]'.

use super::{
    kind, put_bin, put_count, put_str, EncodeError, Event, LinkError, LinkLimits, LinkMeta, Pairs,
    Reader, Strs,
};

// Event flags byte.
pub(super) const EVENT_QOS_MASK: u8 = 0b0000_0011;
pub(super) const EVENT_RETAIN: u8 = 0b0000_0100;
/// A stamp (u64) follows the flags byte.
pub(super) const EVENT_STAMP: u8 = 0b0000_1000;
/// A retained-store exchange: stored if newer, never delivered.
pub(super) const EVENT_SYNC: u8 = 0b0001_0000;
pub(super) const EVENT_RESERVED: u8 = !(EVENT_QOS_MASK | EVENT_RETAIN | EVENT_STAMP | EVENT_SYNC);

// Metadata presence byte, one bit per field, in wire order.
pub(super) const META_REPLY: u8 = 1 << 0;
pub(super) const META_HEADERS: u8 = 1 << 1;
pub(super) const META_RESPONSE_TOPIC: u8 = 1 << 2;
pub(super) const META_CORRELATION_DATA: u8 = 1 << 3;
pub(super) const META_CONTENT_TYPE: u8 = 1 << 4;
pub(super) const META_PAYLOAD_FORMAT: u8 = 1 << 5;
pub(super) const META_USER_PROPERTIES: u8 = 1 << 6;
pub(super) const META_EXPIRY: u8 = 1 << 7;

impl LinkMeta<'_> {
    pub(super) fn flags(&self) -> u8 {
        let bit = |present: bool, bit: u8| if present { bit } else { 0 };
        bit(self.reply.is_some(), META_REPLY)
            | bit(self.headers.is_some(), META_HEADERS)
            | bit(self.response_topic.is_some(), META_RESPONSE_TOPIC)
            | bit(self.correlation_data.is_some(), META_CORRELATION_DATA)
            | bit(self.content_type.is_some(), META_CONTENT_TYPE)
            | bit(self.payload_format.is_some(), META_PAYLOAD_FORMAT)
            | bit(!self.user_properties.is_empty(), META_USER_PROPERTIES)
            | bit(self.expiry_ms.is_some(), META_EXPIRY)
    }
}

pub(super) fn decode<'a>(r: &mut Reader<'a>, limits: &LinkLimits) -> Result<Event<'a>, LinkError> {
    let id = r.u64()?;
    let seq = r.u64()?;
    let origin = r.str()?;
    let hops = r.hops(limits)?;
    // Both lists stay in the frame's bytes (no `Vec` per event), checked
    // here once.
    let count = r.dests_count(limits)?;
    let dests = Strs::Wire {
        count: count as u16,
        bytes: r.str_list(count)?,
    };
    let count = r.dests_count(limits)?;
    let groups = Pairs::Wire {
        count: count as u16,
        bytes: r.str_list(2 * count)?,
    };
    let topic = r.str()?;
    let flags = r.u8()?;
    if flags & EVENT_RESERVED != 0 {
        return Err(LinkError::BadFlags {
            kind: kind::EVENT,
            flags,
        });
    }
    let qos = flags & EVENT_QOS_MASK;
    if qos == 3 {
        return Err(LinkError::BadQos(qos));
    }
    let stamp = if flags & EVENT_STAMP != 0 {
        // Absent is the flag's job: keep the encoding canonical.
        match r.u64()? {
            0 => return Err(LinkError::ZeroStamp),
            stamp => stamp,
        }
    } else {
        0
    };
    let present = r.u8()?;
    let has = |bit: u8| present & bit != 0;
    let mut meta = LinkMeta::default();
    if has(META_REPLY) {
        meta.reply = Some(r.str()?);
    }
    if has(META_HEADERS) {
        meta.headers = Some(r.bin()?);
    }
    if has(META_RESPONSE_TOPIC) {
        meta.response_topic = Some(r.str()?);
    }
    if has(META_CORRELATION_DATA) {
        meta.correlation_data = Some(r.bin()?);
    }
    if has(META_CONTENT_TYPE) {
        meta.content_type = Some(r.str()?);
    }
    if has(META_PAYLOAD_FORMAT) {
        meta.payload_format = Some(r.u8()?);
    }
    if has(META_USER_PROPERTIES) {
        let count = usize::from(r.u16()?);
        if count == 0 {
            // Absent is the flag's job: keep the encoding canonical.
            return Err(LinkError::EmptyUserProperties);
        }
        meta.user_properties = Vec::with_capacity(r.list_capacity(count, 4));
        for _ in 0..count {
            meta.user_properties.push((r.str()?, r.str()?));
        }
    }
    if has(META_EXPIRY) {
        meta.expiry_ms = Some(r.u32()?);
    }
    let payload = r.bin()?;
    Ok(Event {
        id,
        seq,
        origin,
        hops,
        dests,
        groups,
        topic,
        qos,
        retain: flags & EVENT_RETAIN != 0,
        stamp,
        sync: flags & EVENT_SYNC != 0,
        payload,
        meta,
    })
}

pub(super) fn put(out: &mut Vec<u8>, e: &Event<'_>) -> Result<(), EncodeError> {
    debug_assert!(e.qos <= 2, "QoS {}", e.qos);
    out.extend_from_slice(&e.id.to_be_bytes());
    out.extend_from_slice(&e.seq.to_be_bytes());
    put_str(out, "origin", e.origin)?;
    out.push(e.hops);
    put_count(out, "dests", e.dests.len())?;
    for d in e.dests.iter() {
        put_str(out, "dest", d)?;
    }
    put_count(out, "groups", e.groups.len())?;
    for (d, g) in e.groups.iter() {
        put_str(out, "group dest", d)?;
        put_str(out, "group", g)?;
    }
    put_str(out, "topic", e.topic)?;
    let mut flags = e.qos & EVENT_QOS_MASK;
    for (on, bit) in [
        (e.retain, EVENT_RETAIN),
        (e.stamp != 0, EVENT_STAMP),
        (e.sync, EVENT_SYNC),
    ] {
        if on {
            flags |= bit;
        }
    }
    out.push(flags);
    if e.stamp != 0 {
        out.extend_from_slice(&e.stamp.to_be_bytes());
    }
    let m = &e.meta;
    out.push(m.flags());
    if let Some(reply) = m.reply {
        put_str(out, "reply", reply)?;
    }
    if let Some(headers) = m.headers {
        put_bin(out, "headers", headers)?;
    }
    if let Some(t) = m.response_topic {
        put_str(out, "response topic", t)?;
    }
    if let Some(c) = m.correlation_data {
        put_bin(out, "correlation data", c)?;
    }
    if let Some(c) = m.content_type {
        put_str(out, "content type", c)?;
    }
    if let Some(f) = m.payload_format {
        out.push(f);
    }
    if !m.user_properties.is_empty() {
        put_count(out, "user properties", m.user_properties.len())?;
        for (k, v) in &m.user_properties {
            put_str(out, "user property", k)?;
            put_str(out, "user property", v)?;
        }
    }
    if let Some(x) = m.expiry_ms {
        out.extend_from_slice(&x.to_be_bytes());
    }
    put_bin(out, "payload", e.payload)
}
