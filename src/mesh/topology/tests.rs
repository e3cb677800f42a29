//! The link-state database in virtual time: routers joined by in-memory
//! links whose records go through the real codec (encoded, decoded).

use std::collections::{HashMap, VecDeque};

use super::*;
use crate::mesh::link::{self, LinkLimits};

const MS: Duration = Duration::from_millis(1);

fn limits() -> TopologyLimits {
    TopologyLimits {
        refresh: 2000 * MS,
        expiry: 6000 * MS,
        routers_max: 256,
        links_max: 64,
    }
}

fn report(peer: &str, state: LinkState) -> LinkReport {
    LinkReport {
        peer: peer.into(),
        state,
        tls: false,
        rtt_us: Some(100),
        events_in: 1,
        events_out: 2,
        dropped: 0,
    }
}

/// Routers and links in memory, in virtual time. A link's frames arrive
/// in order, `latency` after they were sent.
struct Net {
    start: Instant,
    now: Instant,
    names: Vec<String>,
    dbs: Vec<TopologyDb>,
    /// (a, b, up); link id `2i` is a's end, `2i + 1` b's.
    wires: Vec<(usize, usize, bool)>,
    /// (arrival, to router, over link, bytes).
    queue: VecDeque<(Instant, usize, LinkId, Vec<u8>)>,
    latency: Duration,
    /// Frames sent, per (origin, seq).
    sent: HashMap<(String, u64), usize>,
    /// Frames sent per (origin, seq, link end, connection of its wire).
    sent_per_connection: HashMap<(String, u64, LinkId, u32), usize>,
    /// Connections each wire has had.
    epochs: Vec<u32>,
    refused: Vec<TopologyError>,
}

impl Net {
    fn new(names: &[&str], limits: TopologyLimits) -> Net {
        let start = Instant::now();
        Net {
            start,
            now: start,
            names: names.iter().map(|n| n.to_string()).collect(),
            dbs: names
                .iter()
                .map(|n| TopologyDb::new(n, 1 << 16, limits, start))
                .collect(),
            wires: Vec::new(),
            queue: VecDeque::new(),
            latency: MS,
            sent: HashMap::new(),
            sent_per_connection: HashMap::new(),
            epochs: Vec::new(),
            refused: Vec::new(),
        }
    }

    fn ends(&self, wire: usize) -> [(usize, LinkId); 2] {
        let (a, b, _) = self.wires[wire];
        [
            (a, LinkId(2 * wire as u32)),
            (b, LinkId(2 * wire as u32 + 1)),
        ]
    }

    /// Which router and link are at the other end of `link`.
    fn far_end(&self, link: LinkId) -> (usize, LinkId) {
        let wire = (link.0 / 2) as usize;
        self.ends(wire)[1 - (link.0 % 2) as usize]
    }

    fn send(&mut self, sends: Vec<Send>) {
        for s in sends {
            let wire = (s.link.0 / 2) as usize;
            if !self.wires[wire].2 {
                continue;
            }
            *self
                .sent
                .entry((s.record.origin.clone(), s.record.seq))
                .or_default() += 1;
            let key = (
                s.record.origin.clone(),
                s.record.seq,
                s.link,
                self.epochs[wire],
            );
            *self.sent_per_connection.entry(key).or_default() += 1;
            let mut bytes = Vec::new();
            link::encode(&s.record.frame(self.now), &mut bytes).unwrap();
            let (to, over) = self.far_end(s.link);
            self.queue
                .push_back((self.now + self.latency, to, over, bytes));
        }
    }

    fn connect(&mut self, a: usize, b: usize) -> usize {
        self.wires.push((a, b, true));
        self.epochs.push(0);
        let wire = self.wires.len() - 1;
        self.up(wire);
        wire
    }

    fn up(&mut self, wire: usize) {
        self.wires[wire].2 = true;
        self.epochs[wire] += 1;
        for (node, id) in self.ends(wire) {
            let mut out = Vec::new();
            self.dbs[node].link_up(id, self.now, &mut out);
            self.send(out);
        }
        self.report_links();
    }

    fn cut(&mut self, wire: usize) {
        self.wires[wire].2 = false;
        for (node, id) in self.ends(wire) {
            self.dbs[node].link_down(id);
        }
        // Bytes in flight on the wire are lost.
        let ends = self.ends(wire).map(|(n, id)| (n, id));
        self.queue
            .retain(|(_, to, over, _)| !ends.contains(&(*to, *over)));
        self.report_links();
    }

    /// Every router reports its links as the bridge does on its tick:
    /// up, or (for the dialling end, `a`) connecting.
    fn report_links(&mut self) {
        for node in 0..self.dbs.len() {
            let mut links = Vec::new();
            for (wire, &(a, b, up)) in self.wires.iter().enumerate() {
                let _ = wire;
                let peer = if a == node {
                    b
                } else if b == node {
                    a
                } else {
                    continue;
                };
                match (up, a == node) {
                    (true, _) => links.push(report(&self.names[peer], LinkState::Up)),
                    (false, true) => links.push(report(&self.names[peer], LinkState::Connecting)),
                    (false, false) => {}
                }
            }
            let mut out = Vec::new();
            self.dbs[node].set_own_links(links, self.now, &mut out);
            self.send(out);
        }
    }

    /// Delivers what is due and runs timeouts, up to `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            let next_frame = self.queue.front().map(|q| q.0);
            let next_timeout = self.dbs.iter().map(|d| d.next_deadline()).min().unwrap();
            let next = next_frame.map_or(next_timeout, |f| f.min(next_timeout));
            if next > until {
                self.now = until;
                return;
            }
            self.now = next;
            if next_frame == Some(next) {
                let (_, to, over, bytes) = self.queue.pop_front().unwrap();
                let (frame, _) = link::decode(&bytes, &LinkLimits::default())
                    .unwrap()
                    .unwrap();
                let Frame::Topology(record) = frame else {
                    panic!("not a record")
                };
                let mut out = Vec::new();
                match self.dbs[to].on_record(over, &record, self.now, &mut out) {
                    Ok(_) => {}
                    Err(e) => self.refused.push(e),
                }
                self.send(out);
            } else {
                for node in 0..self.dbs.len() {
                    let mut out = Vec::new();
                    self.dbs[node].handle_timeout(self.now, &mut out);
                    self.send(out);
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Router `node`'s view: origin → (seq, links as (peer, state)).
    fn view(&self, node: usize) -> BTreeMap<String, Vec<(String, LinkState)>> {
        let s = self.dbs[node].snapshot();
        std::iter::once(&s.own)
            .chain(&s.others)
            .map(|r| {
                (
                    r.origin.clone(),
                    r.links.iter().map(|l| (l.peer.clone(), l.state)).collect(),
                )
            })
            .collect()
    }

    fn knows(&self, node: usize) -> Vec<String> {
        self.view(node).into_keys().collect()
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_ring_learns_every_router_and_flooding_ends() {
    let mut net = Net::new(&["a", "b", "c", "d"], limits());
    // A ring a-b-c-d-a with a chord a-c: loops everywhere.
    for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 0), (0, 2)] {
        net.connect(x, y);
    }
    net.run_for(500 * MS);
    for node in 0..4 {
        assert_eq!(
            net.knows(node),
            names(&["a", "b", "c", "d"]),
            "router {node}"
        );
        assert_eq!(net.view(node), net.view(0), "router {node} agrees with a");
    }
    assert!(net.queue.is_empty(), "flooding ended: nothing in flight");
    // Each (origin, seq) crossed each link at most once each way.
    let links = net.wires.len();
    for ((origin, seq), n) in &net.sent {
        assert!(*n <= 2 * links, "{origin} seq {seq} sent {n} times");
    }
    // A refresh floods each router's record once more, and ends again.
    let before: u64 = net.dbs.iter().map(|d| d.counters().originated).sum();
    net.run_for(2100 * MS);
    let after: u64 = net.dbs.iter().map(|d| d.counters().originated).sum();
    assert_eq!(after - before, 4, "one refresh each");
    for ((origin, seq), n) in &net.sent {
        assert!(*n <= 2 * links, "{origin} seq {seq} sent {n} times");
    }
    assert!(net.refused.is_empty(), "{:?}", net.refused);
}

#[test]
fn a_cut_link_shows_at_once_from_its_dialler() {
    let mut net = Net::new(&["a", "b", "c"], limits());
    net.connect(0, 1);
    net.connect(0, 2);
    let bc = net.connect(2, 1); // c dials b
    net.run_for(500 * MS);
    assert_eq!(
        net.view(0)["c"],
        vec![("a".into(), LinkState::Up), ("b".into(), LinkState::Up)]
    );
    net.cut(bc);
    // Within the minimum origination interval and a hop, not a refresh.
    net.run_for(ORIGINATE_INTERVAL_MIN + 10 * MS);
    let view = net.view(0);
    assert_eq!(
        view["c"],
        vec![
            ("a".into(), LinkState::Up),
            ("b".into(), LinkState::Connecting)
        ]
    );
    assert_eq!(view["b"], vec![("a".into(), LinkState::Up)]);
}

#[test]
fn changes_originate_at_most_once_per_interval() {
    let mut net = Net::new(&["a", "b"], limits());
    let w = net.connect(0, 1);
    net.run_for(500 * MS);
    let before = net.dbs[0].counters().originated;
    // The link flaps ten times within 10 ms.
    for _ in 0..10 {
        net.cut(w);
        net.up(w);
        net.run_for(MS);
    }
    net.run_for(ORIGINATE_INTERVAL_MIN * 2);
    let made = net.dbs[0].counters().originated - before;
    assert!(
        (1..=2).contains(&made),
        "{made} originations for 10 flaps in 10 ms"
    );
}

#[test]
fn a_silent_router_expires_on_time() {
    let mut net = Net::new(&["a", "b", "c"], limits());
    net.connect(0, 1);
    let bc = net.connect(1, 2);
    net.run_for(500 * MS);
    assert_eq!(net.knows(0), names(&["a", "b", "c"]));
    net.cut(bc);
    let cut_at = net.now;
    let c_originated = net.dbs[0].record("c").unwrap().originated;
    // a holds c's record until it is expiry old, not a moment longer.
    net.run_until(c_originated + limits().expiry - MS);
    assert!(net.knows(0).contains(&"c".to_string()), "too early");
    net.run_until(c_originated + limits().expiry + MS);
    assert_eq!(net.knows(0), names(&["a", "b"]));
    assert!(net.now < cut_at + limits().expiry + limits().refresh);
    assert!(net.dbs[0].counters().expired >= 1);
}

#[test]
fn a_record_passed_on_at_a_link_up_keeps_its_age() {
    let mut net = Net::new(&["a", "b", "c", "d"], limits());
    net.connect(0, 1);
    let bc = net.connect(1, 2);
    net.run_for(500 * MS);
    net.cut(bc);
    let c_originated = net.dbs[1].record("c").unwrap().originated;
    // d joins at b 5 s later and gets c's record, 5 s old by then...
    net.run_for(5000 * MS);
    net.connect(3, 1);
    net.run_for(10 * MS);
    assert!(net.knows(3).contains(&"c".to_string()));
    // ... and drops it when everyone else does, not 6 s after it came.
    net.run_until(c_originated + limits().expiry + 5 * MS);
    for node in [0, 1, 3] {
        assert!(!net.knows(node).contains(&"c".to_string()), "router {node}");
    }
}

#[test]
fn a_restarted_router_is_newer_and_its_old_record_goes() {
    let mut net = Net::new(&["a", "b"], limits());
    let w = net.connect(0, 1);
    net.run_for(3000 * MS);
    let old_seq = net.dbs[0].record("b").unwrap().seq;
    assert!(old_seq > 1 << 16, "refreshed at least once");
    // b restarts 3 s after it started: its sequence numbers start at its
    // start time in ms << 16, above anything its former life numbered.
    net.cut(w);
    let restarted_ms = (net.now - net.start).as_millis() as u64;
    net.dbs[1] = TopologyDb::new("b", (1 + restarted_ms) << 16, limits(), net.now);
    net.up(w);
    net.run_for(ORIGINATE_INTERVAL_MIN + 10 * MS);
    let new = net.dbs[0].record("b").unwrap();
    assert!(new.seq > old_seq, "{} > {old_seq}", new.seq);
    assert_eq!(new.links, vec![report("a", LinkState::Up)]);
}

#[test]
fn a_router_whose_clock_went_back_numbers_above_its_former_life() {
    let mut net = Net::new(&["a", "b"], limits());
    let w = net.connect(0, 1);
    net.run_for(3000 * MS);
    let old_seq = net.dbs[1].seq();
    net.cut(w);
    // Restarted with a clock that went back: lower numbers than before.
    net.dbs[1] = TopologyDb::new("b", 1, limits(), net.now);
    net.up(w);
    net.run_for(200 * MS);
    // a sent b its former record; b re-originated above it.
    assert!(net.dbs[1].seq() > old_seq);
    assert_eq!(net.dbs[0].record("b").unwrap().seq, net.dbs[1].seq());
    assert_eq!(net.view(0)["b"], vec![("a".into(), LinkState::Up)]);
}

#[test]
fn records_beyond_routers_max_are_refused() {
    let mut l = limits();
    l.routers_max = 3;
    let mut net = Net::new(&["a", "b", "c", "d"], l);
    for (x, y) in [(0, 1), (1, 2), (2, 3)] {
        net.connect(x, y);
    }
    net.run_for(500 * MS);
    for node in 0..4 {
        assert_eq!(net.view(node).len(), 3, "router {node} holds 3 records");
    }
    assert!(net
        .refused
        .iter()
        .all(|e| matches!(e, TopologyError::RoutersMax { limit: 3, .. })));
    assert_eq!(
        net.refused[0].to_string(),
        format!(
            "topology record of new router {:?} refused: mesh.topology_routers_max (3) records held",
            match &net.refused[0] {
                TopologyError::RoutersMax { origin, .. } => origin.clone(),
                _ => unreachable!(),
            }
        )
    );
}

fn frame<'a>(origin: &'a str, links: Vec<TopologyLink<'a>>) -> TopologyRecord<'a> {
    TopologyRecord {
        origin,
        seq: 5,
        age_ms: 0,
        links,
    }
}

fn tl(peer: &str) -> TopologyLink<'_> {
    TopologyLink {
        peer,
        state: LinkState::Up,
        tls: true,
        rtt_us: None,
        events_in: 0,
        events_out: 0,
        dropped: 0,
    }
}

#[test]
fn malformed_records_are_refused_precisely_and_go_no_further() {
    let now = Instant::now();
    let mut l = limits();
    l.links_max = 2;
    let mut db = TopologyDb::new("a", 1 << 16, l, now);
    let mut out = Vec::new();
    db.link_up(LinkId(1), now, &mut out);
    db.link_up(LinkId(2), now, &mut out);
    out.clear();
    let cases: Vec<(TopologyRecord<'_>, &str)> = vec![
        (
            frame("b c", vec![]),
            "topology record refused: invalid origin router id \"b c\"",
        ),
        (
            frame("b", vec![tl("")]),
            "topology record of \"b\" refused: invalid peer router id \"\"",
        ),
        (
            frame("b", vec![tl("b")]),
            "topology record of \"b\" refused: it lists a link to itself",
        ),
        (
            frame("b", vec![tl("d"), tl("c")]),
            "topology record of \"b\" refused: links not sorted by peer, or a peer listed twice",
        ),
        (
            frame("b", vec![tl("c"), tl("c")]),
            "topology record of \"b\" refused: links not sorted by peer, or a peer listed twice",
        ),
        (
            frame("b", vec![tl("c"), tl("d"), tl("e")]),
            "topology record of \"b\" refused: 3 links, more than mesh.links_max (2)",
        ),
    ];
    for (f, words) in cases {
        let e = db.on_record(LinkId(1), &f, now, &mut out).unwrap_err();
        assert_eq!(e.to_string(), words);
    }
    assert!(out.is_empty(), "nothing refused was flooded");
    assert_eq!(db.counters().refused, 6);
    assert!(db.record("b").is_none());
    // A well-formed one is taken and flooded on, not back.
    let ok = frame("b", vec![tl("a"), tl("c")]);
    assert_eq!(
        db.on_record(LinkId(1), &ok, now, &mut out),
        Ok(Received::New)
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].link, LinkId(2));
    // The same again, or older: a duplicate, not flooded.
    out.clear();
    assert_eq!(
        db.on_record(LinkId(2), &ok, now, &mut out),
        Ok(Received::Duplicate)
    );
    let older = TopologyRecord {
        seq: 4,
        ..ok.clone()
    };
    assert_eq!(
        db.on_record(LinkId(2), &older, now, &mut out),
        Ok(Received::Duplicate)
    );
    // Past its expiry on arrival: dropped.
    let stale = TopologyRecord {
        seq: 9,
        age_ms: 6000,
        ..ok
    };
    assert_eq!(
        db.on_record(LinkId(2), &stale, now, &mut out),
        Ok(Received::Expired)
    );
    assert!(out.is_empty());
}

#[test]
fn own_links_are_merged_sorted_and_bounded() {
    let now = Instant::now();
    let mut l = limits();
    l.links_max = 2;
    let mut db = TopologyDb::new("a", 1 << 16, l, now);
    let mut out = Vec::new();
    let links = vec![
        report("d", LinkState::Connecting),
        report("c", LinkState::Up),
        report("b", LinkState::Held),
        // Both routers dialled each other: one edge, the best state.
        report("c", LinkState::Connecting),
        report("a", LinkState::Up), // itself: left out
    ];
    db.set_own_links(links, now + ORIGINATE_INTERVAL_MIN, &mut out);
    let own = &db.snapshot().own;
    let shown: Vec<(&str, LinkState, u64)> = own
        .links
        .iter()
        .map(|l| (l.peer.as_str(), l.state, l.events_in))
        .collect();
    assert_eq!(
        shown,
        vec![("b", LinkState::Held, 1), ("c", LinkState::Up, 2)]
    );
    // Its record encodes within the frame bound for links_max links.
    let mut bytes = Vec::new();
    link::encode(&own.frame(now), &mut bytes).unwrap();
    assert!(bytes.len() <= link::topology_frame_bytes(2));
}

#[test]
fn counters_alone_wait_for_the_refresh() {
    let now = Instant::now();
    let mut db = TopologyDb::new("a", 1 << 16, limits(), now);
    let mut out = Vec::new();
    db.link_up(LinkId(1), now, &mut out);
    db.set_own_links(vec![report("b", LinkState::Up)], now + 100 * MS, &mut out);
    let seq = db.seq();
    let mut busier = report("b", LinkState::Up);
    busier.events_out = 99;
    out.clear();
    db.set_own_links(vec![busier], now + 200 * MS, &mut out);
    assert!(out.is_empty(), "no origination for counters");
    assert_eq!(db.seq(), seq);
    assert_eq!(
        db.snapshot().own.links[0].events_out,
        99,
        "the view is live"
    );
    db.handle_timeout(db.next_deadline(), &mut out);
    assert_eq!(db.seq(), seq + 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].record.links[0].events_out, 99);
}

/// Seeded random meshes with links cut and healed: once quiet, every
/// router holds the latest record of every router it is connected to,
/// and none of a router it has been cut off from for longer than the
/// expiry; no (origin, seq) ever crossed a link more than once each way.
#[test]
fn random_meshes_converge_and_never_loop() {
    for seed in 1..=200u64 {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let n = 3 + next(5) as usize;
        let ids: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let mut net = Net::new(&refs, limits());
        net.latency = Duration::from_millis(1 + next(20));
        // A spanning line, then random chords.
        for i in 1..n {
            net.connect(next(i as u64) as usize, i);
        }
        for _ in 0..next(2 * n as u64) {
            let (a, b) = (next(n as u64) as usize, next(n as u64) as usize);
            if a != b {
                net.connect(a, b);
            }
        }
        for _ in 0..10 {
            net.run_for(Duration::from_millis(next(1500)));
            let w = next(net.wires.len() as u64) as usize;
            if net.wires[w].2 {
                net.cut(w);
            } else {
                net.up(w);
            }
        }
        // Quiet: past the expiry of whatever a cut left behind.
        net.run_for(limits().expiry + limits().refresh);
        // Each connection carries a record at most once each way (a
        // link that comes up again gets the database again).
        for ((origin, seq, link, epoch), sent) in &net.sent_per_connection {
            assert_eq!(
                *sent, 1,
                "seed {seed}: {origin} seq {seq} sent {sent} times on link {link:?} ({epoch})"
            );
        }
        // Connected components over the links that are up.
        let mut comp: Vec<usize> = (0..n).collect();
        fn root(c: &mut [usize], i: usize) -> usize {
            if c[i] == i {
                i
            } else {
                let r = root(c, c[i]);
                c[i] = r;
                r
            }
        }
        for &(a, b, up) in &net.wires {
            if up {
                let (ra, rb) = (root(&mut comp, a), root(&mut comp, b));
                comp[ra] = rb;
            }
        }
        for i in 0..n {
            for (j, id) in ids.iter().enumerate() {
                let same = root(&mut comp, i) == root(&mut comp, j);
                let held = net.dbs[i].record(id).map(|r| r.seq);
                if same {
                    // Within a refresh's flight: the latest, or the one
                    // before it if a refresh is on its way.
                    let latest = net.dbs[j].seq();
                    assert!(
                        held == Some(latest) || held == Some(latest - 1),
                        "seed {seed}: r{i} holds {held:?} of r{j} at {latest}"
                    );
                } else {
                    assert_eq!(held, None, "seed {seed}: r{i} still holds r{j}");
                }
            }
        }
        assert!(net.refused.is_empty(), "seed {seed}: {:?}", net.refused);
    }
}
