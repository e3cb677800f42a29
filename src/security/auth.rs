//! Credential checks: password hashes (argon2id, bcrypt), bearer tokens,
//! NATS nkey signatures, and the making of hashes (`weft passwd`) and
//! nonces. Pure functions: no state, no socket, no executor.
//!
//! Owns: the formats (PHC `$argon2id$…`, bcrypt `$2b$…`, nkey `U…`, a
//! signature in base64) and the comparisons. Must not touch: who is asked
//! (that is `Security::authenticate`) or where the slow checks run (the
//! shard runs [`PasswordHash::verify`] on a blocking thread,
//! `shard::ctx::auth`).
//!
//! Costs: a password check costs what its hash says (argon2id at the
//! parameters `weft passwd` writes, m = 19 MiB, t = 2: some 20–50 ms of one
//! core; bcrypt cost 12: some 200 ms), a token compare and an nkey
//! verification microseconds (an ed25519 verification is ~50 µs).

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use subtle::ConstantTimeEq;

/// The argon2id parameters `weft passwd` writes: the OWASP password
/// storage minimum (m = 19456 KiB, t = 2, p = 1). Memory-hard enough that
/// a GPU guesser gains little, cheap enough (tens of ms, 19 MiB briefly)
/// that a shard's blocking thread checks a few logins a second each
/// without the memory of a burst mattering: the checks in flight are
/// bounded (`security.password_checks_max` per shard).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_PARALLELISM: u32 = 1;

/// Bytes of randomness in a NATS nonce (as nats-server: 11 bytes would do;
/// 16 give 22 characters of base64url).
const NONCE_BYTES: usize = 16;

/// A stored password hash, checked when the configuration is compiled so
/// that a login never meets a malformed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
    Argon2id(Box<str>),
    /// A bcrypt string `$2b$12$…` (`$2a$`, `$2x$`, `$2y$` too).
    Bcrypt(Box<str>),
}

impl PasswordHash {
    /// Parses a stored hash; the error says what is wrong, for a line
    /// naming the key.
    pub fn parse(s: &str) -> Result<PasswordHash, String> {
        if s.starts_with("$argon2") {
            let parsed = argon2::PasswordHash::new(s)
                .map_err(|e| format!("not a valid argon2 PHC string ({e})"))?;
            if parsed.algorithm != Algorithm::Argon2id.ident() {
                return Err(format!(
                    "'{}' is not argon2id (make one with `weft passwd`)",
                    parsed.algorithm
                ));
            }
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err("the argon2id string has no salt or no hash".into());
            }
            Params::try_from(&parsed).map_err(|e| format!("bad argon2id parameters ({e})"))?;
            Ok(PasswordHash::Argon2id(s.into()))
        } else if s.starts_with("$2") {
            s.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("not a valid bcrypt hash ({e})"))?;
            Ok(PasswordHash::Bcrypt(s.into()))
        } else {
            Err(
                "not a password hash: expected argon2id (`$argon2id$…`, as `weft passwd` \
                 prints) or bcrypt (`$2b$…`); plain passwords are not accepted"
                    .into(),
            )
        }
    }

    /// Whether `password` matches. Slow by design (see the module doc):
    /// the shard calls it on a blocking thread.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Argon2id(s) => match argon2::PasswordHash::new(s) {
                Ok(hash) => Argon2::default().verify_password(password, &hash).is_ok(),
                Err(_) => false,
            },
            PasswordHash::Bcrypt(s) => bcrypt::verify(password, s).unwrap_or(false),
        }
    }
}

/// An argon2id PHC string of `password` with a fresh random salt, at the
/// parameters above.
pub fn hash_password(password: &[u8]) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness for the salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .map_err(|e| e.to_string())?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether a presented token equals a stored one, in time that does not
/// depend on where they differ (only on the presented length).
pub fn token_matches(stored: &[u8], presented: &[u8]) -> bool {
    stored.len() == presented.len() && bool::from(stored.ct_eq(presented))
}

/// Checks a NATS user public key (`U…`, 56 characters).
pub fn parse_nkey(public: &str) -> Result<(), String> {
    if !public.starts_with('U') {
        return Err(format!(
            "'{public}' is not a user public key (they start with 'U')"
        ));
    }
    nkeys::KeyPair::from_public_key(public)
        .map(|_| ())
        .map_err(|e| format!("'{public}' is not a valid nkey ({e})"))
}

/// Whether `signature` (base64url, or standard base64, as clients send
/// it) is `public`'s ed25519 signature of `nonce` (the nonce's text as
/// INFO carried it).
pub fn verify_nkey(public: &str, nonce: &str, signature: &str) -> bool {
    if nonce.is_empty() {
        return false;
    }
    let Ok(key) = nkeys::KeyPair::from_public_key(public) else {
        return false;
    };
    let engines = [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let Some(raw) = engines.iter().find_map(|e| e.decode(signature).ok()) else {
        return false;
    };
    key.verify(nonce.as_bytes(), &raw).is_ok()
}

/// A fresh per-connection nonce for INFO (base64url, no padding, as
/// nats-server sends it).
pub fn new_nonce() -> String {
    let mut raw = [0u8; NONCE_BYTES];
    if getrandom::getrandom(&mut raw).is_err() {
        // No randomness: an empty nonce, against which `verify_nkey`
        // refuses every signature (a predictable nonce would let a
        // captured signature be replayed).
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip_and_wrong_password() {
        let h = hash_password(b"s3cret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        let parsed = PasswordHash::parse(&h).unwrap();
        assert!(parsed.verify(b"s3cret"));
        assert!(!parsed.verify(b"s3cret "));
        assert!(!parsed.verify(b""));
        // A fresh salt each time.
        assert_ne!(h, hash_password(b"s3cret").unwrap());
    }

    #[test]
    fn bcrypt_verifies() {
        let h = bcrypt::hash("pw", 4).unwrap();
        assert!(h.starts_with("$2b$04$"));
        let parsed = PasswordHash::parse(&h).unwrap();
        assert!(matches!(parsed, PasswordHash::Bcrypt(_)));
        assert!(parsed.verify(b"pw"));
        assert!(!parsed.verify(b"pW"));
    }

    #[test]
    fn bad_hashes_are_refused_with_a_reason() {
        let plain = PasswordHash::parse("hunter2").unwrap_err();
        assert!(
            plain.contains("plain passwords are not accepted"),
            "{plain}"
        );
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$AAAAAAAAAAAAAAAAAAAAAA";
        let e = PasswordHash::parse(argon2i).unwrap_err();
        assert!(e.contains("not argon2id"), "{e}");
        assert!(PasswordHash::parse("$argon2id$garbage").is_err());
        assert!(PasswordHash::parse("$2b$12$short").is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abc", b"abd"));
        assert!(!token_matches(b"abc", b"ab"));
        assert!(!token_matches(b"abc", b"abcd"));
        assert!(!token_matches(b"abc", b""));
    }

    #[test]
    fn nkey_signature_of_the_nonce() {
        let user = nkeys::KeyPair::new_user();
        let public = user.public_key();
        parse_nkey(&public).unwrap();
        let nonce = new_nonce();
        assert_eq!(nonce.len(), 22);
        assert_ne!(nonce, new_nonce());
        let sig = user.sign(nonce.as_bytes()).unwrap();
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig);
        let std = base64::engine::general_purpose::STANDARD.encode(&sig);
        assert!(verify_nkey(&public, &nonce, &url));
        assert!(verify_nkey(&public, &nonce, &std));
        // Another nonce, another key, garbage.
        assert!(!verify_nkey(&public, &new_nonce(), &url));
        let other = nkeys::KeyPair::new_user();
        assert!(!verify_nkey(&other.public_key(), &nonce, &url));
        assert!(!verify_nkey(&public, &nonce, "not base64!"));
        assert!(!verify_nkey(&public, "", &url));
    }

    #[test]
    fn nkeys_must_be_user_keys() {
        let account = nkeys::KeyPair::new_account();
        assert!(parse_nkey(&account.public_key())
            .unwrap_err()
            .contains("not a user public key"));
        assert!(parse_nkey("Ubogus").is_err());
    }
}
