//! `$SYS` broker statistics topics, as mosquitto publishes them, for the
//! dashboards and scripts written against it (`mqtt.sys_interval_s`, off by
//! default).
//!
//! Owns: the topic names and payloads. Shard 0 publishes them every
//! interval from its housekeeping tick, from the counters every shard has
//! already published (summed over shards, at most one tick old), as
//! retained QoS 0 events of this router only: `ShardCtx::publish_sys` keeps
//! them out of the mesh (each router has its own) and out of the received
//! and latency counts.

use crate::shard::stats::Snapshot;

/// (topic, payload) of every `$SYS` topic for `total` after `uptime_s`.
/// Payloads are decimal text as mosquitto sends them.
pub fn topics(total: &Snapshot, uptime_s: u64) -> Vec<(&'static str, String)> {
    vec![
        (
            "$SYS/broker/version",
            format!("weft version {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime_s} seconds")),
        (
            "$SYS/broker/clients/connected",
            total.connections.to_string(),
        ),
        ("$SYS/broker/clients/total", total.sessions.to_string()),
        (
            "$SYS/broker/messages/received",
            total.messages_in.to_string(),
        ),
        ("$SYS/broker/messages/sent", total.messages_out.to_string()),
        ("$SYS/broker/bytes/received", total.bytes_in.to_string()),
        ("$SYS/broker/bytes/sent", total.bytes_out.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            total.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/retained messages/count",
            // Every shard holds the whole retained set.
            total.retained_messages.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_payloads() {
        let total = Snapshot {
            connections: 3,
            sessions: 4,
            messages_in: 10,
            messages_out: 20,
            bytes_in: 300,
            bytes_out: 600,
            subscriptions: 5,
            retained_messages: 2,
            ..Default::default()
        };
        let t = topics(&total, 42);
        let get = |name: &str| t.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(get("$SYS/broker/uptime"), "42 seconds");
        assert_eq!(get("$SYS/broker/clients/connected"), "3");
        assert_eq!(get("$SYS/broker/messages/received"), "10");
        assert_eq!(get("$SYS/broker/messages/sent"), "20");
        assert_eq!(get("$SYS/broker/bytes/received"), "300");
        assert_eq!(get("$SYS/broker/bytes/sent"), "600");
        assert!(get("$SYS/broker/version").starts_with("weft version "));
        let limits = crate::topic::TopicLimits {
            topic_bytes_max: 1024,
            topic_levels_max: 32,
        };
        for (name, _) in &t {
            crate::topic::validate_name(name, &limits).unwrap();
        }
    }
}
