//! One router hop of an event's trace context: found in the event's
//! metadata (MQTT 5 user properties / AMQP application properties /
//! HTTP headers, all `EventMeta::user_properties`, or a NATS publisher's
//! header block; never a CloudEvent's attributes, see [`cloudevent`]),
//! and written back for the next hop with a
//! new parent id (this router's span) and this router's `tracestate`
//! member in front.
//!
//! Owns: where the two fields sit in weft's metadata and how they are
//! replaced there. Ids come in as arguments (no randomness, no clock
//! here); `trace::Tracer` draws them. Must not touch: the event's other
//! fields, spans, exporters.
//!
//! Cost: [`find`] is a scan of the user property names and of a NATS
//! header block's lines for `traceparent`, with no allocation; only an
//! event that has one allocates (the two new values, and a copy of the
//! metadata when it is shared).

use super::context::{mutate_state, TraceParent};
use crate::event::EventMeta;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The trace context an event arrived with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming<'a> {
    /// The `traceparent` values (more than one is invalid).
    pub parents: Vec<&'a str>,
    /// The `tracestate` values, in order (combined as one list).
    pub states: Vec<&'a str>,
}

/// What this hop sends on, and what it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The valid context received; None: there was none valid (absent
    /// ones never get here), and the trace restarted here.
    pub received: Option<TraceParent>,
    /// Same trace id (or a new one), parent id = this router's span.
    pub sent: TraceParent,
    pub traceparent: String,
    pub tracestate: String,
}

/// The `name: value` lines of a NATS header block (after the status
/// line), trimmed; lines without `:` skipped. No allocation.
pub fn block_fields(block: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    std::str::from_utf8(block)
        .unwrap_or_default()
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
}

/// The trace context in `props` (user properties) and `block` (a NATS
/// header block), names matched without case (HTTP's and NATS' headers
/// ignore it; the W3C MQTT and AMQP drafts use the lowercase names);
/// None when there is no `traceparent`.
pub fn find<'a>(
    props: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    block: Option<&'a [u8]>,
) -> Option<Incoming<'a>> {
    let is = |k: &str, name: &str| k.len() == name.len() && k.eq_ignore_ascii_case(name);
    let fields = || block.map(block_fields).into_iter().flatten();
    if !props.clone().any(|(k, _)| is(k, TRACEPARENT)) && !fields().any(|(k, _)| is(k, TRACEPARENT))
    {
        return None;
    }
    let all = props.chain(fields());
    let mut found = Incoming {
        parents: Vec::new(),
        states: Vec::new(),
    };
    for (k, v) in all {
        if is(k, TRACEPARENT) {
            // The same value in both forms (a link's copy may carry
            // both) is one.
            if !found.parents.contains(&v) {
                found.parents.push(v);
            }
        } else if is(k, TRACESTATE) && !found.states.contains(&v) {
            found.states.push(v);
        }
    }
    Some(found)
}

/// The next hop's context (W3C §3.2, §3.3, §4.3): a valid `traceparent`
/// keeps its trace id and flags, gets `span_id` as its parent id; an
/// invalid one (or several) restarts the trace (`new_trace_id`, flags 00,
/// the received `tracestate` not parsed). `tracestate` gets
/// `key=value` in front (`context::mutate_state`).
pub fn next(
    incoming: &Incoming<'_>,
    span_id: [u8; 8],
    new_trace_id: impl FnOnce() -> [u8; 16],
    key: &str,
    value: &str,
) -> Hop {
    let received = match incoming.parents.as_slice() {
        [one] => TraceParent::parse(one).ok(),
        _ => None,
    };
    let (sent, tracestate) = match received {
        Some(r) => (
            TraceParent {
                parent_id: span_id,
                ..r
            },
            mutate_state(key, value, incoming.states.iter().copied()),
        ),
        None => (
            TraceParent {
                trace_id: new_trace_id(),
                parent_id: span_id,
                flags: 0,
            },
            mutate_state(key, value, std::iter::empty()),
        ),
    };
    Hop {
        received,
        sent,
        traceparent: sent.format(),
        tracestate,
    }
}

/// Replaces the trace context in a list of pairs: the first `traceparent`
/// (and `tracestate`) gets the new value, in place; later ones go; a
/// missing `tracestate` follows the `traceparent`. A list without a
/// `traceparent` is left alone.
/// (`traceparent`, `tracestate` and the name `tracestate` come in the
/// list's own string type.)
pub fn replace_pairs<S: AsRef<str>>(
    pairs: &mut Vec<(S, S)>,
    traceparent: S,
    tracestate: S,
    state_name: S,
) {
    let is = |k: &S, name: &str| k.as_ref().eq_ignore_ascii_case(name);
    if !pairs.iter().any(|(k, _)| is(k, TRACEPARENT)) {
        return;
    }
    let mut seen_parent = false;
    let mut seen_state = false;
    pairs.retain(|(k, _)| {
        if is(k, TRACEPARENT) {
            !std::mem::replace(&mut seen_parent, true)
        } else if is(k, TRACESTATE) {
            !std::mem::replace(&mut seen_state, true)
        } else {
            true
        }
    });
    let at = pairs
        .iter()
        .position(|(k, _)| is(k, TRACEPARENT))
        .expect("kept");
    pairs[at].1 = traceparent;
    match pairs.iter().position(|(k, _)| is(k, TRACESTATE)) {
        Some(i) => pairs[i].1 = tracestate,
        None => pairs.insert(at + 1, (state_name, tracestate)),
    }
}

/// A NATS header block with the trace context replaced the same way
/// (status line and the other fields kept byte for byte); None when the
/// block has no `traceparent`.
pub fn replace_block(block: &[u8], hop: &Hop) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(block).ok()?;
    let field = |line: &str, name: &str| {
        line.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(name))
    };
    if !text.split("\r\n").skip(1).any(|l| field(l, TRACEPARENT)) {
        return None;
    }
    let mut out = Vec::with_capacity(block.len() + hop.tracestate.len() + 16);
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or("NATS/1.0");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut wrote_state = false;
    let mut wrote_parent = false;
    for line in lines.filter(|l| !l.is_empty()) {
        if field(line, TRACEPARENT) {
            if !std::mem::replace(&mut wrote_parent, true) {
                put_field(&mut out, TRACEPARENT, &hop.traceparent);
            }
        } else if field(line, TRACESTATE) {
            if !std::mem::replace(&mut wrote_state, true) {
                put_field(&mut out, TRACESTATE, &hop.tracestate);
            }
        } else {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    if !wrote_state {
        put_field(&mut out, TRACESTATE, &hop.tracestate);
    }
    out.extend_from_slice(b"\r\n");
    Some(out)
}

fn put_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// True when `props` are a binary-mode CloudEvent's attributes (the four
/// required ones are there: the MQTT binding's rule). Their `traceparent`
/// / `tracestate` are then the distributed-tracing extension's, which
/// carry the *starting* trace and must not change per hop (CloudEvents
/// extension "distributed-tracing"); in the MQTT 5 binding they have the
/// W3C properties' names, so such properties are left alone.
pub fn cloudevent<'a>(props: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> bool {
    crate::cloudevents::REQUIRED
        .iter()
        .all(|r| props.clone().any(|(k, _)| k == *r))
}

/// The user properties that can hold W3C trace context: none of a
/// CloudEvent's (see [`cloudevent`]).
pub fn w3c_props<'a, I>(props: I) -> impl Iterator<Item = (&'a str, &'a str)> + Clone
where
    I: Iterator<Item = (&'a str, &'a str)> + Clone,
{
    let skip = cloudevent(props.clone());
    props.filter(move |_| !skip)
}

/// The trace context of an event's metadata, if any (see [`find`]).
pub fn find_in_meta(meta: &EventMeta) -> Option<Incoming<'_>> {
    find(
        w3c_props(meta.user_properties.iter().map(|(k, v)| (&**k, &**v))),
        meta.headers.as_deref(),
    )
}

/// Rewrites `meta` in place for the next hop (both forms it carries; a
/// CloudEvent's attributes are not touched).
pub fn apply_to_meta(meta: &mut EventMeta, hop: &Hop) {
    if cloudevent(meta.user_properties.iter().map(|(k, v)| (&**k, &**v))) {
        if let Some(block) = meta.headers.as_deref().and_then(|b| replace_block(b, hop)) {
            meta.headers = Some(block.into());
        }
        return;
    }
    replace_pairs(
        &mut meta.user_properties,
        hop.traceparent.as_str().into(),
        hop.tracestate.as_str().into(),
        TRACESTATE.into(),
    );
    if let Some(block) = meta.headers.as_deref().and_then(|b| replace_block(b, hop)) {
        meta.headers = Some(block.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const SPAN: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn props(list: &[(&str, &str)]) -> Vec<(Box<str>, Box<str>)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn hop_of(meta: &EventMeta) -> Hop {
        let incoming = find_in_meta(meta).expect("traced");
        next(&incoming, SPAN, || [9; 16], "weft", "b")
    }

    #[test]
    fn no_traceparent_no_context() {
        let meta = EventMeta {
            user_properties: props(&[("tracestate", "a=1"), ("k", "v")]),
            headers: Some(b"NATS/1.0\r\nX: y\r\n\r\n"[..].into()),
            ..Default::default()
        };
        assert_eq!(find_in_meta(&meta), None);
    }

    #[test]
    fn user_properties_rewritten_in_place() {
        let mut meta = EventMeta {
            user_properties: props(&[
                ("a", "1"),
                ("traceparent", TP),
                ("tracestate", "weft=a,x=1"),
            ]),
            ..Default::default()
        };
        let hop = hop_of(&meta);
        assert_eq!(hop.received.unwrap().parent_id[0], 0x00);
        assert_eq!(
            hop.traceparent,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        apply_to_meta(&mut meta, &hop);
        assert_eq!(
            meta.user_properties,
            props(&[
                ("a", "1"),
                ("traceparent", &hop.traceparent),
                ("tracestate", "weft=b,x=1")
            ])
        );
    }

    #[test]
    fn tracestate_added_after_traceparent() {
        let mut meta = EventMeta {
            user_properties: props(&[("TraceParent", TP), ("z", "1")]),
            ..Default::default()
        };
        let hop = hop_of(&meta);
        apply_to_meta(&mut meta, &hop);
        assert_eq!(
            meta.user_properties[1],
            ("tracestate".into(), "weft=b".into())
        );
        assert_eq!(meta.user_properties[2], ("z".into(), "1".into()));
    }

    #[test]
    fn nats_block_rewritten_other_fields_kept() {
        let block = format!("NATS/1.0\r\nA: 1\r\ntraceparent: {TP}\r\ntracestate: q=2\r\ntracestate: r=3\r\nB: 2\r\n\r\n");
        let mut meta = EventMeta {
            headers: Some(block.as_bytes().into()),
            ..Default::default()
        };
        let hop = hop_of(&meta);
        assert_eq!(
            hop.tracestate, "weft=b,q=2,r=3",
            "several headers are one list"
        );
        apply_to_meta(&mut meta, &hop);
        let want = format!(
            "NATS/1.0\r\nA: 1\r\ntraceparent: {}\r\ntracestate: weft=b,q=2,r=3\r\nB: 2\r\n\r\n",
            hop.traceparent
        );
        assert_eq!(
            std::str::from_utf8(meta.headers.as_deref().unwrap()).unwrap(),
            want
        );
    }

    #[test]
    fn invalid_or_repeated_traceparent_restarts() {
        for list in [
            vec![("traceparent", "00-zz")],
            vec![
                ("traceparent", TP),
                ("traceparent", &TP.replace("01", "00")[..]),
            ],
        ] {
            let mut meta = EventMeta {
                user_properties: props(&list)
                    .into_iter()
                    .chain(props(&[("tracestate", "x=1")]))
                    .collect(),
                ..Default::default()
            };
            let hop = hop_of(&meta);
            assert_eq!(hop.received, None);
            assert_eq!(hop.sent.trace_id, [9; 16]);
            assert_eq!(hop.sent.flags, 0);
            assert_eq!(hop.tracestate, "weft=b", "the old tracestate is not parsed");
            apply_to_meta(&mut meta, &hop);
            let tps: Vec<_> = meta
                .user_properties
                .iter()
                .filter(|(k, _)| &**k == "traceparent")
                .collect();
            assert_eq!(tps.len(), 1);
        }
    }

    #[test]
    fn same_context_in_both_forms_is_one() {
        let block = format!("NATS/1.0\r\ntraceparent: {TP}\r\n\r\n");
        let meta = EventMeta {
            user_properties: props(&[("traceparent", TP)]),
            headers: Some(block.as_bytes().into()),
            ..Default::default()
        };
        assert!(hop_of(&meta).received.is_some());
    }

    #[test]
    fn cloudevent_attributes_keep_the_starting_trace() {
        let mut meta = EventMeta {
            user_properties: props(&[
                ("specversion", "1.0"),
                ("id", "1"),
                ("source", "/s"),
                ("type", "t"),
                ("traceparent", TP),
            ]),
            ..Default::default()
        };
        assert_eq!(
            find_in_meta(&meta),
            None,
            "the extension is not the hop context"
        );
        // A NATS publisher's W3C header beside it is.
        let block = format!("NATS/1.0\r\nce-traceparent: {TP}\r\ntraceparent: {TP}\r\n\r\n");
        meta.headers = Some(block.as_bytes().into());
        let hop = hop_of(&meta);
        apply_to_meta(&mut meta, &hop);
        assert_eq!(&*meta.user_properties[4].1, TP, "attribute unchanged");
        let text = String::from_utf8(meta.headers.as_deref().unwrap().to_vec()).unwrap();
        assert!(
            text.contains(&format!("ce-traceparent: {TP}\r\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("traceparent: {}\r\n", hop.traceparent)),
            "{text}"
        );
    }

    #[test]
    fn borrowed_pairs_as_on_a_link() {
        let mut pairs: Vec<(&str, &str)> = vec![("traceparent", TP)];
        let hop = next(
            &find(pairs.iter().copied(), None).unwrap(),
            SPAN,
            || [9; 16],
            "weft",
            "c",
        );
        replace_pairs(&mut pairs, &hop.traceparent, &hop.tracestate, TRACESTATE);
        assert_eq!(pairs[1], ("tracestate", "weft=c"));
    }
}
