//! TLS on mesh links (`[mesh.tls]`), against real `weft` processes on
//! 127.0.0.1 with certificates made by the test (rcgen): events cross a
//! TLS link; a plain-TCP router, a router with another CA's certificate and
//! (with `router_id_in_cert`) a router claiming another router's id are each
//! refused, alone, while the good link keeps carrying events; and bad TLS
//! settings are refused at start with the offending key named.

mod common;

use std::time::Duration;

use common::pki::{Ca, Pki};
use common::*;
use futures::StreamExt;

/// A router certificate signed by `ca`, naming `dns` and 127.0.0.1; the
/// `[mesh.tls]` TOML for it.
fn router_tls(pki: &Pki, ca: &Ca, file: &str, dns: &str, extra: &str) -> String {
    let pair = pki.signed_for(ca, file, dns, dns);
    format!(
        "[mesh.tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}",
        pair.cert, pair.key, ca.path
    )
}

fn router(id: &str, toml: &str, mesh: &[&str]) -> Weft {
    let mut l = Launch::new(1, toml);
    l.args = ["--router-id", id]
        .iter()
        .chain(mesh)
        .map(|s| s.to_string())
        .collect();
    l.capture_stderr = true;
    Weft::launch_with(l)
}

/// Publishes probes on `subject` at `from` until `sub` (on another
/// router) gets one: events cross the link.
async fn crosses(from: &async_nats::Client, subject: &str, sub: &mut async_nats::Subscriber) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        from.publish(subject.to_string(), "probe".into())
            .await
            .unwrap();
        from.flush().await.unwrap();
        if let Ok(m) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
            assert_eq!(m.expect("subscription open").subject.as_str(), subject);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event on {subject} crossed the link in time"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_links_carry_events_and_refuse_strangers() {
    let pki = Pki::new();
    let ca = pki.ca("mesh");
    let other = pki.ca("other");
    let a = router(
        "alpha",
        &router_tls(&pki, &ca, "alpha", "alpha", ""),
        &["--mesh-listen", "127.0.0.1:0"],
    );
    let link = a.mesh.expect("A's mesh listener").to_string();
    let b = router(
        "beta",
        &router_tls(&pki, &ca, "beta", "beta", ""),
        &["--link", &link],
    );
    wait_links(b.admin, "beta sees alpha", |v| {
        v.to("alpha").is_some_and(|l| l.state == "up")
    })
    .await;
    let (_, body) = admin_get(a.admin, "/links").await;
    assert!(body.contains(r#""tls":true"#), "{body}");
    let (_, metrics) = admin_get(a.admin, "/metrics").await;
    assert!(metrics.contains("\nweft_mesh_tls 1\n"), "{metrics}");
    let at_a = nats(a.nats).await;
    let at_b = nats(b.nats).await;
    let mut sub = at_b.subscribe("tls.x").await.unwrap();
    nats_sync(&at_b).await;
    crosses(&at_a, "tls.x", &mut sub).await;

    // A router speaking plain TCP to the TLS listener: refused at A.
    let plain = router("plain", "", &["--link", &link]);
    let line = a.wait_for_log("TLS handshake failed");
    assert!(line.contains("link refused"), "{line}");
    assert!(line.contains("is the peer without [mesh.tls]?"), "{line}");
    plain.wait_for_log("the peer speaks TLS: set [mesh.tls] here too");
    // A router whose certificate another CA signed: both sides refuse.
    let foreign = router(
        "foreign",
        &router_tls(&pki, &other, "foreign", "foreign", ""),
        &["--link", &link],
    );
    let line = foreign.wait_for_log("TLS handshake failed");
    assert!(line.contains("UnknownIssuer"), "{line}");
    // Each failed alone: alpha-beta still up and carrying events, and
    // nobody else ever got a link.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let view = links(a.admin).await;
    assert_eq!(view.up(), 1, "only beta's link is up at alpha");
    assert!(view.to("plain").is_none() && view.to("foreign").is_none());
    assert_eq!(links(plain.admin).await.up(), 0);
    let (_, body) = admin_get(plain.admin, "/links").await;
    assert!(body.contains(r#""tls":false"#), "{body}");
    assert_eq!(links(foreign.admin).await.up(), 0);
    let mut back = at_a.subscribe("tls.y").await.unwrap();
    nats_sync(&at_a).await;
    crosses(&at_b, "tls.y", &mut back).await;
    crosses(&at_a, "tls.x", &mut sub).await;
}

/// `router_id_in_cert`: a certificate is one router's. A router that
/// claims id "mallory" with beta's certificate is refused; beta is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_names_its_router() {
    let pki = Pki::new();
    let ca = pki.ca("mesh");
    let strict = "router_id_in_cert = true\n";
    let a = router(
        "alpha",
        &router_tls(&pki, &ca, "alpha", "alpha", strict),
        &["--mesh-listen", "127.0.0.1:0"],
    );
    let link = a.mesh.expect("A's mesh listener").to_string();
    let beta_tls = router_tls(&pki, &ca, "beta", "beta", strict);
    let mallory = router("mallory", &beta_tls, &["--link", &link]);
    let line = a.wait_for_log("does not name router id");
    assert!(line.contains("'mallory'"), "{line}");
    let b = router("beta", &beta_tls, &["--link", &link]);
    wait_links(a.admin, "alpha sees beta", |v| {
        v.to("beta").is_some_and(|l| l.state == "up")
    })
    .await;
    let at_a = nats(a.nats).await;
    let at_b = nats(b.nats).await;
    let mut sub = at_a.subscribe("id.x").await.unwrap();
    nats_sync(&at_a).await;
    crosses(&at_b, "id.x", &mut sub).await;
    // (Mallory's own view may show its link up for the moment between
    // alpha's hello and alpha's refusal; what matters is alpha's.)
    drop(mallory);
    assert!(links(a.admin).await.to("mallory").is_none());
    assert_eq!(links(a.admin).await.up(), 1, "only beta's link at alpha");
}

/// Bad TLS settings stop the router at start (exit 2), naming the key.
#[test]
fn bad_tls_settings_are_refused_by_key() {
    let pki = Pki::new();
    let ca = pki.ca("mesh");
    let ca_path = ca.path.clone();
    let good = router_tls(&pki, &ca, "alpha", "alpha", "");
    let other_ca = pki.ca("other").path;
    let stranger_key = pki.write(
        "stranger.key",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let listen = "[mesh]\nlisten = \"127.0.0.1:0\"\n";
    let cases = [
        (
            format!(
                "{listen}[mesh.tls]\ncert = \"{}/alpha.pem\"\n",
                pki.dir.display()
            ),
            "mesh.tls.key",
        ),
        (good.replace("alpha.pem", "missing.pem"), "mesh.tls.cert"),
        (good.replace("alpha.key", "stranger.key"), "mesh.tls.key"),
        (
            good.replace(&ca_path, &pki.write("empty.pem", "")),
            "mesh.tls.ca",
        ),
        (
            format!("{good}server_name = \"not a name!\"\n"),
            "mesh.tls.server_name",
        ),
        (format!("{good}ciphers = \"all\"\n"), "ciphers"),
    ];
    let _ = (other_ca, stranger_key);
    for (toml, key) in cases {
        let toml = if toml.starts_with(listen) {
            toml
        } else {
            format!("{listen}{toml}")
        };
        let file = write_config(&toml);
        let out = std::process::Command::new(weft_bin())
            .args(["check-config"])
            .arg(&file.0)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{toml}: {stderr}");
        assert!(stderr.contains(key), "{toml}\nshould name {key}: {stderr}");
    }
    let file = write_config(&format!("{listen}{good}"));
    let out = std::process::Command::new(weft_bin())
        .args(["check-config"])
        .arg(&file.0)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
