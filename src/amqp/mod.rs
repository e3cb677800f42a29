//! AMQP 1.0 (OASIS), the third standard client protocol: sans-IO like
//! the others. `frame` is the codec (headers, frames, performatives
//! through `fe2o3-amqp-types` + `serde_amqp`, the hot frames by hand);
//! `session` is the machine (`session::Machine`) that owns everything
//! inbound; `outbound` the delivery side of a connection; `message` and
//! `address` map AMQP messages and link addresses to weft's events and
//! topics. Must not touch: sockets and the shard (the glue,
//! `shard::driver_amqp`, runs these).

pub mod address;
pub mod frame;
pub mod message;
pub mod outbound;
pub mod session;
