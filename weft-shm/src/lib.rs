//! weft-shm: a co-located client reaches its weft router through shared
//! memory, with no system call on the event path while both sides are
//! busy.
//!
//! # Model
//!
//! The client connects to the router's Unix socket (`shm.listen`) and
//! says `WEFT-SHM 1 nats` (or `mqtt`). The router answers `OK
//! {ring_bytes}` with three descriptors: a sealed memfd holding the
//! segment, and two eventfds (`to_router`, `to_client`). The segment
//! holds two single-producer single-consumer byte rings (client -> router,
//! router -> client; layout in [`segment`]); what flows through them is
//! the dialect's own wire protocol (NATS client protocol, or MQTT 3.1.1),
//! so the router serves the client with its normal protocol drivers:
//! sessions, permissions, slow-consumer policy, cross-protocol delivery.
//!
//! A side that finds its ring empty (or full) spins a while, then sets
//! a flag in the segment and sleeps on its eventfd; the other side rings
//! it only when it sees the flag (the ordering argument is in [`ring`]).
//! The Unix socket stays open and silent: its close ends the connection
//! on either side at once, `kill -9` included.
//!
//! # Limits
//!
//! Rings of 4 KiB to 64 MiB each (power of two); messages larger than a
//! ring go through it in pieces (`publish`) but never by `try_publish`.
//! One publisher thread and one receiver thread per client (more threads
//! serialize on the client's locks). QoS 0 only on MQTT. Linux only
//! (memfd, eventfd).
//!
//! The crate depends on `nix` and `libc` only: no async
//! runtime, so that any application can link it. C (and anything with a
//! C FFI) links the `cdylib` or `staticlib` through
//! `include/weft_shm.h` ([`capi`]).

pub mod capi;
mod client;
pub mod doorbell;
pub mod handshake;
pub mod mqtt;
pub mod nats;
pub mod ring;
pub mod segment;

pub use client::{Client, CLOSED_CHECK_EVERY};

/// The wire protocol the client speaks over the rings, and so the filter
/// syntax of its subscriptions (NATS subjects or MQTT topic filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Nats,
    Mqtt,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Nats => "nats",
            Dialect::Mqtt => "mqtt",
        }
    }
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct Options {
    pub dialect: Dialect,
    pub client_id: String,
    /// How long a waiting call spins before it sleeps on the eventfd.
    pub spin_us: u32,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Options {
    /// NATS dialect, no spin, no credentials.
    pub fn nats(client_id: impl Into<String>) -> Options {
        Options {
            dialect: Dialect::Nats,
            client_id: client_id.into(),
            spin_us: 0,
            user: None,
            password: None,
        }
    }

    /// MQTT dialect, no spin, no credentials.
    pub fn mqtt(client_id: impl Into<String>) -> Options {
        Options {
            dialect: Dialect::Mqtt,
            ..Options::nats(client_id)
        }
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub enum Error {
    /// A system call failed (connect, poll, ...).
    Io(std::io::Error),
    /// The handshake went wrong (bad reply, bad segment).
    Handshake(String),
    /// The router refused: the handshake's `ERR`, CONNECT, or a
    /// subscription (its reason).
    Refused(String),
    /// The router closed the connection.
    Closed,
    /// The router wrote an impossible ring index.
    Corrupt(String),
    /// The router sent bytes the client cannot parse.
    Protocol(String),
    /// A bad topic or filter, or an unsubscribe of an unknown filter.
    Invalid(String),
    /// The message is larger than the ring (`try_publish`).
    TooLarge,
    /// The router did not answer in time.
    Timeout,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "shm: {e}"),
            Error::Handshake(e) => write!(f, "shm handshake: {e}"),
            Error::Refused(e) => write!(f, "shm: refused: {e}"),
            Error::Closed => write!(f, "shm: the router closed the connection"),
            Error::Corrupt(e) => write!(f, "shm: corrupt segment: {e}"),
            Error::Protocol(e) => write!(f, "shm: protocol: {e}"),
            Error::Invalid(e) => write!(f, "shm: {e}"),
            Error::TooLarge => write!(f, "shm: message larger than the ring"),
            Error::Timeout => write!(f, "shm: the router did not answer in time"),
        }
    }
}

impl std::error::Error for Error {}
