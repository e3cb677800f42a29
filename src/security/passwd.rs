//! `weft passwd`: reads a password (from the terminal without echo, asked
//! twice; or from stdin when stdin is not a terminal, one line) and prints
//! its argon2id hash for a `[[security.users]]` entry's `password`.
//!
//! Owns: the prompt and the reading. Must not touch: the hash's format
//! (`auth::hash_password`).

use std::io::{IsTerminal, Read};

/// Longest password read from stdin: a bound on what a pipe can make us
/// hold (argon2 would take more, but no one types 4 KiB).
const PASSWORD_BYTES_MAX: usize = 4096;

/// The password to hash, or why there is none.
pub fn read_password() -> Result<Vec<u8>, String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("Again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first.into_bytes()
    } else {
        let mut buf = Vec::new();
        stdin
            .lock()
            .take(PASSWORD_BYTES_MAX as u64 + 3)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        // One line: what `echo pw |` and a file with a final newline give.
        if buf.ends_with(b"\n") {
            buf.pop();
            if buf.ends_with(b"\r") {
                buf.pop();
            }
        }
        if buf.len() > PASSWORD_BYTES_MAX {
            return Err(format!(
                "the password is longer than {PASSWORD_BYTES_MAX} bytes"
            ));
        }
        if buf.contains(&b'\n') {
            return Err("stdin holds more than one line".into());
        }
        buf
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(password)
}

/// The hash line `weft passwd` prints.
pub fn run() -> Result<String, String> {
    let password = read_password()?;
    super::auth::hash_password(&password)
}
