//! Loading the mesh's TLS material (`[mesh.tls]`): the PEM files, checked
//! at configuration time, turned into the rustls configurations of the
//! links (mutual authentication against the mesh's own CA; see
//! `mesh::tls` for what the links do with it).
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

use super::{ConfigError, MeshTlsConfig};

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
        let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| {
            let why = match e {
                rustls::pki_types::pem::Error::NoItemsFound => "holds no PEM private key".into(),
                e => e.to_string(),
            };
            invalid("mesh.tls.key", format!("'{}': {why}", c.key))
        })?;
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
