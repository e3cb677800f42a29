//! Every bound of the router (`[limits]`), each named with its unit, with
//! its default (pinned by `defaults_are_pinned`), and what happens to a
//! slow at-most-once subscriber.
//!
//! Owns: the values only; checks live in `Config::resolve`.

use serde::{Deserialize, Serialize};

/// MQTT's largest packet: the fixed header's byte, four bytes of remaining
/// length and 256 MiB − 1 after them (`limits.packet_bytes_max` may not
/// exceed it). The MQTT codec checks at compile time that its own maximum
/// agrees, so the configuration needs nothing from the codec.
pub const MQTT_PACKET_BYTES_MAX: usize = 268_435_455 + 5;

/// What happens to an at-most-once (QoS 0) event when a subscriber's queue
/// is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Drop the event for that subscriber and count it.
    Drop,
    /// Disconnect the subscriber.
    Disconnect,
}
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open connections across all shards; more are accepted and closed.
    pub connections_max: usize,
    /// Largest MQTT packet accepted, fixed header included.
    pub packet_bytes_max: usize,
    /// Topic filters in one SUBSCRIBE / UNSUBSCRIBE.
    pub filters_per_packet_max: usize,
    /// Subscriptions one session may hold.
    pub subscriptions_per_session_max: usize,
    pub topic_bytes_max: usize,
    pub topic_levels_max: usize,
    pub client_id_bytes_max: usize,
    /// Outbound queue of a session: beyond these, QoS 0 events meet the
    /// slow-consumer policy and QoS 1 events pause their publisher.
    pub queued_messages_max: usize,
    pub queued_bytes_max: usize,
    /// Hard cap for QoS 1 events queued while their publishers are paused;
    /// beyond it the subscriber is disconnected as a slow consumer.
    pub qos1_queued_messages_max: usize,
    pub qos1_queued_bytes_max: usize,
    /// Longest a QoS 1 publisher is paused for one slow subscriber.
    pub backpressure_pause_ms_max: u64,
    pub slow_consumer_policy: SlowConsumerPolicy,
    /// Unacknowledged QoS 1 (and QoS 2 inbound) messages per session.
    pub inflight_max: usize,
    /// Time allowed between TCP accept and CONNECT.
    pub connect_timeout_ms: u64,
    /// Largest read buffer of one connection (grows from 1 KiB on demand).
    pub read_buffer_bytes_max: usize,
    /// Bytes gathered into one write syscall.
    pub write_batch_bytes_max: usize,
    /// Read buffers each shard keeps for reuse: an idle connection holds
    /// none (it takes one when its socket has data and gives it back when
    /// its read waits again with nothing pending); past this many spare
    /// ones, given-back buffers are freed.
    pub read_buffers_spare_max: usize,
    /// How long a persistent (clean session 0) session is kept without a
    /// connection.
    pub offline_session_expiry_s: u64,
    /// Retained messages kept (topics); past it a new topic is refused.
    pub retained_messages_max: usize,
    /// Payload bytes of all retained messages.
    pub retained_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections_max: 100_000,
            packet_bytes_max: 1024 * 1024,
            filters_per_packet_max: 64,
            subscriptions_per_session_max: 100_000,
            topic_bytes_max: 1024,
            topic_levels_max: 32,
            client_id_bytes_max: 256,
            queued_messages_max: 100_000,
            queued_bytes_max: 16 * 1024 * 1024,
            qos1_queued_messages_max: 200_000,
            qos1_queued_bytes_max: 32 * 1024 * 1024,
            backpressure_pause_ms_max: 5000,
            slow_consumer_policy: SlowConsumerPolicy::Drop,
            inflight_max: 1024,
            connect_timeout_ms: 10_000,
            read_buffer_bytes_max: 64 * 1024,
            write_batch_bytes_max: 64 * 1024,
            read_buffers_spare_max: 256,
            offline_session_expiry_s: 3600,
            retained_messages_max: 100_000,
            retained_bytes_max: 64 * 1024 * 1024,
        }
    }
}
