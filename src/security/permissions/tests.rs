//! Unit tests of the rules: dialects, substitution, deny wins, and the
//! containment and overlap tests that decide a subscription.

use super::*;
use crate::config::{GroupConfig, UserConfig};

fn rules(allow: &[&str], deny: &[&str]) -> RulesConfig {
    RulesConfig {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    }
}

fn tree(filters: &[&str]) -> FilterTree {
    let mut t = FilterTree::default();
    for f in filters {
        t.insert(f);
    }
    t
}

/// Grants of anonymous clients with these rules (both directions).
fn anonymous(allow: &[&str], deny: &[&str]) -> Arc<Grants> {
    let c = SecurityConfig {
        anonymous: rules(allow, deny),
        ..SecurityConfig::default()
    };
    Permissions::from_config(&c)
        .unwrap()
        .grants(None, "client-1")
        .unwrap()
}

#[test]
fn dialect_is_read_from_the_rule() {
    for (text, internal, nats) in [
        ("sensors/+/temp", "sensors/+/temp", false),
        ("sensors.*.temp", "sensors/+/temp", true),
        ("sensors.>", "sensors/+/#", true),
        ("sensors/#", "sensors/#", false),
        ("sensors", "sensors", false),
        ("#", "#", false),
        (">", "+/#", true),
        // A `/` makes it MQTT: the `.` stays inside its level.
        ("v1.2/x", "v1.2/x", false),
        ("mqtt:v1.2", "v1.2", false),
        ("nats:a.b", "a/b", true),
    ] {
        let rule = compile_rule(text).unwrap();
        assert_eq!((&*rule.filter, rule.nats), (internal, nats), "{text}");
    }
    assert!(compile_rule("a/#/b").is_err());
    assert!(compile_rule("a.>.b").is_err());
    assert!(compile_rule("").is_err());
}

#[test]
fn matching_follows_mqtt_with_the_dollar_rule() {
    let t = tree(&["a/+/c", "b/#", "#"]);
    assert!(t.matches("x/y"));
    assert!(!t.matches("$SYS/x"), "a wildcard first matches no $ topic");
    let t = tree(&["a/+/c", "b/#", "$SYS/#"]);
    assert!(t.matches("a/b/c"));
    assert!(!t.matches("a/b/d"));
    assert!(!t.matches("a/b/c/d"));
    assert!(t.matches("b"), "b/# matches b");
    assert!(t.matches("b/x/y"));
    assert!(t.matches("$SYS/broker"));
    assert!(!t.matches("c"));
    assert!(!tree(&[]).matches("a"));
    assert!(tree(&["/a"]).matches("/a"));
    assert!(!tree(&["+/a"]).matches("$x/a"));
}

#[test]
fn covers_and_overlaps() {
    let t = tree(&["sensors/secret/#"]);
    assert!(t.covers("sensors/secret/#"));
    assert!(t.covers("sensors/secret/x"));
    assert!(t.covers("sensors/secret/+/y"));
    assert!(t.covers("sensors/secret"));
    assert!(!t.covers("sensors/#"));
    assert!(!t.covers("sensors/+/x"));
    assert!(t.overlaps("sensors/#"));
    assert!(t.overlaps("sensors/+/x"));
    assert!(t.overlaps("#"));
    assert!(t.overlaps("+/+"));
    assert!(!t.overlaps("sensors/public/#"));
    assert!(
        t.overlaps("sensors/+"),
        "sensors/secret/# matches sensors/secret"
    );
    assert!(!t.overlaps("other/+"));
    assert!(t.overlaps("sensors/+/+"));

    let t = tree(&["a/+/c"]);
    assert!(t.covers("a/b/c"));
    assert!(t.covers("a/+/c"));
    assert!(!t.covers("a/#"));
    assert!(t.overlaps("a/#"));
    assert!(t.overlaps("+/x/+"));
    assert!(!t.overlaps("a/+"));
    assert!(t.overlaps("a/b/c/#"), "a/b/c/# matches a/b/c");

    // The `$` rule both ways.
    let t = tree(&["#"]);
    assert!(t.covers("+/x"));
    assert!(t.covers("#"));
    assert!(!t.covers("$SYS/x"));
    assert!(!t.overlaps("$SYS/#"));
    let t = tree(&["$SYS/#"]);
    assert!(!t.overlaps("#"));
    assert!(!t.overlaps("+/x"));
    assert!(t.overlaps("$SYS/+"));
}

#[test]
fn deny_wins_and_empty_allow_allows_the_rest() {
    let g = anonymous(&[], &["sensors/secret/#"]);
    assert!(g.may_publish("sensors/a"));
    assert!(!g.may_publish("sensors/secret/x"));
    assert!(g.may_read("anything"));
    assert!(!g.may_read("sensors/secret"));

    let g = anonymous(&["sensors/#"], &["sensors/secret/#"]);
    assert!(g.may_publish("sensors/a"));
    assert!(!g.may_publish("other"));
    assert!(!g.may_publish("sensors/secret/x"), "deny wins over allow");
}

#[test]
fn subscriptions_are_refused_checked_or_granted() {
    let g = anonymous(&["sensors/#", "public"], &["sensors/secret/#"]);
    assert_eq!(g.subscription("sensors/secret/#"), Subscription::Denied);
    assert_eq!(g.subscription("sensors/secret/x"), Subscription::Denied);
    assert_eq!(g.subscription("other/#"), Subscription::Denied);
    assert_eq!(g.subscription("sensors/#"), Subscription::Checked);
    assert_eq!(g.subscription("#"), Subscription::Checked);
    assert_eq!(g.subscription("+/+"), Subscription::Checked);
    assert_eq!(g.subscription("sensors/public/#"), Subscription::Granted);
    assert_eq!(g.subscription("sensors/+/temp"), Subscription::Checked);
    assert_eq!(g.subscription("public"), Subscription::Granted);

    let all = Grants::allow_all();
    assert!(all.is_allow_all());
    assert_eq!(all.subscription("#"), Subscription::Granted);
    assert!(all.may_read("$SYS/x") && all.may_publish("a"));
}

#[test]
fn nats_rules_hold_mqtt_topics_and_back() {
    let g = anonymous(&[], &["sensors.secret.>"]);
    // `sensors.secret.>` is one or more tokens below: `sensors/secret`
    // itself stays readable, as in NATS.
    assert!(g.may_read("sensors/secret"));
    assert!(!g.may_read("sensors/secret/x"));
    assert_eq!(g.subscription("sensors/#"), Subscription::Checked);
    assert_eq!(g.subscription("sensors/secret/+/#"), Subscription::Denied);
}

#[test]
fn users_have_their_own_rules_and_their_groups() {
    let c = SecurityConfig {
        anonymous: rules(&[], &["#"]),
        groups: vec![GroupConfig {
            name: "ops".into(),
            publish: rules(&["ops/#"], &[]),
            subscribe: rules(&[], &["secret/#"]),
        }],
        users: vec![
            UserConfig {
                name: "alice".into(),
                groups: vec!["ops".into()],
                publish: rules(&["users/%u/#", "clients/%c"], &[]),
                ..UserConfig::default()
            },
            UserConfig {
                name: "bob".into(),
                ..UserConfig::default()
            },
        ],
        ..SecurityConfig::default()
    };
    let p = Permissions::from_config(&c).unwrap();
    let alice = p.grants(Some("alice"), "phone").unwrap();
    assert!(alice.may_publish("users/alice/x"));
    assert!(alice.may_publish("clients/phone"));
    assert!(alice.may_publish("ops/deploy"), "from the group");
    assert!(!alice.may_publish("users/bob/x"));
    assert!(!alice.may_read("secret/x"), "the group's deny");
    assert!(alice.may_read("users/bob/x"));

    // No rules: the one shared allow-all grants, no allocation.
    let bob = p.grants(Some("bob"), "b").unwrap();
    let bob2 = p.grants(Some("bob"), "c").unwrap();
    assert!(bob.is_allow_all() && Arc::ptr_eq(&bob, &bob2));

    // Anonymous, and a name no user has.
    for user in [None, Some("mallory")] {
        let g = p.grants(user, "x").unwrap();
        assert!(!g.may_publish("a") && !g.may_read("a"));
    }
}

#[test]
fn rules_without_substitution_are_shared() {
    let c = SecurityConfig {
        users: vec![UserConfig {
            name: "carol".into(),
            publish: rules(&["a/#"], &[]),
            ..UserConfig::default()
        }],
        ..SecurityConfig::default()
    };
    let p = Permissions::from_config(&c).unwrap();
    let a = p.grants(Some("carol"), "1").unwrap();
    let b = p.grants(Some("carol"), "2").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert!(!a.is_allow_all());
}

#[test]
fn a_substituted_value_never_widens_a_rule() {
    let c = SecurityConfig {
        anonymous: rules(&["clients/%c/#"], &["private/%c/#"]),
        ..SecurityConfig::default()
    };
    let p = Permissions::from_config(&c).unwrap();
    for bad in ["+", "#", "a/b", "", "x\0"] {
        let e = p.grants(None, bad).unwrap_err();
        assert_eq!(e.placeholder, "%c", "{bad:?}");
    }
    // `.` is a plain character inside an MQTT level...
    let g = p.grants(None, "host.1").unwrap();
    assert!(g.may_publish("clients/host.1/x"));
    assert!(!g.may_publish("clients/host/1/x"));
    assert!(!g.may_read("private/host.1/x"));

    // ...but separates tokens in a NATS rule: refused there.
    let c = SecurityConfig {
        anonymous: rules(&["clients.%c.>"], &[]),
        ..SecurityConfig::default()
    };
    let p = Permissions::from_config(&c).unwrap();
    for bad in ["host.1", "*", ">"] {
        assert!(p.grants(None, bad).is_err(), "{bad:?}");
    }
    let g = p.grants(None, "host1").unwrap();
    assert!(g.may_publish("clients/host1/x"));
}

#[test]
fn bad_rules_are_refused_with_their_place() {
    let bad = |c: SecurityConfig| Permissions::from_config(&c).unwrap_err().to_string();
    let e = bad(SecurityConfig {
        anonymous: rules(&["users/%u/#"], &[]),
        ..SecurityConfig::default()
    });
    assert!(e.starts_with("security.anonymous: %u"), "{e}");
    let e = bad(SecurityConfig {
        users: vec![UserConfig {
            name: "dave".into(),
            subscribe: rules(&[], &["a/#/b"]),
            ..UserConfig::default()
        }],
        ..SecurityConfig::default()
    });
    assert!(
        e.starts_with("security.users: user \"dave\" subscribe.deny: \"a/#/b\""),
        "{e}"
    );
    let e = bad(SecurityConfig {
        users: vec![UserConfig {
            name: "erin".into(),
            groups: vec!["nope".into()],
            ..UserConfig::default()
        }],
        ..SecurityConfig::default()
    });
    assert!(e.contains("names group \"nope\""), "{e}");
    let e = bad(SecurityConfig {
        anonymous: rules(&["a.>.b"], &[]),
        ..SecurityConfig::default()
    });
    assert!(
        e.starts_with("security.anonymous: allow: \"a.>.b\" is not a NATS"),
        "{e}"
    );
}
