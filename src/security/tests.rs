use std::net::SocketAddr;

use base64::Engine;

use super::*;
use crate::config::UserConfig;

fn loopback() -> Option<SocketAddr> {
    Some("127.0.0.1:1883".parse().unwrap())
}

fn public() -> Option<SocketAddr> {
    Some("10.1.2.3:1883".parse().unwrap())
}

fn peer(local: Option<SocketAddr>) -> Peer {
    Peer {
        local,
        ..Peer::default()
    }
}

fn user(name: &str) -> UserConfig {
    UserConfig {
        name: name.into(),
        ..UserConfig::default()
    }
}

fn login(name: Option<&str>, password: Option<&str>) -> Credentials {
    Credentials {
        username: name.map(Into::into),
        password: password.map(|p| p.as_bytes().into()),
        ..Credentials::default()
    }
}

/// Compiles `c`, with every account its users name declared.
fn compile(c: &SecurityConfig) -> Security {
    let mut c = c.clone();
    for u in &c.users.clone() {
        if !u.account.is_empty() && !c.accounts.iter().any(|a| a.name == u.account) {
            c.accounts.push(crate::config::AccountConfig {
                name: u.account.clone(),
                ..Default::default()
            });
        }
    }
    Security::from_config(&c).unwrap()
}

#[test]
fn default_accepts_anonymous_on_loopback_only() {
    let s = compile(&SecurityConfig::default());
    assert!(!s.auth_required());
    let anonymous = s.authenticate(&Credentials::default(), &peer(loopback()));
    assert_eq!(anonymous.unwrap().user, None);
    // Credentials are not looked at with no user configured.
    let id = s.authenticate(&login(Some("x"), Some("y")), &peer(loopback()));
    assert_eq!(id.unwrap().account.as_ref(), "default");
    assert_eq!(
        s.authenticate(&Credentials::default(), &peer(public())),
        Err(Refusal::NotAuthorized)
    );
}

#[test]
fn allow_anonymous_true_and_false() {
    let mut c = SecurityConfig {
        allow_anonymous: Some(true),
        default_account: "acme".into(),
        ..SecurityConfig::default()
    };
    let id = compile(&c)
        .authenticate(&Credentials::default(), &peer(public()))
        .unwrap();
    assert_eq!((id.user, id.account.as_ref()), (None, "acme"));
    c.allow_anonymous = Some(false);
    let s = compile(&c);
    assert!(s.auth_required());
    assert_eq!(
        s.authenticate(&Credentials::default(), &peer(loopback())),
        Err(Refusal::NotAuthorized)
    );
}

#[test]
fn passwords_argon2id_and_bcrypt() {
    let mut alice = user("alice");
    alice.password = auth::hash_password(b"wonder").unwrap();
    alice.account = "team".into();
    let mut bob = user("bob");
    bob.password = bcrypt::hash("builder", 4).unwrap();
    let c = SecurityConfig {
        users: vec![alice, bob],
        ..SecurityConfig::default()
    };
    let s = compile(&c);
    assert!(s.auth_required());
    let p = peer(loopback());
    let id = s
        .authenticate(&login(Some("alice"), Some("wonder")), &p)
        .unwrap();
    assert_eq!(id.user.as_deref(), Some("alice"));
    assert_eq!(id.account.as_ref(), "team");
    let id = s
        .authenticate(&login(Some("bob"), Some("builder")), &p)
        .unwrap();
    assert_eq!(id.account.as_ref(), "default");
    for (name, password) in [
        (Some("alice"), Some("builder")),
        (Some("bob"), None),
        (Some("carol"), Some("wonder")),
        (None, Some("wonder")),
    ] {
        assert_eq!(
            s.authenticate(&login(name, password), &p),
            Err(Refusal::BadCredentials),
            "{name:?} {password:?}"
        );
    }
    // Users configured, allow_anonymous unset: anonymous refused, even on
    // loopback.
    assert_eq!(
        s.authenticate(&Credentials::default(), &p),
        Err(Refusal::NotAuthorized)
    );
    // The slow check is handed back, not run, by `check`.
    assert!(matches!(
        s.check(&login(Some("alice"), Some("x")), &p),
        Check::Password(c) if c.user() == Some("alice")
    ));
}

#[test]
fn tokens_for_nats_and_mqtt() {
    let mut t = user("svc");
    t.token = "tok-123".into();
    let c = SecurityConfig {
        users: vec![t],
        ..SecurityConfig::default()
    };
    let s = compile(&c);
    let p = peer(public());
    let nats = |token: &str| Credentials {
        token: Some(token.into()),
        ..Credentials::default()
    };
    assert_eq!(
        s.authenticate(&nats("tok-123"), &p)
            .unwrap()
            .user
            .as_deref(),
        Some("svc")
    );
    assert_eq!(
        s.authenticate(&nats("tok-12"), &p),
        Err(Refusal::BadCredentials)
    );
    // MQTT: user name = the user, password = the token; or no (or an
    // empty) user name and the token as password.
    for name in [Some("svc"), None, Some("")] {
        let id = s.authenticate(&login(name, Some("tok-123")), &p).unwrap();
        assert_eq!(id.user.as_deref(), Some("svc"), "{name:?}");
    }
    assert_eq!(
        s.authenticate(&login(Some("other"), Some("tok-123")), &p),
        Err(Refusal::BadCredentials)
    );
}

#[test]
fn nkeys_sign_the_connection_nonce() {
    let key = nkeys::KeyPair::new_user();
    let mut u = user("edge");
    u.nkey = key.public_key();
    let c = SecurityConfig {
        users: vec![u],
        ..SecurityConfig::default()
    };
    let s = compile(&c);
    assert!(s.wants_nonce());
    let nonce = auth::new_nonce();
    let sign = |k: &nkeys::KeyPair, nonce: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.sign(nonce.as_bytes()).unwrap())
    };
    let creds = |k: &nkeys::KeyPair, sig: String| Credentials {
        nkey: Some(k.public_key().into()),
        signature: Some(sig.into()),
        ..Credentials::default()
    };
    let p = Peer {
        nonce: Some(nonce.clone().into()),
        ..peer(public())
    };
    let id = s
        .authenticate(&creds(&key, sign(&key, &nonce)), &p)
        .unwrap();
    assert_eq!(id.user.as_deref(), Some("edge"));
    // Another connection's nonce, a key nobody configured, no signature.
    let replay = creds(&key, sign(&key, "another-nonce"));
    assert_eq!(s.authenticate(&replay, &p), Err(Refusal::BadCredentials));
    let stranger = nkeys::KeyPair::new_user();
    let forged = creds(&stranger, sign(&stranger, &nonce));
    assert_eq!(s.authenticate(&forged, &p), Err(Refusal::BadCredentials));
    let unsigned = Credentials {
        signature: None,
        ..creds(&key, String::new())
    };
    assert_eq!(s.authenticate(&unsigned, &p), Err(Refusal::BadCredentials));
}

#[test]
fn certificate_identity() {
    let mut device = user("device-7");
    device.certificate = true;
    let mut other = user("ops");
    other.token = "t".into();
    let c = SecurityConfig {
        users: vec![device, other],
        ..SecurityConfig::default()
    };
    let s = compile(&c);
    let with_cert = |name: &str| Peer {
        certificate: Some(name.into()),
        ..peer(public())
    };
    // The certificate alone authenticates (use_identity_as_username).
    let id = s
        .authenticate(&Credentials::default(), &with_cert("device-7"))
        .unwrap();
    assert_eq!(id.user.as_deref(), Some("device-7"));
    // Whatever else the client claims.
    let id = s
        .authenticate(&login(Some("ops"), Some("wrong")), &with_cert("device-7"))
        .unwrap();
    assert_eq!(id.user.as_deref(), Some("device-7"));
    // A certificate naming a user without `certificate = true`, or an
    // unknown one, is no credential.
    assert_eq!(
        s.authenticate(&Credentials::default(), &with_cert("ops")),
        Err(Refusal::NotAuthorized)
    );
    assert_eq!(
        s.authenticate(&login(Some("ops"), Some("t")), &with_cert("nobody"))
            .unwrap()
            .user
            .as_deref(),
        Some("ops")
    );
    // Without a certificate, device-7 has no way in.
    assert_eq!(
        s.authenticate(&login(Some("device-7"), Some("")), &peer(public())),
        Err(Refusal::BadCredentials)
    );
}

#[test]
fn bad_users_are_refused_naming_the_key() {
    let cases: Vec<(UserConfig, &str)> = vec![
        (user(""), "has no name"),
        (user("a"), "has no way to authenticate"),
        (
            UserConfig {
                password: "plain".into(),
                ..user("a")
            },
            "plain passwords are not accepted",
        ),
        (
            UserConfig {
                nkey: "Nope".into(),
                ..user("a")
            },
            "not a user public key",
        ),
    ];
    for (u, expected) in cases {
        let c = SecurityConfig {
            users: vec![u],
            ..SecurityConfig::default()
        };
        let e = Security::from_config(&c).unwrap_err().to_string();
        assert!(e.starts_with("security.users: user #1"), "{e}");
        assert!(e.contains(expected), "{e}");
    }
    let twice = SecurityConfig {
        users: vec![
            UserConfig {
                token: "a".into(),
                ..user("x")
            },
            UserConfig {
                token: "b".into(),
                ..user("x")
            },
        ],
        ..SecurityConfig::default()
    };
    let e = Security::from_config(&twice).unwrap_err().to_string();
    assert!(e.contains("user #2 ('x'): is configured twice"), "{e}");
}
