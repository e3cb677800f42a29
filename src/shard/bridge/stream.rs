//! A link's byte stream: plain TCP, or TLS over it (`[mesh.tls]`), and the
//! TLS handshake and certificate check made before the hello.
//!
//! Owns: [`LinkStream`] and the TLS steps. Must not read or write frames
//! (the reader and writer do): the rest of the bridge sees one stream
//! whatever the transport, so a new one is added here alone.

use futures_lite::{AsyncRead, AsyncWrite};

use super::*;
use crate::mesh::tls;

/// A link's byte stream: plain TCP, or TLS over it (`[mesh.tls]`). The
/// reader and the writer task share it through a `RefCell`, borrowed only
/// inside one poll.
pub(super) enum LinkStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

pub(super) type LinkIo = RefCell<LinkStream>;

impl LinkStream {
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            LinkStream::Plain(s) => s.as_raw_fd(),
            LinkStream::Tls(s) => s.get_ref().0.as_raw_fd(),
        }
    }
}

impl AsyncRead for LinkStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_flush(cx),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LinkStream::Plain(s) => Pin::new(s).poll_close(cx),
            LinkStream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}

/// A TLS record's first bytes (content type 20–23, version 3.x): a peer
/// with `[mesh.tls]` talking to one without.
pub(super) fn looks_like_tls(bytes: &[u8]) -> bool {
    matches!(bytes, [0x14..=0x17, 0x03, ..])
}

/// Pushes out what TLS still holds of the last writes (nothing to do for
/// plain TCP).
pub(super) async fn flush(stream: &LinkIo) -> std::io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_flush(cx)).await
}
impl Bridge {
    /// The link's stream: the TCP connection itself, or (with
    /// `[mesh.tls]`) TLS over it once the handshake (bounded by
    /// `mesh.connect_timeout_ms`) has verified the peer's certificate.
    pub(super) async fn secure(
        &self,
        slot: &Slot,
        tcp: TcpStream,
        remote: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<LinkStream, String> {
        let Some(tls) = &self.tls else {
            return Ok(LinkStream::Plain(tcp));
        };
        let handshake = async {
            if slot.dialled {
                let ip = remote
                    .or(slot.remote.get())
                    .map(|a| a.ip())
                    .ok_or("no peer address")?;
                let connector = futures_rustls::TlsConnector::from(tls.client.clone());
                connector
                    .connect(tls.name_for(ip), tcp)
                    .await
                    .map(futures_rustls::TlsStream::Client)
            } else {
                let acceptor = futures_rustls::TlsAcceptor::from(tls.server.clone());
                acceptor
                    .accept(tcp)
                    .await
                    .map(futures_rustls::TlsStream::Server)
            }
            .map_err(|e| {
                let hint = match e.to_string() {
                    m if m.contains("InvalidContentType") => " (is the peer without [mesh.tls]?)",
                    _ => "",
                };
                format!("TLS handshake failed: {e}{hint}")
            })
        };
        let stream = futures_lite::future::or(handshake, async {
            glommio::timer::sleep(timeout).await;
            Err("no TLS handshake within mesh.connect_timeout_ms".to_string())
        })
        .await?;
        Ok(LinkStream::Tls(Box::new(stream)))
    }

    /// With `mesh.tls.router_id_in_cert`: the peer's certificate must name
    /// the router id its hello claimed.
    pub(super) fn check_cert(&self, stream: &LinkStream, peer: &str) -> Result<(), String> {
        let (Some(t), LinkStream::Tls(s)) = (&self.tls, stream) else {
            return Ok(());
        };
        if !t.router_id_in_cert {
            return Ok(());
        }
        let cert = s
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or("the peer presented no certificate")?;
        tls::check_router_id(cert, peer)
    }
}
