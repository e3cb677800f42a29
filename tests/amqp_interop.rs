//! The python-qpid-proton scripts of tests/amqp/ (issue 15, acceptances 1
//! and 2) against the running binary, and against RabbitMQ, the reference
//! they were written against (a private node: scripts/rabbitmq-setup.sh).
//! perf/amqp-interop.sh runs the same scripts and prints the differences;
//! here each script must pass. The interpreter is WEFT_PYTHON (the .venv
//! scripts/test.sh makes, with python-qpid-proton).
//!
//! Addresses differ by broker: weft's topics are plain names and a shared
//! consumer is a queue group ($share/g/NAME); RabbitMQ's topics are
//! /topic/NAME and a shared consumer is a queue (/queue/NAME).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn python() -> String {
    std::env::var("WEFT_PYTHON").unwrap_or_else(|_| {
        panic!("WEFT_PYTHON is not set: run the tests with scripts/test.sh, which installs the Python clients")
    })
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs tests/amqp/`script`.py and returns its JSON verdict; panics with
/// the verdict and the script's stderr unless it passed.
fn pass(script: &str, url: &str, prefix: &str, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo().join(format!("tests/amqp/{script}.py")))
        .args([url, prefix, "--timeout", "10"])
        .args(extra)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{script}.py printed no verdict:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(
        out.status.success() && verdict["ok"] == true,
        "{script}.py against {url} failed:\n{verdict:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    verdict
}

fn weft_url() -> (Weft, String) {
    let w = Weft::start(2, "[amqp]\nlisten = \"127.0.0.1:0\"\n");
    let url = format!("amqp://{}", w.amqp.expect("AMQP listener"));
    (w, url)
}

#[test]
fn proton_roundtrip_on_weft() {
    let (_w, url) = weft_url();
    let v = pass("roundtrip", &url, "", &[]);
    // weft writes reply-to in its topic form (the MQTT one).
    let sent = v["observed"]["sent_reply_to"]
        .as_str()
        .unwrap()
        .replace('.', "/");
    assert_eq!(v["observed"]["received"][0]["reply_to"], sent.as_str());
}

#[test]
fn proton_settle_modes_on_weft() {
    let (_w, url) = weft_url();
    pass("settle", &url, "", &[]);
}

#[test]
fn proton_credit_on_weft() {
    let (_w, url) = weft_url();
    pass("credit", &url, "", &[]);
}

#[test]
fn proton_drain_on_weft() {
    let (_w, url) = weft_url();
    pass("drain", &url, "", &[]);
}

#[test]
fn proton_redelivery_on_weft() {
    let (_w, url) = weft_url();
    pass(
        "redeliver",
        &url,
        "",
        &["--send", "{}", "--recv", "$share/g/{}"],
    );
}

#[test]
fn proton_request_reply_on_weft() {
    let (_w, url) = weft_url();
    pass("reqreply", &url, "", &[]);
}

/// amqps (`[amqp] tls = true`, `[mqtt.tls]`'s certificate): the round
/// trip script over TLS, the client verifying weft's certificate and name.
#[test]
fn proton_roundtrip_over_tls_on_weft() {
    let pki = common::pki::Pki::new();
    let ca = pki.ca("ca");
    let server = pki.signed(&ca, "server", "localhost");
    let toml = format!(
        "[mqtt.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n\
         [amqp]\nlisten = \"127.0.0.1:0\"\ntls = true\n",
        server.cert, server.key
    );
    let w = Weft::start(2, &toml);
    let url = format!(
        "amqps://localhost:{}",
        w.amqp.expect("AMQP listener").port()
    );
    pass("roundtrip", &url, "", &["--ca", &ca.path]);
    // Plain AMQP to the TLS listener: the listener answers the AMQP header
    // with a TLS alert record (content type 0x15, TLS 1.2) and closes;
    // proton reports that as a framing error on the protocol header.
    let plain = format!("amqp://127.0.0.1:{}", w.amqp.unwrap().port());
    let out = Command::new(python())
        .arg(repo().join("tests/amqp/roundtrip.py"))
        .args([plain.as_str(), "", "--timeout", "3"])
        .output()
        .expect("run python");
    assert!(
        !out.status.success(),
        "plain AMQP worked on the TLS listener"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("roundtrip.py printed no verdict:\n{stdout}"));
    let error = verdict["error"].as_str().unwrap_or_default();
    // The alert's bytes as proton quotes them (escaped, maybe twice).
    let unescaped = error.replace('\\', "");
    assert!(
        error.starts_with("ConnectionException: ")
            && error.contains("amqp:connection:framing-error")
            && error.contains("Expected SASL protocol header")
            && unescaped.contains("x15x03x03"),
        "not the TLS listener's refusal of plain AMQP: {verdict:#}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private RabbitMQ node, stopped on drop.
struct Rabbit {
    dir: PathBuf,
    port: u16,
}

impl Rabbit {
    fn start() -> Option<Rabbit> {
        let setup = repo().join("scripts/rabbitmq-setup.sh");
        if !Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists()
            && std::env::var_os("WEFT_RABBITMQ_BIN").is_none()
        {
            report_skip(
                "tests/amqp_interop.rs: the RabbitMQ reference run (no rabbitmq-server: scripts/rabbitmq-setup.sh installs it)",
                env_flag("WEFT_RABBITMQ_REQUIRED").then_some("WEFT_RABBITMQ_REQUIRED is set"),
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "weft-rabbitmq-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = Command::new(&setup)
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/rabbitmq-setup.sh");
        assert!(
            out.status.success(),
            "rabbitmq-setup.sh start failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("the node's AMQP port");
        Some(Rabbit { dir, port })
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/rabbitmq-setup.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The reference run: the scripts pass on RabbitMQ 3.10 (so a failure on
/// weft is weft's). drain.py is left out: RabbitMQ 3.10's plugin does not
/// answer a drain (perf/amqp-interop.sh shows it).
#[test]
fn proton_scripts_pass_on_rabbitmq() {
    let Some(rabbit) = Rabbit::start() else {
        return;
    };
    let url = format!("amqp://127.0.0.1:{}", rabbit.port);
    for script in ["roundtrip", "settle", "credit", "reqreply"] {
        pass(script, &url, "/topic/", &[]);
    }
    pass(
        "redeliver",
        &url,
        "/topic/",
        &["--send", "/queue/{}", "--recv", "/queue/{}"],
    );
}
