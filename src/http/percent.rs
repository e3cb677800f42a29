//! Percent-decoding of a request target's path segment and query values
//! (RFC 3986): `%XX` is the byte XX; every other byte stands for itself,
//! `+` included (in a query it is an MQTT wildcard, not a space).
//!
//! [`decode_form`] is the same with `+` for a space, as an HTML form (and
//! a browser's `URLSearchParams`) encodes a query value: the admin
//! endpoint's `access_token`.
//!
//! Owns: the decoding. Must not touch: what the decoded text means.

/// Decodes `s`; None when a `%` is not followed by two hex digits or the
/// result is not UTF-8.
pub fn decode(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    decode_with(s, false)
}

/// [`decode`], with `+` for a space (`application/x-www-form-urlencoded`):
/// a literal `+` must come as `%2B`.
pub fn decode_form(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    decode_with(s, true)
}

fn decode_with(s: &str, plus_is_space: bool) -> Option<std::borrow::Cow<'_, str>> {
    if !(s.contains('%') || (plus_is_space && s.contains('+'))) {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else if plus_is_space && bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query's `name=value` pairs, values not yet decoded.
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_plus() {
        assert_eq!(decode("a%2Fb%2fc").unwrap(), "a/b/c");
        assert_eq!(decode("a/+/#").unwrap(), "a/+/#");
        assert_eq!(decode("%C3%A9t%C3%A9").unwrap(), "été");
        assert_eq!(decode("plain").unwrap(), "plain");
    }

    #[test]
    fn form_values_take_plus_for_space() {
        assert_eq!(decode_form("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode_form("plain").unwrap(), "plain");
        assert!(decode_form("a+%zz").is_none());
        assert_eq!(decode("a+b").unwrap(), "a+b");
    }

    #[test]
    fn refuses_bad_escapes_and_bad_utf8() {
        assert!(decode("a%2").is_none());
        assert!(decode("a%zz").is_none());
        assert!(decode("%FF").is_none());
    }

    #[test]
    fn splits_pairs() {
        let p: Vec<_> = pairs("qos=0&retain&&filter=a%2Fb").collect();
        assert_eq!(p, vec![("qos", "0"), ("retain", ""), ("filter", "a%2Fb")]);
    }
}
