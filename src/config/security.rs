//! The `[security]` section: users, groups, accounts, the anonymous rule,
//! failed-attempt limits and admission limits, with their defaults
//! (pinned by `defaults_are_pinned`).
//!
//! Owns: the values as the operator writes them. Compiling them (password
//! hashes checked, rules parsed in either topic dialect, accounts linked)
//! is `crate::security`'s work, so that `check-config`, start and a SIGHUP
//! reload refuse the same files with the same line.

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
    /// Failed authentications per source address within
    /// `auth_failure_window_ms` before further attempts from it are
    /// refused without checking (until the window passes).
    pub auth_failures_max: u32,
    pub auth_failure_window_ms: u64,
    /// Source addresses whose failures are remembered (the oldest is
    /// forgotten first): bounds the table an attacker can fill.
    pub auth_sources_max: usize,
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
/// bcrypt hash, as `weft passwd` prints), `token` (a bearer token: NATS
/// `auth_token`, or an MQTT password with this user's name), `nkey` (a NATS
/// user public key, `U…`), or `certificate = true` (a verified TLS client
/// certificate that names this user).
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
