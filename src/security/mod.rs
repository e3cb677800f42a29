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
//! [`accounts`]: each account's topic space, and what crosses between them.

pub mod accounts;

use std::net::SocketAddr;
use std::sync::Arc;

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
    accounts: accounts::Accounts,
}

impl Security {
    /// Compiles `[security]`; every error names its key.
    pub fn from_config(c: &SecurityConfig) -> Result<Security, ConfigError> {
        Ok(Security {
            default_account: c.default_account.as_str().into(),
            accounts: accounts::Accounts::from_config(c)?,
        })
    }

    /// The account of `user` (None = anonymous): its `account` key, empty
    /// = `security.default_account`. What `authenticate` puts in
    /// [`Identity::account`].
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
    /// `auth_required`).
    pub fn auth_required(&self) -> bool {
        false
    }

    /// Who presents `credentials` from `peer`, or why they are refused.
    pub fn authenticate(
        &self,
        credentials: &Credentials,
        peer: &Peer,
    ) -> Result<Identity, Refusal> {
        let _ = peer;
        // Until passwords are checked (h17 replaces this): a configured
        // user's name (or a NATS `auth_token` equal to a user's `token`) is
        // enough to be that user, in its account; anyone else is
        // anonymous in the default account.
        let user = credentials
            .username
            .as_deref()
            .filter(|u| self.accounts.is_user(u))
            .or_else(|| {
                let token = credentials.token.as_deref()?;
                self.accounts.user_of_token(token)
            });
        Ok(Identity {
            user: user.map(Arc::from),
            account: match user {
                Some(u) => self.account_of(Some(u)),
                None => self.default_account.clone(),
            },
        })
    }
}
