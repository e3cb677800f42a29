//! The route explain frames' codec (EXPLAIN and EXPLAIN_REPLY; see
//! `mesh::explain`), in the layout of the module comment of `link.rs`.
//! Split from `link.rs` by concern.

use super::{kind, put_count, put_str, EncodeError, Explain, Frame, LinkError, LinkLimits, Reader};

/// Explain flags byte: a `seek` router id follows (the request is on its
/// way to the router it names, not yet following an event's path).
pub(super) const EXPLAIN_SEEK: u8 = 0b0000_0001;

pub(super) fn len(x: &Explain<'_>) -> usize {
    let s = |s: &str| 2 + s.len();
    1 + s(x.origin)
        + 8
        + x.seek.map_or(0, s)
        + 1
        + 4
        + s(x.topic)
        + 2
        + x.dests.iter().map(|d| s(d)).sum::<usize>()
}

pub(super) fn put(out: &mut Vec<u8>, x: &Explain<'_>) -> Result<(), EncodeError> {
    out.push(if x.seek.is_some() { EXPLAIN_SEEK } else { 0 });
    put_str(out, "origin", x.origin)?;
    out.extend_from_slice(&x.request.to_be_bytes());
    if let Some(seek) = x.seek {
        put_str(out, "seek", seek)?;
    }
    out.push(x.hops);
    out.extend_from_slice(&x.budget_ms.to_be_bytes());
    put_str(out, "topic", x.topic)?;
    put_count(out, "dests", x.dests.len())?;
    for d in &x.dests {
        put_str(out, "dest", d)?;
    }
    Ok(())
}

/// An EXPLAIN_REPLY; its body is refused from its length, past
/// `explain_reply_bytes_max`.
pub(super) fn decode_reply<'a>(
    r: &mut Reader<'a>,
    limits: &LinkLimits,
) -> Result<Frame<'a>, LinkError> {
    let origin = r.str()?;
    let request = r.u64()?;
    let size = r.u32()? as usize;
    if size > limits.explain_reply_bytes_max {
        return Err(LinkError::ExplainReplyTooLarge {
            size,
            limit: limits.explain_reply_bytes_max,
        });
    }
    Ok(Frame::ExplainReply {
        origin,
        request,
        body: r.take(size)?,
    })
}

pub(super) fn decode<'a>(
    r: &mut Reader<'a>,
    limits: &LinkLimits,
) -> Result<Explain<'a>, LinkError> {
    let flags = r.u8()?;
    if flags & !EXPLAIN_SEEK != 0 {
        return Err(LinkError::BadFlags {
            kind: kind::EXPLAIN,
            flags,
        });
    }
    let origin = r.str()?;
    let request = r.u64()?;
    let seek = if flags & EXPLAIN_SEEK != 0 {
        Some(r.str()?)
    } else {
        None
    };
    let hops = r.hops(limits)?;
    let budget_ms = r.u32()?;
    let topic = r.str()?;
    let dests = r.dests(limits)?;
    Ok(Explain {
        origin,
        request,
        seek,
        hops,
        budget_ms,
        topic,
        dests,
    })
}
