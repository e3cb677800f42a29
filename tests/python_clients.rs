//! Third-party Python clients against the running binary. The interpreter
//! comes from `WEFT_PYTHON`, which `scripts/test.sh` sets after installing
//! the clients into `.venv` (nats-py); run the suite through that script.

mod common;

use common::*;

fn python() -> String {
    std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python clients")
    })
}

#[test]
fn nats_py_smoke() {
    let weft = Weft::start(2, "");
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/nats_smoke.py"
        ))
        .arg(weft.nats.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "nats-py smoke failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}

#[test]
fn paho_mqtt_smoke() {
    let weft = Weft::start(2, "");
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/paho_smoke.py"
        ))
        .arg(weft.addr.ip().to_string())
        .arg(weft.addr.port().to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "paho-mqtt smoke failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}

/// nats-py with user/password, token and nkey, right and wrong
/// (tests/py/nats_auth.py).
#[test]
fn nats_py_authentication() {
    let key = nkeys::KeyPair::new_user();
    let stranger = nkeys::KeyPair::new_user();
    let argon = weft::security::auth::hash_password(b"wonderland").unwrap();
    let toml = format!(
        "[[security.users]]\nname = \"alice\"\npassword = \"{argon}\"\n\
         [[security.users]]\nname = \"svc\"\ntoken = \"tok-123\"\n\
         [[security.users]]\nname = \"edge\"\nnkey = \"{}\"\n",
        key.public_key()
    );
    let weft = Weft::start(2, &toml);
    let out = std::process::Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/nats_auth.py"
        ))
        .arg(weft.nats.to_string())
        .arg(key.seed().unwrap())
        .arg(stranger.seed().unwrap())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "nats-py authentication failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pass"));
}
