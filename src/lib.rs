//! weft: a thread-per-core event mesh router.
//!
//! One glommio executor per pinned core ("shard") owns its listeners, its
//! sessions, and its part of the subscription state; shards exchange
//! events through bounded lock-free SPSC rings, with no locks on the event
//! path. Clients speak MQTT 3.1, 3.1.1 and 5.0 and the NATS client
//! protocol, and an event crosses between them; routers link into a mesh
//! (see the README's architecture section).
//!
//! Layout, one concern per module:
//! - [`topic`]: topic validation, the per-shard subscription trie and the
//!   retained store (pure);
//! - [`mqtt`], [`nats`]: the sans-IO codecs and rules of each client
//!   protocol;
//! - [`mesh`]: the link protocol and the routing core between routers
//!   (sans-IO, simulated in memory by its tests);
//! - [`session`]: the contract between a protocol's session machine and
//!   the connection driver;
//! - [`event`]: the shared, immutable event buffer;
//! - [`cloudevents`]: the CloudEvents bindings (HTTP, MQTT, NATS) and the
//!   JSON event format (sans-IO);
//! - [`shard`]: the runtime seam (executors, sockets, rings, timers), the
//!   connection driver, routing and the links' IO;
//! - [`persist`]: the per-shard durable log (segments, sync policies,
//!   start-up reading, snapshots);
//! - [`config`]: every limit and default, TOML and CLI overrides;
//! - [`admin`]: the HTTP endpoint (metrics and JSON views);
//! - [`ws`]: the WebSocket handshake and frame codec (sans-IO), which
//!   the WebSocket transport and the HTTP edge share;
//! - [`trace`]: W3C trace context per router hop (sans-IO) and the
//!   spans' OTLP exporter thread;
//! - [`bench`], [`wait`]: the `weft bench` load tool and `weft wait`;
//! - [`cli`]: `weft pub` and `weft sub`, MQTT and NATS clients for the
//!   command line (tokio, on the calling thread only).
//!
//! Operating limits: at most 64 shards per process (one bit per shard in the
//! trie); one process per NUMA node beyond that.

pub mod admin;
pub mod amqp;
pub mod bench;
pub mod cli;
pub mod cloudevents;
pub mod config;
pub mod event;
pub mod http;
pub mod mesh;
pub mod mqtt;
pub mod nats;
pub mod persist;
pub mod security;
pub mod session;
pub mod shard;
pub mod shm;
pub mod topic;
pub mod trace;
pub mod wait;
pub mod ws;

pub use shard::Router;
