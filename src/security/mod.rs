//! Security: the one place every session asks who a client is and what it
//! may do (DESIGN.md, "Seams"). Sessions hand their CONNECT's credentials
//! to [`Security::authenticate`] (through their glue, which adds what the
//! transport knows: the peer address, a verified certificate's name) and
//! keep the [`Identity`] it returns; MQTT, NATS and whatever protocol comes
//! next get the same answer for the same credentials and map a refusal to
//! their own code ([`Refusal`]).
//!
//! Owns: the compiled security configuration of one generation (replaced
//! whole on SIGHUP: a session keeps the identity it was given until the
//! reload revokes it). Must not touch: sockets, protocol formats, routing.
//!
//! Files: this one decides who a client is; [`auth`] holds the credential
//! checks (hashes, tokens, nkeys); [`failures`] the per-source
//! failed-attempt limiter each shard keeps; [`passwd`] the `weft passwd`
//! command. A password check is slow by
//! design: [`Security::check`] hands it back as a [`PasswordCheck`] for the
//! shard to run off its thread (`shard::ctx::auth`); [`Security::authenticate`]
//! runs it inline (tests, tools). [`accounts`]: each account's topic
//! space, and what crosses between them.

pub mod accounts;
pub mod auth;
pub mod config;
pub mod failures;
pub mod passwd;

pub mod permissions;

use std::net::SocketAddr;
use std::sync::Arc;

use hashbrown::HashMap;
pub use permissions::{Denied, Grants, Permissions, Subscription, Substitution};

use auth::PasswordHash;
use config::SecurityConfig;

/// A `[security]` value that does not compile: the key and why (the
/// configuration turns it into its own `ConfigError::Invalid`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidConfig {
    pub key: &'static str,
    pub reason: String,
}

/// What a client presented, whatever its protocol. Owned: built once per
/// connection, it crosses from the machine to its glue.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// MQTT user name, NATS `user`.
    pub username: Option<Box<str>>,
    /// MQTT password, NATS `pass`.
    pub password: Option<Box<[u8]>>,
    /// NATS `auth_token`.
    pub token: Option<Box<str>>,
    /// NATS `nkey` (public key) and `sig` (the signed nonce).
    pub nkey: Option<Box<str>>,
    pub signature: Option<Box<str>>,
    /// MQTT client id (empty for an id the router assigns); NATS `name`.
    pub client_id: Box<str>,
}

/// What the transport knows about the peer, added by the glue.
#[derive(Debug, Default, Clone)]
pub struct Peer {
    pub addr: Option<SocketAddr>,
    /// The listener's own address (loopback or not).
    pub local: Option<SocketAddr>,
    /// The user a verified TLS client certificate names.
    pub certificate: Option<Arc<str>>,
    /// The nonce this connection's NATS INFO carried (nkey challenge).
    pub nonce: Option<Box<str>>,
}

/// Why a client was refused, in the terms every protocol can express.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Unknown user, wrong password, token, signature or certificate:
    /// MQTT 3.1.1 CONNACK 0x04, MQTT 5 0x86, NATS `Authorization
    /// Violation`.
    BadCredentials,
    /// Known but not allowed to connect (anonymous where it is not
    /// accepted, too many failures from its address, a connection limit):
    /// MQTT 3.1.1 CONNACK 0x05, MQTT 5 0x87, NATS `Authorization
    /// Violation`.
    NotAuthorized,
}

/// Who a session is: its user (None = anonymous) and its account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<Arc<str>>,
    pub account: Arc<str>,
}

/// One configured user, compiled.
#[derive(Debug)]
struct User {
    name: Arc<str>,
    account: Arc<str>,
    password: Option<PasswordHash>,
    token: Option<Box<[u8]>>,
    certificate: bool,
}

/// One generation of the compiled `[security]` section.
#[derive(Debug)]
pub struct Security {
    default_account: Arc<str>,
    allow_anonymous: Option<bool>,
    users: Vec<User>,
    /// Index into `users` by name, and by nkey.
    by_name: HashMap<Box<str>, usize>,
    by_nkey: HashMap<Box<str>, usize>,
    /// Users with a token (the MQTT password-only and NATS `auth_token`
    /// logins compare against each, in constant time).
    with_token: Vec<usize>,
    /// Publish and subscribe rules (`permissions`).
    permissions: Permissions,
    /// The section as written, to tell which sessions' rights a reload
    /// changed (`rights_changed`).
    written: SecurityConfig,
    accounts: accounts::Accounts,
}

/// What [`Security::check`] decided, or the slow check it left to do.
#[derive(Debug)]
pub enum Check {
    Done(Result<Identity, Refusal>),
    Password(PasswordCheck),
}

/// A password to check against a user's hash; `Send`, so that it runs on
/// a blocking thread. Holds the password for as long as the check waits.
#[derive(Debug)]
pub struct PasswordCheck {
    hash: PasswordHash,
    password: Box<[u8]>,
    identity: Identity,
}

impl PasswordCheck {
    /// Slow (see `auth`): tens of milliseconds.
    pub fn run(self) -> Result<Identity, Refusal> {
        if self.hash.verify(&self.password) {
            Ok(self.identity)
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// The user whose password this checks (for a failure's log line).
    pub fn user(&self) -> Option<&str> {
        self.identity.user.as_deref()
    }
}

impl Security {
    /// Compiles `[security]`; every error names its key.
    pub fn from_config(c: &SecurityConfig) -> Result<Security, InvalidConfig> {
        let invalid = |key: &'static str, reason: String| InvalidConfig { key, reason };
        if c.default_account.trim().is_empty() {
            return Err(invalid(
                "security.default_account",
                "must not be empty".into(),
            ));
        }
        let default_account: Arc<str> = c.default_account.as_str().into();
        let mut users = Vec::with_capacity(c.users.len());
        let mut by_name = HashMap::new();
        let mut by_nkey = HashMap::new();
        let mut with_token = Vec::new();
        for (i, u) in c.users.iter().enumerate() {
            let user = |reason: String| {
                invalid(
                    "security.users",
                    format!("user #{} ('{}'): {reason}", i + 1, u.name),
                )
            };
            if u.name.is_empty() {
                return Err(user("has no name".into()));
            }
            if by_name
                .insert(Box::<str>::from(u.name.as_str()), i)
                .is_some()
            {
                return Err(user("is configured twice".into()));
            }
            let password = match u.password.as_str() {
                "" => None,
                p => Some(PasswordHash::parse(p).map_err(|e| user(format!("password: {e}")))?),
            };
            let token = (!u.token.is_empty()).then(|| Box::<[u8]>::from(u.token.as_bytes()));
            if token.is_some() {
                with_token.push(i);
            }
            let nkey = !u.nkey.is_empty();
            if nkey {
                auth::parse_nkey(&u.nkey).map_err(|e| user(format!("nkey: {e}")))?;
                if by_nkey
                    .insert(Box::<str>::from(u.nkey.as_str()), i)
                    .is_some()
                {
                    return Err(user("nkey: given to another user too".into()));
                }
            }
            if password.is_none() && token.is_none() && !nkey && !u.certificate {
                return Err(user(
                    "has no way to authenticate: set password, token, nkey or certificate = true"
                        .into(),
                ));
            }
            users.push(User {
                name: u.name.as_str().into(),
                account: if u.account.is_empty() {
                    default_account.clone()
                } else {
                    u.account.as_str().into()
                },
                password,
                token,
                certificate: u.certificate,
            });
        }
        Ok(Security {
            default_account,
            allow_anonymous: c.allow_anonymous,
            users,
            by_name,
            by_nkey,
            with_token,
            permissions: Permissions::from_config(c)?,
            written: c.clone(),
            accounts: accounts::Accounts::from_config(c)?,
        })
    }

    /// Whether the rules that gave `identity` its rights under `old` are
    /// written differently in this generation: its user's own rules or
    /// groups, one of those groups' rules, or (anonymous) the anonymous
    /// rules. A reload ends such sessions (the client reconnects under
    /// the new rules) rather than leaving rights in force that the
    /// operator took away.
    pub fn rights_changed(&self, old: &Security, identity: &Identity) -> bool {
        let (old, new) = (&old.written, &self.written);
        let Some(user) = identity.user.as_deref() else {
            return old.anonymous != new.anonymous;
        };
        let find = |c: &SecurityConfig| c.users.iter().find(|u| u.name == user).cloned();
        let (Some(was), Some(is)) = (find(old), find(new)) else {
            return true;
        };
        if (&was.publish, &was.subscribe, &was.groups) != (&is.publish, &is.subscribe, &is.groups) {
            return true;
        }
        let group = |c: &SecurityConfig, name: &str| {
            c.groups
                .iter()
                .find(|g| g.name == name)
                .map(|g| (g.publish.clone(), g.subscribe.clone()))
        };
        is.groups.iter().any(|g| group(old, g) != group(new, g))
    }

    /// The account of `user` (None = anonymous): its `account` key, empty
    /// = `security.default_account`.
    pub fn account_of(&self, user: Option<&str>) -> Arc<str> {
        self.accounts.account_of(user)
    }

    /// The topic space a session of `account` publishes and subscribes
    /// in; None for the default account when it exports nothing (its
    /// sessions map nothing: today's single namespace, at no cost).
    pub fn space(&self, account: &str) -> Option<Arc<accounts::Space>> {
        self.accounts.space(account)
    }

    /// Whether clients must present credentials (NATS INFO
    /// `auth_required`): users are configured, or anonymous clients are
    /// refused outright.
    pub fn auth_required(&self) -> bool {
        !self.users.is_empty() || self.allow_anonymous == Some(false)
    }

    /// Whether a session authenticated as `identity` under an earlier
    /// generation may go on under this one: its user still exists, in the
    /// same account (a reload that removes a user or moves it to another
    /// account ends its sessions).
    pub fn still_admits(&self, identity: &Identity) -> bool {
        match &identity.user {
            None => true,
            Some(user) => self
                .by_name
                .get(&**user)
                .is_some_and(|&i| self.users[i].account == identity.account),
        }
    }

    /// Whether some user logs in with an nkey (NATS INFO then carries a
    /// nonce to sign).
    pub fn wants_nonce(&self) -> bool {
        !self.by_nkey.is_empty()
    }

    /// Whether a client with no credentials is accepted on the listener
    /// at `local`: `allow_anonymous` when set; unset, only with no user
    /// configured and on a loopback listener (mosquitto 2's rule).
    /// `Config::resolve` refuses to start a non-loopback listener that this
    /// would leave open.
    pub fn anonymous_accepted(&self, local: Option<SocketAddr>) -> bool {
        match self.allow_anonymous {
            Some(allowed) => allowed,
            None => self.users.is_empty() && local.is_none_or(|a| a.ip().is_loopback()),
        }
    }

    fn identity(&self, user: &User) -> Identity {
        Identity {
            user: Some(user.name.clone()),
            account: user.account.clone(),
        }
    }

    fn anonymous(&self, peer: &Peer) -> Result<Identity, Refusal> {
        if self.anonymous_accepted(peer.local) {
            Ok(Identity {
                user: None,
                account: self.default_account.clone(),
            })
        } else {
            Err(Refusal::NotAuthorized)
        }
    }

    /// The user whose token `presented` is, compared against every token
    /// in constant time each.
    fn by_token(&self, presented: &[u8]) -> Option<&User> {
        let mut found = None;
        for &i in &self.with_token {
            let user = &self.users[i];
            let stored = user.token.as_deref().unwrap_or_default();
            if auth::token_matches(stored, presented) && found.is_none() {
                found = Some(user);
            }
        }
        found
    }

    /// Who presents `credentials` from `peer`, or why they are refused;
    /// a password check is left to the caller (see [`Check`]).
    ///
    /// In order: a verified certificate that names a user with
    /// `certificate = true`; an nkey with its signature of `peer.nonce`; a
    /// token (NATS `auth_token`, or an MQTT password with no or an empty
    /// user name); a user name with its password (or that user's token as
    /// the password); else anonymous. With no user configured, credentials
    /// are not looked at (as before users existed): anonymous rules.
    pub fn check(&self, credentials: &Credentials, peer: &Peer) -> Check {
        use Check::Done;
        if self.users.is_empty() {
            return Done(self.anonymous(peer));
        }
        if let Some(name) = &peer.certificate {
            if let Some(user) = self.by_name.get(&**name).map(|&i| &self.users[i]) {
                if user.certificate {
                    return Done(Ok(self.identity(user)));
                }
            }
        }
        if let Some(nkey) = &credentials.nkey {
            let user = self.by_nkey.get(&**nkey).map(|&i| &self.users[i]);
            let nonce = peer.nonce.as_deref().unwrap_or_default();
            let signature = credentials.signature.as_deref().unwrap_or_default();
            return Done(match user {
                Some(user) if auth::verify_nkey(nkey, nonce, signature) => Ok(self.identity(user)),
                _ => Err(Refusal::BadCredentials),
            });
        }
        if let Some(token) = &credentials.token {
            return Done(match self.by_token(token.as_bytes()) {
                Some(user) => Ok(self.identity(user)),
                None => Err(Refusal::BadCredentials),
            });
        }
        let name = credentials.username.as_deref().filter(|n| !n.is_empty());
        match (name, credentials.password.as_deref()) {
            (None, None) => Done(self.anonymous(peer)),
            // MQTT: a password alone is a token (EMQX's JWT-style logins).
            (None, Some(password)) => Done(match self.by_token(password) {
                Some(user) => Ok(self.identity(user)),
                None => Err(Refusal::BadCredentials),
            }),
            (Some(name), password) => {
                let Some(user) = self.by_name.get(name).map(|&i| &self.users[i]) else {
                    return Done(Err(Refusal::BadCredentials));
                };
                let password = password.unwrap_or_default();
                if let Some(token) = &user.token {
                    if auth::token_matches(token, password) {
                        return Done(Ok(self.identity(user)));
                    }
                }
                match &user.password {
                    Some(hash) => Check::Password(PasswordCheck {
                        hash: hash.clone(),
                        password: password.into(),
                        identity: self.identity(user),
                    }),
                    None => Done(Err(Refusal::BadCredentials)),
                }
            }
        }
    }

    /// [`Security::check`] with any password check run inline.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        peer: &Peer,
    ) -> Result<Identity, Refusal> {
        match self.check(credentials, peer) {
            Check::Done(verdict) => verdict,
            Check::Password(check) => check.run(),
        }
    }

    /// What a session of `identity` with `client_id` may publish and read
    /// (its user's rules with its groups', `%u` and `%c` substituted; no
    /// user: `security.anonymous`). A substituted value that would widen
    /// a rule refuses the session (as not authorized to connect).
    pub fn grants(
        &self,
        identity: &Identity,
        client_id: &str,
    ) -> Result<Arc<Grants>, Substitution> {
        self.permissions.grants(identity.user.as_deref(), client_id)
    }
}

#[cfg(test)]
mod revoke_tests {
    use super::*;
    use crate::config::UserConfig;

    fn user(name: &str, account: &str) -> UserConfig {
        UserConfig {
            name: name.into(),
            account: account.into(),
            token: "t".into(),
            ..UserConfig::default()
        }
    }

    #[test]
    fn a_reload_revokes_removed_and_moved_users_only() {
        let accounts = ["b", "other"].map(|name| crate::config::AccountConfig {
            name: name.into(),
            ..Default::default()
        });
        let mut c = SecurityConfig {
            users: vec![user("alice", ""), user("bob", "b")],
            accounts: accounts.to_vec(),
            ..SecurityConfig::default()
        };
        let s = Security::from_config(&c).unwrap();
        let alice = Identity {
            user: Some("alice".into()),
            account: "default".into(),
        };
        let bob = Identity {
            user: Some("bob".into()),
            account: "b".into(),
        };
        let anonymous = Identity {
            user: None,
            account: "default".into(),
        };
        assert!(s.still_admits(&alice) && s.still_admits(&bob) && s.still_admits(&anonymous));
        c.users = vec![user("bob", "other")];
        let s = Security::from_config(&c).unwrap();
        assert!(!s.still_admits(&alice), "removed");
        let before = Security::from_config(&SecurityConfig {
            users: vec![user("bob", "other")],
            accounts: accounts.to_vec(),
            ..SecurityConfig::default()
        })
        .unwrap();
        let bob_now = Identity {
            user: Some("bob".into()),
            account: "other".into(),
        };
        assert!(!s.rights_changed(&before, &bob_now));
        assert!(!s.rights_changed(&before, &anonymous));
        assert!(!s.still_admits(&bob), "moved to another account");
        assert!(s.still_admits(&anonymous));
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;
    use crate::config::{GroupConfig, RulesConfig, UserConfig};

    fn generation(deny_of_group: &str, anonymous_deny: &str) -> Security {
        Security::from_config(&SecurityConfig {
            users: vec![UserConfig {
                name: "carol".into(),
                token: "t".into(),
                groups: vec!["ops".into()],
                ..UserConfig::default()
            }],
            groups: vec![GroupConfig {
                name: "ops".into(),
                subscribe: RulesConfig {
                    deny: vec![deny_of_group.into()],
                    ..RulesConfig::default()
                },
                ..GroupConfig::default()
            }],
            anonymous: RulesConfig {
                deny: vec![anonymous_deny.into()],
                ..RulesConfig::default()
            },
            ..SecurityConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn rights_change_with_the_users_group_or_the_anonymous_rules() {
        let carol = Identity {
            user: Some("carol".into()),
            account: "default".into(),
        };
        let anonymous = Identity {
            user: None,
            account: "default".into(),
        };
        let old = generation("a/#", "x/#");
        assert!(!generation("a/#", "x/#").rights_changed(&old, &carol));
        assert!(
            generation("b/#", "x/#").rights_changed(&old, &carol),
            "its group's rules"
        );
        assert!(!generation("a/#", "y/#").rights_changed(&old, &carol));
        assert!(generation("a/#", "y/#").rights_changed(&old, &anonymous));
    }
}

#[cfg(test)]
mod tests;
