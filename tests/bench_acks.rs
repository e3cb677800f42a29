//! `weft bench`'s acknowledged modes, as perf/durability-compare.sh uses
//! them, against a real weft: MQTT QoS 1 with persistent subscribers
//! (`--persistent`), and NATS publishes answered on a reply inbox (`--js`,
//! what a JetStream stream does; here an async-nats responder plays the
//! stream), and AMQP 1.0 unsettled transfers (`--amqp --qos 1`, counting
//! `accepted` dispositions). Every acknowledgement is counted and has its
//! latency.

mod common;

use std::process::{Command, Output};

use common::*;
use futures::StreamExt;

fn bench(args: &[&str], json: &std::path::Path) -> (Output, serde_json::Value) {
    let out = Command::new(weft_bin())
        .arg("bench")
        .args(args)
        .args(["--no-progress", "--json"])
        .arg(json)
        .output()
        .unwrap();
    let summary = std::fs::read_to_string(json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(serde_json::Value::Null);
    (out, summary)
}

fn json_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "weft-bench-acks-{}-{name}.json",
        std::process::id()
    ))
}

/// QoS 1 with `--persistent`: every PUBLISH acknowledged, each ack timed,
/// and the subscriber's session outlives the run (clean session 0): its
/// client id reconnects with session present = 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_persistent_subscribers_and_ack_latency() {
    let weft = Weft::start(1, "");
    let json = json_path("mqtt");
    let server = weft.addr.to_string();
    let (out, summary) = tokio::task::spawn_blocking({
        let json = json.clone();
        move || {
            bench(
                &[
                    "--server",
                    &server,
                    "--qos",
                    "1",
                    "--persistent",
                    "--msgs",
                    "3000",
                    "--size",
                    "64",
                    "--inflight",
                    "64",
                ],
                &json,
            )
        }
    })
    .await
    .unwrap();
    let _ = std::fs::remove_file(&json);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["totals"]["lost"], 0, "{summary}");
    assert_eq!(summary["publishers"][0]["acked"], 3000, "{summary}");
    assert_eq!(summary["ack_latency"]["count"], 3000, "{summary}");
    assert_eq!(summary["config"]["persistent"], true);
    assert_eq!(summary["config"]["window"], 64);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ack latency µs (3000 acks"), "{stdout}");

    let sub_id = format!("weft-bench-{}-sub-0", out_pid(&summary));
    let mut raw = Raw::open(weft.addr).await;
    raw.send(&connect_packet(&sub_id, 0, 4, false)).await;
    assert_eq!(
        raw.read_exact(4).await,
        vec![0x20, 2, 1, 0],
        "the subscriber's session was persistent"
    );
}

/// The run id that names the bench's clients (`weft-bench-{run_id}-...`).
fn out_pid(summary: &serde_json::Value) -> u64 {
    summary["run_id"].as_u64().expect("run_id in the JSON")
}

/// `--js`: each NATS publish carries a reply inbox; the answers (here from
/// a responder that plays the JetStream stream) are the acknowledgements,
/// and an answer with "error" fails the run, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_publishes_count_the_answers_as_acks_and_fail_on_an_error_answer() {
    let weft = Weft::start(1, "");
    for (subject, answer, ok) in [
        ("js.ok", r#"{"stream":"T","seq":1}"#, true),
        (
            "js.full",
            r#"{"error":{"code":503,"description":"test refusal"}}"#,
            false,
        ),
    ] {
        let responder = nats(weft.nats).await;
        let mut subscription = responder.subscribe(subject.to_string()).await.unwrap();
        nats_sync(&responder).await;
        let answering = tokio::spawn({
            let responder = responder.clone();
            async move {
                while let Some(msg) = subscription.next().await {
                    let reply = msg.reply.expect("a --js publish has a reply subject");
                    responder.publish(reply, answer.into()).await.unwrap();
                }
            }
        });
        let json = json_path(subject);
        let server = weft.nats.to_string();
        let (out, summary) = tokio::task::spawn_blocking({
            let json = json.clone();
            move || {
                bench(
                    &[
                        "--protocol",
                        "nats",
                        "--server",
                        &server,
                        "--js",
                        "--subject",
                        subject,
                        "--msgs",
                        "500",
                        "--window",
                        "32",
                    ],
                    &json,
                )
            }
        })
        .await
        .unwrap();
        answering.abort();
        let _ = std::fs::remove_file(&json);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if ok {
            assert!(out.status.success(), "{stdout}");
            assert_eq!(summary["publishers"][0]["acked"], 500, "{summary}");
            assert_eq!(summary["ack_latency"]["count"], 500, "{summary}");
            assert_eq!(summary["totals"]["lost"], 0, "{summary}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stdout}");
            assert!(stdout.contains("test refusal"), "{stdout}");
        }
    }
}

/// `weft bench --amqp` (perf/amqp-compare.sh's load) against weft's AMQP
/// listener: pre-settled, every message delivered; unsettled, every
/// delivery accepted (counted as an acknowledgement, with its latency) and
/// every message delivered to a receiver that accepts with ranged
/// dispositions. Also over SASL PLAIN.
#[test]
fn amqp_pre_settled_and_unsettled_runs_count_every_message() {
    let weft = Weft::launch_args(1, "", &["--amqp-listen", "127.0.0.1:0"]);
    let server = weft.amqp.expect("the amqp listening line").to_string();
    for qos in ["0", "1"] {
        let json = json_path(&format!("amqp-{qos}"));
        let (out, summary) = bench(
            &[
                "--amqp", "--server", &server, "--qos", qos, "--msgs", "5000", "--size", "64",
                "--window", "300",
            ],
            &json,
        );
        let _ = std::fs::remove_file(&json);
        assert!(
            out.status.success(),
            "qos {qos}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(summary["config"]["protocol"], "amqp", "{summary}");
        assert_eq!(summary["config"]["subject"], "/topic/bench", "{summary}");
        assert_eq!(summary["totals"]["sent"], 5000, "{summary}");
        assert_eq!(summary["totals"]["received"], 5000, "{summary}");
        assert_eq!(summary["totals"]["lost"], 0, "{summary}");
        if qos == "1" {
            assert_eq!(summary["publishers"][0]["acked"], 5000, "{summary}");
            assert_eq!(summary["ack_latency"]["count"], 5000, "{summary}");
        } else {
            assert!(summary["ack_latency"].is_null(), "{summary}");
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mode = if qos == "1" {
            "unsettled"
        } else {
            "pre-settled"
        };
        assert!(stdout.contains(mode), "{stdout}");
    }
    // SASL PLAIN (`--user`): with no users configured weft lets any
    // client in, as it does anonymous ones.
    let json = json_path("amqp-plain");
    let (out, summary) = bench(
        &[
            "--amqp",
            "--server",
            &server,
            "--msgs",
            "10",
            "--user",
            "someone",
            "--password",
            "secret",
        ],
        &json,
    );
    let _ = std::fs::remove_file(&json);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(summary["totals"]["received"], 10, "{summary}");
}
