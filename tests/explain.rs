//! Route explain on a three-router mesh, A —— B —— C, with real clients:
//! what `GET /explain` and `weft explain --json` say an event would do is
//! what a real publish then does (which subscribers get it, under which
//! topic), for delivered and refused events, and the audit counters
//! (`weft_mesh_policy_denied_total`) count the refused ones per rule.
//!
//! Policy: A exports no `secret/#` to B (export deny); C takes no
//! `blocked/#` from B (import deny) and prefixes what B sends with
//! `from-b/` (import prefix). Subscribers: an MQTT client on A (`t/#`), a
//! NATS client on B (`>`), an MQTT client on C (`from-b/#`).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use rumqttc::QoS;
use serde_json::Value;

struct Mesh {
    a: Weft,
    b: Weft,
    c: Weft,
}

fn start() -> Mesh {
    let a = Weft::launch_args(
        1,
        "[[mesh.policy]]\npeer = \"B\"\nexport_deny = [\"secret/#\"]\n",
        &["--router-id", "A", "--mesh-listen", "127.0.0.1:0"],
    );
    let to_a = a.mesh.expect("A's mesh listener").to_string();
    let b = Weft::launch_args(
        1,
        "",
        &[
            "--router-id",
            "B",
            "--mesh-listen",
            "127.0.0.1:0",
            "--link",
            &to_a,
        ],
    );
    let to_b = b.mesh.expect("B's mesh listener").to_string();
    let c = Weft::launch_args(
        1,
        "[[mesh.policy]]\npeer = \"B\"\nimport_deny = [\"blocked/#\"]\nimport_prefix = \"from-b/\"\n",
        &["--router-id", "C", "--link", &to_b],
    );
    Mesh { a, b, c }
}

/// (client id, or `nats` for the NATS client, and the topic at its
/// router in MQTT form) of every delivery the explanation promises.
fn promised(explanation: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for r in explanation["routers"].as_array().expect("routers") {
        for d in r["deliveries"].as_array().expect("deliveries") {
            // A NATS client's id is the one the router assigned.
            let who = match d["protocol"].as_str().unwrap() {
                "nats" => "nats",
                _ => d["client_id"].as_str().unwrap(),
            };
            out.insert((who.to_owned(), r["topic"].as_str().unwrap().to_owned()));
        }
    }
    out
}

/// (inbox, topic in MQTT form) of what carried `payload`.
fn received(inboxes: &[&Inbox], payload: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for i in inboxes {
        for m in i.msgs() {
            if m.payload == payload.as_bytes() {
                out.insert((i.name.clone(), m.topic.replace('.', "/")));
            }
        }
    }
    out
}

async fn explain_http(admin: std::net::SocketAddr, query: &str) -> Value {
    let (status, body) = admin_get(admin, &format!("/explain?{query}")).await;
    assert_eq!(status, 200, "GET /explain?{query}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn explain_cli(admin: std::net::SocketAddr, args: &[&str]) -> String {
    let out = Command::new(weft_bin())
        .arg("explain")
        .arg("--admin")
        .arg(admin.to_string())
        .args(args)
        .output()
        .expect("weft explain runs");
    assert!(
        out.status.success(),
        "weft explain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sum of `weft_mesh_policy_denied_total` samples with these labels.
async fn denied(admin: std::net::SocketAddr, peer: &str, direction: &str, rule: &str) -> f64 {
    let (status, text) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "weft_mesh_policy_denied_total"
                && s.labels.get("peer") == Some(peer)
                && s.labels.get("direction") == Some(direction)
                && s.labels.get("rule") == Some(rule)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

/// Publishes probes through `publish` until every inbox has one (the
/// interest of every subscriber has travelled, and everything published
/// before on the same paths has arrived).
async fn probe(publisher: &Client, inboxes: &[&Inbox], tag: &str) {
    for n in 0.. {
        let payload = format!("{tag}-{n}");
        publisher
            .publish(&format!("t/{tag}"), QoS::AtLeastOnce, payload.clone())
            .await;
        let seen = tokio::time::timeout(std::time::Duration::from_millis(200), async {
            loop {
                if inboxes.iter().all(|i| !received(&[i], &payload).is_empty()) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        if seen.is_ok() {
            return;
        }
        assert!(n < 100, "probe {tag}: never reached every subscriber");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explanation_is_what_a_publish_then_does() {
    let m = start();
    wait_links_up(&m.a, 1).await;
    wait_links_up(&m.b, 2).await;
    wait_links_up(&m.c, 1).await;

    let mut sub_a = connect(m.a.addr, "sub-a").await;
    sub_a.subscribe("t/#", QoS::AtLeastOnce).await;
    let (_ha, inbox_a) = Inbox::mqtt(sub_a);
    let nb = async_nats::ConnectOptions::new()
        .name("sub-b")
        .connect(m.b.nats.to_string())
        .await
        .unwrap();
    let sub_b = nb.subscribe(">").await.unwrap();
    nats_sync(&nb).await;
    let inbox_b = Inbox::nats("nats", sub_b);
    let mut sub_c = connect(m.c.addr, "sub-c").await;
    sub_c.subscribe("from-b/#", QoS::AtLeastOnce).await;
    let (_hc, inbox_c) = Inbox::mqtt(sub_c);
    let inboxes = [&inbox_a, &inbox_b, &inbox_c];
    let pub_a = connect(m.a.addr, "pub-a").await;
    let pub_c = connect(m.c.addr, "pub-c").await;
    probe(&pub_a, &inboxes, "probe").await;

    // Explaining sends nothing and counts nothing.
    let secret = explain_http(m.a.admin, "topic=secret%2Fx").await;
    assert_eq!(denied(m.a.admin, "B", "export", "secret/#").await, 0.0);

    // (topic, published at, explanation, what must be promised)
    let delivered_everywhere: BTreeSet<(String, String)> = [
        ("sub-a", "t/ok"),
        ("nats", "t/ok"),
        ("sub-c", "from-b/t/ok"),
    ]
    .iter()
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .collect();
    let cases = [
        ("t/ok", &pub_a, Some(delivered_everywhere)),
        ("secret/x", &pub_a, Some(BTreeSet::new())),
        (
            "blocked/y",
            &pub_a,
            Some(BTreeSet::from([(
                "nats".to_string(),
                "blocked/y".to_string(),
            )])),
        ),
    ];
    for (topic, publisher, want) in cases {
        let query = format!("topic={}", topic.replace('/', "%2F"));
        let e = explain_http(m.a.admin, &query).await;
        assert_eq!(e["complete"], true, "{e:#}");
        assert_eq!(e["from"], "A", "{e:#}");
        // The CLI says the same (routers as the endpoint gives them).
        let cli: Value = serde_json::from_str(&explain_cli(m.a.admin, &["--json", topic])).unwrap();
        assert_eq!(cli["routers"], e["routers"], "{topic}");
        let promised = promised(&e);
        if let Some(want) = &want {
            assert_eq!(&promised, want, "{topic}: {e:#}");
        }
        let payload = format!("event-{topic}");
        publisher
            .publish(topic, QoS::AtLeastOnce, payload.clone())
            .await;
        // Everything published before the probe on these paths is in.
        probe(
            publisher,
            &inboxes,
            &format!("after-{}", topic.replace('/', "-")),
        )
        .await;
        assert_eq!(
            received(&inboxes, &payload),
            promised,
            "{topic}: explained {e:#}"
        );
    }

    // The refusals, as the explanation names them.
    let links = secret["routers"][0]["links"].as_array().unwrap();
    assert!(
        links.iter().any(|l| l["peer"] == "B"
            && l["action"] == "refused"
            && l["by"] == "export_deny"
            && l["rule"] == "secret/#"),
        "{secret:#}"
    );
    let blocked = explain_http(m.a.admin, "topic=blocked%2Fy").await;
    let at_c = blocked["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["router"] == "C")
        .expect("C reported");
    assert_eq!(at_c["import"]["action"], "refused", "{blocked:#}");
    assert_eq!(at_c["import"]["by"], "import_deny");
    assert_eq!(at_c["import"]["rule"], "blocked/#");
    let ok = explain_http(m.a.admin, "topic=t%2Fok").await;
    let at_c = ok["routers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["router"] == "C")
        .expect("C reported");
    assert_eq!(at_c["import"]["prefix"], "from-b/", "{ok:#}");
    assert_eq!(at_c["arrived_from"], "B");

    // The audit counters counted the real refusals, per rule.
    wait_until("A counts the export refusal", WAIT, || async {
        let n = denied(m.a.admin, "B", "export", "secret/#").await;
        if n == 1.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    wait_until("C counts the import refusal", WAIT, || async {
        let n = denied(m.c.admin, "B", "import", "blocked/#").await;
        if n == 1.0 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    })
    .await;

    // From another router (`--from C`): the request finds C and C
    // explains as if the event were published there.
    let from_c = explain_http(m.a.admin, "topic=t%2Fback&from=C").await;
    assert_eq!(from_c["from"], "C");
    assert_eq!(from_c["complete"], true, "{from_c:#}");
    assert_eq!(from_c["routers"][0]["router"], "C");
    let promised_c = promised(&from_c);
    assert_eq!(
        promised_c,
        BTreeSet::from([
            ("sub-a".to_string(), "t/back".to_string()),
            ("nats".to_string(), "t/back".to_string()),
        ]),
        "{from_c:#}"
    );
    pub_c
        .publish("t/back", QoS::AtLeastOnce, "event-back".to_string())
        .await;
    probe(&pub_c, &[&inbox_a, &inbox_b], "after-back").await;
    assert_eq!(received(&inboxes, "event-back"), promised_c);

    // The human tree names the refusal.
    let tree = explain_cli(m.a.admin, &["secret/x"]);
    assert!(
        tree.contains("link to B: REFUSED by export_deny secret/#"),
        "{tree}"
    );
    // An unknown router is not found.
    let nowhere = explain_http(m.a.admin, "topic=t%2Fx&from=Z").await;
    assert_eq!(nowhere["complete"], false);
    assert_eq!(
        nowhere["unreached"][0]["reason"], "not_found",
        "{nowhere:#}"
    );
    drop(m.c);
    drop(m.b);
}
