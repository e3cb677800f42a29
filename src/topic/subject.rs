//! NATS subjects: validation as nats-server does it, and the mapping to
//! weft's internal topics (MQTT-shaped: levels split on `/`).
//!
//! The mapping is nats-server's own MQTT mapping, so that users who know one
//! know both:
//!
//! | internal (MQTT) topic | NATS subject | rule |
//! |---|---|---|
//! | `a/b/c` | `a.b.c` | `/` between levels is `.` |
//! | `a/b.c` | `a.b//c` | a `.` inside a level is `//` |
//! | `/a`, `a/`, `a//b` | `/.a`, `a./`, `a./.b` | an empty level is the token `/` |
//! | filter `a/+/c` | `a.*.c` | `+` is `*` |
//! | filter `a/+/#` | `a.>` | `>` (one or more tokens) is `+/#` |
//!
//! Refused on the NATS side (`-ERR 'Invalid Subject'`): tokens holding `+`
//! or `#` (MQTT wildcards, no literal form in MQTT) and a single `/` inside
//! a longer token (MQTT would read it as a level separator). A `$` first
//! token follows the MQTT rule: `*` and `>` in first position do not match
//! it.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SubjectError {
    #[error("empty subject")]
    Empty,
    #[error("empty token")]
    EmptyToken,
    #[error("whitespace in subject")]
    Whitespace,
    #[error("wildcard in a publish subject")]
    Wildcard,
    #[error("'>' must be the last token")]
    FullWildcardNotLast,
    #[error("token holds '+' or '#', which have no MQTT form")]
    MqttWildcardChar,
    #[error("token holds a lone '/', which MQTT reads as a level separator")]
    Slash,
    #[error("subject longer than {0} bytes")]
    TooLong(usize),
}

/// Converts a NATS subject to an internal topic name (`wildcards` false) or
/// filter (`wildcards` true), validating it on the way.
pub fn to_internal(
    subject: &str,
    wildcards: bool,
    bytes_max: usize,
) -> Result<String, SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.len() > bytes_max {
        return Err(SubjectError::TooLong(bytes_max));
    }
    let mut out = String::with_capacity(subject.len() + 2);
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return Err(SubjectError::EmptyToken);
        }
        match token {
            "*" | ">" if !wildcards => return Err(SubjectError::Wildcard),
            "*" => out.push('+'),
            ">" => {
                if tokens.peek().is_some() {
                    return Err(SubjectError::FullWildcardNotLast);
                }
                out.push_str("+/#");
            }
            "/" => {}
            _ => push_token(token, &mut out)?,
        }
        if tokens.peek().is_some() {
            out.push('/');
        }
    }
    Ok(out)
}

/// Appends one literal token as an internal level: one pass, no
/// allocation (this runs for every PUB; `//` becomes `.`).
fn push_token(token: &str, out: &mut String) -> Result<(), SubjectError> {
    let bytes = token.as_bytes();
    let mut plain_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0b' | b'\x0c' => {
                return Err(SubjectError::Whitespace)
            }
            b'+' | b'#' => return Err(SubjectError::MqttWildcardChar),
            b'/' => {
                if bytes.get(i + 1) != Some(&b'/') {
                    return Err(SubjectError::Slash);
                }
                out.push_str(&token[plain_from..i]);
                out.push('.');
                i += 2;
                plain_from = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&token[plain_from..]);
    Ok(())
}

/// Length of the NATS subject of an internal topic name.
pub fn nats_len(topic: &str) -> usize {
    // One pass (this runs per delivery): every byte stays, a '.' gains one
    // ('//'), every empty level gains one (the token '/').
    let bytes = topic.as_bytes();
    let mut len = bytes.len();
    let mut level_start = true;
    for &b in bytes {
        match b {
            b'.' => len += 1,
            b'/' if level_start => len += 1,
            _ => {}
        }
        level_start = b == b'/';
    }
    if level_start {
        len += 1; // empty last level (also the whole of an empty topic)
    }
    len
}

/// Appends the NATS subject of an internal topic name.
pub fn write_nats(topic: &str, out: &mut Vec<u8>) {
    let bytes = topic.as_bytes();
    // The usual topic (no '.', no empty level) maps byte for byte: copy it
    // and turn '/' into '.' in place (runs per delivery to NATS).
    // (The empty topic is one empty level, the token '/', not plain.)
    let plain = !bytes.is_empty()
        && !bytes.contains(&b'.')
        && bytes.first() != Some(&b'/')
        && bytes.last() != Some(&b'/')
        && !bytes.windows(2).any(|w| w == b"//");
    if plain {
        let start = out.len();
        out.extend_from_slice(bytes);
        for b in &mut out[start..] {
            if *b == b'/' {
                *b = b'.';
            }
        }
        return;
    }
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        if level.is_empty() {
            out.push(b'/');
            continue;
        }
        for &b in level.as_bytes() {
            if b == b'.' {
                out.extend_from_slice(b"//");
            } else {
                out.push(b);
            }
        }
    }
}

/// The NATS form of an internal filter (`+` → `*`, trailing `+/#` → `>`),
/// for display.
pub fn filter_to_nats(filter: &str) -> String {
    // `body` is None when the filter is `+/#` alone (NATS `>`): an empty
    // body after stripping is one empty level (`/.>`), not no level.
    let (body, tail) = match filter.strip_suffix("+/#") {
        Some("") => (None, true),
        Some(body) => (Some(body.strip_suffix('/').unwrap_or(body)), true),
        None => (Some(filter), false),
    };
    let mut out = if let Some(body) = body {
        body.split('/')
            .map(|level| {
                if level == "+" {
                    "*".to_string()
                } else {
                    to_nats(level)
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    } else {
        String::new()
    };
    if tail {
        if !out.is_empty() {
            out.push('.');
        }
        out.push('>');
    }
    out
}

pub fn to_nats(topic: &str) -> String {
    let mut out = Vec::with_capacity(nats_len(topic));
    write_nats(topic, &mut out);
    String::from_utf8(out).expect("UTF-8 in, UTF-8 out")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_table() {
        let names = [
            ("a.b.c", "a/b/c"),
            ("a.b//c", "a/b.c"),
            ("/.a", "/a"),
            ("a./", "a/"),
            ("a./.b", "a//b"),
            ("_INBOX.x1", "_INBOX/x1"),
            ("$SYS.x", "$SYS/x"),
        ];
        for (nats, internal) in names {
            assert_eq!(to_internal(nats, false, 256).unwrap(), internal, "{nats}");
            assert_eq!(to_nats(internal), nats, "{internal}");
            assert_eq!(nats_len(internal), nats.len(), "{internal}");
        }
        let filters = [
            ("a.*.c", "a/+/c"),
            ("a.>", "a/+/#"),
            (">", "+/#"),
            ("*", "+"),
            ("a.b*", "a/b*"),
        ];
        for (nats, internal) in filters {
            assert_eq!(to_internal(nats, true, 256).unwrap(), internal, "{nats}");
        }
    }

    #[test]
    fn refusals() {
        let cases = [
            ("", SubjectError::Empty),
            ("a..b", SubjectError::EmptyToken),
            (".a", SubjectError::EmptyToken),
            ("a.", SubjectError::EmptyToken),
            ("a b", SubjectError::Whitespace),
            ("a.*", SubjectError::Wildcard),
            ("a.>", SubjectError::Wildcard),
            ("a.b+c", SubjectError::MqttWildcardChar),
            ("a.#", SubjectError::MqttWildcardChar),
            ("a.b/c", SubjectError::Slash),
        ];
        for (s, e) in cases {
            assert_eq!(to_internal(s, false, 256), Err(e), "{s}");
        }
        assert_eq!(
            to_internal("a.>.b", true, 256),
            Err(SubjectError::FullWildcardNotLast)
        );
        assert_eq!(to_internal("abc", false, 2), Err(SubjectError::TooLong(2)));
    }

    #[test]
    fn filters_display_in_nats_form() {
        for f in ["a.*.c", "a.>", ">", "*", "a.b//c"] {
            let internal = to_internal(f, true, 256).unwrap();
            assert_eq!(filter_to_nats(&internal), f);
        }
    }

    /// Found by the `subject` fuzz target: an empty first level before a
    /// `>` (NATS `/.>`) displayed as `>`, and an empty level elsewhere in a
    /// filter (`/.a`) lost its `/` token, because `to_nats("")` wrote nothing
    /// where `nats_len("")` counts the one byte of `/`.
    #[test]
    fn empty_levels_keep_their_token_in_filters() {
        assert_eq!(to_nats(""), "/");
        assert_eq!(nats_len(""), to_nats("").len());
        for f in ["/.>", "/.a", "a./", "/.*.>", "/./.>", "*./"] {
            let internal = to_internal(f, true, 256).unwrap();
            assert_eq!(filter_to_nats(&internal), f, "{internal:?}");
        }
    }

    /// `a.>` (one or more tokens) maps to `a/+/#`, which the MQTT matcher
    /// reads the same way.
    #[test]
    fn full_wildcard_needs_a_token() {
        use crate::topic::filter_matches;
        let f = to_internal("a.>", true, 256).unwrap();
        assert!(!filter_matches(&f, "a"));
        assert!(filter_matches(&f, "a/b"));
        assert!(filter_matches(&f, "a/b/c"));
    }
}
