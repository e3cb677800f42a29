//! Fixed ports for routers that a test restarts on the same addresses.
//!
//! A listener bound to port 0 gets a port from the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`, 32768–60999 by default). Once that
//! router is killed, any outgoing connection of any test on the machine may
//! be given the same port as its local port, and the restarted router then
//! cannot bind it (CI saw the admin port taken for the whole 5 s of
//! `runtime.bind_retry_ms`). Ports below the ephemeral range are never
//! handed out by the kernel, so a block taken here stays free for the
//! router unless another test takes it too: a process-wide cursor keeps the
//! tests of one binary apart, the process id spreads binaries apart, and
//! each port is checked free by a bind before it is handed out.

use std::sync::atomic::{AtomicU32, Ordering};

use super::Launch;

/// The first port of the range (below any default ephemeral range).
const LOW: u32 = 20_000;
/// One past the last port of the range.
const HIGH: u32 = 32_768;

/// `n` consecutive ports on 127.0.0.1, each free when this returns and
/// never returned before by this process.
pub fn free_port_block(n: u16) -> u16 {
    static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);
    let n = u32::from(n);
    let span = HIGH - LOW;
    // The first call starts at a place given by the process id.
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % span,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span / n {
        let offset = CURSOR.fetch_add(n, Ordering::SeqCst) % span;
        if offset + n > span {
            continue;
        }
        let base = LOW + offset;
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok()) {
            return base as u16;
        }
    }
    panic!("no block of {n} free ports in {LOW}..{HIGH}");
}

/// Replaces the port-0 listeners of `launch` (MQTT, NATS, admin, and the
/// mesh listener of `--mesh-listen 127.0.0.1:0`) with fixed ports below the
/// kernel's ephemeral range ([`free_port_block`]), so that no other test's
/// client takes one while the router is down between a kill and a restart.
pub fn fix_listeners(launch: &mut Launch) {
    const ANY: &str = "127.0.0.1:0";
    let base = free_port_block(4);
    let at = |i: u16| format!("127.0.0.1:{}", base + i);
    if launch.mqtt_listen == ANY {
        launch.mqtt_listen = at(0);
    }
    let mut table: toml::Table = launch.toml.parse().expect("test TOML");
    for (section, port) in [("nats", 1), ("admin", 2)] {
        let t = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(Default::default()))
            .as_table_mut()
            .expect("a TOML table");
        match t.get("listen").and_then(|v| v.as_str()) {
            None | Some(ANY) => {
                t.insert("listen".into(), toml::Value::String(at(port)));
            }
            Some(_) => {}
        }
    }
    launch.toml = table.to_string();
    for i in 0..launch.args.len() {
        if launch.args[i] == "--mesh-listen" && launch.args.get(i + 1).is_some_and(|a| a == ANY) {
            launch.args[i + 1] = at(3);
        } else if launch.args[i] == format!("--mesh-listen={ANY}") {
            launch.args[i] = format!("--mesh-listen={}", at(3));
        }
    }
}
