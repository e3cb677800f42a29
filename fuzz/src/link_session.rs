//! The mesh link session, `weft::mesh::session`, fed a script (see
//! [`crate::script`]): the peer's bytes, decoded with the link decoder
//! and handed over frame by frame as `shard::bridge` does (`heard` once
//! per read, `on_frame`, `on_decode_error` for bytes that do not decode),
//! virtual time passing (`handle_timeout` once `next_deadline` has come:
//! the hello's deadline, keepalive PINGs, silence), and the driver's own
//! decisions: the link brought up after `Up` (`table_sent`) or refused
//! (TLS names, `mesh.links_max`), QoS 1 copies processed, obliged to next
//! hops and released (`processed`, `oblige`, `release`, `ack_if_due`),
//! and closes (`close`).
//!
//! Properties, after every call:
//! - every frame written decodes, whole, with the link decoder (default
//!   limits, as the peer reads them);
//! - a `Close` is the last action of its call, and there is at most one;
//! - once closed, no call yields any action;
//! - after `handle_timeout(now)`, `next_deadline` is None or after `now`;
//! - acknowledgements only grow, never pass the highest copy processed,
//!   and never reach a copy still owed to a next hop (hop-by-hop: an ack
//!   promises the copies behind it are safe);
//! - no panic.

use std::time::{Duration, Instant};

use weft::mesh::link::{self, Frame, LinkLimits};
use weft::mesh::session::{
    Action, Actions, Deadline, LinkCloseReason, LinkSession, LinkTimers, Request,
};

use crate::script::{Script, Seed, Step};

const TIMERS: LinkTimers = LinkTimers {
    keepalive: Duration::from_millis(1000),
    link_timeout: Duration::from_millis(3000),
    hello_timeout: Duration::from_millis(500),
};

/// The peer's frames: small, so the fuzzer reaches the limits.
const LIMITS: LinkLimits = LinkLimits {
    frame_bytes_max: 2048,
    hops_max: 8,
    dests_max: 4,
    topology_bytes_max: 1024,
    topology_links_max: 4,
    explain_reply_bytes_max: 256,
};

const DRIVER_CLOSES: [LinkCloseReason; 5] = [
    LinkCloseReason::ConnectionLost,
    LinkCloseReason::ReadError,
    LinkCloseReason::WriteError,
    LinkCloseReason::Shutdown,
    LinkCloseReason::LinksMax,
];

struct Run<'a> {
    s: LinkSession,
    script: Script<'a>,
    now: Instant,
    closed: bool,
    /// The highest QoS 1 copy processed, the last ack written, the copies
    /// obliged to next hops and not released (one entry per obligation).
    processed: u64,
    acked: u64,
    owed: Vec<u64>,
}

impl Run<'_> {
    /// Checks one call's actions; returns the QoS 1 copies it routed.
    fn check(&mut self, out: &Actions<'_>) -> (Vec<u64>, bool) {
        if self.closed {
            assert!(
                out.list.is_empty(),
                "actions after the close: {:?}",
                out.list
            );
            return (Vec::new(), false);
        }
        let mut seqs = Vec::new();
        let mut up = false;
        for (i, action) in out.list.iter().enumerate() {
            match action {
                Action::Write { from, to } => self.frames(&out.bytes[*from..*to]),
                Action::Close(_) => {
                    assert_eq!(i + 1, out.list.len(), "a close is last: {:?}", out.list);
                    assert!(self.s.closed().is_some());
                    self.closed = true;
                }
                Action::Request(Request::Route(Frame::Event(e))) if e.seq > 0 => seqs.push(e.seq),
                Action::Request(Request::Up) => up = true,
                Action::Request(_) => {}
            }
        }
        (seqs, up)
    }

    /// Every frame in `bytes` decodes whole; acks keep their promises.
    fn frames(&mut self, mut bytes: &[u8]) {
        assert!(!bytes.is_empty(), "an empty write");
        while !bytes.is_empty() {
            let (frame, used) = match link::decode(bytes, &LinkLimits::default()) {
                Ok(Some(decoded)) => decoded,
                other => panic!("link frame {bytes:x?}: {other:?}"),
            };
            if let Frame::Ack { seq } = frame {
                assert!(seq > self.acked, "ack {seq} after ack {}", self.acked);
                assert!(
                    seq <= self.processed,
                    "ack {seq}, processed {}",
                    self.processed
                );
                if let Some(first) = self.owed.iter().min() {
                    assert!(seq < *first, "ack {seq} while {first} is owed");
                }
                self.acked = seq;
            }
            bytes = &bytes[used..];
        }
    }

    /// What the driver does after a call: bring the link up (or refuse
    /// it), process the routed copies (obliging some), acknowledge.
    fn driver(&mut self, seqs: Vec<u64>, up: bool) {
        if up {
            let mut out = Actions::default();
            let refuse = self.script.outcome();
            if refuse % 4 == 3 {
                let reason = if refuse & 4 == 0 {
                    LinkCloseReason::LinksMax
                } else {
                    LinkCloseReason::TlsRefused
                };
                self.s.close(reason, "refused".into(), true, &mut out);
            } else {
                self.s.table_sent(self.now, &mut out);
            }
            self.check(&out);
        }
        for seq in seqs {
            if self.script.outcome() % 3 == 1 {
                self.s.oblige(seq);
                self.owed.push(seq);
            }
            self.s.processed(seq);
            self.processed = self.processed.max(seq);
        }
        self.ack();
    }

    fn ack(&mut self) {
        let mut out = Actions::default();
        self.s.ack_if_due(&mut out);
        self.check(&out);
    }

    fn feed(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) {
        if self.closed {
            return;
        }
        buf.extend_from_slice(bytes);
        self.s.heard(self.now);
        let mut at = 0;
        while !self.closed {
            let mut out = Actions::default();
            match link::decode(&buf[at..], &LIMITS) {
                Ok(Some((frame, used))) => {
                    assert!(used > 0 && at + used <= buf.len());
                    at += used;
                    self.s.on_frame(frame, self.now, &mut out);
                }
                Ok(None) => break,
                Err(e) => {
                    self.s.on_decode_error(&e, &mut out);
                    assert!(out.closed().is_some(), "bad frames close: {e}");
                }
            }
            let (seqs, up) = self.check(&out);
            drop(out);
            self.driver(seqs, up);
        }
        buf.drain(..at);
    }
}

pub fn check(data: &[u8]) {
    let t0 = Instant::now();
    let mut run = Run {
        s: LinkSession::new("me", "prod", TIMERS, t0),
        script: Script::new(data),
        now: t0,
        closed: false,
        processed: 0,
        acked: 0,
        owed: Vec::new(),
    };
    let mut out = Actions::default();
    run.s.start(&mut out);
    run.check(&out);
    let mut buf = Vec::new();
    while let Some(step) = run.script.step() {
        match step {
            Step::Feed(bytes) => run.feed(&mut buf, bytes),
            Step::Wait(d) => {
                run.now += d;
                if run.s.next_deadline().is_some_and(|at| at <= run.now) {
                    let mut out = Actions::default();
                    run.s.handle_timeout(run.now, &mut out);
                    if let Some(at) = run.s.next_deadline() {
                        assert!(at > run.now, "deadline {at:?} not after {:?}", run.now);
                    }
                    run.check(&out);
                }
            }
            Step::Close(which) => {
                let reason = DRIVER_CLOSES[usize::from(which) % DRIVER_CLOSES.len()];
                let mut out = Actions::default();
                run.s
                    .close(reason, "driver".into(), which & 0x80 != 0, &mut out);
                run.check(&out);
            }
            Step::Other(which) => {
                // A next hop acknowledged (or dropped) one obliged copy.
                if !run.owed.is_empty() {
                    let seq = run.owed.remove(usize::from(which) % run.owed.len());
                    if run.s.release(seq) {
                        run.ack();
                    }
                }
            }
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    // The link decoder's seeds: the peer's hello (r1, mesh prod) first,
    // then interest, events (QoS 1 with seq 7, QoS 0), CLOSE, and an
    // ack/ping/pong run.
    let frames = crate::link_decode::seeds();
    let hello = &frames[0];
    let mut all = Vec::new();
    let mut up = Seed::default().feed(hello);
    for f in &frames[1..frames.len() - 2] {
        up = up.feed(f);
    }
    all.push(
        up.feed(&frames[frames.len() - 1])
            .other(0)
            .wait(9)
            .wait(12)
            .feed(&frames[frames.len() - 2])
            .0,
    );
    let up = Seed::default().feed(hello);
    // Up, an event obliged ('\x01' outcome from the back), released.
    let mut obliged = up.feed(&frames[3]).other(0).wait(10).wait(15).0;
    obliged.push(1);
    all.push(obliged);
    // No hello in time; a hello from the wrong mesh; a second hello.
    all.push(Seed::default().wait(9).0);
    let mut wrong = frames[0].clone();
    let at = wrong.len() - 1;
    wrong[at] ^= 1;
    all.push(Seed::default().feed(&wrong).0);
    all.push(Seed::default().feed(hello).feed(hello).0);
    // A garbled frame after the hello; the driver's shutdown.
    all.push(Seed::default().feed(hello).feed(&[0xff; 16]).0);
    all.push(Seed::default().feed(hello).close(0x83).0);
    all
}
