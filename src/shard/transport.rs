//! The transport seam: the byte stream a connection driver reads and writes
//! through. Plain TCP (this file) is one implementation; an in-memory pipe
//! (`transport_mem.rs`) is another, for the driver's tests; TLS
//! (`transport_tls.rs`) is a third; WebSocket (`transport_ws.rs`) and a
//! `weft-shm` client's shared-memory rings (`transport_shm.rs`) are two
//! more.
//!
//! Owns: the socket calls of one connection (read, write, half-close,
//! reset-on-close, addresses). Must not touch: protocol formats, sessions.
//! Shared by `&self` (interior mutability) because a connection's reader
//! and writer run as two tasks on one executor.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// A connection's byte stream, as the driver and the writer task use it.
/// Reads and writes follow `AsyncRead`/`AsyncWrite`: `Ok(0)` from a read
/// is the end of the stream; `ErrorKind::TimedOut` is a read timeout.
pub trait Transport: 'static {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>>;
    /// Pushes out what the transport itself still holds of the writes
    /// (TLS records); a plain socket holds nothing. Called once per batch.
    #[inline]
    fn poll_flush(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    /// Half-close: no more writes; the peer reads the end of the stream.
    fn shutdown_write(&self);
    /// The coming close resets the connection instead of draining what the
    /// kernel still holds for a peer that does not read.
    fn reset_on_close(&self);
    fn peer_addr(&self) -> Option<SocketAddr>;
    fn local_addr(&self) -> Option<SocketAddr>;
    /// The name a verified client certificate gives the peer (per the
    /// listener's `tls.identity`), for authentication; None without one.
    fn peer_identity(&self) -> Option<std::rc::Rc<str>> {
        None
    }
}

impl<T: Transport> Transport for std::rc::Rc<T> {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        (**self).poll_read(cx, buf)
    }
    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        (**self).poll_write(cx, buf)
    }
    #[inline]
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_flush(cx)
    }
    fn shutdown_write(&self) {
        (**self).shutdown_write()
    }
    fn reset_on_close(&self) {
        (**self).reset_on_close()
    }
    fn peer_addr(&self) -> Option<SocketAddr> {
        (**self).peer_addr()
    }
    fn local_addr(&self) -> Option<SocketAddr> {
        (**self).local_addr()
    }
    fn peer_identity(&self) -> Option<std::rc::Rc<str>> {
        (**self).peer_identity()
    }
}

/// Plain TCP: a glommio stream. (A `RefCell` so that reader and writer
/// share it; each borrow lasts one poll.)
pub type Tcp = RefCell<TcpStream>;

fn with_socket<R>(stream: &Tcp, f: impl FnOnce(socket2::SockRef<'_>) -> R) -> R {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let fd = stream.borrow().as_raw_fd();
    // SAFETY: the fd stays open while `stream` lives (it owns it).
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&borrowed))
}

impl Transport for Tcp {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.borrow_mut()).poll_read(cx, buf)
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.borrow_mut()).poll_write(cx, buf)
    }

    fn shutdown_write(&self) {
        with_socket(self, |s| {
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
    }

    fn reset_on_close(&self) {
        with_socket(self, |s| {
            let _ = s.set_linger(Some(std::time::Duration::ZERO));
        });
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        self.borrow().peer_addr().ok()
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        self.borrow().local_addr().ok()
    }
}

/// Applies `[socket]` options to an accepted TCP connection.
pub fn configure(stream: &TcpStream, socket: &crate::config::SocketConfig) {
    use std::os::fd::{AsRawFd, BorrowedFd};
    let _ = stream.set_nodelay(socket.tcp_nodelay);
    // SAFETY: the fd stays open while `stream` is borrowed here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let sock = socket2::SockRef::from(&borrowed);
    if socket.send_buffer_bytes > 0 {
        let _ = sock.set_send_buffer_size(socket.send_buffer_bytes);
    }
    if socket.recv_buffer_bytes > 0 {
        let _ = sock.set_recv_buffer_size(socket.recv_buffer_bytes);
    }
}
