//! A PUB's event, built in one pass: the subject checked and mapped to
//! the internal topic straight into the event's one buffer, with no string
//! of its own in between (this runs for every PUB/HPUB).
//!
//! The usual subject maps byte for byte (`a.b.c` → `a/b/c`): no byte
//! that any subject rule looks at but `.`, no empty token, not in `$`.
//! Such a subject is valid exactly when it is no longer than
//! `topic_bytes_max` and has at most `topic_levels_max` tokens, and its
//! topic is the subject with `.` written as `/` (`Event::new_translated`).
//! Every other subject (wildcard tokens, `//`, the token `/`, `$…`,
//! anything refused) takes the general path, `subject::to_internal` then
//! `topic::validate_name`, which decides as before: both paths accept the
//! same subjects and build the same topic (`fast_and_general_agree`).
//!
//! Owns: the NATS publish subject → event step. Bounds: holds nothing
//! (no cache: one pass over a subject costs less than hashing it to look
//! it up). Hand-written: a byte table and one loop, the rules are
//! `topic::subject`'s.

use super::subject;
use crate::event::Event;
use crate::topic::{self, TopicLimits};

/// Bytes that send a subject to the general path: whitespace (refused),
/// MQTT wildcards (refused), `/` (the `//` escape or the empty-level
/// token), NUL (refused), `*` and `>` (wildcard tokens, refused in a
/// publish, or literal inside a longer token).
const SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let special = b" \t\r\n\x0b\x0c+#/\0*>";
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = true;
        i += 1;
    }
    t
};

/// Whether `subject` maps byte for byte and passes every rule but the
/// limits (which the caller checks on the length and `dots`): returns the
/// number of `.` separators, or None for the general path.
#[inline]
fn plain_dots(subject: &[u8]) -> Option<usize> {
    let (&first, &last) = (subject.first()?, subject.last()?);
    if first == b'.' || last == b'.' || first == b'$' {
        return None;
    }
    let mut dots = 0;
    let mut prev_dot = false;
    for &b in subject {
        if SPECIAL[usize::from(b)] {
            return None;
        }
        let dot = b == b'.';
        if dot && prev_dot {
            return None; // an empty token: refused by the general path
        }
        dots += usize::from(dot);
        prev_dot = dot;
    }
    Some(dots)
}

/// The event of a PUB to `subject` with `payload` (QoS 0, not retained),
/// or None when the subject is not a valid publish subject (the client
/// gets `-ERR 'Invalid Publish Subject'`).
pub fn event(subject: &str, payload: &[u8], limits: &TopicLimits) -> Option<Event> {
    if let Some(dots) = plain_dots(subject.as_bytes()) {
        if subject.len() <= limits.topic_bytes_max && dots < limits.topic_levels_max {
            return Some(Event::new_translated(
                subject, b'.', b'/', payload, 0, false,
            ));
        }
    }
    general(subject, payload, limits)
}

/// Every subject the fast path does not take: mapped, then validated.
#[cold]
#[inline(never)]
fn general(subj: &str, payload: &[u8], limits: &TopicLimits) -> Option<Event> {
    let internal = subject::to_internal(subj, false, limits.topic_bytes_max).ok()?;
    topic::validate_name(&internal, limits).ok()?;
    Some(Event::new(&internal, payload, 0, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: TopicLimits = TopicLimits {
        topic_bytes_max: 24,
        topic_levels_max: 4,
    };

    /// The general path alone, as the session decided before the fast
    /// path existed.
    fn reference(subj: &str, limits: &TopicLimits) -> Option<String> {
        let internal = subject::to_internal(subj, false, limits.topic_bytes_max).ok()?;
        topic::validate_name(&internal, limits).ok()?;
        Some(internal)
    }

    #[test]
    fn fast_and_general_agree() {
        let cases = [
            "a",
            "a.b.c",
            "a.b.c.d",
            "a.b.c.d.e",                 // too many tokens
            "abcdefghijklmnopqrstuvwx",  // exactly topic_bytes_max
            "abcdefghijklmnopqrstuvwxy", // one over
            "a..b",
            ".a",
            "a.",
            "",
            ".",
            "a b",
            "a\tb",
            "a.*",
            "a.>",
            "*",
            ">",
            "a*b",
            "a>b.c",
            "a.b//c",
            "/.a",
            "a./",
            "a/b",
            "a+b",
            "a#",
            "a\0b",
            "$SYS.x",
            "$weft.x",
            "$weft",
            "$weftx.a",
            "é.ü",
            "_INBOX.abc123.1",
        ];
        for subj in cases {
            let fast = event(subj, b"p", &L).map(|e| e.topic().to_string());
            assert_eq!(fast, reference(subj, &L), "{subj:?}");
            if let Some(e) = event(subj, b"payload", &L) {
                assert_eq!(e.payload(), b"payload");
                assert_eq!(e.qos, 0);
                assert!(!e.retain && e.meta.is_none());
            }
        }
    }

    #[test]
    fn plain_subjects_take_the_fast_path() {
        assert_eq!(plain_dots(b"a.b.c"), Some(2));
        assert_eq!(plain_dots(b"bench"), Some(0));
        for general in [&b"a.b//c"[..], b"$SYS.x", b"a.*", b"a..b", b"", b"a."] {
            assert_eq!(plain_dots(general), None, "{general:?}");
        }
    }
}
