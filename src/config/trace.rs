//! The `[trace]` section: W3C trace context across protocols and links,
//! and the export of each hop's spans over OTLP/HTTP (`crate::trace`).
//!
//! Owns: the section's keys, defaults (pinned by `defaults_are_pinned`)
//! and checks. Read once at start (not reloaded by SIGHUP: the exporter
//! thread and its queue are made with the router).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// Take part in the trace of events that carry a `traceparent`: a new
    /// parent id (this router's span) and `weft=<router-id>` in front of
    /// `tracestate` at each router. false: both pass untouched, no spans.
    pub propagate: bool,
    /// Where spans go: an OTLP/HTTP traces URL (protobuf), for example
    /// `http://127.0.0.1:4318/v1/traces` (plain `http://` only). Empty =
    /// no spans are built.
    pub otlp_endpoint: String,
    /// Spans waiting for the exporter thread at most (all shards); past
    /// it new spans are dropped and counted
    /// (`weft_trace_spans_dropped_total`).
    pub queue_max: usize,
    /// Spans in one export request at most.
    pub export_batch_max: usize,
    /// How often the exporter thread sends what is queued.
    pub export_interval_ms: u64,
    /// One export request (connect, send, answer) takes at most this long.
    pub export_timeout_ms: u64,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            propagate: true,
            otlp_endpoint: String::new(),
            queue_max: 8192,
            export_batch_max: 512,
            export_interval_ms: 200,
            export_timeout_ms: 5_000,
        }
    }
}

impl TraceConfig {
    pub fn exporting(&self) -> bool {
        self.propagate && !self.otlp_endpoint.is_empty()
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.otlp_endpoint.is_empty() {
            let rest = self.otlp_endpoint.strip_prefix("http://").ok_or_else(|| {
                invalid(
                    "trace.otlp_endpoint",
                    "must be an http:// URL (OTLP/HTTP; TLS is not supported: use a local collector)",
                )
            })?;
            if rest.is_empty() || rest.starts_with('/') {
                return Err(invalid("trace.otlp_endpoint", "names no host"));
            }
        }
        if self.queue_max == 0 {
            return Err(invalid("trace.queue_max", "must be at least 1"));
        }
        if self.export_batch_max == 0 {
            return Err(invalid("trace.export_batch_max", "must be at least 1"));
        }
        if self.export_interval_ms == 0 {
            return Err(invalid("trace.export_interval_ms", "must be at least 1"));
        }
        if self.export_timeout_ms == 0 {
            return Err(invalid("trace.export_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}
