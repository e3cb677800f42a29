//! Link policy in the routing core: export and import deny and allow
//! lists, import prefixes.

use super::*;

#[test]
fn export_deny_keeps_a_topic_off_a_link() {
    // Line r0 - r1 - r2; r1 may not export "secret/#" to r2.
    let mut sim = Sim::new(3);
    sim.connect(0, 1);
    let deny = LinkPolicy {
        export_deny: vec!["secret/#".into()],
        ..LinkPolicy::default()
    };
    sim.connect_with(1, 2, deny, LinkPolicy::default());
    sim.subscribe(2, "#");
    sim.run_until_idle(1000);
    sim.publish(0, "secret/plans", 1);
    sim.publish(0, "public/news", 2);
    sim.run_until_idle(1000);
    assert!(sim.deliveries("secret/plans", 1).is_empty());
    assert_eq!(sim.deliveries("public/news", 2), BTreeMap::from([(2, 1)]));
    assert!(!sim
        .crossings
        .iter()
        .any(|(f, t, topic)| *f == 1 && *t == 2 && topic.starts_with("secret/")));
    let l = sim.link_between(1, 2);
    let c = sim.routers[1].link_counters(l).unwrap();
    assert_eq!(c.denied_export, 1);
    assert_eq!(c.events_out, 1);
}

#[test]
fn export_deny_uses_another_path_if_there_is_one() {
    // Triangle; r0's direct link to r2 may not carry "s/#", but the
    // way through r1 may.
    let mut sim = Sim::new(3);
    sim.connect_with(
        0,
        2,
        LinkPolicy {
            export_deny: vec!["s/#".into()],
            ..LinkPolicy::default()
        },
        LinkPolicy::default(),
    );
    sim.connect(0, 1);
    sim.connect(1, 2);
    sim.subscribe(2, "s/+");
    sim.subscribe(2, "#");
    sim.run_until_idle(1000);
    // "s/+" is entirely covered by the deny: not even learned over it.
    assert_eq!(sim.routers[0].best_route("s/+", "r2").map(|r| r.0), Some(2));
    sim.publish(0, "s/1", 1);
    sim.run_until_idle(1000);
    assert_eq!(sim.deliveries("s/1", 1), BTreeMap::from([(2, 1)]));
    assert!(!sim.crossings.iter().any(|(f, t, _)| *f == 0 && *t == 2));
    let l = sim.link_between(0, 2);
    assert_eq!(sim.routers[0].link_counters(l).unwrap().denied_export, 1);
    sim.publish(0, "p/1", 2);
    sim.run_until_idle(1000);
    assert!(sim
        .crossings
        .iter()
        .any(|(f, t, topic)| *f == 0 && *t == 2 && topic == "p/1"));
}

#[test]
fn import_deny_drops_and_does_not_advertise() {
    let mut sim = Sim::new(2);
    sim.connect_with(
        1,
        0,
        LinkPolicy {
            import_deny: vec!["in/#".into()],
            ..LinkPolicy::default()
        },
        LinkPolicy::default(),
    );
    sim.subscribe(1, "in/x");
    sim.subscribe(1, "#");
    sim.run_until_idle(1000);
    assert_eq!(sim.routers[0].best_route("in/x", "r1"), None);
    assert!(sim.routers[0].best_route("#", "r1").is_some());
    sim.publish(0, "in/x", 1);
    sim.publish(0, "out/x", 2);
    sim.run_until_idle(1000);
    assert!(sim.deliveries("in/x", 1).is_empty());
    assert_eq!(sim.deliveries("out/x", 2), BTreeMap::from([(1, 1)]));
    let l = sim.link_between(1, 0);
    assert_eq!(sim.routers[1].link_counters(l).unwrap().denied_import, 1);
}

#[test]
fn allow_lists_and_import_prefix() {
    let mut sim = Sim::new(2);
    sim.connect_with(
        0,
        1,
        LinkPolicy {
            export_allow: vec!["pub/#".into()],
            ..LinkPolicy::default()
        },
        LinkPolicy {
            import_prefix: "from-r0/".into(),
            ..LinkPolicy::default()
        },
    );
    // r1 wants "from-r0/pub/#": advertised to r0 as "pub/#"; and "#":
    // advertised as "#"; "other/#" cannot come from r0: not advertised.
    sim.subscribe(1, "from-r0/pub/#");
    sim.subscribe(1, "other/#");
    sim.run_until_idle(100);
    let to_r0 = sim.link_between(0, 1);
    assert_eq!(sim.routers[0].best_route("pub/#", "r1"), Some((1, to_r0)));
    assert_eq!(sim.routers[0].best_route("other/#", "r1"), None);
    sim.publish(0, "pub/x", 1);
    sim.publish(0, "priv/x", 2);
    sim.run_until_idle(100);
    assert_eq!(sim.deliveries("from-r0/pub/x", 1), BTreeMap::from([(1, 1)]));
    assert!(sim.deliveries("from-r0/priv/x", 2).is_empty());
    assert!(sim.crossings.iter().all(|(_, _, t)| t == "pub/x"));
    assert_eq!(strip_prefix_filter("p/q/", "p/+/#").as_deref(), Some("#"));
    assert_eq!(
        strip_prefix_filter("p/q/", "p/q/a/+").as_deref(),
        Some("a/+")
    );
    assert_eq!(strip_prefix_filter("p/q/", "p/q"), None);
    assert_eq!(strip_prefix_filter("p/q/", "x/#"), None);
    assert_eq!(
        strip_prefix_key("p/", "$share/g/p/a").as_deref(),
        Some("$share/g/a")
    );
}
