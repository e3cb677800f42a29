//! Prometheus text exposition (format 0.0.4) of the shards' counters,
//! queue depths and the router-internal latency summary.

use std::fmt::Write;
use std::sync::Arc;

use crate::shard::stats::{PersistStats, ShardStats, ShardView, Snapshot};

/// Renders every metric, labelled by shard.
pub fn render(stats: &[Arc<ShardStats>], views: &[ShardView]) -> String {
    let snaps: Vec<Snapshot> = stats.iter().map(|s| s.snapshot()).collect();
    let mut out = String::with_capacity(8192);
    for (name, kind, help, value) in Snapshot::metrics() {
        if name == "connections_refused_total" || name.starts_with("refused_") {
            continue; // one family by reason, below
        }
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
    // Refused connections by reason, in one family: `connections_max`
    // (limits.connections_max, or the descriptor limit), then the
    // admission limits (`shard::admission`).
    let _ = writeln!(
        out,
        "# HELP weft_connections_refused_total Connections refused, by reason: connections_max (limits.connections_max or the descriptor limit), listener (mqtt/nats.connections_max), source (security.connections_per_source_max), rate (security.accept_rate_per_s), all at accept; user (security.connections_per_user_max), at CONNECT."
    );
    let _ = writeln!(out, "# TYPE weft_connections_refused_total counter");
    for (shard, s) in snaps.iter().enumerate() {
        for (reason, n) in [
            ("connections_max", s.connections_refused),
            ("listener", s.refused_listener),
            ("source", s.refused_source),
            ("user", s.refused_user),
            ("rate", s.refused_rate),
        ] {
            let _ = writeln!(
                out,
                "weft_connections_refused_total{{shard=\"{shard}\",reason=\"{reason}\"}} {n}"
            );
        }
    }
    // Authorization denials by protocol and action, in one family.
    let _ = writeln!(
        out,
        "# HELP weft_authz_denied_total Publishes, subscriptions and deliveries the clients' rights refused, by protocol and action."
    );
    let _ = writeln!(out, "# TYPE weft_authz_denied_total counter");
    type Denials = fn(&Snapshot) -> u64;
    let denials: [(&str, &str, Denials); 12] = [
        ("mqtt", "publish", |s| s.authz_denied_mqtt_publish),
        ("mqtt", "subscribe", |s| s.authz_denied_mqtt_subscribe),
        ("mqtt", "deliver", |s| s.authz_denied_mqtt_deliver),
        ("nats", "publish", |s| s.authz_denied_nats_publish),
        ("nats", "subscribe", |s| s.authz_denied_nats_subscribe),
        ("nats", "deliver", |s| s.authz_denied_nats_deliver),
        ("http", "publish", |s| s.authz_denied_http_publish),
        ("http", "subscribe", |s| s.authz_denied_http_subscribe),
        ("http", "deliver", |s| s.authz_denied_http_deliver),
        ("amqp", "publish", |s| s.authz_denied_amqp_publish),
        ("amqp", "subscribe", |s| s.authz_denied_amqp_subscribe),
        ("amqp", "deliver", |s| s.authz_denied_amqp_deliver),
    ];
    for (shard, s) in snaps.iter().enumerate() {
        for (protocol, action, value) in denials {
            let _ = writeln!(
                out,
                "weft_authz_denied_total{{shard=\"{shard}\",protocol=\"{protocol}\",action=\"{action}\"}} {}",
                value(s)
            );
        }
    }
    // Authentication failures by protocol, in one family.
    let _ = writeln!(
        out,
        "# HELP weft_auth_failures_total CONNECTs refused by authentication (bad credentials, anonymous where refused, too many failures from the address), by protocol."
    );
    let _ = writeln!(out, "# TYPE weft_auth_failures_total counter");
    for (shard, s) in snaps.iter().enumerate() {
        for (protocol, n) in [
            ("mqtt", s.auth_failures_mqtt),
            ("nats", s.auth_failures_nats),
            ("http", s.auth_failures_http),
            ("amqp", s.auth_failures_amqp),
        ] {
            let _ = writeln!(
                out,
                "weft_auth_failures_total{{shard=\"{shard}\",protocol=\"{protocol}\"}} {n}"
            );
        }
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
        "# HELP weft_latency_seconds Router-internal latency, from reading an event to handing it to a subscriber's socket, since start (replays of retained messages and session backlogs: weft_replays_out_total)."
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
    render_persist(stats, &mut out);
    out
}

/// The durable log's metrics (`weft_persist_*`), labelled by shard, when
/// some shard opened a log (persistence on).
fn render_persist(stats: &[Arc<ShardStats>], out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    if !stats.iter().any(|s| s.persist.on.load(Relaxed)) {
        return;
    }
    type Value = fn(&PersistStats) -> String;
    let families: [(&str, &str, &str, Value); 8] = [
        (
            "persist_bytes",
            "gauge",
            "Bytes of the shard's log segments on disk.",
            |p| p.bytes.load(Relaxed).to_string(),
        ),
        (
            "persist_segments",
            "gauge",
            "Segment files of the shard's log.",
            |p| p.segments.load(Relaxed).to_string(),
        ),
        (
            "persist_appended_records_total",
            "counter",
            "Records appended to the shard's log since start.",
            |p| p.appended_records.load(Relaxed).to_string(),
        ),
        (
            "persist_errors_total",
            "counter",
            "Log writes and fdatasyncs that failed (full disk, IO error), retries included.",
            |p| p.errors.load(Relaxed).to_string(),
        ),
        (
            "persist_bad_crc_total",
            "counter",
            "Records skipped at start-up for a bad checksum.",
            |p| p.bad_crc.load(Relaxed).to_string(),
        ),
        (
            "persist_torn_tails_total",
            "counter",
            "Segments whose torn tail (a partly written last record) was truncated at start-up.",
            |p| p.torn_tails.load(Relaxed).to_string(),
        ),
        (
            "persist_recovery_seconds",
            "gauge",
            "Time the start-up replay of the shard's log took.",
            |p| (p.recovery_ns.load(Relaxed) as f64 / 1e9).to_string(),
        ),
        (
            "persist_replayed_records_total",
            "counter",
            "Records replayed from the shard's log at start-up.",
            |p| p.replayed_records.load(Relaxed).to_string(),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} {kind}");
        for (shard, s) in stats.iter().enumerate() {
            let _ = writeln!(
                out,
                "weft_{name}{{shard=\"{shard}\"}} {}",
                value(&s.persist)
            );
        }
    }
    // fdatasync latency as a Prometheus histogram (cumulative buckets).
    const BUCKETS_S: [f64; 12] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0,
    ];
    let _ = writeln!(
        out,
        "# HELP weft_persist_fsync_seconds Time each fdatasync of the shard's log took."
    );
    let _ = writeln!(out, "# TYPE weft_persist_fsync_seconds histogram");
    for (shard, s) in stats.iter().enumerate() {
        let Ok(h) = s.persist.fsync.lock() else {
            continue;
        };
        for le in BUCKETS_S {
            let bound_ns = (le * 1e9) as u64;
            let n: u64 = h
                .iter_recorded()
                .take_while(|v| v.value_iterated_to() <= bound_ns)
                .map(|v| v.count_at_value())
                .sum();
            let _ = writeln!(
                out,
                "weft_persist_fsync_seconds_bucket{{shard=\"{shard}\",le=\"{le}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "weft_persist_fsync_seconds_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {}",
            h.len()
        );
        let sum = h.mean() * h.len() as f64 / 1e9;
        let _ = writeln!(
            out,
            "weft_persist_fsync_seconds_sum{{shard=\"{shard}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "weft_persist_fsync_seconds_count{{shard=\"{shard}\"}} {}",
            h.len()
        );
    }
}

/// The web console's streams: open, and closed for a client too slow.
pub fn render_console(open: usize, slow: u64, out: &mut String) {
    let _ = writeln!(
        out,
        "# HELP weft_admin_console_streams Web console event streams open (admin.console_streams_max)."
    );
    let _ = writeln!(out, "# TYPE weft_admin_console_streams gauge");
    let _ = writeln!(out, "weft_admin_console_streams {open}");
    let _ = writeln!(
        out,
        "# HELP weft_admin_console_streams_slow_total Web console event streams closed because their client did not read (admin.console_stream_bytes_max)."
    );
    let _ = writeln!(out, "# TYPE weft_admin_console_streams_slow_total counter");
    let _ = writeln!(out, "weft_admin_console_streams_slow_total {slow}");
}

/// The mesh's per-link metrics, labelled by peer router id (links whose
/// hello has not arrived yet are labelled by address).
/// The trace context's counters (`crate::trace`), for the whole process.
pub fn render_trace(tracer: &crate::trace::Tracer, out: &mut String) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &tracer.counters;
    for (name, help, value) in [
        (
            "trace_hops_total",
            "Events that carried a traceparent and got this router's span id (once per router).",
            &c.hops,
        ),
        (
            "trace_restarted_total",
            "Of those, with an invalid traceparent: the trace restarted here (new trace id).",
            &c.restarted,
        ),
        (
            "trace_spans_queued_total",
            "Spans queued for the OTLP exporter (trace.otlp_endpoint set).",
            &c.spans_queued,
        ),
        (
            "trace_spans_dropped_total",
            "Spans dropped because the exporter's queue was full (trace.queue_max).",
            &c.spans_dropped,
        ),
        (
            "trace_spans_exported_total",
            "Spans the OTLP endpoint accepted.",
            &c.spans_exported,
        ),
        (
            "trace_spans_failed_total",
            "Spans in export requests that failed (not sent again).",
            &c.spans_failed,
        ),
    ] {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} counter");
        let _ = writeln!(out, "weft_{name} {}", value.load(Relaxed));
    }
}

pub fn render_mesh(view: &crate::shard::bridge::MeshView, out: &mut String) {
    type Value = fn(&crate::shard::bridge::LinkInfo) -> String;
    let families: [(&str, &str, &str, Value); 8] = [
        ("mesh_link_up", "gauge", "1 while the link is up.", |l| {
            u8::from(l.state == "up").to_string()
        }),
        (
            "mesh_events_in_total",
            "counter",
            "Event copies received over the link.",
            |l| l.events_in.to_string(),
        ),
        (
            "mesh_events_out_total",
            "counter",
            "Event copies sent over the link.",
            |l| l.events_out.to_string(),
        ),
        (
            "mesh_events_dropped_total",
            "counter",
            "Event copies dropped: the link's outbound buffer or unacknowledged store was full.",
            |l| l.dropped.to_string(),
        ),
        (
            "mesh_interest_entries",
            "gauge",
            "Interest entries learned from the link.",
            |l| l.interest_in.to_string(),
        ),
        (
            "mesh_interest_advertised",
            "gauge",
            "Interest entries advertised to the link.",
            |l| l.interest_out.to_string(),
        ),
        (
            "mesh_reconnects_total",
            "counter",
            "Redials of the link.",
            |l| l.reconnects.to_string(),
        ),
        (
            "mesh_rtt_seconds",
            "gauge",
            "Last PING round trip of the link.",
            |l| {
                l.rtt_us
                    .map_or("NaN".into(), |us| (us as f64 / 1e6).to_string())
            },
        ),
    ];
    let label = |l: &crate::shard::bridge::LinkInfo| {
        let peer = l
            .peer
            .clone()
            .or_else(|| l.remote.clone())
            .unwrap_or_default();
        format!(
            "peer=\"{}\",direction=\"{}\"",
            peer.replace(['"', '\\'], "_"),
            l.direction
        )
    };
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} {kind}");
        for l in &view.links {
            let _ = writeln!(out, "weft_{name}{{{}}} {}", label(l), value(l));
        }
    }
    let _ = writeln!(out, "# HELP weft_mesh_events_denied_total Event copies kept off a link (export) or dropped on arrival (import) by link policy.");
    let _ = writeln!(out, "# TYPE weft_mesh_events_denied_total counter");
    for l in &view.links {
        let _ = writeln!(
            out,
            "weft_mesh_events_denied_total{{{},policy=\"export\"}} {}",
            label(l),
            l.denied_export
        );
        let _ = writeln!(
            out,
            "weft_mesh_events_denied_total{{{},policy=\"import\"}} {}",
            label(l),
            l.denied_import
        );
    }
    for (name, help, value) in [
        (
            "mesh_duplicates_dropped_total",
            "Event copies delivered here before (resent after a link healed), not delivered again.",
            view.duplicates,
        ),
        (
            "mesh_no_route_total",
            "Event destinations with no permitted route left.",
            view.no_route,
        ),
        (
            "mesh_held_dropped_total",
            "Event copies for links held down (QoS 0), or past the resend store's bound.",
            view.held_dropped,
        ),
        (
            "mesh_custody_total",
            "Copies acknowledged upstream by custody: their onward copies waited mesh.custody_ms for next hops (kept in the resend stores).",
            view.custody,
        ),
        (
            "mesh_resend_store_waits_total",
            "Times this router's publishers waited for room in a link's QoS 1 resend store (mesh.unacked_max).",
            view.resend_store_waits,
        ),
        (
            "mesh_own_origin_dropped_total",
            "Event copies that arrived with this router's id as their origin: another router uses the same id.",
            view.own_origin,
        ),
        (
            "mesh_retained_sent_total",
            "Retained-store entries sent to peers in the exchange that follows a link coming up.",
            view.retained_sent,
        ),
        (
            "mesh_retained_accepted_total",
            "Retained-store entries from peers that were newer here (stored and passed on).",
            view.retained_accepted,
        ),
    ] {
        let _ = writeln!(out, "# HELP weft_{name} {help}");
        let _ = writeln!(out, "# TYPE weft_{name} counter");
        let _ = writeln!(out, "weft_{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP weft_mesh_policy_denied_total Events a link policy rule refused, by peer, direction and rule (the deny filter, or \"(not allowed)\" for an allow list's miss)."
    );
    let _ = writeln!(out, "# TYPE weft_mesh_policy_denied_total counter");
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    for d in &view.policy_denied {
        let _ = writeln!(
            out,
            "weft_mesh_policy_denied_total{{peer=\"{}\",direction=\"{}\",rule=\"{}\"}} {}",
            escape(&d.peer),
            d.direction,
            escape(&d.rule),
            d.events
        );
    }
    let _ = writeln!(
        out,
        "# HELP weft_mesh_link_closes_total Link ends (refusals at hello included), by reason."
    );
    let _ = writeln!(out, "# TYPE weft_mesh_link_closes_total counter");
    for (reason, n) in &view.link_closes {
        let _ = writeln!(
            out,
            "weft_mesh_link_closes_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP weft_mesh_held_links Links down but held (mesh.link_hold_ms)."
    );
    let _ = writeln!(out, "# TYPE weft_mesh_held_links gauge");
    let _ = writeln!(out, "weft_mesh_held_links {}", view.held_links);
    let _ = writeln!(
        out,
        "# HELP weft_mesh_parked QoS 1 copies waiting here for a route to their routers (mesh.link_hold_ms)."
    );
    let _ = writeln!(out, "# TYPE weft_mesh_parked gauge");
    let _ = writeln!(out, "weft_mesh_parked {}", view.parked);
    let _ = writeln!(
        out,
        "# HELP weft_mesh_tls 1 when every link runs TLS ([mesh.tls])."
    );
    let _ = writeln!(out, "# TYPE weft_mesh_tls gauge");
    let _ = writeln!(out, "weft_mesh_tls {}", u8::from(view.tls));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persist_families_only_with_a_log_and_parseable() {
        let stats = vec![
            Arc::new(ShardStats::default()),
            Arc::new(ShardStats::default()),
        ];
        assert!(!render(&stats, &[]).contains("weft_persist_"));
        let p = &stats[1].persist;
        p.on.store(true, std::sync::atomic::Ordering::Relaxed);
        PersistStats::bump(&p.appended_records, 42);
        p.record_fsync(std::time::Duration::from_micros(300));
        p.record_fsync(std::time::Duration::from_millis(2));
        p.set_recovery(std::time::Duration::from_millis(1500), 7, 1, 2);
        let text = render(&stats, &[]);
        assert!(
            text.contains("weft_persist_appended_records_total{shard=\"1\"} 42"),
            "{text}"
        );
        assert!(
            text.contains("weft_persist_recovery_seconds{shard=\"1\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("weft_persist_bad_crc_total{shard=\"1\"} 1"),
            "{text}"
        );
        // Cumulative buckets: 0 under 250 us, 1 under 0.5 ms, both under 2.5 ms.
        for (le, n) in [("0.00025", 0), ("0.0005", 1), ("0.0025", 2), ("+Inf", 2)] {
            let line = format!("weft_persist_fsync_seconds_bucket{{shard=\"1\",le=\"{le}\"}} {n}");
            assert!(text.contains(&line), "{line}\n{text}");
        }
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
        assert!(scrape
            .samples
            .iter()
            .any(|s| s.metric == "weft_persist_fsync_seconds_count"));
    }
}
