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
