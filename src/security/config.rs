//! The `[security]` section: users, groups, accounts, the anonymous rule,
//! failed-attempt limits and admission limits, with their defaults
//! (pinned by `defaults_are_pinned`).
//!
//! Owns: the values as the operator writes them. Compiling them (password
//! hashes checked, rules parsed in either topic dialect, accounts linked)
//! is the rest of `crate::security`'s work, so that `check-config`, start
//! and a SIGHUP reload refuse the same files with the same line.
//!
//! Lives here, not in `crate::config` (which re-exports it), so that the
//! configuration depends on security and never the other way round.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Clients that present no credentials: `None` (unset) accepts them on
    /// loopback listeners only when no user is configured (as mosquitto 2
    /// does), and refuses to start a listener on another address with no
    /// authentication; `true` accepts them everywhere, `false` nowhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// The account of anonymous clients and of users that name none.
    pub default_account: String,
    /// Permissions of anonymous clients (when they are accepted).
    pub anonymous: RulesConfig,
    /// Failed authentications per source IP within
    /// `auth_failure_window_ms` (counted from the first) before further
    /// attempts from it are refused (MQTT 0x05/0x87, NATS `Authorization
    /// Violation`) without checking, until the window passes; 0 = no
    /// limit. Each shard counts its own.
    pub auth_failures_max: u32,
    pub auth_failure_window_ms: u64,
    /// Source addresses whose failures a shard remembers (expired ones,
    /// then the oldest, are forgotten first): bounds the table an attacker
    /// with many addresses can fill.
    pub auth_sources_max: usize,
    /// Password hash checks in flight per shard (each runs on the shard's
    /// blocking thread: tens of ms of CPU for argon2id); more logins wait
    /// for one to end, so a flood of guesses cannot take more than this
    /// from the shard's core.
    pub password_checks_max: usize,
    /// Connections at once from one source address (0 = no limit).
    pub connections_per_source_max: usize,
    /// Connections at once per user (0 = no limit).
    pub connections_per_user_max: usize,
    /// New connections accepted per second per shard (0 = no limit);
    /// connections over it are closed at accept and counted.
    pub accept_rate_per_s: u32,
    pub users: Vec<UserConfig>,
    pub groups: Vec<GroupConfig>,
    pub accounts: Vec<AccountConfig>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            allow_anonymous: None,
            default_account: "default".into(),
            anonymous: RulesConfig::default(),
            auth_failures_max: 10,
            auth_failure_window_ms: 10_000,
            auth_sources_max: 10_000,
            password_checks_max: 1,
            connections_per_source_max: 0,
            connections_per_user_max: 0,
            accept_rate_per_s: 0,
            users: Vec::new(),
            groups: Vec::new(),
            accounts: Vec::new(),
        }
    }
}

/// One user. At least one way to authenticate: `password` (an argon2id or
/// bcrypt hash, as `weft passwd` prints; plain text is refused), `token` (a
/// bearer token, kept as written and compared in constant time: NATS
/// `auth_token`, or an MQTT password given with this user's name or with
/// no user name), `nkey` (a NATS user public key, `U…`: the client signs
/// the nonce of its INFO), or `certificate = true` (a verified TLS client
/// certificate that names this user is enough, as mosquitto's
/// `use_identity_as_username`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
    pub token: String,
    pub nkey: String,
    pub certificate: bool,
    /// Empty = `security.default_account`.
    pub account: String,
    pub groups: Vec<String>,
    pub publish: RulesConfig,
    pub subscribe: RulesConfig,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    pub name: String,
    pub publish: RulesConfig,
    pub subscribe: RulesConfig,
}

/// Allow and deny lists of topic filters, in either dialect
/// (`sensors/+/temp` or `sensors.*.temp`), with `%u` (user) and `%c`
/// (client id) substituted. An empty `allow` allows everything not denied;
/// deny wins.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

/// An account: its own topic space. Events cross into another account only
/// where this one exports a filter and the other imports it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountConfig {
    pub name: String,
    /// Filters (either dialect) this account lets other accounts import.
    pub exports: Vec<String>,
    pub imports: Vec<ImportConfig>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// The exporting account.
    pub account: String,
    /// A filter within what that account exports.
    pub filter: String,
}
