//! Authorization on the publish path (`security::permissions`), 10,000
//! rules: what a PUBLISH costs in the MQTT session machine (decode, rules
//! of the version, the event built, the request queued) for
//! - `no_rules`: a session never authorized (weft before authorization);
//! - `allow_all`: a user with no rules (the shared allow-all grants: the
//!   machine keeps none, so this must cost what `no_rules` costs);
//! - `10k_rules`: a user whose 10,000 rules (5,000 allow `tenant/{i}/#`,
//!   5,000 deny `tenant/{i}/+/secret`) are walked for every PUBLISH;
//!
//! and the rule check alone (`Grants::may_publish`, the same test a
//! delivery to a checked subscription makes with `may_read`) on a hit and
//! a denied topic.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench authz`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use weft::config::{RulesConfig, SecurityConfig, UserConfig};
use weft::mqtt::codec;
use weft::mqtt::session::{Actions, Established, MqttSession, Settings};
use weft::security::{Grants, Identity, Security};
use weft::session::Machine;

const RULES: usize = 10_000;
const TOPIC: &str = "tenant/4242/dev/temp";

fn security() -> Security {
    let half = RULES / 2;
    let config = SecurityConfig {
        users: vec![
            UserConfig {
                name: "ruled".into(),
                publish: RulesConfig {
                    allow: (0..half).map(|i| format!("tenant/{i}/#")).collect(),
                    deny: (0..half).map(|i| format!("tenant/{i}/+/secret")).collect(),
                },
                ..UserConfig::default()
            },
            UserConfig {
                name: "free".into(),
                ..UserConfig::default()
            },
        ],
        ..SecurityConfig::default()
    };
    Security::from_config(&config).expect("rules compile")
}

fn grants(security: &Security, user: &str) -> Arc<Grants> {
    let identity = Identity {
        user: Some(user.into()),
        account: "default".into(),
    };
    security
        .grants(&identity, "bench")
        .expect("no substitution")
}

/// A connected MQTT 3.1.1 machine, authorized with `grants` if any.
fn machine(grants: Option<Arc<Grants>>) -> MqttSession {
    let now = Instant::now();
    let mut m = MqttSession::new(Settings::default(), now);
    let mut connect = Vec::new();
    codec::encode(
        &codec::Packet::Connect(codec::Connect {
            protocol_name: codec::PROTOCOL_NAME,
            level: 4,
            clean_session: true,
            keep_alive_s: 0,
            client_id: "bench",
            will: None,
            username: None,
            password: None,
        }),
        &mut connect,
    );
    let mut out = Actions::default();
    assert_eq!(m.feed(&connect, now, &mut out), connect.len());
    if let Some(grants) = grants {
        assert!(m.on_authorized(grants, &mut out));
    }
    m.on_established(
        Established {
            client_id: "bench",
            present: false,
        },
        now,
        &mut out,
    );
    m
}

fn publish_path(c: &mut Criterion) {
    let security = security();
    let mut publish = Vec::new();
    codec::encode(
        &codec::Packet::Publish(codec::Publish {
            dup: false,
            qos: 0,
            retain: false,
            topic: TOPIC,
            packet_id: 0,
            payload: &[0u8; 64],
        }),
        &mut publish,
    );
    let mut group = c.benchmark_group("authz_publish");
    for (name, grants) in [
        ("no_rules", None),
        ("allow_all", Some(grants(&security, "free"))),
        ("10k_rules", Some(grants(&security, "ruled"))),
    ] {
        let mut m = machine(grants);
        let mut out = Actions::default();
        let now = Instant::now();
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let used = Machine::feed(&mut m, black_box(&publish), now, &mut out);
                black_box(used.unwrap());
                black_box(out.list.len())
            })
        });
    }
    group.finish();

    let ruled = grants(&security, "ruled");
    assert!(ruled.may_publish(TOPIC));
    assert!(!ruled.may_publish("tenant/4242/x/secret"));
    let mut group = c.benchmark_group("authz_check_10k_rules");
    group.bench_function("allowed", |b| {
        b.iter(|| ruled.may_publish(black_box(TOPIC)))
    });
    group.bench_function("denied", |b| {
        b.iter(|| ruled.may_publish(black_box("tenant/4242/x/secret")))
    });
    group.bench_function("outside_allow", |b| {
        b.iter(|| ruled.may_publish(black_box("elsewhere/4242/dev/temp")))
    });
    group.finish();
}

criterion_group!(benches, publish_path);
criterion_main!(benches);
