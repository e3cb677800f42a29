//! The `[amqp]` section: the AMQP 1.0 listener on the shards, off unless
//! `listen` is set (`--amqp-listen`).
//!
//! Owns: the section's keys and defaults (pinned by `defaults_are_pinned`)
//! and their checks. Must not touch: the AMQP machine (`crate::amqp`),
//! which gets these values from the shard's glue (`shard::driver_amqp`).

use serde::{Deserialize, Serialize};

use super::{at_least, invalid, ConfigError};

/// AMQP's own floor for a frame (OASIS AMQP 1.0, 2.7.1: MIN-MAX-FRAME-SIZE).
pub const AMQP_FRAME_SIZE_MIN: u32 = 512;
/// The most `amqp.handles_max` may be: a session's link table is indexed
/// by handle (up to handle-max), so a client choosing its handles must
/// not be able to make it any size (the protocol allows 2^32).
pub const AMQP_HANDLES_MAX_CAP: u32 = 65_536;
/// The most `amqp.channel_max` may be: sessions per connection, each with
/// its link table.
pub const AMQP_CHANNEL_MAX_CAP: u16 = 4095;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Address of the AMQP listener (SO_REUSEPORT across shards); empty =
    /// off. Conventionally 5672 (5671 with TLS).
    pub listen: String,
    /// The listener speaks TLS, with `[mqtt.tls]`'s certificate and key
    /// (as `mqtt.ws.tls` does).
    pub tls: bool,
    /// The largest frame weft takes and announces in its `open`
    /// (max-frame-size); at least 512.
    pub max_frame_size: u32,
    /// The largest message (all the frames of one transfer together); a
    /// larger one detaches its link with `amqp:link:message-size-exceeded`.
    pub message_bytes_max: usize,
    /// The highest channel number a client may use (sessions per
    /// connection - 1), announced in `open`.
    pub channel_max: u16,
    /// Links per session (handle-max + 1), announced in `begin`.
    pub handles_max: u32,
    /// weft's idle time-out announced in `open`: a client that sends
    /// nothing for this long is closed; 0 = none.
    pub idle_timeout_ms: u64,
    /// The credit weft grants a client's sender link (messages it may send
    /// before weft grants more).
    pub sender_credit: u32,
    /// Connections at once on the AMQP listener (all shards; 0 = only
    /// `limits.connections_max`).
    pub connections_max: usize,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            listen: String::new(),
            tls: false,
            max_frame_size: 65_536,
            message_bytes_max: 1024 * 1024,
            channel_max: 255,
            handles_max: 64,
            idle_timeout_ms: 60_000,
            sender_credit: 1000,
            connections_max: 0,
        }
    }
}

impl AmqpConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The checks of the section's bounds (the listener's address is
    /// resolved with the others).
    pub fn check(&self) -> Result<(), ConfigError> {
        at_least(
            "amqp.max_frame_size",
            u64::from(self.max_frame_size),
            u64::from(AMQP_FRAME_SIZE_MIN),
        )?;
        at_least("amqp.message_bytes_max", self.message_bytes_max as u64, 1)?;
        at_least("amqp.handles_max", u64::from(self.handles_max), 1)?;
        if self.handles_max > AMQP_HANDLES_MAX_CAP {
            return Err(invalid(
                "amqp.handles_max",
                format!(
                    "{} is above the maximum of {AMQP_HANDLES_MAX_CAP}",
                    self.handles_max
                ),
            ));
        }
        if self.channel_max > AMQP_CHANNEL_MAX_CAP {
            return Err(invalid(
                "amqp.channel_max",
                format!(
                    "{} is above the maximum of {AMQP_CHANNEL_MAX_CAP}",
                    self.channel_max
                ),
            ));
        }
        at_least("amqp.sender_credit", u64::from(self.sender_credit), 1)?;
        if self.tls && self.listen.is_empty() {
            return Err(invalid(
                "amqp.tls",
                "needs an AMQP listener (amqp.listen, e.g. 0.0.0.0:5671)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_max_and_channel_max_are_capped() {
        let ok = AmqpConfig {
            handles_max: AMQP_HANDLES_MAX_CAP,
            channel_max: AMQP_CHANNEL_MAX_CAP,
            ..AmqpConfig::default()
        };
        assert!(ok.check().is_ok());
        let handles = AmqpConfig {
            handles_max: u32::MAX,
            ..AmqpConfig::default()
        };
        let e = handles.check().unwrap_err().to_string();
        assert!(e.contains("amqp.handles_max") && e.contains("65536"), "{e}");
        let channels = AmqpConfig {
            channel_max: u16::MAX,
            ..AmqpConfig::default()
        };
        let e = channels.check().unwrap_err().to_string();
        assert!(e.contains("amqp.channel_max") && e.contains("4095"), "{e}");
    }
}
