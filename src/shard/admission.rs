//! Admission control: which connections the router takes on, before it
//! spends anything on them. Besides `limits.connections_max` (counted in
//! `Global::connections`), four limits, each counted in
//! `weft_connections_refused_total{reason}`:
//!
//! - per listener (`mqtt.connections_max`, `nats.connections_max`; 0 =
//!   only the global limit), checked at accept: one atomic per listener
//!   kind, shared by the shards (every shard's socket on one address, and
//!   the shards' own listeners, count as that protocol's listener);
//! - per source address (`security.connections_per_source_max`), checked
//!   at accept;
//! - per user (`security.connections_per_user_max`), checked when the
//!   CONNECT has authenticated (the glues call `ShardCtx::admit_user` after
//!   `Security::authenticate` returned Ok; a refusal is
//!   `Refusal::NotAuthorized`);
//! - an accept rate per shard (`security.accept_rate_per_s`), a token
//!   bucket ([`AcceptRate`]) that the shard alone touches.
//!
//! Over the listener or source limit the connection is closed at accept
//! (NATS clients first read `-ERR 'maximum connections exceeded'`, as
//! nats-server writes it; MQTT has no way to say it before CONNECT); over
//! the rate it is closed at once, writing nothing: the rate limit is there
//! to make a flood cheap.
//!
//! Why a mutex for the per-source and per-user counts: they are touched
//! only at accept and close (per user: at CONNECT and close), never on the
//! event path, and only while their limit is on (0 = off = no lock). An
//! accept already costs a system call and a task; one uncontended lock
//! beside it is noise, and a lock lets the count go to zero and its entry
//! leave the map, which sharded atomic counters (a fixed array hashed by
//! address) could not do without false sharing of a slot by two addresses.
//! The maps are bounded without a key of their own: an entry exists only
//! while a connection holds it, and every connection was admitted under
//! `limits.connections_max` first, so neither map holds more entries than
//! that.
//!
//! Counts are released by dropping the permit ([`Permit`],
//! [`UserPermit`]): the accepted connection's task holds its permit, the
//! glue holds the user's, so every way a connection ends (its task
//! finishing, or dropped at shutdown) releases them. A limit switched on by
//! a reload counts the connections accepted from then on.
//!
//! Owns: the process-wide counts (in `Global`) and the per-shard bucket.
//! Must not touch: sessions, routing, the event path.
//! TLS listeners (h16's `[mqtt.tls]`): counted today as the MQTT listener
//! if they are tagged `Mqtt`; a `ListenerKind::MqttTls` with its own
//! `mqtt.tls.connections_max` is the one-line extension when they land.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The listeners counted apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Mqtt = 0,
    Nats = 1,
    Http = 2,
    Amqp = 3,
    /// Shared-memory clients (`shm.listen`).
    Shm = 4,
}

const LISTENER_KINDS: usize = 5;

impl ListenerKind {
    pub fn name(self) -> &'static str {
        match self {
            ListenerKind::Mqtt => "mqtt",
            ListenerKind::Nats => "nats",
            ListenerKind::Http => "http",
            ListenerKind::Amqp => "amqp",
            ListenerKind::Shm => "shm",
        }
    }
}

/// Which limit refused a connection; also its metric label
/// (`weft_connections_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Listener,
    Source,
    User,
    Rate,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Listener => "listener",
            Refused::Source => "source",
            Refused::User => "user",
            Refused::Rate => "rate",
        }
    }

    /// The key an operator changes to admit more.
    pub fn key(self, listener: ListenerKind) -> &'static str {
        match (self, listener) {
            (Refused::Listener, ListenerKind::Mqtt) => "mqtt.connections_max",
            (Refused::Listener, ListenerKind::Nats) => "nats.connections_max",
            (Refused::Listener, ListenerKind::Http) => "http.connections_max",
            (Refused::Listener, ListenerKind::Amqp) => "amqp.connections_max",
            (Refused::Listener, ListenerKind::Shm) => "shm.connections_max",
            (Refused::Source, _) => "security.connections_per_source_max",
            (Refused::User, _) => "security.connections_per_user_max",
            (Refused::Rate, _) => "security.accept_rate_per_s",
        }
    }
}

/// The process-wide counts (one per router, in `Global`).
#[derive(Debug, Default)]
pub struct Admission {
    listeners: [AtomicUsize; LISTENER_KINDS],
    /// Connections per source address, only while
    /// `connections_per_source_max` is on; at most `connections_max`
    /// entries (see the module comment).
    sources: Mutex<HashMap<IpAddr, usize>>,
    /// Authenticated connections per user, only while
    /// `connections_per_user_max` is on; anonymous clients are not a user
    /// (the per-source limit bounds them).
    users: Mutex<HashMap<Arc<str>, usize>>,
}

/// An accepted connection's place under the listener and source limits;
/// released on drop.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    listener: ListenerKind,
    /// Set when the source was counted (its limit was on at accept).
    source: Option<IpAddr>,
}

/// An authenticated connection's place under its user's limit; released
/// on drop.
#[derive(Debug)]
pub struct UserPermit {
    admission: Arc<Admission>,
    user: Arc<str>,
}

/// A poisoned lock only means a panic elsewhere while counting: the counts
/// are still whole numbers, keep using them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts `key` in `map` unless it holds `max` already.
fn take<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K, max: usize) -> bool {
    let n = map.entry(key).or_insert(0);
    if *n >= max {
        // Only a present key can be full (max >= 1): nothing to remove.
        return false;
    }
    *n += 1;
    true
}

fn give_back<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    match map.get_mut(key) {
        Some(n) if *n > 1 => *n -= 1,
        Some(_) => {
            map.remove(key);
        }
        None => debug_assert!(false, "a permit released a count it did not take"),
    }
}

/// Normalises an IPv4 client seen on a dual-stack socket (`::ffff:a.b.c.d`)
/// so that it counts as the same source as over IPv4.
fn source_key(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Admission {
    /// At accept: takes the listener's and (when `source_max` > 0) the
    /// source address's counts, or names the limit that refuses (having
    /// taken nothing). `listener_max` 0 = no limit of its own.
    pub fn admit(
        self: &Arc<Self>,
        listener: ListenerKind,
        listener_max: usize,
        source: Option<IpAddr>,
        source_max: usize,
    ) -> Result<Permit, Refused> {
        let count = &self.listeners[listener as usize];
        let before = count.fetch_add(1, Ordering::Relaxed);
        // The permit releases what it took, refusal included.
        let mut permit = Permit {
            admission: self.clone(),
            listener,
            source: None,
        };
        if listener_max > 0 && before >= listener_max {
            return Err(Refused::Listener);
        }
        if let (Some(ip), true) = (source, source_max > 0) {
            let ip = source_key(ip);
            if !take(&mut lock(&self.sources), ip, source_max) {
                return Err(Refused::Source);
            }
            permit.source = Some(ip);
        }
        Ok(permit)
    }

    /// After authentication: takes `user`'s count when `max` > 0 (None:
    /// not counted: anonymous, or the limit is off), or refuses.
    pub fn admit_user(
        self: &Arc<Self>,
        user: Option<&Arc<str>>,
        max: usize,
    ) -> Result<Option<UserPermit>, Refused> {
        let Some(user) = user.filter(|_| max > 0) else {
            return Ok(None);
        };
        if !take(&mut lock(&self.users), user.clone(), max) {
            return Err(Refused::User);
        }
        Ok(Some(UserPermit {
            admission: self.clone(),
            user: user.clone(),
        }))
    }

    /// Open connections admitted on `listener`'s kind.
    pub fn listener_connections(&self, listener: ListenerKind) -> usize {
        self.listeners[listener as usize].load(Ordering::Relaxed)
    }

    /// Open connections counted for `ip` (0 while the limit is off).
    pub fn source_connections(&self, ip: IpAddr) -> usize {
        lock(&self.sources)
            .get(&source_key(ip))
            .copied()
            .unwrap_or(0)
    }

    /// Open connections counted for `user` (0 while the limit is off).
    pub fn user_connections(&self, user: &str) -> usize {
        lock(&self.users).get(user).copied().unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let a = &self.admission;
        let before = a.listeners[self.listener as usize].fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "listener count below zero");
        if let Some(ip) = self.source {
            give_back(&mut lock(&a.sources), &ip);
        }
    }
}

impl Drop for UserPermit {
    fn drop(&mut self) {
        give_back(&mut lock(&self.admission.users), &self.user);
    }
}

/// One shard's accept rate: a token bucket of `rate` tokens refilled at
/// `rate` a second (so a burst of one second's worth passes), written as
/// GCRA: one instant (when the bucket would be full again) instead of a
/// token count and a refill time, in whole nanoseconds. `now` is an
/// argument: unit-tested without a clock.
#[derive(Debug, Default)]
pub struct AcceptRate {
    /// The theoretical arrival time of the next connection.
    full_at: Cell<Option<Instant>>,
}

impl AcceptRate {
    /// Whether a connection accepted at `now` is within `rate_per_s`
    /// (0 = no limit); takes its token if so.
    pub fn allow(&self, rate_per_s: u32, now: Instant) -> bool {
        if rate_per_s == 0 {
            return true;
        }
        let interval = Duration::from_secs(1) / rate_per_s;
        // A full bucket: `rate` connections back to back.
        let burst = Duration::from_secs(1) - interval;
        let at = self.full_at.get().map_or(now, |t| t.max(now));
        if at.duration_since(now) > burst {
            return false;
        }
        self.full_at.set(Some(at + interval));
        true
    }
}

/// The text nats-server writes to a client past its connection limit.
pub const NATS_TOO_MANY: &[u8] = b"-ERR 'maximum connections exceeded'\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[test]
    fn listener_limit_and_release() {
        let a = Arc::new(Admission::default());
        let p1 = a.admit(ListenerKind::Mqtt, 2, ip(1), 0).unwrap();
        let _p2 = a.admit(ListenerKind::Mqtt, 2, ip(2), 0).unwrap();
        assert_eq!(
            a.admit(ListenerKind::Mqtt, 2, ip(3), 0).unwrap_err(),
            Refused::Listener
        );
        // The refusal took nothing; the other listener counts apart.
        assert_eq!(a.listener_connections(ListenerKind::Mqtt), 2);
        let _n = a.admit(ListenerKind::Nats, 2, ip(3), 0).unwrap();
        drop(p1);
        assert_eq!(a.listener_connections(ListenerKind::Mqtt), 1);
        assert!(a.admit(ListenerKind::Mqtt, 2, ip(3), 0).is_ok());
        // 0 = only the global limit.
        let many: Vec<_> = (0..10)
            .map(|_| a.admit(ListenerKind::Nats, 0, ip(4), 0).unwrap())
            .collect();
        assert_eq!(a.listener_connections(ListenerKind::Nats), 11);
        drop(many);
        assert_eq!(a.listener_connections(ListenerKind::Nats), 1);
    }

    #[test]
    fn source_limit_counts_per_address_and_empties() {
        let a = Arc::new(Admission::default());
        let first: Vec<_> = (0..3)
            .map(|_| a.admit(ListenerKind::Mqtt, 0, ip(1), 3).unwrap())
            .collect();
        assert_eq!(
            a.admit(ListenerKind::Nats, 0, ip(1), 3).unwrap_err(),
            Refused::Source,
            "the limit spans listeners"
        );
        let other = a.admit(ListenerKind::Mqtt, 0, ip(2), 3).unwrap();
        // An IPv4 client on a dual-stack socket is the same source.
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        assert_eq!(
            a.admit(ListenerKind::Mqtt, 0, Some(mapped), 3).unwrap_err(),
            Refused::Source
        );
        assert_eq!(a.source_connections(ip(1).unwrap()), 3);
        assert_eq!(a.listener_connections(ListenerKind::Mqtt), 4);
        drop(first);
        drop(other);
        // Every entry leaves with its last connection: the map is empty.
        assert!(lock(&a.sources).is_empty());
        assert_eq!(a.listener_connections(ListenerKind::Mqtt), 0);
        // Off (0): nothing counted, no entry.
        let _p = a.admit(ListenerKind::Mqtt, 0, ip(1), 0).unwrap();
        assert!(lock(&a.sources).is_empty());
    }

    #[test]
    fn user_limit_leaves_anonymous_alone() {
        let a = Arc::new(Admission::default());
        let alice: Arc<str> = "alice".into();
        let p1 = a.admit_user(Some(&alice), 2).unwrap();
        let p2 = a.admit_user(Some(&alice), 2).unwrap();
        assert!(p1.is_some() && p2.is_some());
        assert_eq!(a.admit_user(Some(&alice), 2).unwrap_err(), Refused::User);
        assert!(a.admit_user(Some(&"bob".into()), 2).unwrap().is_some());
        // Anonymous clients are no user; an off limit counts nobody.
        for _ in 0..5 {
            assert!(a.admit_user(None, 2).unwrap().is_none());
        }
        assert!(a.admit_user(Some(&alice), 0).unwrap().is_none());
        assert_eq!(a.user_connections("alice"), 2);
        drop(p1);
        assert_eq!(a.user_connections("alice"), 1);
        assert!(a.admit_user(Some(&alice), 2).unwrap().is_some());
    }

    #[test]
    fn accept_rate_is_a_bucket_of_one_second() {
        let r = AcceptRate::default();
        let t0 = Instant::now();
        // A burst of `rate`, then refusals until a token comes back.
        for i in 0..5 {
            assert!(r.allow(5, t0), "connection {i} of the burst");
        }
        assert!(!r.allow(5, t0));
        assert!(!r.allow(5, t0 + Duration::from_millis(199)));
        assert!(r.allow(5, t0 + Duration::from_millis(200)));
        assert!(!r.allow(5, t0 + Duration::from_millis(200)));
        // An idle second refills the whole bucket, and no more.
        let later = t0 + Duration::from_secs(10);
        for _ in 0..5 {
            assert!(r.allow(5, later));
        }
        assert!(!r.allow(5, later));
        // 0 = no limit.
        assert!((0..1000).all(|_| r.allow(0, later)));
    }
}
