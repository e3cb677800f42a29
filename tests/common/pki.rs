//! Certificates made by a test (rcgen): a CA, and certificates it signs
//! for the router and for clients, as PEM files in a directory removed at
//! the end of the test.
#![allow(dead_code)] // each test file uses its part

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

/// A directory of PEM files, removed at the end of the test.
pub struct Pki {
    pub dir: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
    pub path: String,
}

/// A certificate and its key, as files and as PEM.
pub struct Pair {
    pub cert: String,
    pub key: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "weft-pki-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    pub fn write(&self, name: &str, pem: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    }

    pub fn ca(&self, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        let path = self.write(&format!("{name}.pem"), &cert.pem());
        Ca { cert, key, path }
    }

    /// A certificate signed by `ca` with common name `cn`, naming
    /// localhost and 127.0.0.1 (a server's; clients ignore the names).
    pub fn signed(&self, ca: &Ca, file: &str, cn: &str) -> Pair {
        self.signed_for(ca, file, cn, "localhost")
    }

    /// A certificate signed by `ca` with common name `cn`, naming `dns`
    /// and 127.0.0.1 (a mesh router's names its router id).
    pub fn signed_for(&self, ca: &Ca, file: &str, cn: &str, dns: &str) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![dns.to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
        let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
        Pair {
            cert: self.write(&format!("{file}.pem"), &cert_pem),
            key: self.write(&format!("{file}.key"), &key_pem),
            cert_pem,
            key_pem,
        }
    }
}

/// The `[mqtt.tls]` listener's address, from its start line (the router
/// must capture stderr).
pub fn tls_addr(weft: &super::Weft) -> std::net::SocketAddr {
    let line = weft.wait_for_log("mqtt tls listening on ");
    line.split("mqtt tls listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(|a| a.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != ':'))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// rumqttc options for the TLS listener on `port`, trusting `ca`, with
/// `client`'s certificate when given.
pub fn mqtt_tls(id: &str, port: u16, ca: &Ca, client: Option<&Pair>) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, "localhost", port);
    o.set_keep_alive(std::time::Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::tls(
        std::fs::read(&ca.path).unwrap(),
        client.map(|p| {
            (
                p.cert_pem.clone().into_bytes(),
                p.key_pem.clone().into_bytes(),
            )
        }),
        None,
    ));
    o
}
