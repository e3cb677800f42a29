//! One peer's QoS 1 resend store: the encoded copies sent (or waiting to
//! be sent) to that peer router and not acknowledged yet, numbered by a
//! per-peer sequence that survives the peer's links (a copy unacknowledged
//! when a link drops goes again on the next one; the far side drops the
//! duplicates by (origin, event id)).
//!
//! Owns: the sequence numbers, the copies in order, and how far they have
//! been written into the current link's buffer. Must not touch: sockets,
//! the routing core, the link's per-connection state (that is
//! [`super::LinkSession`]). `U` is what the runtime attaches to a copy to
//! learn when it is acknowledged or dropped (the bridge: the upstream copy
//! whose acknowledgement waits for it).
//!
//! Bounds: at most `max` copies (`mesh.unacked_max`); a copy past it
//! pushes out the oldest ([`Evicted`]).

use std::collections::VecDeque;

/// One encoded QoS 1 copy in the store.
#[derive(Debug)]
pub struct Kept<U> {
    pub seq: u64,
    pub frame: Vec<u8>,
    pub upstream: Option<U>,
}

/// A copy pushed out of a full store.
#[derive(Debug, PartialEq, Eq)]
pub struct Evicted<U> {
    pub upstream: Option<U>,
    /// It was never written: lost (else sent, but no longer resent if the
    /// link drops).
    pub unsent: bool,
}

#[derive(Debug)]
pub struct Outbox<U> {
    next_seq: u64,
    /// Oldest first.
    frames: VecDeque<Kept<U>>,
    /// Copies up to this sequence number are in the link's buffer or sent;
    /// later ones wait for room (a full buffer never drops QoS 1 copies).
    written: u64,
}

impl<U> Default for Outbox<U> {
    fn default() -> Self {
        Outbox {
            next_seq: 0,
            frames: VecDeque::new(),
            written: 0,
        }
    }
}

impl<U> Outbox<U> {
    /// The sequence number of the next copy (to encode it with).
    pub fn next_seq(&self) -> u64 {
        self.next_seq + 1
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Keeps the copy numbered [`Self::next_seq`], encoded as `frame`. With
    /// `link` (the buffer of a link up, with room), it is also written
    /// there if every earlier copy is (order on the wire = sequence order).
    /// Past `max` copies the oldest is pushed out and returned.
    pub fn keep(
        &mut self,
        frame: Vec<u8>,
        upstream: Option<U>,
        link: Option<&mut Vec<u8>>,
        max: usize,
    ) -> Option<Evicted<U>> {
        self.next_seq += 1;
        let seq = self.next_seq;
        if let Some(out) = link {
            if self.written + 1 == seq {
                out.extend_from_slice(&frame);
                self.written = seq;
            }
        }
        self.frames.push_back(Kept {
            seq,
            frame,
            upstream,
        });
        if self.frames.len() <= max {
            return None;
        }
        let oldest = self.frames.pop_front()?;
        let unsent = oldest.seq > self.written;
        if unsent {
            self.written = oldest.seq;
        }
        Some(Evicted {
            upstream: oldest.upstream,
            unsent,
        })
    }

    /// A copy kept before a restart (persistence), numbered `seq` as it
    /// was: kept in order, written on the next link up.
    pub fn restore(&mut self, seq: u64, frame: Vec<u8>) {
        debug_assert!(self.frames.back().is_none_or(|k| k.seq < seq));
        self.next_seq = self.next_seq.max(seq);
        self.frames.push_back(Kept {
            seq,
            frame,
            upstream: None,
        });
    }

    /// The copies kept, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Kept<U>> {
        self.frames.iter()
    }

    /// The sequence number of the oldest copy kept.
    pub fn first_seq(&self) -> Option<u64> {
        self.frames.front().map(|k| k.seq)
    }

    /// The peer acknowledged every copy up to `seq` (cumulative): they
    /// leave the store; their upstreams go to `released`.
    pub fn acked(&mut self, seq: u64, released: &mut Vec<U>) {
        while self.frames.front().is_some_and(|k| k.seq <= seq) {
            released.extend(self.frames.pop_front().and_then(|k| k.upstream));
        }
    }

    /// A new link to the peer is up: every copy still kept goes again.
    pub fn rewind(&mut self) {
        self.written = self
            .frames
            .front()
            .map_or(self.next_seq, |k| k.seq.saturating_sub(1));
    }

    /// Writes the copies waiting for room into `out` while it is under
    /// `bytes_max`.
    pub fn refill(&mut self, out: &mut Vec<u8>, bytes_max: usize) {
        let first = self.frames.partition_point(|k| k.seq <= self.written);
        for kept in self.frames.range(first..) {
            if out.len() >= bytes_max {
                break;
            }
            out.extend_from_slice(&kept.frame);
            self.written = kept.seq;
        }
    }

    /// The sequence numbers kept, oldest first (tests, views).
    pub fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.frames.iter().map(|k| k.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_in_order_and_resent_from_the_oldest_after_rewind() {
        let mut ob: Outbox<u32> = Outbox::default();
        let mut out = Vec::new();
        assert_eq!(ob.keep(vec![1], Some(10), Some(&mut out), 8), None);
        // No room on the link: kept, not written.
        assert_eq!(ob.keep(vec![2], Some(20), None, 8), None);
        // Not written either: an earlier copy waits (order on the wire).
        assert_eq!(ob.keep(vec![3], None, Some(&mut out), 8), None);
        assert_eq!(out, [1]);
        ob.refill(&mut out, 100);
        assert_eq!(out, [1, 2, 3]);
        let mut released = Vec::new();
        ob.acked(1, &mut released);
        assert_eq!(released, [10]);
        ob.rewind();
        out.clear();
        ob.refill(&mut out, 100);
        assert_eq!(out, [2, 3]);
        ob.acked(3, &mut released);
        assert_eq!(released, [10, 20]);
        ob.rewind();
        out.clear();
        ob.refill(&mut out, 100);
        assert!(out.is_empty() && ob.is_empty());
    }

    #[test]
    fn past_its_bound_the_oldest_goes_and_says_whether_it_was_sent() {
        let mut ob: Outbox<u32> = Outbox::default();
        let mut out = Vec::new();
        ob.keep(vec![1], Some(1), Some(&mut out), 2);
        ob.keep(vec![2], Some(2), None, 2);
        let e = ob.keep(vec![3], Some(3), None, 2).unwrap();
        assert_eq!((e.upstream, e.unsent), (Some(1), false));
        let e = ob.keep(vec![4], Some(4), None, 2).unwrap();
        assert_eq!((e.upstream, e.unsent), (Some(2), true));
        assert_eq!(ob.seqs().collect::<Vec<_>>(), [3, 4]);
        out.clear();
        ob.refill(&mut out, 100);
        assert_eq!(out, [3, 4]);
    }
}
