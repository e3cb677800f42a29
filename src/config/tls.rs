//! Loading the TLS material: the mesh's (`[mesh.tls]`; mutual
//! authentication against the mesh's own CA, see `mesh::tls` for what the
//! links do with it) and the client listeners' (`[mqtt.tls]`,
//! `[nats.tls]`; see `shard::transport_tls`). The PEM files are checked
//! at configuration time and turned into rustls configurations; a SIGHUP
//! loads them again the same way (a file that does not load keeps the
//! material in force).
//!
//! Owns: reading and checking the files, with errors that name the key.
//! Must not touch: sockets or handshakes. The `ring` provider is named
//! explicitly, so that another crate's process-wide default cannot change
//! what the mesh runs.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::{ClientAuth, ConfigError, MeshTlsConfig, TlsIdentity};

/// The checked TLS set-up of the mesh's links.
#[derive(Debug, Clone)]
pub struct MeshTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    /// The name a dialled peer's certificate must carry; None = the IP
    /// address dialled.
    pub server_name: Option<ServerName<'static>>,
    pub router_id_in_cert: bool,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client listener's checked TLS set-up: what its handshakes use, and
/// what a verified client certificate names.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub server: Arc<ServerConfig>,
    pub identity: TlsIdentity,
}

/// The keys of one client listener's TLS section, by their full names
/// (errors name them).
pub struct ClientTlsKeys<'a> {
    pub section: &'static str,
    pub cert: (&'static str, &'a str),
    pub key: (&'static str, &'a str),
    pub client_ca: (&'static str, &'a str),
    pub client_auth: (&'static str, ClientAuth),
    pub identity: (&'static str, TlsIdentity),
}

impl ClientTls {
    /// None when neither `cert` nor `key` is set (TLS off).
    pub fn load(k: &ClientTlsKeys<'_>) -> Result<Option<ClientTls>, ConfigError> {
        let (cert_key, cert_path) = k.cert;
        let (key_key, key_path) = k.key;
        let (ca_key, ca_path) = k.client_ca;
        if cert_path.is_empty() && key_path.is_empty() {
            if !ca_path.is_empty() {
                return Err(invalid(ca_key, format!("needs {cert_key} and {key_key}")));
            }
            return Ok(None);
        }
        for (name, value) in [k.cert, k.key] {
            if value.is_empty() {
                return Err(invalid(
                    name,
                    format!("TLS needs both {cert_key} and {key_key}"),
                ));
            }
        }
        let chain = certs(cert_key, cert_path)?;
        let key = private_key(key_key, key_path)?;
        let (auth_key, auth) = k.client_auth;
        let (identity_key, identity) = k.identity;
        let asks = !ca_path.is_empty() && auth != ClientAuth::None;
        if identity != TlsIdentity::None && !asks {
            return Err(invalid(
                identity_key,
                format!(
                    "a certificate identity needs {ca_key} and {auth_key} = optional or required"
                ),
            ));
        }
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(k.section, e.to_string()))?;
        // Read whenever set (even with client_auth = "none"), so that a
        // bad file is refused now, not when client_auth changes.
        let mut roots = RootCertStore::empty();
        if !ca_path.is_empty() {
            for ca in certs(ca_key, ca_path)? {
                roots
                    .add(ca)
                    .map_err(|e| invalid(ca_key, format!("'{ca_path}': {e}")))?;
            }
        }
        let builder = if asks {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| invalid(ca_key, e.to_string()))?,
            )
        } else {
            builder.with_no_client_auth()
        };
        let server = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid(key_key, format!("does not fit {cert_key}: {e}")))?;
        Ok(Some(ClientTls {
            server: Arc::new(server),
            identity,
        }))
    }
}

fn private_key(key: &'static str, path: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
            e => e.to_string(),
        };
        invalid(key, format!("'{path}': {why}"))
    })
}

fn certs(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(key, format!("cannot read '{path}': {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(key, format!("'{path}': {e}")))?;
    if certs.is_empty() {
        return Err(invalid(key, format!("'{path}' holds no PEM certificate")));
    }
    Ok(certs)
}

impl MeshTls {
    /// None when `[mesh.tls]` is not set (no `cert`, `key` or `ca`).
    pub fn load(c: &MeshTlsConfig) -> Result<Option<MeshTls>, ConfigError> {
        if c.cert.is_empty() && c.key.is_empty() && c.ca.is_empty() {
            return Ok(None);
        }
        for (key, value) in [
            ("mesh.tls.cert", &c.cert),
            ("mesh.tls.key", &c.key),
            ("mesh.tls.ca", &c.ca),
        ] {
            if value.is_empty() {
                return Err(invalid(
                    key,
                    "TLS on the mesh needs all of mesh.tls.cert, mesh.tls.key and mesh.tls.ca",
                ));
            }
        }
        let chain = certs("mesh.tls.cert", &c.cert)?;
        let key = private_key("mesh.tls.key", &c.key)?;
        let mut roots = RootCertStore::empty();
        for ca in certs("mesh.tls.ca", &c.ca)? {
            roots
                .add(ca)
                .map_err(|e| invalid("mesh.tls.ca", format!("'{}': {e}", c.ca)))?;
        }
        let roots = Arc::new(roots);
        let server_name = if c.server_name.is_empty() {
            None
        } else {
            Some(ServerName::try_from(c.server_name.clone()).map_err(|e| {
                invalid("mesh.tls.server_name", format!("'{}': {e}", c.server_name))
            })?)
        };
        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| invalid("mesh.tls.ca", e.to_string()))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("mesh.tls", e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid("mesh.tls.key", format!("does not fit mesh.tls.cert: {e}")))?;
        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots, provider())
            .build()
            .map_err(|e| invalid("mesh.tls.ca", e.to_string()))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("mesh.tls", e.to_string()))?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| invalid("mesh.tls.key", format!("does not fit mesh.tls.cert: {e}")))?;
        Ok(Some(MeshTls {
            server: Arc::new(server),
            client: Arc::new(client),
            server_name,
            router_id_in_cert: c.router_id_in_cert,
        }))
    }

    /// The name a dialled peer at `ip` must prove.
    pub fn name_for(&self, ip: IpAddr) -> ServerName<'static> {
        self.server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(ip.into()))
    }
}
