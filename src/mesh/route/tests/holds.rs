//! Held links, parked copies and interest hold-down in the routing core:
//! routes a link kept while down, copies without a route handed back to
//! the runtime, returning peers, partitions.

use super::*;

#[test]
fn a_held_link_keeps_the_routes_only_it_had() {
    // r1 between r0 and r2; r2 wants "f/#", reachable only via r1-r2.
    let mut r1 = Router::new("r1", RouterConfig::default());
    let mut out = Vec::new();
    r1.link_up(LinkId(1), "r0", &mut out);
    r1.link_up(LinkId(2), "r2", &mut out);
    let add = |filter: &str, origin: &str, distance| LinkMsg::InterestAdd {
        filter: filter.into(),
        origin: origin.into(),
        distance,
    };
    r1.on_message(LinkId(2), add("f/#", "r2", 0), &mut out);
    // "g/#" of r3 is reachable over both links.
    r1.on_message(LinkId(1), add("g/#", "r3", 1), &mut out);
    r1.on_message(LinkId(2), add("g/#", "r3", 2), &mut out);
    out.clear();
    assert!(r1.link_hold(LinkId(2), &mut out));
    assert!(r1.is_held(LinkId(2)));
    // Nothing withdrawn for f/# (r0 keeps sending here), and the
    // alternative route of g/# is simply the other link now.
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::Send {
            msg: LinkMsg::InterestRemove { .. },
            ..
        } | Action::RemoteInterest { present: false, .. }
    )));
    assert_eq!(r1.best_route("f/#", "r2"), Some((HELD_DISTANCE, LinkId(2))));
    assert_eq!(r1.best_route("g/#", "r3"), Some((2, LinkId(1))));
    // An event for r2 still goes to the held link (the runtime keeps it).
    out.clear();
    let copy = EventCopy {
        origin: "r0".into(),
        id: 1,
        hops: 0,
        dests: vec!["r2".into()],
        groups: vec![],
        topic: "f/x".into(),
        retain: false,
    };
    r1.on_message(LinkId(1), LinkMsg::Event(copy), &mut out);
    assert!(matches!(
        out.as_slice(),
        [Action::Send {
            link: LinkId(2),
            msg: LinkMsg::Event(_)
        }]
    ));
    // Nothing is accepted from a held link.
    out.clear();
    r1.on_message(LinkId(2), add("h/#", "r2", 0), &mut out);
    assert!(out.is_empty());
    // r2 returns on a new link: its table arrives there, then the hold
    // ends; the route never disappears meanwhile.
    out.clear();
    r1.link_up(LinkId(3), "r2", &mut out);
    assert!(r1.is_held(LinkId(2)));
    r1.on_message(LinkId(3), add("f/#", "r2", 0), &mut out);
    r1.on_message(LinkId(3), add("g/#", "r3", 2), &mut out);
    r1.release_held("r2", &mut out);
    assert!(!r1.is_held(LinkId(2)));
    assert_eq!(r1.best_route("f/#", "r2"), Some((1, LinkId(3))));
    // r0 was never told to forget f/# (what r2 hears of its own interest
    // it ignores).
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::Send {
            link: LinkId(1),
            msg: LinkMsg::InterestRemove { .. }
        } | Action::RemoteInterest { present: false, .. }
    )));
    // A link with nothing only it had is simply down.
    let mut r = Router::new("x", RouterConfig::default());
    r.link_up(LinkId(1), "y", &mut out);
    assert!(!r.link_hold(LinkId(1), &mut out));
    assert_eq!(r.link_peer(LinkId(1)), None);
}

#[test]
fn a_copy_without_a_route_goes_back_to_the_runtime_and_on_when_one_appears() {
    // r1 has just restarted: r0 is back and says r2 wants "p/#" (over
    // r0 itself: a route r0 still holds), r2 is not back yet.
    let mut r1 = Router::new("r1", RouterConfig::default());
    let mut out = Vec::new();
    r1.link_up(LinkId(1), "r0", &mut out);
    let add = |filter: &str, origin: &str, distance| LinkMsg::InterestAdd {
        filter: filter.into(),
        origin: origin.into(),
        distance,
    };
    r1.on_message(LinkId(1), add("p/#", "r2", 1), &mut out);
    let copy = EventCopy {
        origin: "r0".into(),
        id: 7,
        hops: 0,
        dests: vec!["r2".into(), "r9".into()],
        groups: vec![("r2".into(), "g".into())],
        topic: "p/x".into(),
        retain: false,
    };
    out.clear();
    r1.on_message(LinkId(1), LinkMsg::Event(copy), &mut out);
    // Never back where it came from, never dropped by the core: the
    // runtime gets it back, counted nowhere yet.
    let [Action::Unroutable { copy, from, .. }] = out.as_slice() else {
        panic!("{out:?}");
    };
    assert_eq!(*from, Some(LinkId(1)));
    assert_eq!(copy.dests, vec!["r2".to_string(), "r9".to_string()]);
    assert_eq!(copy.groups, vec![("r2".to_string(), "g".to_string())]);
    assert_eq!(copy.hops, 1, "the link it crossed is counted");
    assert_eq!(r1.counters().no_route, 0);
    let (copy, from) = (copy.clone(), *from);
    // r2 comes back and announces its interest: the retry reaches it,
    // and what is still unknown (r9) comes back again.
    out.clear();
    r1.link_up(LinkId(2), "r2", &mut out);
    r1.on_message(LinkId(2), add("p/#", "r2", 0), &mut out);
    r1.on_message(LinkId(2), add("$share/g/p/#", "r2", 0), &mut out);
    out.clear();
    r1.retry(copy, from, &mut out);
    let sent: Vec<&EventCopy> = out
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                link: LinkId(2),
                msg: LinkMsg::Event(c),
            } => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 1, "{out:?}");
    assert_eq!(sent[0].dests, vec!["r2".to_string()]);
    assert_eq!(sent[0].groups, vec![("r2".to_string(), "g".to_string())]);
    assert_eq!((sent[0].id, sent[0].hops), (7, 1));
    assert!(out.iter().any(|a| matches!(
        a,
        Action::Unroutable { copy, .. } if copy.dests == ["r9"] && copy.groups.is_empty()
    )));
    r1.count_no_route(1);
    assert_eq!(r1.counters().no_route, 1);
    // A destination that only a denied link leads to is the policy's
    // decision: dropped and counted at once, never kept.
    let mut r = Router::new("r", RouterConfig::default());
    r.link_up(LinkId(1), "a", &mut out);
    let deny = LinkPolicy {
        export_deny: vec!["p/#".into()],
        ..LinkPolicy::default()
    };
    r.link_up_with_policy(LinkId(2), "b", deny, &mut out);
    r.on_message(LinkId(2), add("p/#", "b", 0), &mut out);
    out.clear();
    r.publish("p/x", 1, &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Unroutable { .. })),
        "{out:?}"
    );
}

#[test]
fn a_returning_peer_keeps_the_held_routes_it_did_not_announce_yet() {
    // r0 – r1 – r2: r2's interest reaches r0 over r1 only.
    let mut r0 = Router::new("r0", RouterConfig::default());
    let mut out = Vec::new();
    r0.link_up(LinkId(1), "r1", &mut out);
    let add = |filter: &str, origin: &str, distance| LinkMsg::InterestAdd {
        filter: filter.into(),
        origin: origin.into(),
        distance,
    };
    r0.on_message(LinkId(1), add("p/#", "r2", 1), &mut out);
    // r1 dies (held), and returns, restarted: its table (sent before its
    // first PING) knows nothing of r2 yet.
    assert!(r0.link_hold(LinkId(1), &mut out));
    out.clear();
    r0.link_up(LinkId(2), "r1", &mut out);
    assert_eq!(r0.release_held("r1", &mut out), Vec::<LinkId>::new());
    assert!(r0.is_held(LinkId(1)), "r2's route only the held link had");
    // A last resort now that r1 is back (see RETURNED_DISTANCE).
    assert_eq!(
        r0.best_route("p/#", "r2"),
        Some((RETURNED_DISTANCE, LinkId(1)))
    );
    // r0's publishers keep handing "p/…" to the mesh: nothing withdrawn.
    assert!(!out.iter().any(|a| matches!(
        a,
        Action::RemoteInterest { present: false, .. }
            | Action::Send {
                msg: LinkMsg::InterestRemove { .. },
                ..
            }
    )));
    // r0's events for r2 still go to the held link (the runtime sends
    // them over r1's new link).
    out.clear();
    r0.publish("p/x", 1, &mut out);
    assert!(
        matches!(
            out.as_slice(),
            [Action::Send {
                link: LinkId(1),
                msg: LinkMsg::Event(_)
            }]
        ),
        "{out:?}"
    );
    // r2 is back behind r1: the live route replaces the held one, and
    // the emptied hold ends.
    out.clear();
    r0.on_message(LinkId(2), add("p/#", "r2", 1), &mut out);
    assert_eq!(r0.best_route("p/#", "r2"), Some((2, LinkId(2))));
    assert_eq!(r0.end_empty_holds(&mut out), vec![LinkId(1)]);
    assert!(!r0.is_held(LinkId(1)));
    assert_eq!(r0.end_empty_holds(&mut out), Vec::<LinkId>::new());
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::RemoteInterest { present: false, .. })));
    out.clear();
    r0.publish("p/x", 2, &mut out);
    assert!(matches!(
        out.as_slice(),
        [Action::Send {
            link: LinkId(2),
            msg: LinkMsg::Event(_)
        }]
    ));
}

#[test]
fn routes_kept_by_held_links_survive_a_new_link_between_their_holders() {
    // r0 wants "f/#"; r1 reaches it directly, r2 over r3. Both links are
    // lost (and held) just as a new r1–r2 link comes up: each learns the
    // other's route, which rests on a held link too. Found by the mesh
    // sim (seed 65): a live route replaced the held ones, each side then
    // withdrew its own by split horizon, and neither had a route left
    // (r0's QoS 1 events from r1 or r2 went nowhere).
    let mut sim = Sim::new(4);
    sim.connect(0, 1);
    sim.connect(0, 3);
    sim.connect(3, 2);
    sim.subscribe(0, "f/#");
    sim.run_until_idle(1000);
    assert_eq!(sim.routers[2].best_route("f/#", "r0").map(|r| r.0), Some(2));
    let (to_r0, to_r3) = (sim.link_between(1, 0), sim.link_between(2, 3));
    sim.hold(0, 1);
    sim.hold(3, 2);
    sim.connect(1, 2);
    sim.run_until_idle(1000);
    // Each keeps its own held route, the shorter way (the other's, over
    // the new link, is one link longer), and the exchange settled.
    for (r, held) in [(1, to_r0), (2, to_r3)] {
        let best = sim.routers[r].best_route("f/#", "r0");
        assert_eq!(best, Some((HELD_DISTANCE, held)), "r{r}");
        assert!(sim.routers[r].is_held(held));
        // Events follow: the copy for r0 goes to the held link (the
        // runtime keeps it for the peer's return).
        let mut out = Vec::new();
        sim.routers[r].publish("f/x", r as u64, &mut out);
        assert!(
            matches!(out.as_slice(), [Action::Send { link, msg: LinkMsg::Event(_) }] if *link == held),
            "r{r}: {out:?}"
        );
    }
}

#[test]
fn a_partition_leaves_the_held_route_when_the_live_ones_are_withdrawn() {
    // A triangle; r2 wants "f/#". The links to r2 are lost (held) at
    // once: r0 and r1 each take the other's route, which led through the
    // same failure, and withdraw it from each other. Found by the mesh
    // sim (seed 17): the held links had been given up when the live
    // route took over, so r0 and r1 ended with no route to r2, and QoS 1
    // events published there meanwhile were lost for r2.
    let mut sim = Sim::new(3);
    sim.connect(0, 1);
    sim.connect(0, 2);
    sim.connect(1, 2);
    sim.subscribe(2, "f/#");
    sim.run_until_idle(1000);
    let to_r2 = [sim.link_between(0, 2), sim.link_between(1, 2)];
    sim.hold(0, 2);
    sim.hold(1, 2);
    sim.run_until_idle(1000);
    for (r, link) in [0, 1].into_iter().zip(to_r2) {
        let best = sim.routers[r].best_route("f/#", "r2");
        assert_eq!(best, Some((HELD_DISTANCE, link)), "r{r}");
        // QoS 1 copies for r2 go to the held link (the runtime keeps
        // them for r2's return).
        let mut out = Vec::new();
        sim.routers[r].publish("f/x", 10 + r as u64, &mut out);
        assert!(
            matches!(out.as_slice(), [Action::Send { link: l, msg: LinkMsg::Event(_) }] if *l == link),
            "r{r}: {out:?}"
        );
    }
    // A ring still fails over at once: a live path a few links longer
    // wins over the held one.
    let mut sim = ring(4);
    sim.subscribe(2, "f/#");
    sim.run_until_idle(1000);
    let held = sim.link_between(1, 2);
    sim.hold(1, 2);
    sim.run_until_idle(1000);
    let (d, via) = sim.routers[1].best_route("f/#", "r2").expect("a route");
    assert_ne!(via, held);
    assert_eq!(d, 3);
}

#[test]
fn a_returned_peer_keeps_its_held_routes_only_as_a_last_resort() {
    // r1 learns r5's "f/#" from r0 (1 away) and from r2 (2 away).
    let mut r1 = Router::new("r1", RouterConfig::default());
    let mut out = Vec::new();
    r1.link_up(LinkId(1), "r0", &mut out);
    r1.link_up(LinkId(2), "r2", &mut out);
    let add = |filter: &str, origin: &str, distance| LinkMsg::InterestAdd {
        filter: filter.into(),
        origin: origin.into(),
        distance,
    };
    r1.on_message(LinkId(1), add("f/#", "r5", 1), &mut out);
    r1.on_message(LinkId(2), add("f/#", "r5", 2), &mut out);
    r1.on_message(LinkId(1), add("g/#", "r0", 0), &mut out);
    assert!(r1.link_hold(LinkId(1), &mut out));
    // r2's way to r5 is a held link too now: the held route through r0
    // is the shorter.
    r1.on_message(LinkId(2), add("f/#", "r5", HELD_DISTANCE), &mut out);
    assert_eq!(r1.best_route("f/#", "r5"), Some((HELD_DISTANCE, LinkId(1))));
    // r0 is back (it lost its own way to r5 meanwhile and routes it
    // through r1 now, so it does not announce it). Its held route is a
    // last resort: at HELD_DISTANCE it stayed the shorter, events for r5
    // went to r0, which had no way but back, and r1 (split horizon) never
    // told r0 its own. Found by the mesh sim (seed 177): a QoS 1 event
    // was lost.
    out.clear();
    r1.link_up(LinkId(3), "r0", &mut out);
    r1.on_message(LinkId(3), add("g/#", "r0", 0), &mut out);
    assert_eq!(
        r1.best_route("f/#", "r5"),
        Some((HELD_DISTANCE + 1, LinkId(2)))
    );
    assert!(
        out.iter().any(|a| matches!(a, Action::Send {
            link: LinkId(3),
            msg: LinkMsg::InterestAdd { filter, origin, distance }
        } if filter == "f/#" && origin == "r5" && *distance == HELD_DISTANCE + 1)),
        "{out:?}"
    );
    // The route r0 did not announce again stays held until the hold ends
    // (r0 may have restarted and not heard from its own links yet).
    assert_eq!(r1.release_held("r0", &mut out), Vec::<LinkId>::new());
    // r0 announcing r5 farther than before (a route it learnt through
    // others since) does not replace it either (seed 3505: that route
    // rested on held links through r0 itself and went, and with it the
    // only way to r5); as far as before, it does.
    r1.on_message(LinkId(3), add("f/#", "r5", 4), &mut out);
    assert_eq!(r1.end_empty_holds(&mut out), Vec::<LinkId>::new());
    r1.on_message(LinkId(3), add("f/#", "r5", 0), &mut out);
    r1.on_message(LinkId(3), add("f/#", "r5", 1), &mut out);
    assert_eq!(r1.end_empty_holds(&mut out), vec![LinkId(1)]);
    assert_eq!(r1.best_route("f/#", "r5"), Some((2, LinkId(3))));
}

#[test]
fn a_copy_never_goes_back_to_the_router_it_came_from_over_a_held_link() {
    // r2's way to r4 is the held link to r1 (the old connection); r1 is
    // back on a new link and sends a copy for r4. Found by the mesh sim
    // (seed 1028): the core sent it to the held link, which the runtime
    // writes to r1's new link: back to r1, which sent it here again, each
    // copy's acknowledgement waiting on the other's.
    let mut r2 = Router::new("r2", RouterConfig::default());
    let mut out = Vec::new();
    r2.link_up(LinkId(3), "r1", &mut out);
    let add = |filter: &str, origin: &str, distance| LinkMsg::InterestAdd {
        filter: filter.into(),
        origin: origin.into(),
        distance,
    };
    r2.on_message(LinkId(3), add("f/#", "r4", 2), &mut out);
    assert!(r2.link_hold(LinkId(3), &mut out));
    r2.link_up(LinkId(5), "r1", &mut out);
    let copy = EventCopy {
        origin: "r0".into(),
        id: 21,
        hops: 1,
        dests: vec!["r4".into()],
        groups: vec![],
        topic: "f/x".into(),
        retain: false,
    };
    out.clear();
    r2.on_message(LinkId(5), LinkMsg::Event(copy), &mut out);
    assert!(
        matches!(out.as_slice(), [Action::Unroutable { copy, from: Some(LinkId(5)), looped: false }] if copy.dests == ["r4"]),
        "{out:?}"
    );
}

/// The mesh sim's seeds 8325 and 9941: while routes reconverged, every
/// neighbour withdrew its route to a subscriber's router for a moment;
/// a QoS 1 event published then had no destination and was lost. Held
/// down, the withdrawn entry keeps its router a destination (with no
/// route: parked by the runtime) until the route is back, and for no
/// longer than the hold-down.
#[test]
fn withdrawn_interest_is_held_down_for_own_events() {
    let add = || LinkMsg::InterestAdd {
        filter: "t/+".into(),
        origin: "r2".into(),
        distance: 1,
    };
    let remove = || LinkMsg::InterestRemove {
        filter: "t/+".into(),
        origin: "r2".into(),
    };
    let remote = |out: &[Action]| -> Vec<bool> {
        out.iter()
            .filter_map(|a| match a {
                Action::RemoteInterest { present, .. } => Some(*present),
                _ => None,
            })
            .collect()
    };
    let hold = std::time::Duration::from_millis(500);
    let t0 = std::time::Instant::now();

    // Without a hold-down (the default), as before: no destination.
    let mut plain = Router::new("r0", RouterConfig::default());
    let mut out = Vec::new();
    plain.link_up(LinkId(1), "r1", &mut out);
    plain.advance(t0, &mut out);
    plain.on_message(LinkId(1), add(), &mut out);
    plain.on_message(LinkId(1), remove(), &mut out);
    out.clear();
    plain.publish("t/0", 1, &mut out);
    assert!(out.is_empty(), "{out:?}");

    let mut r0 = Router::new("r0", RouterConfig::default());
    r0.set_interest_hold_down(hold);
    r0.link_up(LinkId(1), "r1", &mut out);
    r0.advance(t0, &mut out);
    r0.on_message(LinkId(1), add(), &mut out);
    out.clear();
    r0.on_message(LinkId(1), remove(), &mut out);
    assert_eq!(remote(&out), Vec::<bool>::new(), "still wanted: {out:?}");
    out.clear();
    r0.publish("t/0", 1, &mut out);
    let parked = match out.as_slice() {
        [Action::Unroutable {
            copy,
            from: None,
            looped: false,
        }] if copy.dests == ["r2"] => copy.clone(),
        other => panic!("not parked for r2: {other:?}"),
    };
    // The route is back within the hold-down: the parked copy goes.
    out.clear();
    r0.advance(t0 + hold / 2, &mut out);
    r0.on_message(LinkId(1), add(), &mut out);
    assert_eq!(remote(&out), Vec::<bool>::new(), "never gone: {out:?}");
    out.clear();
    r0.retry(parked.clone(), None, &mut out);
    assert!(
        matches!(out.as_slice(), [Action::Send { link: LinkId(1), msg: LinkMsg::Event(c) }] if c.dests == ["r2"]),
        "{out:?}"
    );

    // Withdrawn for good: held down until the hold-down ends, then gone,
    // and a copy parked meanwhile is dropped when tried again.
    let t1 = t0 + hold;
    r0.advance(t1, &mut out);
    r0.on_message(LinkId(1), remove(), &mut out);
    out.clear();
    r0.advance(t1 + hold - std::time::Duration::from_millis(1), &mut out);
    r0.publish("t/0", 2, &mut out);
    assert!(
        matches!(out.as_slice(), [Action::Unroutable { copy, .. }] if copy.dests == ["r2"]),
        "{out:?}"
    );
    out.clear();
    r0.advance(t1 + hold, &mut out);
    assert_eq!(remote(&out), vec![false], "{out:?}");
    out.clear();
    r0.publish("t/0", 3, &mut out);
    assert!(out.is_empty(), "{out:?}");
    let before = r0.counters().no_route;
    r0.retry(parked, None, &mut out);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(r0.counters().no_route, before + 1);
}
