//! Authentication on the shard: the per-source failure limiter, the slow
//! password checks moved off the shard's thread, and the failure's log
//! line and metric. Both protocols' glue call [`ShardCtx::authenticate`]
//! from their CONNECT (MQTT `establish`, NATS `Connect`, each already a waiting
//! request), so a login never blocks the shard's other connections.
//!
//! Owns: one shard's [`ShardAuth`] (its limiter and its permits for
//! password checks). Must not touch: who is who (`crate::security`), the
//! protocols' answers (their machines map the refusal).
//!
//! Limits: a password check (argon2id, tens of ms) runs on glommio's
//! blocking thread of this shard (pinned to the shard's core, so it shares
//! that core with the shard's own work through the kernel's scheduler,
//! never stalling it), at most `security.password_checks_max` at once;
//! a source over `security.auth_failures_max` failures is refused before
//! any check. Limits are per shard (no cross-shard traffic on logins).

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::Instant;

use glommio::sync::Semaphore;

use super::ShardCtx;
use crate::config::Config;
use crate::security::failures::FailureLimiter;
use crate::security::{Check, Credentials, Identity, Peer, Refusal};
use crate::shard::mailbox::Protocol;
use crate::shard::stats::Counters;

pub struct ShardAuth {
    failures: RefCell<FailureLimiter>,
    password_checks: Semaphore,
}

impl ShardAuth {
    /// From the configuration at start (these limits need a restart).
    pub fn new(config: &Config) -> ShardAuth {
        let s = &config.security;
        ShardAuth {
            failures: RefCell::new(FailureLimiter::new(
                s.auth_failures_max,
                s.auth_failure_window_ms,
                s.auth_sources_max,
            )),
            password_checks: Semaphore::new(s.password_checks_max.max(1) as u64),
        }
    }
}

fn label(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Mqtt => "mqtt",
        Protocol::Nats => "nats",
        Protocol::Http => "http",
        Protocol::Amqp => "amqp",
    }
}

impl ShardCtx {
    /// Who presents `credentials` from `peer` (see `Security::check`),
    /// with the limiter's refusal first and any password check off the
    /// thread.
    pub async fn authenticate(
        &self,
        protocol: Protocol,
        credentials: &Credentials,
        peer: &Peer,
    ) -> Result<Identity, Refusal> {
        authenticate(self, protocol, credentials, peer).await
    }
}

async fn authenticate(
    ctx: &ShardCtx,
    protocol: Protocol,
    credentials: &Credentials,
    peer: &Peer,
) -> Result<Identity, Refusal> {
    let ip: Option<IpAddr> = peer.addr.map(|a| a.ip());
    if let Some(ip) = ip {
        if ctx.auth.failures.borrow_mut().blocked(ip, Instant::now()) {
            failed(
                ctx,
                protocol,
                credentials,
                peer,
                "too many failures from this address",
            );
            return Err(Refusal::NotAuthorized);
        }
    }
    let verdict = match ctx.security().check(credentials, peer) {
        Check::Done(verdict) => verdict,
        Check::Password(check) => {
            // The permit bounds the checks in flight; a semaphore that
            // never closes cannot fail.
            let _permit = ctx.auth.password_checks.acquire_permit(1).await;
            glommio::executor()
                .spawn_blocking(move || check.run())
                .await
        }
    };
    if let Err(refusal) = verdict {
        let why = match refusal {
            Refusal::BadCredentials => "bad credentials",
            Refusal::NotAuthorized => "not authorized",
        };
        failed(ctx, protocol, credentials, peer, why);
        if let Some(ip) = ip {
            ctx.auth.failures.borrow_mut().failed(ip, Instant::now());
        }
    }
    verdict
}

/// A failure's metric and (rate-limited) log line.
fn failed(
    ctx: &ShardCtx,
    protocol: Protocol,
    credentials: &Credentials,
    peer: &Peer,
    why: &'static str,
) {
    let counter = match protocol {
        Protocol::Mqtt => &ctx.counters.auth_failures_mqtt,
        Protocol::Nats => &ctx.counters.auth_failures_nats,
        Protocol::Http => &ctx.counters.auth_failures_http,
        Protocol::Amqp => &ctx.counters.auth_failures_amqp,
    };
    Counters::add(counter, 1);
    if ctx.log_limiter.allow() {
        tracing::warn!(
            shard = ctx.id,
            peer = ?peer.addr,
            user = credentials.username.as_deref().unwrap_or(""),
            nkey = credentials.nkey.as_deref().unwrap_or(""),
            protocol = label(protocol),
            why,
            "authentication failed"
        );
    }
}
