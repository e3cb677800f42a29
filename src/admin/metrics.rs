//! Prometheus text exposition (format 0.0.4) of the shards' counters,
//! queue depths and the router-internal latency summary.

use std::fmt::Write;
use std::sync::Arc;

use crate::shard::stats::{ShardStats, ShardView, Snapshot};

/// Renders every metric, labelled by shard.
pub fn render(stats: &[Arc<ShardStats>], views: &[ShardView]) -> String {
    let snaps: Vec<Snapshot> = stats.iter().map(|s| s.snapshot()).collect();
    let mut out = String::with_capacity(8192);
    for (name, kind, help, value) in Snapshot::metrics() {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} {kind}");
        for (shard, snap) in snaps.iter().enumerate() {
            let _ = writeln!(out, "weft_{name}{{shard=\"{shard}\"}} {}", value(snap));
        }
    }
    // Drops by reason, in one family, as dashboards expect.
    let _ = writeln!(
        out,
        "# HELP weft_dropped_total Deliveries dropped, by reason."
    );
    let _ = writeln!(out, "# TYPE weft_dropped_total counter");
    for (shard, s) in snaps.iter().enumerate() {
        let _ = writeln!(
            out,
            "weft_dropped_total{{shard=\"{shard}\",reason=\"queue_full\"}} {}",
            s.dropped_queue_full
        );
        let _ = writeln!(
            out,
            "weft_dropped_total{{shard=\"{shard}\",reason=\"group_gone\"}} {}",
            s.dropped_group_gone
        );
    }
    type Depth = fn(&ShardView) -> u64;
    let depths: [(&str, &str, Depth); 2] = [
        (
            "queued_messages",
            "Messages waiting in sessions' outbound queues.",
            |v| v.queued_messages,
        ),
        (
            "queued_bytes",
            "Bytes waiting in sessions' outbound queues.",
            |v| v.queued_bytes,
        ),
    ];
    for (name, help, value) in depths {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} gauge");
        for v in views {
            let _ = writeln!(out, "weft_{name}{{shard=\"{}\"}} {}", v.shard, value(v));
        }
    }
    let _ = writeln!(
        out,
        "# HELP weft_latency_seconds Router-internal latency, from reading an event to handing it to a subscriber's socket, since start."
    );
    let _ = writeln!(out, "# TYPE weft_latency_seconds summary");
    for (shard, s) in stats.iter().enumerate() {
        let Ok(h) = s.latency.lock() else { continue };
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            let v = if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            };
            let _ = writeln!(
                out,
                "weft_latency_seconds{{shard=\"{shard}\",quantile=\"{q}\"}} {}",
                v as f64 / 1e9
            );
        }
        let sum = h.mean() * h.len() as f64 / 1e9;
        let _ = writeln!(out, "weft_latency_seconds_sum{{shard=\"{shard}\"}} {sum}");
        let _ = writeln!(
            out,
            "weft_latency_seconds_count{{shard=\"{shard}\"}} {}",
            h.len()
        );
    }
    out
}
