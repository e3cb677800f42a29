//! `--numa-node N` / `runtime.numa_node` against the real binary. This VM
//! has one node, 0: the router placed on it serves and logs where each
//! shard runs and where its memory comes from; a node the machine lacks is
//! refused at start naming the key. The topology parsing and the choice of
//! cores on 2- and 4-node machines are unit tests on fixture sysfs trees
//! (`src/shard/numa/tests.rs`, `tests/fixtures/numa/`).

mod common;

use std::process::Command;

use common::*;
use rumqttc::QoS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_0_serves_and_logs_its_placement() {
    let mut launch = Launch::new(2, "");
    launch.args = vec!["--numa-node".into(), "0".into()];
    launch.log_level = Some("info".into());
    launch.capture_stderr = true;
    let weft = Weft::launch_with(launch);
    weft.wait_for_log("numa: 2 shards on node 0 (cores 0,1), memory preferred from node 0");
    for shard in 0..2 {
        // Each shard thread inherited MPOL_PREFERRED from the start thread.
        weft.wait_for_log(&format!(
            "numa: shard {shard} on core {shard} of node 0, memory policy preferred node 0"
        ));
    }
    assert!(!weft.log_contains("set_mempolicy(MPOL_PREFERRED) refused"));
    // It serves: an event crosses from shard 0 to a subscriber on shard 1.
    let mut sub = connect(weft.shard_addrs[1], "numa-sub").await;
    sub.subscribe("numa/t", QoS::AtLeastOnce).await;
    let publisher = connect(weft.shard_addrs[0], "numa-pub").await;
    publisher
        .publish("numa/t", QoS::AtLeastOnce, "on node 0")
        .await;
    let event = sub.next_publish().await;
    assert_eq!(&event.payload[..], b"on node 0");
}

#[test]
fn a_missing_node_is_refused_naming_the_key() {
    let out = Command::new(weft_bin())
        .args([
            "run",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--nats-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--numa-node",
            "7",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("weft: error: runtime.numa_node: node 7 does not exist on this machine"),
        "{stderr}"
    );
    // check-config runs the same check on a file.
    let file = write_config("[runtime]\nnuma_node = 7\n");
    let out = Command::new(weft_bin())
        .args(["check-config", &file.0.display().to_string()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("weft: error: runtime.numa_node: node 7 does not exist"),
        "{stderr}"
    );
}
