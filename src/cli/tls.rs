//! The TLS client configuration of `weft pub` / `weft sub`: the CA file,
//! the client certificate and key, or `--insecure`.
//!
//! Owns: reading the PEM files (one line naming the file when one is
//! wrong) and building a rustls `ClientConfig` with the `ring` provider
//! twice over: rumqttc 0.24 speaks rustls 0.22 (its re-exported
//! `tokio_rustls::rustls`), async-nats the project's 0.23. The two APIs
//! are the same for what is built here, so one macro writes both; no
//! aws-lc-rs. With none of the flags the client libraries' own defaults
//! (the system's roots) apply. Must not touch: connecting.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::check::TlsFiles;
use super::error::CliError;

fn certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let bad =
        |e: &dyn std::fmt::Display| CliError::runtime(format!("{flag} {}: {e}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"holds no PEM certificate"));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CliError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| CliError::runtime(format!("--key {}: {e}", path.display())))
}

macro_rules! client_config {
    ($module:ident, $rustls:path) => {
        pub mod $module {
            //! This rustls version's `ClientConfig` (see the parent module).
            use std::sync::Arc;

            use rustls::client::danger::{
                HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
            };
            use rustls::crypto::CryptoProvider;
            use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
            use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
            use $rustls as rustls;

            use super::super::check::TlsFiles;
            use super::super::error::CliError;

            pub fn config(files: &TlsFiles) -> Result<ClientConfig, CliError> {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let builder = ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| CliError::runtime(format!("TLS: {e}")))?;
                let builder = if files.insecure {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                } else {
                    let mut roots = RootCertStore::empty();
                    if let Some(path) = &files.cafile {
                        for cert in super::certificates(path, "--cafile")? {
                            roots.add(cert).map_err(|e| {
                                CliError::runtime(format!("--cafile {}: {e}", path.display()))
                            })?;
                        }
                    }
                    builder.with_root_certificates(roots)
                };
                match &files.cert_key {
                    Some((cert, key)) => builder
                        .with_client_auth_cert(
                            super::certificates(cert, "--cert")?,
                            super::private_key(key)?,
                        )
                        .map_err(|e| CliError::runtime(format!("--cert/--key: {e}"))),
                    None => Ok(builder.with_no_client_auth()),
                }
            }

            /// `--insecure`: every certificate passes; the handshake's
            /// signatures are still checked (they prove nothing without a
            /// checked certificate, but a broken peer still fails).
            #[derive(Debug)]
            struct AnyCertificate(Arc<CryptoProvider>);

            impl ServerCertVerifier for AnyCertificate {
                fn verify_server_cert(
                    &self,
                    _end_entity: &CertificateDer<'_>,
                    _intermediates: &[CertificateDer<'_>],
                    _server_name: &ServerName<'_>,
                    _ocsp_response: &[u8],
                    _now: UnixTime,
                ) -> Result<ServerCertVerified, rustls::Error> {
                    Ok(ServerCertVerified::assertion())
                }

                fn verify_tls12_signature(
                    &self,
                    message: &[u8],
                    cert: &CertificateDer<'_>,
                    dss: &DigitallySignedStruct,
                ) -> Result<HandshakeSignatureValid, rustls::Error> {
                    rustls::crypto::verify_tls12_signature(
                        message,
                        cert,
                        dss,
                        &self.0.signature_verification_algorithms,
                    )
                }

                fn verify_tls13_signature(
                    &self,
                    message: &[u8],
                    cert: &CertificateDer<'_>,
                    dss: &DigitallySignedStruct,
                ) -> Result<HandshakeSignatureValid, rustls::Error> {
                    rustls::crypto::verify_tls13_signature(
                        message,
                        cert,
                        dss,
                        &self.0.signature_verification_algorithms,
                    )
                }

                fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
                    self.0.signature_verification_algorithms.supported_schemes()
                }
            }
        }
    };
}

// rumqttc 0.24's rustls (0.22).
client_config!(mqtt, rumqttc::tokio_rustls::rustls);
// async-nats' rustls (0.23, the project's).
client_config!(nats, ::rustls);

/// The rumqttc transport for `files`.
pub fn mqtt_transport(files: &TlsFiles) -> Result<rumqttc::Transport, CliError> {
    if files.is_default() {
        return Ok(rumqttc::Transport::tls_with_default_config());
    }
    Ok(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(std::sync::Arc::new(mqtt::config(files)?)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_name_the_flag_and_the_file() {
        let files = TlsFiles {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        for err in [mqtt::config(&files).err(), nats::config(&files).err()] {
            match err {
                Some(CliError::Runtime(m)) => {
                    assert!(m.starts_with("--cafile /nonexistent/ca.pem: "), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        let dir = std::env::temp_dir().join(format!("weft-cli-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let files = TlsFiles {
            cafile: Some(empty.clone()),
            ..Default::default()
        };
        match nats::config(&files) {
            Err(CliError::Runtime(m)) => assert!(m.ends_with("holds no PEM certificate"), "{m}"),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn insecure_builds_for_both_versions() {
        let files = TlsFiles {
            insecure: true,
            ..Default::default()
        };
        assert!(mqtt::config(&files).is_ok());
        assert!(nats::config(&files).is_ok());
    }
}
