//! The explain machine over three routing cores in memory, with virtual
//! time: requests follow the copies, replies gather hop by hop, a seek
//! finds the router it names, a silent router is written off at the
//! deadline, and the in-progress bound holds.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::*;
use crate::mesh::route::{Action, LinkMsg, LinkPolicy, RouterConfig};

struct Net {
    cores: Vec<Router>,
    machines: Vec<Explainer>,
    /// (router, link) → (peer, peer's link).
    wires: BTreeMap<(usize, LinkId), (usize, LinkId)>,
    /// Explain actions not yet carried out, per router.
    queue: VecDeque<(usize, Out)>,
    done: Vec<(u64, ReplyBody)>,
    /// Frames to drop: requests arriving at this router.
    silent: Option<usize>,
    now: Instant,
}

fn config() -> ExplainConfig {
    ExplainConfig {
        timeout: Duration::from_millis(2000),
        explains_max: 2,
        reply_bytes_max: 65_536,
    }
}

impl Net {
    /// A line r0 —— r1 —— r2; r1 imports from r0 under `from-r0/`.
    fn line() -> Net {
        let mut net = Net {
            cores: (0..3)
                .map(|i| Router::new(format!("r{i}"), RouterConfig::default()))
                .collect(),
            machines: (0..3)
                .map(|i| Explainer::new(format!("r{i}"), config()))
                .collect(),
            wires: BTreeMap::new(),
            queue: VecDeque::new(),
            done: Vec::new(),
            silent: None,
            now: Instant::now(),
        };
        let prefix = LinkPolicy {
            import_prefix: "from-r0/".into(),
            ..LinkPolicy::default()
        };
        net.connect(0, 1, LinkPolicy::default(), prefix);
        net.connect(1, 2, LinkPolicy::default(), LinkPolicy::default());
        net
    }

    fn connect(&mut self, a: usize, b: usize, pa: LinkPolicy, pb: LinkPolicy) {
        let (la, lb) = (LinkId(10 + b as u32), LinkId(10 + a as u32));
        self.wires.insert((a, la), (b, lb));
        self.wires.insert((b, lb), (a, la));
        let mut out = Vec::new();
        let idb = format!("r{b}");
        self.cores[a].link_up_with_policy(la, &idb, pa, &mut out);
        self.route(a, out);
        let mut out = Vec::new();
        let ida = format!("r{a}");
        self.cores[b].link_up_with_policy(lb, &ida, pb, &mut out);
        self.route(b, out);
    }

    /// Carries interest between the cores until quiet.
    fn route(&mut self, r: usize, actions: Vec<Action>) {
        let mut todo: VecDeque<(usize, Action)> = actions.into_iter().map(|a| (r, a)).collect();
        while let Some((r, a)) = todo.pop_front() {
            if let Action::Send { link, msg } = a {
                if matches!(msg, LinkMsg::Event(_)) {
                    continue;
                }
                let Some(&(p, pl)) = self.wires.get(&(r, link)) else {
                    continue;
                };
                let mut out = Vec::new();
                self.cores[p].on_message(pl, msg, &mut out);
                todo.extend(out.into_iter().map(|a| (p, a)));
            }
        }
    }

    fn subscribe(&mut self, r: usize, filter: &str) {
        let mut out = Vec::new();
        self.cores[r].local_subscribe(filter, &mut out).unwrap();
        self.route(r, out);
    }

    fn start(&mut self, r: usize, ticket: u64, topic: &str, from: Option<&str>) -> bool {
        let mut out = Vec::new();
        let ok = self.machines[r].start(
            &self.cores[r],
            ticket,
            ticket,
            topic,
            from,
            self.now,
            &mut out,
        );
        self.queue.extend(out.into_iter().map(|o| (r, o)));
        ok
    }

    /// Carries out explain actions until none is left.
    fn run(&mut self) {
        while let Some((r, o)) = self.queue.pop_front() {
            let mut out = Vec::new();
            match o {
                Out::Send { link, request } => {
                    let (p, pl) = self.wires[&(r, link)];
                    if self.silent == Some(p) {
                        continue;
                    }
                    self.machines[p].on_request(&self.cores[p], pl, request, self.now, &mut out);
                    self.queue.extend(out.into_iter().map(|o| (p, o)));
                }
                Out::Reply {
                    link,
                    origin,
                    request,
                    body,
                } => {
                    let (p, pl) = self.wires[&(r, link)];
                    self.machines[p].on_reply(pl, &origin, request, &body, &mut out);
                    self.queue.extend(out.into_iter().map(|o| (p, o)));
                }
                Out::AskShards { key, topic } => {
                    // One subscriber per router, as its shards would say.
                    let d = LocalDelivery {
                        shard: 0,
                        protocol: "mqtt".into(),
                        client_id: format!("c{r}"),
                        filter: topic,
                        qos: 0,
                        queue_group: None,
                    };
                    self.machines[r].on_shards(key, vec![d], Vec::new(), false, &mut out);
                    self.queue.extend(out.into_iter().map(|o| (r, o)));
                }
                Out::Done { ticket, body } => self.done.push((ticket, body)),
            }
        }
    }

    fn tick(&mut self, after: Duration) {
        self.now += after;
        for r in 0..3 {
            let mut out = Vec::new();
            self.machines[r].tick(self.now, &mut out);
            self.queue.extend(out.into_iter().map(|o| (r, o)));
        }
        self.run();
    }
}

fn routers(body: &ReplyBody) -> Vec<(&str, &str, Option<&str>)> {
    body.routers
        .iter()
        .map(|r| {
            (
                r.router.as_str(),
                r.topic.as_str(),
                r.arrived_from.as_deref(),
            )
        })
        .collect()
}

#[test]
fn a_request_follows_the_copies_and_replies_gather_back() {
    let mut net = Net::line();
    net.subscribe(1, "from-r0/#");
    net.subscribe(2, "from-r0/a/#");
    assert!(net.start(0, 1, "a/b", None));
    net.run();
    let (ticket, body) = &net.done[0];
    assert_eq!(*ticket, 1);
    assert_eq!(
        routers(body),
        vec![
            ("r0", "a/b", None),
            ("r1", "from-r0/a/b", Some("r0")),
            ("r2", "from-r0/a/b", Some("r1")),
        ]
    );
    assert!(body.unreached.is_empty());
    assert_eq!(body.routers[0].links[0].dests, vec!["r1", "r2"]);
    assert_eq!(body.routers[2].deliveries[0].client_id, "c2");
    assert_eq!(
        net.machines
            .iter()
            .map(Explainer::in_progress)
            .sum::<usize>(),
        0
    );
}

#[test]
fn a_seek_finds_the_router_it_names_and_explains_from_there() {
    let mut net = Net::line();
    net.subscribe(0, "x/#");
    assert!(net.start(0, 7, "x/y", Some("r2")));
    net.run();
    let body = &net.done[0].1;
    // Published at r2: r1 forwards, r0 delivers (no prefix that way).
    assert_eq!(
        routers(body),
        vec![
            ("r2", "x/y", None),
            ("r1", "x/y", Some("r2")),
            ("r0", "x/y", Some("r1")),
        ]
    );
    // A second seek for a router nobody has finds nothing.
    assert!(net.start(0, 8, "x/y", Some("nobody")));
    net.run();
    assert!(net.done[1].1.routers.is_empty());
}

#[test]
fn a_silent_router_is_written_off_at_the_deadline_and_the_bound_holds() {
    let mut net = Net::line();
    net.subscribe(2, "#");
    net.silent = Some(2);
    assert!(net.start(0, 1, "t", None));
    net.run();
    assert!(net.done.is_empty(), "waits for r2");
    // explains_max = 2 at r0: one more, then busy.
    assert!(net.start(0, 2, "t", None));
    assert!(!net.start(0, 3, "t", None), "past explains_max");
    net.run();
    net.tick(Duration::from_millis(1000));
    assert!(net.done.is_empty(), "within everyone's time");
    // r1 gave r2 three quarters of r0's time: at its deadline it answers
    // r0 with r2 written off, and r0, having all, answers before its own.
    net.tick(Duration::from_millis(500));
    assert_eq!(net.done.len(), 2, "both requests answered");
    let body = &net.done[0].1;
    assert_eq!(
        routers(body),
        vec![("r0", "t", None), ("r1", "from-r0/t", Some("r0"))]
    );
    assert_eq!(
        body.unreached,
        vec![Unreached {
            router: "r2".into(),
            reason: "timeout".into()
        }]
    );
    assert_eq!(
        net.machines
            .iter()
            .map(Explainer::in_progress)
            .sum::<usize>(),
        0
    );
}

#[test]
fn replies_are_bounded_in_bytes() {
    let mut m = Explainer::new(
        "r0",
        ExplainConfig {
            reply_bytes_max: 1024 + 300,
            ..config()
        },
    );
    let mut core = Router::new("r0", RouterConfig::default());
    core.link_up(LinkId(1), "r1", &mut Vec::new());
    let mut out = Vec::new();
    let now = Instant::now();
    // A seek for r9 floods to r1 and waits for its reply.
    assert!(m.start(&core, 1, 1, "t", Some("r9"), now, &mut out));
    let big = |name: &str| RouterReport {
        router: name.into(),
        topic: "x".repeat(200),
        ..RouterReport::default()
    };
    let body = ReplyBody {
        routers: vec![big("r9"), big("r8")],
        unreached: Vec::new(),
    };
    let bytes = serde_json::to_vec(&body).unwrap();
    out.clear();
    m.on_reply(LinkId(1), "r0", 1, &bytes, &mut out);
    let Some(Out::Done { body, .. }) = out.pop() else {
        panic!("answered")
    };
    assert_eq!(body.routers.len(), 1);
    assert_eq!(body.unreached[0].reason, "reply_too_large");
    // A malformed reply names the routers it was for.
    out.clear();
    assert!(m.start(&core, 2, 2, "t", Some("r9"), now, &mut out));
    out.clear();
    m.on_reply(LinkId(1), "r0", 2, b"{not json", &mut out);
    let Some(Out::Done { body, .. }) = out.pop() else {
        panic!("answered")
    };
    assert_eq!(body.unreached[0].reason, "bad_reply");
}
