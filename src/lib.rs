//! weft: a thread-per-core event mesh router.
//!
//! One glommio executor per pinned core ("shard") owns its listener, its
//! sessions, and its part of the subscription state; shards exchange
//! events through bounded lock-free SPSC rings, with no locks on the event
//! path. Clients speak MQTT 3.1.1 today; NATS, MQTT 5 and the mesh of
//! routers follow (see the README's architecture section).
//!
//! Layout, one concern per module:
//! - [`topic`]: topic validation and the per-shard subscription trie (pure);
//! - [`mqtt`]: the sans-IO MQTT codec;
//! - [`event`]: the shared, immutable event buffer;
//! - [`shard`]: the runtime seam (executors, sockets, rings, timers),
//!   sessions and routing;
//! - [`config`]: every limit and default, TOML and CLI overrides.
//!
//! Operating limits: at most 64 shards per process (one bit per shard in the
//! trie); one process per NUMA node beyond that.

pub mod admin;
pub mod bench;
pub mod config;
pub mod event;
pub mod mesh;
pub mod mqtt;
pub mod nats;
pub mod session;
pub mod shard;
pub mod topic;
pub mod wait;

pub use shard::Router;
