//! The `[shm]` section: the shared-memory transport for co-located
//! clients (`weft-shm`), off unless `listen` is set (`--shm-listen PATH`).
//!
//! Owns: the section's keys, their defaults (pinned by
//! `shm_defaults_are_pinned` below) and their checks. Must not touch: the
//! segments and rings (`crate::shm`, `shard::transport_shm`).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShmConfig {
    /// Path of the Unix stream socket shared-memory clients connect to
    /// (shard 0 listens; each client is handed to a shard round-robin);
    /// empty = off.
    pub listen: String,
    /// Bytes of each of a client's two rings (client -> router, router ->
    /// client): a power of two, 4096 ..= 67108864.
    pub ring_bytes: u64,
    /// How long (microseconds) after its last bytes a session keeps
    /// looking at its empty ring (cooperatively: the shard runs its other
    /// tasks between looks) before it sleeps on the client's doorbell;
    /// 0 = no spin (sleep at once). The spin keeps the core busy: for a
    /// shard with a core to itself.
    pub spin_us: u32,
    /// Shared-memory connections at once (all shards); a client past it is
    /// answered `ERR` at the handshake.
    pub connections_max: usize,
    /// Bytes of all the segments together (header + two rings each); a
    /// client whose segment would pass it is answered `ERR`.
    pub segment_bytes_max: u64,
    /// How long (milliseconds) a connected client has to send its whole
    /// hello line; past it the connection closes (>= 1).
    pub hello_timeout_ms: u64,
}

/// The most `shm.spin_us` may be (10 ms): a longer spin would keep an
/// idle shard's core busy for long after its last event.
pub const SHM_SPIN_US_MAX: u32 = 10_000;

impl Default for ShmConfig {
    fn default() -> Self {
        ShmConfig {
            listen: String::new(),
            ring_bytes: weft_shm::segment::RING_BYTES_DEFAULT,
            spin_us: 0,
            connections_max: 1024,
            segment_bytes_max: 1 << 30,
            hello_timeout_ms: 5000,
        }
    }
}

impl ShmConfig {
    pub fn enabled(&self) -> bool {
        !self.listen.is_empty()
    }

    /// The bytes of one connection's segment.
    pub fn segment_bytes(&self) -> u64 {
        weft_shm::segment::segment_bytes(self.ring_bytes) as u64
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        weft_shm::segment::check_ring_bytes(self.ring_bytes)
            .map_err(|reason| invalid("shm.ring_bytes", reason))?;
        if self.spin_us > SHM_SPIN_US_MAX {
            return Err(invalid(
                "shm.spin_us",
                format!("{} is above the maximum of {SHM_SPIN_US_MAX}", self.spin_us),
            ));
        }
        if self.hello_timeout_ms == 0 {
            return Err(invalid(
                "shm.hello_timeout_ms",
                "0 gives no client time to say hello; at least 1",
            ));
        }
        if self.connections_max == 0 {
            return Err(invalid(
                "shm.connections_max",
                "0 admits no client; at least 1",
            ));
        }
        if self.segment_bytes_max < self.segment_bytes() {
            return Err(invalid(
                "shm.segment_bytes_max",
                format!(
                    "{} holds not one segment of {} bytes (shm.ring_bytes {} x 2 + the header)",
                    self.segment_bytes_max,
                    self.segment_bytes(),
                    self.ring_bytes
                ),
            ));
        }
        if self.enabled() {
            let path = std::path::Path::new(&self.listen);
            // sun_path holds 108 bytes with its terminating NUL.
            if self.listen.len() > 107 {
                return Err(invalid(
                    "shm.listen",
                    format!(
                        "{} is longer than a Unix socket path may be (107 bytes)",
                        self.listen
                    ),
                ));
            }
            if path.file_name().is_none() {
                return Err(invalid(
                    "shm.listen",
                    format!("{} names no file", self.listen),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shm_defaults_are_pinned() {
        let d = ShmConfig::default();
        assert_eq!(d.listen, "");
        assert_eq!(d.ring_bytes, 1_048_576);
        assert_eq!(d.spin_us, 0);
        assert_eq!(d.connections_max, 1024);
        assert_eq!(d.segment_bytes_max, 1_073_741_824);
        assert_eq!(d.hello_timeout_ms, 5000);
        assert!(!d.enabled());
        d.check().unwrap();
    }

    fn key_of(c: ShmConfig) -> &'static str {
        match c.check() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        let d = ShmConfig::default;
        assert_eq!(
            key_of(ShmConfig {
                hello_timeout_ms: 0,
                ..d()
            }),
            "shm.hello_timeout_ms"
        );
        assert_eq!(
            key_of(ShmConfig {
                ring_bytes: 3000,
                ..d()
            }),
            "shm.ring_bytes"
        );
        assert_eq!(
            key_of(ShmConfig {
                ring_bytes: 2048,
                ..d()
            }),
            "shm.ring_bytes"
        );
        assert_eq!(
            key_of(ShmConfig {
                ring_bytes: 128 << 20,
                ..d()
            }),
            "shm.ring_bytes"
        );
        assert_eq!(
            key_of(ShmConfig {
                spin_us: 20_000,
                ..d()
            }),
            "shm.spin_us"
        );
        assert_eq!(
            key_of(ShmConfig {
                connections_max: 0,
                ..d()
            }),
            "shm.connections_max"
        );
        assert_eq!(
            key_of(ShmConfig {
                segment_bytes_max: 1 << 20,
                ..d()
            }),
            "shm.segment_bytes_max"
        );
        assert_eq!(
            key_of(ShmConfig {
                listen: "/".into(),
                ..d()
            }),
            "shm.listen"
        );
        assert_eq!(
            key_of(ShmConfig {
                listen: "/tmp/".to_string() + &"x".repeat(120),
                ..d()
            }),
            "shm.listen"
        );
        ShmConfig {
            listen: "/tmp/weft.sock".into(),
            ring_bytes: 4096,
            ..d()
        }
        .check()
        .unwrap();
    }

    #[test]
    fn parses_from_toml() {
        let c = crate::config::Config::from_toml(
            "[shm]\nlisten = \"/tmp/w.sock\"\nring_bytes = 65536\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.shm.listen, "/tmp/w.sock");
        assert_eq!(c.shm.ring_bytes, 65536);
        assert!(crate::config::Config::from_toml("[shm]\nring = 1\n", "t").is_err());
    }
}
