//! TLS on a client connection: rustls (through futures-rustls) over the
//! accepted glommio stream, one more implementation of [`Transport`]. The
//! MQTT TLS listener and the NATS upgrade (`tls_accept`) run the same
//! sessions and driver over it as over plain TCP.
//!
//! Owns: the server handshake (bounded by the caller's deadline), the
//! stream of one TLS connection, and the name a verified client
//! certificate gives the peer (`tls.identity`: the subject's CN, or the
//! first DNS or email subject alternative name). Must not touch: protocol
//! formats, sessions, authentication (it only offers the name, through
//! [`Transport::peer_identity`]). rustls does the protocol; nothing here
//! is hand-written cryptography.
//!
//! Costs: rustls holds a record buffer each way (~16 KiB when busy) per
//! connection; its outgoing plaintext is bounded by rustls' buffer limit
//! (64 KiB), past which writes wait like a full socket. The driver flushes
//! once per write batch (`poll_flush`), so a batch is one or a few records.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::pki_types::CertificateDer;
use rustls::ServerConfig;

use super::transport::Transport;
use crate::config::TlsIdentity;

/// One TLS connection, shared by the driver and its writer task (each
/// borrow lasts one poll, as for plain TCP).
pub struct Tls {
    stream: RefCell<TlsStream<TcpStream>>,
    fd: RawFd,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    identity: Option<Rc<str>>,
}

/// Why a handshake did not give a connection.
#[derive(Debug)]
pub enum HandshakeError {
    /// Not finished within the deadline (the CONNECT deadline).
    TimedOut,
    /// rustls refused (bad or missing client certificate, no common
    /// version or cipher, not TLS at all) or the peer went away.
    Failed(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::TimedOut => write!(f, "no TLS handshake within the CONNECT deadline"),
            HandshakeError::Failed(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

impl Tls {
    /// Runs the server handshake on `tcp` within `deadline`; the peer's
    /// verified certificate (if any) is mapped to a name per `identity`.
    pub async fn accept(
        tcp: TcpStream,
        server: Arc<ServerConfig>,
        identity: TlsIdentity,
        deadline: Duration,
    ) -> Result<Tls, HandshakeError> {
        let fd = tcp.as_raw_fd();
        let peer = tcp.peer_addr().ok();
        let local = tcp.local_addr().ok();
        let handshake = async {
            futures_rustls::TlsAcceptor::from(server)
                .accept(tcp)
                .await
                .map_err(HandshakeError::Failed)
        };
        let stream = futures_lite::future::or(handshake, async {
            glommio::timer::sleep(deadline).await;
            Err(HandshakeError::TimedOut)
        })
        .await?;
        let identity = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| certificate_name(cert, identity))
            .map(Rc::from);
        Ok(Tls {
            stream: RefCell::new(stream),
            fd,
            peer,
            local,
            identity,
        })
    }

    fn with_socket<R>(&self, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
        // SAFETY: the fd stays open while `self` lives (its stream owns it).
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        f(socket2::SockRef::from(&borrowed))
    }
}

impl Transport for Tls {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, buf)
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, buf)
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_flush(cx)
    }

    fn shutdown_write(&self) {
        // close_notify, pushed out if the socket takes it now (the last
        // words before it were flushed by the caller), then the TCP
        // half-close the peer reads as the end of the stream.
        {
            let mut stream = self.stream.borrow_mut();
            stream.get_mut().1.send_close_notify();
            let mut cx = Context::from_waker(std::task::Waker::noop());
            let _ = Pin::new(&mut *stream).poll_flush(&mut cx);
        }
        self.with_socket(|s| {
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
    }

    fn reset_on_close(&self) {
        self.with_socket(|s| {
            let _ = s.set_linger(Some(Duration::ZERO));
        });
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    fn peer_identity(&self) -> Option<Rc<str>> {
        self.identity.clone()
    }
}

/// The name `cert` gives its holder per `identity`: the subject's common
/// name, or the first DNS name (else the first email address) among the
/// subject alternative names. None when the certificate has none, or
/// `identity` is `none`. Called on certificates the handshake verified.
pub fn certificate_name(cert: &CertificateDer<'_>, identity: TlsIdentity) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};
    if identity == TlsIdentity::None {
        return None;
    }
    let (_, cert) = X509Certificate::from_der(cert.as_ref()).ok()?;
    let name = match identity {
        TlsIdentity::None => None,
        TlsIdentity::Cn => cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        TlsIdentity::San => {
            let san = cert.subject_alternative_name().ok()??;
            let names = &san.value.general_names;
            let dns = names.iter().find_map(|n| match n {
                GeneralName::DNSName(d) => Some(*d),
                _ => None,
            });
            let email = || {
                names.iter().find_map(|n| match n {
                    GeneralName::RFC822Name(e) => Some(*e),
                    _ => None,
                })
            };
            dns.or_else(email).map(str::to_owned)
        }
    };
    name.filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &str, sans: &[rcgen::SanType]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if !cn.is_empty() {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.subject_alt_names = sans.to_vec();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn dns(name: &str) -> rcgen::SanType {
        rcgen::SanType::DnsName(name.try_into().unwrap())
    }

    fn email(name: &str) -> rcgen::SanType {
        rcgen::SanType::Rfc822Name(name.try_into().unwrap())
    }

    /// A real handshake on a loopback socket: the server side's
    /// transport names the peer by its verified certificate.
    #[test]
    fn a_verified_client_certificate_names_the_peer() {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        let provider = || Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let leaf = |cn: &str, dns: &str| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(vec![dns.to_string()]).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (vec![cert.der().clone()], key)
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let roots = Arc::new(roots);
        let (server_chain, server_key) = leaf("server", "localhost");
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .unwrap();
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_chain, server_key)
            .unwrap();
        let (client_chain, client_key) = leaf("alice", "alice.example");
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(client_chain, client_key)
            .unwrap();
        let server = Arc::new(server);
        let client = Arc::new(client);
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                for (identity, expected) in [
                    (TlsIdentity::Cn, Some("alice")),
                    (TlsIdentity::San, Some("alice.example")),
                    (TlsIdentity::None, None),
                ] {
                    let dial = async {
                        let tcp = TcpStream::connect(addr).await.unwrap();
                        let name = ServerName::try_from("localhost").unwrap();
                        futures_rustls::TlsConnector::from(client.clone())
                            .connect(name, tcp)
                            .await
                            .unwrap()
                    };
                    let accept = async {
                        let tcp = listener.accept().await.unwrap();
                        Tls::accept(tcp, server.clone(), identity, Duration::from_secs(20))
                            .await
                            .unwrap()
                    };
                    let (_client, tls) = futures_lite::future::zip(dial, accept).await;
                    assert_eq!(tls.peer_identity().as_deref(), expected);
                    assert_eq!(tls.local_addr(), Some(addr));
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn common_name_or_first_san_names_the_holder() {
        let c = cert("alice", &[email("bob@example.com"), dns("carol.example")]);
        assert_eq!(
            certificate_name(&c, TlsIdentity::Cn).as_deref(),
            Some("alice")
        );
        // A DNS name wins over an email address that comes first.
        assert_eq!(
            certificate_name(&c, TlsIdentity::San).as_deref(),
            Some("carol.example")
        );
        let c = cert("", &[email("bob@example.com")]);
        assert_eq!(
            certificate_name(&c, TlsIdentity::San).as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(certificate_name(&c, TlsIdentity::Cn), None);
        assert_eq!(certificate_name(&c, TlsIdentity::None), None);
        let c = cert("dave", &[]);
        assert_eq!(certificate_name(&c, TlsIdentity::San), None);
    }
}
