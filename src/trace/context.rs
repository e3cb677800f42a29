//! W3C Trace Context (Level 1, <https://www.w3.org/TR/trace-context/>):
//! the `traceparent` value read and written, and the `tracestate` list
//! mutated the way a participating vendor must (§3.3.1.1: its own entry
//! moved to the front, at most 32 members, at most 512 bytes).
//!
//! Owns: the text forms only; no event, no clock, no socket. Written by
//! hand: the `opentelemetry` crate's `TraceContextPropagator` works on its
//! own `Context` and `Injector`/`Extractor` maps, allocates a `String` per
//! field and (for `tracestate`) keeps an invalid header whole; here the
//! parser borrows, runs on the shard thread per traced event, and the
//! mutation rules are the spec's.

use std::fmt::Write;

/// A parsed `traceparent`: trace id, parent (span) id, flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// The sampled flag (§3.2.2.5.1).
pub const SAMPLED: u8 = 0x01;

/// Members a `tracestate` may hold at most (§3.3.1.1).
pub const STATE_MEMBERS_MAX: usize = 32;
/// The length past which a vendor may shorten `tracestate` (§3.3.1.5).
pub const STATE_BYTES_MAX: usize = 512;
/// Members longer than this go first when shortening (§3.3.1.5).
const STATE_MEMBER_LONG: usize = 128;
/// The length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// Why a `traceparent` is invalid (the event's trace restarts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParentError {
    #[error("traceparent is shorter than 55 characters")]
    TooShort,
    #[error("traceparent version 00 must be exactly 55 characters")]
    Length,
    #[error("traceparent version ff is invalid")]
    VersionFf,
    #[error("traceparent fields must be lowercase hex separated by '-'")]
    Format,
    #[error("traceparent trace-id is all zeroes")]
    ZeroTraceId,
    #[error("traceparent parent-id is all zeroes")]
    ZeroParentId,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn parse_hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    debug_assert_eq!(text.len(), 2 * N);
    let mut out = [0; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = hex_value(pair[0])? << 4 | hex_value(pair[1])?;
    }
    Some(out)
}

impl TraceParent {
    /// Parses a `traceparent` value (§3.2; surrounding blanks allowed).
    /// A version above 00 is read as 00 where its first 55 characters
    /// are 00's form and the rest begins with `-` (§3.2.4, "future
    /// versions"); version `ff`, uppercase hex and all-zero ids are
    /// invalid.
    pub fn parse(text: &str) -> Result<TraceParent, ParentError> {
        let b = text.trim_matches([' ', '\t']).as_bytes();
        if b.len() < TRACEPARENT_LEN {
            return Err(ParentError::TooShort);
        }
        let version = parse_hex::<1>(&b[..2]).ok_or(ParentError::Format)?[0];
        if version == 0xff {
            return Err(ParentError::VersionFf);
        }
        if version == 0 && b.len() != TRACEPARENT_LEN {
            return Err(ParentError::Length);
        }
        if b.len() > TRACEPARENT_LEN && b[TRACEPARENT_LEN] != b'-' {
            return Err(ParentError::Format);
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return Err(ParentError::Format);
        }
        let trace_id = parse_hex::<16>(&b[3..35]).ok_or(ParentError::Format)?;
        let parent_id = parse_hex::<8>(&b[36..52]).ok_or(ParentError::Format)?;
        let flags = parse_hex::<1>(&b[53..55]).ok_or(ParentError::Format)?[0];
        if trace_id == [0; 16] {
            return Err(ParentError::ZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(ParentError::ZeroParentId);
        }
        // A future version's other flags are not 00's: only `sampled` is
        // kept (§3.2.4).
        let flags = if version == 0 { flags } else { flags & SAMPLED };
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The version-00 text (what a vendor sends whatever it received).
    pub fn format(&self) -> String {
        let mut s = String::with_capacity(TRACEPARENT_LEN);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.parent_id);
        let _ = write!(s, "-{:02x}", self.flags);
        s
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }
}

pub fn push_hex(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
}

/// A `tracestate` key (§3.3.1.3.1): `simple-key` or
/// `tenant-id@system-id`.
fn valid_key(key: &str) -> bool {
    let rest = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c);
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            (1..=256).contains(&b.len())
                && b[0].is_ascii_lowercase()
                && b[1..].iter().all(|&c| rest(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            (1..=241).contains(&t.len())
                && (1..=14).contains(&s.len())
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t[1..].iter().all(|&c| rest(c))
                && s[0].is_ascii_lowercase()
                && s[1..].iter().all(|&c| rest(c))
        }
    }
}

/// A `tracestate` value (§3.3.1.3.2): up to 256 printable ASCII
/// characters but `,` and `=`, the last not a space.
pub fn valid_value(value: &str) -> bool {
    let b = value.as_bytes();
    (1..=256).contains(&b.len())
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// The value of this router's own member: the router id with the
/// characters a `tracestate` value may not hold (`,`, `=`; router ids
/// have no other) written `_`.
pub fn state_value(router_id: &str) -> String {
    let v: String = router_id
        .chars()
        .map(|c| {
            if c == ',' || c == '=' || !(' '..='~').contains(&c) {
                '_'
            } else {
                c
            }
        })
        .take(256)
        .collect();
    if v.is_empty() {
        "weft".into()
    } else {
        v
    }
}

/// The `tracestate` this hop sends on (§3.3.1.1): `key=value` first, then
/// the received members (`received`: the header's values in order, several
/// headers combined as one list, §3.3.1.2) that are valid and not `key`'s,
/// each key once (a later duplicate dropped); at most 32 members and
/// 512 bytes, shortened the spec's way: members over 128 bytes removed
/// first, then from the end.
pub fn mutate_state<'a>(key: &str, value: &str, received: impl Iterator<Item = &'a str>) -> String {
    let own = format!("{key}={value}");
    let mut members: Vec<&str> = Vec::new();
    for list in received {
        for member in list.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue; // empty list-members are allowed, and dropped
            }
            let Some((k, v)) = member.split_once('=') else {
                continue;
            };
            if !valid_key(k) || !valid_value(v) || k == key {
                continue;
            }
            if members
                .iter()
                .any(|m| m.split_once('=').map(|x| x.0) == Some(k))
            {
                continue;
            }
            members.push(member);
        }
    }
    members.truncate(STATE_MEMBERS_MAX - 1);
    let len = |members: &[&str]| own.len() + members.iter().map(|m| m.len() + 1).sum::<usize>();
    while len(&members) > STATE_BYTES_MAX {
        match members.iter().rposition(|m| m.len() > STATE_MEMBER_LONG) {
            Some(i) => {
                members.remove(i);
            }
            None => {
                members.pop();
            }
        }
    }
    let mut out = own;
    for m in members {
        out.push(',');
        out.push_str(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trip() {
        let tp = TraceParent::parse(GOOD).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(
            tp.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(tp.sampled());
        assert_eq!(tp.format(), GOOD);
        assert_eq!(TraceParent::parse(&format!(" {GOOD}\t")).unwrap(), tp);
    }

    #[test]
    fn traceparent_invalid_per_spec() {
        use ParentError::*;
        let cases = [
            ("", TooShort),
            (&GOOD[..54], TooShort),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
                Length,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                VersionFf,
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Format,
            ),
            (
                "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
                Format,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                ZeroTraceId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                ZeroParentId,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(TraceParent::parse(text), Err(want), "{text:?}");
        }
    }

    #[test]
    fn traceparent_future_version_read_as_00() {
        let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-comes";
        let tp = TraceParent::parse(future).unwrap();
        assert_eq!(
            tp.flags, SAMPLED,
            "unknown flags of another version dropped"
        );
        assert!(tp.format().starts_with("00-4bf92f"));
        // Longer, but not followed by '-'.
        assert_eq!(
            TraceParent::parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
            Err(ParentError::Format)
        );
        // A future version as short as 00 is fine.
        assert!(TraceParent::parse(&GOOD.replacen("00", "01", 1)).is_ok());
    }

    #[test]
    fn state_own_member_moves_to_front() {
        let s = mutate_state(
            "weft",
            "b",
            ["rojo=00f067aa0ba902b7,weft=a,congo=t61rcWkgMzE"].into_iter(),
        );
        assert_eq!(s, "weft=b,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
        assert_eq!(mutate_state("weft", "a", std::iter::empty()), "weft=a");
    }

    #[test]
    fn state_combines_headers_drops_invalid_and_duplicates() {
        let s = mutate_state(
            "weft",
            "c",
            ["rojo=1, ,Bad=2", "ok@sys=3,rojo=4,nokey,x=,y=a,b"].into_iter(),
        );
        // `Bad` has an uppercase key, `x=` an empty value, `y=a,b` splits
        // into `y=a` and a member without '=', the second `rojo` repeats.
        assert_eq!(s, "weft=c,rojo=1,ok@sys=3,y=a");
    }

    #[test]
    fn state_bounded_to_32_members() {
        let many: Vec<String> = (0..40).map(|i| format!("k{i}=v")).collect();
        let list = many.join(",");
        let s = mutate_state("weft", "a", [list.as_str()].into_iter());
        let members: Vec<&str> = s.split(',').collect();
        assert_eq!(members.len(), STATE_MEMBERS_MAX);
        assert_eq!(members[0], "weft=a");
        assert_eq!(members[1], "k0=v");
        assert_eq!(members[31], "k30=v", "removed from the end");
    }

    #[test]
    fn state_bounded_to_512_bytes_long_members_first() {
        let long = format!("long={}", "x".repeat(200));
        let mut list = vec!["first=1".to_owned(), long.clone()];
        list.extend((0..20).map(|i| format!("m{i:02}={}", "y".repeat(14))));
        let s = mutate_state("weft", "a", [list.join(",").as_str()].into_iter());
        assert!(s.len() <= STATE_BYTES_MAX, "{}", s.len());
        assert!(!s.contains("long="), "the member over 128 bytes goes first");
        assert!(s.contains("m19="), "then nothing else had to go");
        // Still too long without a long member: from the end.
        let list: Vec<String> = (0..31)
            .map(|i| format!("m{i:02}={}", "z".repeat(20)))
            .collect();
        let s = mutate_state("weft", "a", [list.join(",").as_str()].into_iter());
        assert!(s.len() <= STATE_BYTES_MAX);
        assert!(s.contains("m00=") && !s.contains("m30="));
    }

    #[test]
    fn keys_and_values() {
        assert!(valid_key("weft") && valid_key("a1_-*/") && valid_key("t1@sys"));
        assert!(!valid_key("") && !valid_key("1abc") && !valid_key("A") && !valid_key("t@"));
        assert!(!valid_key(&"a".repeat(257)));
        assert!(valid_value("router 1") && !valid_value("x ") && !valid_value("a=b"));
        assert_eq!(state_value("a,b=c"), "a_b_c");
    }
}
