//! STAND-IN (h36) for h38's `amqp::message`, with the contract's
//! signature of `to_event`, so that the session machine builds and is
//! tested before h38's branch is merged; h38's file replaces this one at
//! merge. Minimal: the bare message must be exactly one `data` section;
//! an anonymous link is refused (no `properties.to` here).

use crate::event::{Event, Origin};
use crate::topic::TopicLimits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageError(pub &'static str);

pub fn to_event(
    bytes: &[u8],
    topic: Option<&str>,
    qos: u8,
    origin: Origin,
    _limits: &TopicLimits,
) -> Result<Event, MessageError> {
    let topic = topic.ok_or(MessageError("no properties.to (stand-in)"))?;
    let payload = match bytes {
        [0x00, 0x53, 0x75, 0xa0, n, rest @ ..] if rest.len() == usize::from(*n) => rest,
        [0x00, 0x53, 0x75, 0xb0, a, b, c, d, rest @ ..]
            if rest.len() == u32::from_be_bytes([*a, *b, *c, *d]) as usize =>
        {
            rest
        }
        _ => return Err(MessageError("not one data section (stand-in)")),
    };
    Ok(Event::new(topic, payload, qos, false).with_origin(origin))
}
