//! The bench client's byte stream: plain TCP, TLS over it (`--tls-ca`),
//! or WebSocket over TCP (`--ws`, a `ws://HOST:PORT/PATH` server), so that
//! one load tool measures brokers with and without TLS or WebSocket the
//! same way (perf/tls-compare.sh).
//!
//! Owns: connecting, the TLS client handshake (rustls, `ring` provider; for
//! NATS after the plain INFO, as NATS clients do) and blocking reads and
//! writes. Must not touch: protocol parsing (`wire`).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Ws(Box<super::ws::WsStream>),
}

/// The TLS client configuration trusting the CA certificates in `path`.
pub fn client_config(path: &str) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("--tls-ca {path}: {e}"))? {
        let cert = cert.map_err(|e| format!("--tls-ca {path}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("--tls-ca {path}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Stream {
    /// Connects to `addr`; with `tls`, runs the handshake (after reading
    /// the plain INFO line into `info` first when `info_first`, as a NATS
    /// server sends it), naming the server by the host part of `addr`.
    pub fn connect(
        addr: &str,
        tls: Option<&Arc<ClientConfig>>,
        info_first: bool,
        timeout: Duration,
        info: &mut Vec<u8>,
    ) -> io::Result<Stream> {
        if let Some(url) = addr.strip_prefix("ws://") {
            if tls.is_some() {
                return Err(io::Error::other(
                    "--ws with --tls-ca (wss) is not supported",
                ));
            }
            let ws = super::ws::WsStream::connect(url, !info_first, timeout)?;
            return Ok(Stream::Ws(Box::new(ws)));
        }
        let mut tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        let Some(tls) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        if info_first {
            // Byte by byte: nothing past the line may be consumed (the
            // server's TLS records follow it).
            let mut byte = [0u8; 1];
            while !info.ends_with(b"\r\n") {
                if tcp.read(&mut byte)? == 0 || info.len() > 64 * 1024 {
                    return Err(io::Error::other("no INFO line before TLS"));
                }
                info.push(byte[0]);
            }
        }
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::other(format!("server name '{host}': {e}")))?;
        let conn = ClientConnection::new(tls.clone(), name).map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(Stream::Tls(Box::new(s)))
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
            Stream::Ws(s) => s.tcp(),
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.tcp().shutdown(how)
    }

    /// Waits at most `timeout` (with the precision of a high-resolution
    /// timer, not the socket timeout's jiffies) for bytes to read; true if
    /// some may be there. Over TLS it only sleeps and answers true, as
    /// rustls may hold decrypted bytes that the socket no longer shows.
    pub fn wait_readable(&mut self, timeout: Duration) -> io::Result<bool> {
        use nix::poll::{ppoll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        match self {
            Stream::Plain(s) => {
                let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLIN)];
                let t = nix::sys::time::TimeSpec::from_duration(timeout);
                match ppoll(&mut fds, Some(t), None) {
                    Ok(n) => Ok(n > 0),
                    Err(nix::errno::Errno::EINTR) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
            Stream::Tls(_) => {
                std::thread::sleep(timeout);
                Ok(true)
            }
            Stream::Ws(s) => {
                if s.ready()? {
                    return Ok(true);
                }
                let mut fds = [PollFd::new(s.tcp().as_fd(), PollFlags::POLLIN)];
                let t = nix::sys::time::TimeSpec::from_duration(timeout);
                match ppoll(&mut fds, Some(t), None) {
                    Ok(n) => Ok(n > 0),
                    Err(nix::errno::Errno::EINTR) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A read that does not wait: `WouldBlock` when nothing is there.
    pub fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => {
                /// Linux `MSG_DONTWAIT`.
                const MSG_DONTWAIT: i32 = 0x40;
                // SAFETY: u8 and MaybeUninit<u8> have the same layout, and
                // recv only writes initialised bytes into it.
                let spare = unsafe { &mut *(buf as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
                socket2::SockRef::from(&*s).recv_with_flags(spare, MSG_DONTWAIT)
            }
            Stream::Tls(s) => {
                s.sock.set_nonblocking(true)?;
                let r = s.read(buf);
                s.sock.set_nonblocking(false)?;
                r
            }
            Stream::Ws(s) => s.read_now(buf),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Ws(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Ws(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Ws(_) => Ok(()),
        }
    }
}
