//! The shard's side of admission control (`shard::admission` holds the
//! process-wide counts): counting and logging a refusal, and the per-user
//! check the glues make once a CONNECT has authenticated.
//!
//! Owns: nothing of its own (the counters are the shard's, the counts the
//! process's). Must not touch: sessions.

use std::net::IpAddr;

use super::ShardCtx;
use crate::security::{Identity, Refusal};
use crate::shard::admission::{ListenerKind, Refused, UserPermit};
use crate::shard::stats::Counters;

impl ShardCtx {
    /// Counts a refusal in this shard's counter (its `reason` label in
    /// `weft_connections_refused_total`) and logs it (rate-limited) with
    /// the key that would admit more.
    pub fn count_refused(&self, why: Refused, listener: ListenerKind, peer: Option<IpAddr>) {
        let c = &self.counters;
        let cell = match why {
            Refused::Listener => &c.refused_listener,
            Refused::Source => &c.refused_source,
            Refused::User => &c.refused_user,
            Refused::Rate => &c.refused_rate,
        };
        Counters::add(cell, 1);
        if self.log_limiter.allow() {
            tracing::warn!(
                shard = self.id,
                ?peer,
                listener = listener.name(),
                reason = why.label(),
                "connection refused: {} reached",
                why.key(listener)
            );
        }
    }

    /// After `Security::authenticate` returned Ok: the user's place under
    /// `security.connections_per_user_max`, held by the glue until the
    /// connection ends (None: not counted), or `Refusal::NotAuthorized`
    /// (counted and logged).
    pub fn admit_user(
        &self,
        identity: &Identity,
        listener: ListenerKind,
        peer: Option<IpAddr>,
    ) -> Result<Option<UserPermit>, Refusal> {
        let max = self.config().security.connections_per_user_max;
        self.global
            .admission
            .admit_user(identity.user.as_ref(), max)
            .map_err(|why| {
                self.count_refused(why, listener, peer);
                Refusal::NotAuthorized
            })
    }
}
