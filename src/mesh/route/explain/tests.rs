//! The core's explain against the core's own publish: for each topic, the
//! routers an explanation walks to (following its copies over the Sim's
//! wires) are exactly those a real publish delivers to, under the topic
//! it delivers, and each refusal names the rule that the audit counters
//! then count.

use std::collections::BTreeMap;

use super::super::tests::Sim;
use super::*;

/// r0 —— r1 —— r2, and r0 —— r2 directly (a triangle). r0 exports no
/// `secret/#` to r1 (export deny); r2 takes nothing under `blocked/#`
/// from r1 (import deny) and prefixes what r1 sends with `from-r1/`
/// (import prefix); r0 —— r2 carries only `direct/#` (an allow list).
fn mesh() -> Sim {
    let mut sim = Sim::new(3);
    sim.connect_with(
        0,
        1,
        LinkPolicy {
            export_deny: vec!["secret/#".into()],
            ..LinkPolicy::default()
        },
        LinkPolicy::default(),
    );
    sim.connect_with(
        1,
        2,
        LinkPolicy::default(),
        LinkPolicy {
            import_deny: vec!["blocked/#".into()],
            import_prefix: "from-r1/".into(),
            ..LinkPolicy::default()
        },
    );
    sim.connect_with(
        0,
        2,
        LinkPolicy {
            export_allow: vec!["direct/#".into()],
            ..LinkPolicy::default()
        },
        LinkPolicy::default(),
    );
    sim.subscribe(1, "#");
    sim.subscribe(2, "from-r1/#");
    sim.subscribe(2, "direct/#");
    sim.run_until_idle(1000);
    sim
}

/// Walks the explanation of `topic` published at `r`: (router, topic
/// there) of every router it reaches with a local delivery, and every
/// report.
fn walk(sim: &Sim, r: usize, topic: &str) -> (BTreeMap<usize, String>, Vec<RouterReport>) {
    let mut reached = BTreeMap::new();
    let mut reports = Vec::new();
    let mut todo = vec![(r, sim.routers[r].explain_publish(topic), true)];
    while let Some((at, hop, publisher)) = todo.pop() {
        if hop.local && !publisher {
            reached.insert(at, hop.report.topic.clone());
        }
        for (link, dests) in &hop.copies {
            let (peer, peer_link) = sim.wires[&(at, *link)];
            let next = sim.routers[peer].explain_arrival(peer_link, &hop.report.topic, dests, 0);
            todo.push((peer, next, false));
        }
        reports.push(hop.report);
    }
    (reached, reports)
}

#[test]
fn explain_matches_what_publish_then_does() {
    let mut sim = mesh();
    for (id, topic) in ["a/b", "secret/x", "blocked/y", "direct/z"]
        .iter()
        .enumerate()
    {
        let (explained, _) = walk(&sim, 0, topic);
        let id = 100 + id as u64;
        sim.publish(0, topic, id);
        sim.run_until_idle(1000);
        let mut delivered = BTreeMap::new();
        for (r, t, i) in sim.delivered_events() {
            if i == id {
                delivered.insert(r, t);
            }
        }
        assert_eq!(explained, delivered, "{topic}");
    }
}

#[test]
fn refusals_name_their_rules_and_are_counted() {
    let mut sim = mesh();
    // secret/x: kept off r0 —— r1 by the export deny; r0 —— r2 does
    // not allow it either (allow-list miss).
    let (reached, reports) = walk(&sim, 0, "secret/x");
    assert!(reached.is_empty(), "{reached:?}");
    let r0 = &reports[0];
    assert_eq!(r0.router, "r0");
    let refused: Vec<(&str, &str, &str)> = r0
        .links
        .iter()
        .filter(|l| l.action == "refused")
        .map(|l| {
            (
                l.peer.as_str(),
                l.by.as_deref().unwrap(),
                l.rule.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        vec![("r1", "export_deny", "secret/#")],
        "{:?}",
        r0.links
    );
    // blocked/y: forwarded to r1 (delivered there), refused on import at r2.
    let (reached, reports) = walk(&sim, 0, "blocked/y");
    assert_eq!(reached, BTreeMap::from([(1, "blocked/y".to_owned())]));
    let r2 = reports
        .iter()
        .find(|r| r.router == "r2")
        .expect("r2 reported");
    let import = r2.import.as_ref().unwrap();
    assert_eq!(
        (
            import.action.as_str(),
            import.by.as_deref(),
            import.rule.as_deref()
        ),
        ("refused", Some("import_deny"), Some("blocked/#"))
    );
    // a/b: r1 delivers it; r2 gets it from r1 under the prefix.
    let (reached, reports) = walk(&sim, 0, "a/b");
    assert_eq!(
        reached,
        BTreeMap::from([(1, "a/b".to_owned()), (2, "from-r1/a/b".to_owned())])
    );
    let r2 = reports.iter().find(|r| r.router == "r2").unwrap();
    assert_eq!(
        r2.import.as_ref().unwrap().prefix.as_deref(),
        Some("from-r1/")
    );
    assert_eq!(r2.arrived_from.as_deref(), Some("r1"));
    // Explaining counted nothing; real events do, per rule.
    assert_eq!(sim.routers[0].policy_denied().count(), 0);
    sim.publish(0, "secret/x", 1);
    sim.publish(0, "secret/y", 2);
    sim.publish(0, "blocked/y", 3);
    sim.run_until_idle(1000);
    let audit = |r: usize| -> Vec<(String, &'static str, String, u64)> {
        sim.routers[r]
            .policy_denied()
            .map(|(p, f, n)| (p.to_owned(), f.direction.label(), f.rule.clone(), n))
            .collect()
    };
    assert_eq!(
        audit(0),
        vec![("r1".into(), "export", "secret/#".into(), 2)]
    );
    assert_eq!(
        audit(2),
        vec![("r1".into(), "import", "blocked/#".into(), 1)]
    );
}

#[test]
fn verdicts_say_deny_before_allow() {
    let p = LinkPolicy {
        export_deny: vec!["a/x".into(), "a/#".into()],
        export_allow: vec!["a/#".into(), "b/#".into()],
        import_allow: vec!["in/#".into()],
        ..LinkPolicy::default()
    };
    let e = p.export_verdict("a/x").unwrap_err();
    assert_eq!((e.by(), e.rule.as_str()), ("export_deny", "a/x"));
    assert_eq!(p.export_verdict("a/y").unwrap_err().rule, "a/#");
    assert!(p.export_verdict("b/y").is_ok());
    let e = p.export_verdict("c").unwrap_err();
    assert_eq!((e.by(), e.rule.as_str()), ("export_allow", NOT_ALLOWED));
    let e = p.import_verdict("out/x").unwrap_err();
    assert_eq!(e.by(), "import_allow");
    assert!(p.import_verdict("in/x").is_ok());
}
