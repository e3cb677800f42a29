//! The handshake over the Unix stream socket: the client's hello line, the
//! router's `OK {ring_bytes}` with the memfd and the two eventfds
//! (SCM_RIGHTS), or `ERR {reason}`.
//!
//! Owns: the lines and the descriptor passing, both sides. Must not
//! touch: the rings. Bounds: a hello line is at most [`HELLO_BYTES_MAX`];
//! a reply at most [`REPLY_BYTES_MAX`].
//!
//! The socket stays open for the connection's life and carries nothing
//! else: its close tells each side that the other is gone (a client killed
//! with `kill -9` included).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::Dialect;

/// The longest hello line the router reads.
pub const HELLO_BYTES_MAX: usize = 64;
/// The longest reply line the client reads.
pub const REPLY_BYTES_MAX: usize = 256;

/// The client's hello line.
pub fn hello(dialect: Dialect) -> String {
    format!("WEFT-SHM 1 {}\n", dialect.name())
}

/// Parses a hello line (with or without its `\n`).
pub fn parse_hello(line: &[u8]) -> Result<Dialect, String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = std::str::from_utf8(line).map_err(|_| "hello is not UTF-8".to_string())?;
    let mut words = line.split(' ');
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some("WEFT-SHM"), Some("1"), Some(dialect), None) => match dialect {
            "nats" => Ok(Dialect::Nats),
            "mqtt" => Ok(Dialect::Mqtt),
            other => Err(format!("unknown dialect {other:?} (nats or mqtt)")),
        },
        (Some("WEFT-SHM"), Some(version), _, _) => {
            Err(format!("unsupported version {version:?} (1)"))
        }
        _ => Err("expected \"WEFT-SHM 1 {nats|mqtt}\"".to_string()),
    }
}

/// The descriptors the router hands over.
pub struct Handed {
    pub memfd: OwnedFd,
    pub to_router: OwnedFd,
    pub to_client: OwnedFd,
}

/// Router side: sends `OK {ring_bytes}` with the three descriptors in one
/// message. The socket may be non-blocking: the message is small and the
/// socket fresh; a short or refused send is an error.
pub fn send_ok(sock: RawFd, ring_bytes: u64, fds: [RawFd; 3]) -> std::io::Result<()> {
    let line = format!("OK {ring_bytes}\n");
    let iov = [IoSlice::new(line.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let n = sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
    if n != line.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "short handshake send",
        ));
    }
    Ok(())
}

/// Router side: the refusal line (the caller closes after it).
pub fn err_line(reason: &str) -> String {
    let reason: String = reason.chars().filter(|c| *c != '\n').take(200).collect();
    format!("ERR {reason}\n")
}

/// Client side: sends the hello line whole, without raising SIGPIPE if the router
/// already closed the socket.
pub fn send_hello(sock: &std::os::unix::net::UnixStream, dialect: Dialect) -> std::io::Result<()> {
    let line = hello(dialect);
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        match nix::sys::socket::send(sock.as_raw_fd(), rest, MsgFlags::MSG_NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a failed send means the router closed its end (its reply, if
/// any, is still readable).
pub fn peer_gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// Client side: reads the router's reply (blocking), returning the ring
/// size and the descriptors, or the router's reason.
pub fn recv_reply(sock: &std::os::unix::net::UnixStream) -> Result<(u64, Handed), crate::Error> {
    let mut line = [0u8; REPLY_BYTES_MAX];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 3]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut line)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| crate::Error::Io(e.into()))?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().map_err(|e| crate::Error::Io(e.into()))? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel installed these descriptors for us.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    let text = std::str::from_utf8(&line[..n])
        .map_err(|_| crate::Error::Handshake("reply is not UTF-8".into()))?;
    let text = text.trim_end_matches('\n');
    if n == 0 {
        return Err(crate::Error::Handshake(
            "the router closed the socket".into(),
        ));
    }
    if let Some(reason) = text.strip_prefix("ERR ") {
        return Err(crate::Error::Refused(reason.to_string()));
    }
    let ring_bytes: u64 = text
        .strip_prefix("OK ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| crate::Error::Handshake(format!("unexpected reply {text:?}")))?;
    let mut fds = fds.into_iter();
    match (fds.next(), fds.next(), fds.next(), fds.next()) {
        (Some(memfd), Some(to_router), Some(to_client), None) => Ok((
            ring_bytes,
            Handed {
                memfd,
                to_router,
                to_client,
            },
        )),
        _ => Err(crate::Error::Handshake(
            "expected three descriptors with OK".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects() {
        assert_eq!(
            parse_hello(hello(Dialect::Nats).as_bytes()),
            Ok(Dialect::Nats)
        );
        assert_eq!(
            parse_hello(hello(Dialect::Mqtt).as_bytes()),
            Ok(Dialect::Mqtt)
        );
        assert!(parse_hello(b"WEFT-SHM 2 nats\n")
            .unwrap_err()
            .contains("version"));
        assert!(parse_hello(b"WEFT-SHM 1 amqp\n")
            .unwrap_err()
            .contains("dialect"));
        assert!(parse_hello(b"GET / HTTP/1.1\n").is_err());
        assert!(parse_hello(b"WEFT-SHM 1 nats extra\n").is_err());
    }

    #[test]
    fn descriptors_cross_a_socketpair() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (memfd, _seg) = crate::segment::Segment::create(4096).unwrap();
        let e1 = crate::doorbell::create().unwrap();
        let e2 = crate::doorbell::create().unwrap();
        send_ok(
            a.as_raw_fd(),
            4096,
            [memfd.as_raw_fd(), e1.as_raw_fd(), e2.as_raw_fd()],
        )
        .unwrap();
        let (ring_bytes, handed) = recv_reply(&b).unwrap();
        assert_eq!(ring_bytes, 4096);
        crate::segment::Segment::open(&handed.memfd, 4096).expect("the client maps and checks it");
        assert!(crate::segment::Segment::open(&handed.memfd, 8192).is_err());
        use std::io::Write;
        (&a).write_all(err_line("shm.connections_max reached").as_bytes())
            .unwrap();
        match recv_reply(&b) {
            Err(crate::Error::Refused(r)) => assert_eq!(r, "shm.connections_max reached"),
            other => panic!("{:?}", other.map(|r| r.0)),
        }
    }

    /// A router that refused and closed before the hello came: the hello
    /// fails (EPIPE, no SIGPIPE) and the refusal is still read.
    #[test]
    fn a_refusal_is_read_after_the_hello_met_a_closed_socket() {
        use std::io::Write;
        let (client, router) = std::os::unix::net::UnixStream::pair().unwrap();
        (&router)
            .write_all(err_line("shm.connections_max reached").as_bytes())
            .unwrap();
        drop(router);
        let e = send_hello(&client, Dialect::Nats).expect_err("the router is gone");
        assert!(peer_gone(&e), "{e}");
        match recv_reply(&client) {
            Err(crate::Error::Refused(r)) => assert_eq!(r, "shm.connections_max reached"),
            other => panic!("{:?}", other.map(|r| r.0)),
        }
    }
}
