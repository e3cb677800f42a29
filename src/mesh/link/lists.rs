//! The router-id lists of an EVENT frame (its destinations, its (router,
//! group) pairs) without a `Vec` per event: decoded, a list is a view of
//! the frame's own bytes (validated once, walked on demand); to encode, it
//! borrows whatever the caller holds (the routing core's `String`s, or a
//! `Vec` of `&str` built by a test). Bounded by the decoder's
//! `LinkLimits::dests_max` (the count is checked before the list is
//! walked); no allocation in either direction.
//!
//! Hand-written: the lists are this protocol's own (u16 count, then u16
//! length-prefixed UTF-8 strings), and a view type is a few lines.

use std::fmt;

/// A list of strings: destination router ids.
#[derive(Clone)]
pub enum Strs<'a> {
    /// As on the wire: `count` items of u16 length + UTF-8 bytes, each
    /// checked by the decoder.
    Wire { count: u16, bytes: &'a [u8] },
    /// Borrowed from owned strings (the routing core's copy).
    Strings(&'a [String]),
    /// A list built by the caller.
    Vec(Vec<&'a str>),
}

/// A list of string pairs: (router, queue group) destinations.
#[derive(Clone)]
pub enum Pairs<'a> {
    /// As on the wire: `count` pairs of strings (see [`Strs::Wire`]).
    Wire {
        count: u16,
        bytes: &'a [u8],
    },
    Strings(&'a [(String, String)]),
    Vec(Vec<(&'a str, &'a str)>),
}

/// Walks wire-form strings; the decoder checked their lengths and UTF-8.
#[derive(Clone)]
pub struct WireStrs<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for WireStrs<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        let (len, rest) = self.bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (s, rest) = rest.split_at(len.min(rest.len()));
        self.bytes = rest;
        // Checked by `Reader::str_list`: never the fallback.
        Some(std::str::from_utf8(s).unwrap_or_default())
    }
}

pub enum StrsIter<'a, 'b> {
    Wire(WireStrs<'a>),
    Strings(std::slice::Iter<'b, String>),
    Vec(std::slice::Iter<'b, &'a str>),
}

impl<'a: 'b, 'b> Iterator for StrsIter<'a, 'b> {
    type Item = &'b str;
    fn next(&mut self) -> Option<&'b str> {
        match self {
            StrsIter::Wire(w) => w.next(),
            StrsIter::Strings(i) => i.next().map(String::as_str),
            StrsIter::Vec(i) => i.next().copied(),
        }
    }
}

pub enum PairsIter<'a, 'b> {
    Wire(WireStrs<'a>),
    Strings(std::slice::Iter<'b, (String, String)>),
    Vec(std::slice::Iter<'b, (&'a str, &'a str)>),
}

impl<'a: 'b, 'b> Iterator for PairsIter<'a, 'b> {
    type Item = (&'b str, &'b str);
    fn next(&mut self) -> Option<(&'b str, &'b str)> {
        match self {
            PairsIter::Wire(w) => Some((w.next()?, w.next()?)),
            PairsIter::Strings(i) => i.next().map(|(a, b)| (a.as_str(), b.as_str())),
            PairsIter::Vec(i) => i.next().copied(),
        }
    }
}

impl<'a> Strs<'a> {
    pub fn len(&self) -> usize {
        match self {
            Strs::Wire { count, .. } => usize::from(*count),
            Strs::Strings(s) => s.len(),
            Strs::Vec(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> StrsIter<'a, '_> {
        match self {
            Strs::Wire { bytes, .. } => StrsIter::Wire(WireStrs { bytes }),
            Strs::Strings(s) => StrsIter::Strings(s.iter()),
            Strs::Vec(v) => StrsIter::Vec(v.iter()),
        }
    }
    /// The only item of a one-item list.
    pub fn only(&self) -> Option<&str> {
        (self.len() == 1).then(|| self.iter().next()).flatten()
    }
    /// Bytes of the list on the wire, count included.
    pub(super) fn wire_len(&self) -> usize {
        match self {
            Strs::Wire { bytes, .. } => 2 + bytes.len(),
            _ => 2 + self.iter().map(|s| 2 + s.len()).sum::<usize>(),
        }
    }
}

impl<'a> Pairs<'a> {
    pub fn len(&self) -> usize {
        match self {
            Pairs::Wire { count, .. } => usize::from(*count),
            Pairs::Strings(s) => s.len(),
            Pairs::Vec(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> PairsIter<'a, '_> {
        match self {
            Pairs::Wire { bytes, .. } => PairsIter::Wire(WireStrs { bytes }),
            Pairs::Strings(s) => PairsIter::Strings(s.iter()),
            Pairs::Vec(v) => PairsIter::Vec(v.iter()),
        }
    }
    pub(super) fn wire_len(&self) -> usize {
        match self {
            Pairs::Wire { bytes, .. } => 2 + bytes.len(),
            _ => {
                2 + self
                    .iter()
                    .map(|(a, b)| 4 + a.len() + b.len())
                    .sum::<usize>()
            }
        }
    }
}

impl Default for Strs<'_> {
    fn default() -> Self {
        Strs::Vec(Vec::new())
    }
}

impl Default for Pairs<'_> {
    fn default() -> Self {
        Pairs::Vec(Vec::new())
    }
}

impl<'a> From<Vec<&'a str>> for Strs<'a> {
    fn from(v: Vec<&'a str>) -> Self {
        Strs::Vec(v)
    }
}

impl<'a> From<Vec<(&'a str, &'a str)>> for Pairs<'a> {
    fn from(v: Vec<(&'a str, &'a str)>) -> Self {
        Pairs::Vec(v)
    }
}

/// Equal when the items are, whatever the forms.
impl PartialEq for Strs<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}
impl Eq for Strs<'_> {}

impl PartialEq for Pairs<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}
impl Eq for Pairs<'_> {}

impl fmt::Debug for Strs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Debug for Pairs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
