//! The mesh across network namespaces: three routers A, B, C, each in its
//! own namespace made by the test, linked in a triangle over veth pairs,
//! while A publishes a numbered stream and B and C subscribe. The A-B link
//! is broken and healed: the cable pulled (`ip link set dev … down`), once
//! briefly and once long enough for the link to time out; or one way only
//! (a blackhole route at B towards A: A's events still reach B, B's acks
//! and pongs do not reach A). No event is ever delivered twice, events
//! published while the mesh is stable all arrive, the mesh reroutes via C
//! while A-B is down, and delivery resumes once it heals.
//!
//! Needs root and iproute2 (`ip netns add`, veth). Where a namespace
//! cannot be made, a test skips visibly: it says so on stderr and appends a
//! line to the file named by `WEFT_SKIP_REPORT` (scripts/test.sh prints
//! those lines as "SKIPPED: ..." at the end of the run); with
//! `WEFT_NETNS_REQUIRED=1` (scripts/test.sh sets it in CI, whose machines
//! can make namespaces) it fails instead.
//! The routers run under `ip netns exec`; each namespace has a second veth
//! to the root namespace, on which the router's client and admin listeners
//! are, so that the test's clients (in the root namespace) reach them.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::QoS;

/// Events the stream publishes between two steps of a test (one every few
/// milliseconds): a count, so that the steps do not depend on timing.
const BETWEEN_STEPS: u64 = 40;

/// A namespace cannot be made here: fail where it is required, else report
/// the skip (stderr and `WEFT_SKIP_REPORT`). Returns `None` for `start`.
fn skip(test: &str, reason: &str) -> Option<Triangle> {
    let line = format!("mesh_netns::{test}: {reason}; needs root and iproute2");
    let required = env_flag("WEFT_NETNS_REQUIRED")
        .then_some("WEFT_NETNS_REQUIRED is set: this machine must run it");
    report_skip(&line, required);
    None
}

/// Runs `ip ARGS`; the error names the command and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// Deletes the namespaces (and so their veths) and any root-side veth when
/// dropped, whether the test passed or not.
struct Netns {
    namespaces: Vec<String>,
    root_links: Vec<String>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for l in &self.root_links {
            let _ = ip(&["link", "del", l]);
        }
        for ns in &self.namespaces {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("mesh_netns: cleanup: {e}");
            }
        }
    }
}

/// The triangle: namespaces, veths and routers. Fields drop in order: the
/// routers first, then the namespaces.
struct Triangle {
    routers: Vec<Weft>,
    ns: Vec<String>,
    /// (router, neighbour) -> the router's mesh address / device on that edge.
    edge_ip: BTreeMap<(usize, usize), String>,
    edge_dev: BTreeMap<(usize, usize), String>,
    _netns: Netns,
}

const IDS: [&str; 3] = ["A", "B", "C"];

impl Drop for Triangle {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, weft) in IDS.iter().zip(&self.routers) {
                eprintln!("----- router {id}: stderr -----");
                for line in weft.stderr_lines() {
                    eprintln!("{id}| {line}");
                }
            }
        }
    }
}

impl Triangle {
    /// Builds the namespaces and starts the routers (A first; B dials A; C
    /// dials A and B), then waits until every router has both links up.
    /// `None` (after saying why on stderr) where namespaces cannot be made.
    /// `test` (0..16) keeps the names and addresses of the tests of one
    /// run apart.
    async fn start(test: u32, name: &str) -> Option<Triangle> {
        let pid = std::process::id();
        let ns: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|x| format!("weft-mesh-{pid}-{test}{x}"))
            .collect();
        let mut guard = Netns {
            namespaces: Vec::new(),
            root_links: Vec::new(),
        };
        for n in &ns {
            if let Err(e) = ip(&["netns", "add", n]) {
                return skip(name, &format!("cannot make a network namespace ({e})"));
            }
            guard.namespaces.push(n.clone());
            must(&["-n", n, "link", "set", "lo", "up"]);
        }
        // Client side: a veth from the root namespace into each namespace,
        // on a /30 derived from the pid and the test (so that parallel
        // tests and runs do not collide).
        let tag = pid % 16_000;
        let (o2, o3) = (100 + tag / 250, tag % 250);
        let mut client_ip = Vec::new();
        for (k, n) in ns.iter().enumerate() {
            let root = format!("wr{test:x}{k}{pid}");
            let inner = format!("wc{test:x}{k}{pid}");
            if let Err(e) = ip(&["link", "add", &root, "type", "veth", "peer", "name", &inner]) {
                return skip(name, &format!("cannot make a veth pair ({e})"));
            }
            guard.root_links.push(root.clone());
            must(&["link", "set", &inner, "netns", n]);
            let host = 16 * test as usize + 4 * k;
            let (r_ip, n_ip) = (
                format!("10.{o2}.{o3}.{}", host + 1),
                format!("10.{o2}.{o3}.{}", host + 2),
            );
            must(&["addr", "add", &format!("{r_ip}/30"), "dev", &root]);
            must(&["link", "set", &root, "up"]);
            must(&["-n", n, "addr", "add", &format!("{n_ip}/30"), "dev", &inner]);
            must(&["-n", n, "link", "set", &inner, "up"]);
            client_ip.push(n_ip);
        }
        // Mesh side: one veth pair per edge, between the two namespaces.
        let mut edge_ip = BTreeMap::new();
        let mut edge_dev = BTreeMap::new();
        for (e, &(x, y)) in [(0usize, 1usize), (0, 2), (1, 2)].iter().enumerate() {
            let (dx, dy) = (
                format!("wm{test:x}{x}{y}{pid}"),
                format!("wm{test:x}{y}{x}{pid}"),
            );
            if let Err(err) = ip(&["link", "add", &dx, "type", "veth", "peer", "name", &dy]) {
                return skip(name, &format!("cannot make a veth pair ({err})"));
            }
            for (dev, end, other, host) in [(&dx, x, y, 1), (&dy, y, x, 2)] {
                must(&["link", "set", dev, "netns", &ns[end]]);
                let addr = format!("10.77.{e}.{host}");
                must(&[
                    "-n",
                    &ns[end],
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    dev,
                ]);
                must(&["-n", &ns[end], "link", "set", dev, "up"]);
                edge_ip.insert((end, other), addr);
                edge_dev.insert((end, other), dev.clone());
            }
        }
        // Client, NATS and admin listeners on the root-facing veth (not
        // loopback: anonymous clients allowed explicitly), the mesh
        // listener on every address of the namespace.
        let mesh_toml = "[mesh]
keepalive_ms = 200
link_timeout_ms = 1000
reconnect_min_ms = 50
reconnect_max_ms = 200
";
        let mut routers: Vec<Weft> = Vec::new();
        for (i, id) in IDS.iter().enumerate() {
            let cip = &client_ip[i];
            // Off loopback, the admin endpoint needs a token (the
            // harness sends it), and anonymous clients need saying so.
            let toml = format!(
                "{mesh_toml}[nats]\nlisten = \"{cip}:0\"\n[admin]\nlisten = \"{cip}:0\"\ntoken = \"netns-{id}\"\n[security]\nallow_anonymous = true\n"
            );
            let mut launch = Launch::new(1, &toml);
            launch.prefix = ["ip", "netns", "exec", &ns[i]].map(String::from).to_vec();
            launch.mqtt_listen = format!("{cip}:0");
            launch.cores = (i % 2).to_string();
            launch.capture_stderr = true;
            launch.log_level = Some("info".into());
            launch.args = ["--router-id", id, "--mesh-listen", "0.0.0.0:0"]
                .map(String::from)
                .to_vec();
            for (j, earlier) in routers.iter().enumerate() {
                let port = earlier.mesh.expect("mesh listener").port();
                launch.args.push("--link".into());
                launch.args.push(format!("{}:{port}", edge_ip[&(j, i)]));
            }
            routers.push(Weft::launch_with(launch));
        }
        let t = Triangle {
            routers,
            ns,
            edge_ip,
            edge_dev,
            _netns: guard,
        };
        for r in &t.routers {
            wait_links_up(r, 2).await;
        }
        Some(t)
    }

    /// `ip -n NS(router) ARGS`.
    fn ip_in(&self, router: usize, args: &[&str]) {
        let mut all = vec!["-n", &self.ns[router]];
        all.extend_from_slice(args);
        must(&all);
    }

    /// Waits until `router`'s link to `peer` is (`true`) or is not up.
    async fn wait_link(&self, router: usize, peer: usize, up: bool) {
        let what = format!(
            "{}: link to {} {}",
            IDS[router],
            IDS[peer],
            if up { "up" } else { "down" }
        );
        wait_links(self.routers[router].admin, &what, |v| {
            let is_up = v.to(IDS[peer]).is_some_and(|l| l.state == "up");
            is_up == up && v.router_id.is_some()
        })
        .await;
    }
}

/// What the publisher was doing when it published a sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The mesh is stable: the event must arrive, once.
    Stable,
    /// Around a cut or a heal: the event may be lost, never duplicated.
    Disturbed,
    Stop,
}

/// Each published sequence number with its phase.
type Published = Vec<(u64, Phase)>;

/// A numbered stream (`n/d`, QoS 1) from one MQTT client, one event every
/// few milliseconds, each number tagged with the phase it was published in.
struct Stream {
    state: Arc<Mutex<(Phase, Published)>>,
    next: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Stream {
    fn start(client: rumqttc::AsyncClient) -> Stream {
        let state = Arc::new(Mutex::new((Phase::Stable, Vec::new())));
        let next = Arc::new(AtomicU64::new(0));
        let (state2, next2) = (state.clone(), next.clone());
        let task = tokio::spawn(async move {
            loop {
                let seq = {
                    let mut s = state2.lock().unwrap();
                    if s.0 == Phase::Stop {
                        return;
                    }
                    let seq = next2.fetch_add(1, Ordering::SeqCst);
                    let tag = s.0;
                    s.1.push((seq, tag));
                    seq
                };
                client
                    .publish("n/d", QoS::AtLeastOnce, false, seq.to_string())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Stream { state, next, task }
    }

    fn set(&self, phase: Phase) {
        self.state.lock().unwrap().0 = phase;
    }

    /// The next sequence number to be published.
    fn next_seq(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `n` more events have been published.
    async fn publish_more(&self, n: u64, what: &str) {
        let until = self.next_seq() + n;
        wait_until(what, WAIT, || async {
            match self.next_seq() {
                s if s >= until => Ok(()),
                s => Err(format!("{s} of {until} published")),
            }
        })
        .await
    }

    fn stable(&self) -> Vec<u64> {
        let s = self.state.lock().unwrap();
        s.1.iter()
            .filter(|(_, t)| *t == Phase::Stable)
            .map(|&(n, _)| n)
            .collect()
    }

    /// Waits (bounded) until every stable event so far is in every inbox.
    async fn wait_stable(&self, what: &str, inboxes: &[&Inbox]) {
        let seqs = self.stable();
        for inbox in inboxes {
            let all_in = |m: &[Msg]| {
                let got = seq_counts_in(m, "n/d").expect("numbered payloads");
                seqs.iter().all(|s| got.contains_key(s))
            };
            inbox.wait_until(what, all_in).await;
        }
    }

    /// Stops publishing; returns how many events were published.
    async fn stop(&mut self) -> u64 {
        self.set(Phase::Stop);
        (&mut self.task).await.unwrap();
        self.next_seq()
    }
}

/// Subscribers on B and C (`n/#`), a publisher on A, and the fence.
async fn clients(
    t: &Triangle,
) -> (
    Vec<(rumqttc::AsyncClient, Inbox)>,
    rumqttc::AsyncClient,
    Inbox,
) {
    let mut subs = Vec::new();
    for (r, name) in [(1, "b-sub"), (2, "c-sub")] {
        let mut s = connect(t.routers[r].addr, name).await;
        s.subscribe("n/#", QoS::AtLeastOnce).await;
        subs.push(Inbox::mqtt(s));
    }
    let (a_pub, acks) = Inbox::mqtt(connect(t.routers[0].addr, "a-pub").await);
    let inboxes: Vec<&Inbox> = subs.iter().map(|(_, i)| i).collect();
    fence(mqtt_publisher(&a_pub), "n/probe", &inboxes).await;
    (subs, a_pub, acks)
}

/// Waits until an event published from now on reaches `inbox`.
async fn wait_fresh_event(stream: &Stream, inbox: &Inbox, what: &str) {
    let from = stream.next_seq();
    inbox
        .wait_until(what, |m| {
            seq_counts_in(m, "n/d")
                .expect("numbered payloads")
                .range(from..)
                .next()
                .is_some()
        })
        .await;
}

/// After the stream stopped: every stable event arrived once, no event
/// twice, nothing that was not published; probes once each too.
fn check(stream: &Stream, published: u64, inboxes: &[&Inbox], probes: &[&str]) {
    let stable = stream.stable();
    for inbox in inboxes {
        assert_once(inbox, "n/d", stable.iter().copied());
        let counts = seq_counts(inbox, "n/d");
        let unknown: Vec<_> = counts.keys().filter(|&&s| s >= published).collect();
        assert!(
            unknown.is_empty(),
            "{}: never published: {unknown:?}",
            inbox.name
        );
        eprintln!(
            "mesh_netns: {}: {} of {published} events (each once), {} stable, {} lost around the cuts",
            inbox.name,
            counts.len(),
            stable.len(),
            published as usize - counts.len()
        );
        for probe in probes {
            let mut payloads: Vec<_> = inbox.on(probe).into_iter().map(|m| m.payload).collect();
            let n = payloads.len();
            payloads.sort();
            payloads.dedup();
            assert_eq!(payloads.len(), n, "{}: a {probe} twice", inbox.name);
        }
    }
}

async fn report_duplicates(t: &Triangle) {
    for r in &t.routers {
        let v = links(r.admin).await;
        eprintln!(
            "mesh_netns: {:?}: duplicates dropped by the router: {:?}",
            v.router_id, v.duplicates_dropped
        );
    }
}

/// The A-B cable is pulled twice: briefly (less than link_timeout_ms) and
/// until both ends drop the link; then put back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_heal_between_namespaces_duplicates_nothing() {
    let Some(t) = Triangle::start(0, "cut_and_heal_between_namespaces_duplicates_nothing").await
    else {
        return;
    };
    let (a, b) = (0, 1);
    let (subs, a_pub, _acks) = clients(&t).await;
    let inboxes: Vec<&Inbox> = subs.iter().map(|(_, i)| i).collect();
    let at_b = inboxes[0];
    let mut stream = Stream::start(a_pub.clone());
    stream
        .publish_more(BETWEEN_STEPS, "stable events before the first cut")
        .await;
    stream.set(Phase::Disturbed);
    stream
        .wait_stable("stable events before the first cut", &inboxes)
        .await;

    // A short cut: shorter than link_timeout_ms.
    let dev_ab = &t.edge_dev[&(a, b)];
    t.ip_in(a, &["link", "set", "dev", dev_ab, "down"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.ip_in(a, &["link", "set", "dev", dev_ab, "up"]);
    t.wait_link(a, b, true).await;
    t.wait_link(b, a, true).await;
    fence(mqtt_publisher(&a_pub), "n/probe-short", &inboxes).await;

    // A long cut: both ends drop the link; B is still served, via C.
    t.ip_in(a, &["link", "set", "dev", dev_ab, "down"]);
    t.wait_link(a, b, false).await;
    t.wait_link(b, a, false).await;
    wait_fresh_event(&stream, at_b, "an event via C while A-B is down").await;
    stream
        .publish_more(BETWEEN_STEPS, "events while A-B is down")
        .await;
    t.ip_in(a, &["link", "set", "dev", dev_ab, "up"]);
    t.wait_link(a, b, true).await;
    t.wait_link(b, a, true).await;
    fence(mqtt_publisher(&a_pub), "n/probe-healed", &inboxes).await;

    // Stable again: what is published from now on must all arrive.
    finish_stable(
        &t,
        &mut stream,
        &a_pub,
        &inboxes,
        &["n/probe", "n/probe-short", "n/probe-healed", "n/probe-end"],
    )
    .await;
    // B dialed A: the same entry came back, its reconnection counted.
    let view = links(t.routers[b].admin).await;
    let ba = view.to("A").expect("B's link to A");
    assert_eq!(ba.direction, "out", "{view:#?}");
    assert!(
        ba.reconnects >= 1,
        "B counts its reconnection to A: {view:#?}"
    );
    report_duplicates(&t).await;
}

/// The A-B link breaks one way only: B's packets to A are blackholed, so
/// A's events (QoS 1 copies) still reach B while B's acks and pongs never
/// reach A. A drops the silent link, serves B via C, and after the heal
/// whatever it resends over the link must not reach B's subscriber twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_break_between_namespaces_duplicates_nothing() {
    let Some(t) = Triangle::start(1, "one_way_break_between_namespaces_duplicates_nothing").await
    else {
        return;
    };
    let (a, b) = (0, 1);
    let (subs, a_pub, _acks) = clients(&t).await;
    let inboxes: Vec<&Inbox> = subs.iter().map(|(_, i)| i).collect();
    let at_b = inboxes[0];
    let mut stream = Stream::start(a_pub.clone());
    stream
        .publish_more(BETWEEN_STEPS, "stable events before the first cut")
        .await;
    stream.set(Phase::Disturbed);
    stream
        .wait_stable("stable events before the break", &inboxes)
        .await;

    let a_addr = t.edge_ip[&(a, b)].clone();
    let blackhole = format!("{a_addr}/32");
    t.ip_in(b, &["route", "add", "blackhole", &blackhole]);
    t.wait_link(a, b, false).await;
    wait_fresh_event(&stream, at_b, "an event while A-B is broken").await;
    stream
        .publish_more(BETWEEN_STEPS, "events while A-B is broken")
        .await;
    t.ip_in(b, &["route", "del", "blackhole", &blackhole]);
    t.wait_link(a, b, true).await;
    t.wait_link(b, a, true).await;
    fence(mqtt_publisher(&a_pub), "n/probe-healed", &inboxes).await;

    finish_stable(
        &t,
        &mut stream,
        &a_pub,
        &inboxes,
        &["n/probe", "n/probe-healed", "n/probe-end"],
    )
    .await;
    report_duplicates(&t).await;
}

/// After a heal: publish stably for a while, stop, wait for the stable
/// events, settle (every QoS 1 copy acknowledged, the link counters
/// steady, then the `n/probe-end` fence from A), and check every inbox (exactly once, nothing else but
/// the `probes`).
async fn finish_stable(
    t: &Triangle,
    stream: &mut Stream,
    a_pub: &rumqttc::AsyncClient,
    inboxes: &[&Inbox],
    probes: &[&str],
) {
    let first_after = stream.next_seq();
    stream.set(Phase::Stable);
    stream
        .publish_more(BETWEEN_STEPS, "stable events after the heal")
        .await;
    let published = stream.stop().await;
    assert!(
        stream.stable().iter().any(|&s| s >= first_after),
        "events were published after the heal"
    );
    stream
        .wait_stable("stable events after the heal", inboxes)
        .await;
    let admins: Vec<_> = t.routers.iter().map(|r| r.admin).collect();
    wait_links_acked(&admins).await;
    fence(mqtt_publisher(a_pub), "n/probe-end", inboxes).await;
    check(stream, published, inboxes, probes);
}
