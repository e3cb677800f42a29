//! The admin endpoint's HTTP server: HTTP/1.x GET, one request per
//! connection (`Connection: close`), served one at a time on the admin
//! thread with plain std sockets; beside them, long-lived streams (the
//! web console's server-sent events, [`Reply::Stream`]) that the same
//! loop writes with non-blocking writes when poll says a socket has room,
//! so that no stream holds a request up (no thread per stream).
//!
//! Why our own and not a crate: the endpoint's one hard requirement is that
//! no error of its own can take the router down. tiny_http, used before,
//! clones every accepted socket and unwraps the result; out of file
//! descriptors the clone failed and, with `panic = "abort"`, the first
//! Prometheus scrape killed the whole router (issue 10). hyper would need a
//! tokio runtime on the admin thread and brings a large surface for three
//! GET routes. What is needed here is small: read a request line, answer
//! with a buffer, and treat every error as the end of one request, never
//! of the loop (accept errors are logged at most once per
//! `ERROR_LOG_INTERVAL`, with a count of the others, and retried after a
//! pause).
//!
//! Out of descriptors: the admin thread has a descriptor table of its own
//! ([`private_descriptor_table`]), so the shards running out of descriptors
//! (EMFILE: the limit counts per table) leaves the endpoint its own, and a
//! scrape still answers while the shards refuse connections, which is when
//! an operator needs the numbers most. A spare descriptor (/dev/null) is
//! also held in reserve, for when the table could not be made or the whole
//! system is out (ENFILE): accept failing, the reserve is closed to accept
//! that one request, and reopened after it (the trick of libuv and nginx).
//! A reserve alone loses a race now and then: between its close and the
//! accept, a shard retrying its own accept can take the freed slot (1 test
//! run in 9 did, tests/hardening.rs).
//!
//! Bounds: a request head (request line and headers) of at most
//! `admin.request_bytes_max` bytes (431 beyond); `admin.request_timeout_ms`
//! to send it and again to take the answer, so a slow client holds the
//! endpoint at most twice that (the streams wait meanwhile, their bytes
//! queued); request bodies are never read. At most
//! `admin.console_streams_max` streams (503 beyond), each closed once
//! `admin.console_stream_bytes_max` bytes wait for its client (`sse`). An
//! error on a stream ends that stream only.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::sse::Stream;

/// A parsed request line, and the one header the endpoint reads; the
/// others are read (to find the head's end) and ignored.
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent: path and query.
    pub target: &'a str,
    /// The `Authorization` header's value, if sent.
    pub authorization: Option<&'a str>,
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// What a request gets: one answer, or a stream kept open.
pub enum Reply {
    Full(Response),
    /// A `200` head with this content type and no length, then `first`,
    /// then the bytes [`Service::tick`] returns, until the client goes or
    /// does not read (see `sse`).
    Stream {
        content_type: &'static str,
        first: Vec<u8>,
    },
}

/// What the server runs: the requests' handler, and a clock for the
/// streams.
pub trait Service {
    fn handle(&mut self, request: &Request<'_>) -> Reply;
    /// Called on every turn of the loop (at least every
    /// `POLL_INTERVAL_MS`), with the number of streams open; what it
    /// returns is sent on every stream.
    fn tick(&mut self, now: Instant, streams: usize) -> Option<Vec<u8>>;
    /// When `tick` wants to run next, if sooner than the poll interval.
    fn wake_at(&self, streams: usize) -> Option<Instant>;
    /// A stream was closed on a send (its client too slow, or gone).
    fn stream_ended(&mut self, _why: super::sse::Ended) {}
    /// A stream was opened: `handle` replied [`Reply::Stream`], there was
    /// room for it, and its head went out (a refused one never gets here).
    fn stream_added(&mut self, _now: Instant) {}
}

/// A service of plain answers (no streams) from a function.
pub struct Plain<F>(pub F);

impl<F: FnMut(&Request<'_>) -> Response> Service for Plain<F> {
    fn handle(&mut self, request: &Request<'_>) -> Reply {
        Reply::Full((self.0)(request))
    }
    fn tick(&mut self, _: Instant, _: usize) -> Option<Vec<u8>> {
        None
    }
    fn wake_at(&self, _: usize) -> Option<Instant> {
        None
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub request_bytes_max: usize,
    pub timeout: Duration,
    /// Streams open at once (`admin.console_streams_max`); 503 beyond.
    pub streams_max: usize,
    /// Bytes a stream may have waiting (`admin.console_stream_bytes_max`).
    pub stream_bytes_max: usize,
}

/// How often the loop checks `stop` while no request comes.
const POLL_INTERVAL_MS: u16 = 100;
/// Pause after an accept error: running out of descriptors lasts, and
/// retrying at once would spin the admin thread on a core the shards use.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// At most one accept error line per interval; the others are counted.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Serves until `stop()` says so (checked every `POLL_INTERVAL_MS`).
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    stop: impl Fn() -> bool,
    mut service: impl Service,
) {
    if let Err(e) = listener.set_nonblocking(true) {
        // Still served: poll says when accept will not block.
        tracing::warn!(error = %e, "admin: listener not set non-blocking");
    }
    let mut reserve = open_reserve();
    let mut errors = ErrorLog::default();
    let mut streams: Vec<Stream> = Vec::new();
    while !stop() {
        let timeout = service
            .wake_at(streams.len())
            .map_or(Duration::from_millis(POLL_INTERVAL_MS.into()), |at| {
                at.saturating_duration_since(Instant::now())
            });
        let (incoming, ready) = match wait(&listener, &streams, timeout) {
            Ok(r) => r,
            Err(e) => {
                errors.log("admin: waiting for requests failed", &e);
                std::thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        streams = streams
            .into_iter()
            .zip(ready)
            .filter_map(|(s, flags)| s.turn(flags))
            .collect();
        if incoming {
            match accept(&listener, &mut reserve) {
                Ok(socket) => {
                    let room = streams.len() < limits.streams_max;
                    match answer(socket, limits, room, &mut service) {
                        Ok(Some(stream)) => {
                            streams.push(stream);
                            service.stream_added(Instant::now());
                        }
                        Ok(None) => {}
                        Err(e) => tracing::debug!(error = %e, "admin: request not answered"),
                    }
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    errors.log("admin: accept failed", &e);
                    std::thread::sleep(ACCEPT_ERROR_PAUSE);
                }
            }
        }
        if let Some(bytes) = service.tick(Instant::now(), streams.len()) {
            streams.retain_mut(|s| match s.send(&bytes) {
                Ok(()) => true,
                Err(ended) => {
                    service.stream_ended(ended);
                    false
                }
            });
        }
        // After the answer's socket is closed, so that its descriptor is
        // the one taken back.
        if reserve.is_none() {
            reserve = open_reserve();
        }
    }
}

/// Waits at most `timeout` for a request, or for a stream's socket to
/// have room (when it has bytes waiting), news or an error; returns
/// whether a request waits, and each stream's events.
fn wait(
    listener: &TcpListener,
    streams: &[Stream],
    timeout: Duration,
) -> io::Result<(bool, Vec<nix::poll::PollFlags>)> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = Vec::with_capacity(1 + streams.len());
    fds.push(PollFd::new(listener.as_fd(), PollFlags::POLLIN));
    for s in streams {
        let mut flags = PollFlags::POLLIN;
        if s.pending() > 0 {
            flags |= PollFlags::POLLOUT;
        }
        fds.push(PollFd::new(s.as_fd(), flags));
    }
    // Whole milliseconds, rounded up: a wake-up due in 0.4 ms must not
    // spin with a zero timeout.
    let ms = timeout
        .as_micros()
        .div_ceil(1000)
        .min(u128::from(POLL_INTERVAL_MS)) as u16;
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => {
            return Ok((false, vec![PollFlags::empty(); streams.len()]))
        }
        Err(e) => return Err(e.into()),
    }
    let revents: Vec<PollFlags> = fds
        .iter()
        .map(|f| f.revents().unwrap_or(PollFlags::empty()))
        .collect();
    Ok((
        revents[0].contains(PollFlags::POLLIN),
        revents[1..].to_vec(),
    ))
}

/// Gives the calling thread a descriptor table of its own holding only
/// stdin, stdout and stderr (Rust's runtime keeps those three open), so
/// that the shards' descriptors and this thread's are counted apart, and
/// no copy held here keeps a shard's socket open after the shard closes
/// it. Signals are blocked on this thread first: a handler run here
/// (signal-hook writes to a pipe) would find another file, or none, under
/// its pipe's descriptor number.
pub fn private_descriptor_table() -> io::Result<()> {
    use nix::sys::resource::{getrlimit, Resource};
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES)?;
    // From here on every descriptor number above 2 is a copy: close them
    // all. /proc/thread-self, not /proc/self (the main thread's table).
    let copies: Vec<i32> = match std::fs::read_dir("/proc/thread-self/fd") {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => {
            let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1 << 20, 1 << 20));
            (3..soft.min(1 << 20) as i32).collect()
        }
    };
    for fd in copies.into_iter().filter(|fd| *fd > 2) {
        // The directory's own descriptor is closed already: EBADF.
        let _ = nix::unistd::close(fd);
    }
    Ok(())
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

fn accept(listener: &TcpListener, reserve: &mut Option<File>) -> io::Result<TcpStream> {
    let stream = match listener.accept() {
        Err(e) if out_of_descriptors(&e) && reserve.is_some() => {
            drop(reserve.take());
            listener.accept()
        }
        other => other,
    }?
    .0;
    // Accepted sockets do not inherit O_NONBLOCK on Linux; make sure, as
    // the reads and writes below rely on timeouts.
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn out_of_descriptors(e: &io::Error) -> bool {
    use nix::errno::Errno;
    e.raw_os_error()
        .is_some_and(|code| code == Errno::EMFILE as i32 || code == Errno::ENFILE as i32)
}

/// Accept errors that concern one connection only (or none).
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, what: &str, e: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < ERROR_LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "{what}; retrying");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Reads one request head and answers it: a full answer closes the
/// connection; a stream is handed back (`room`: whether one more may
/// open, 503 otherwise).
fn answer(
    mut socket: TcpStream,
    limits: Limits,
    room: bool,
    service: &mut impl Service,
) -> io::Result<Option<Stream>> {
    let mut head = Vec::with_capacity(limits.request_bytes_max.min(1024));
    let deadline = Instant::now() + limits.timeout;
    let reply = match read_head(&mut socket, &mut head, limits.request_bytes_max, deadline)? {
        Some(len) => match parse(&head[..len]) {
            Ok(request) => service.handle(&request),
            Err(reason) => Reply::Full(text(400, reason)),
        },
        None => Reply::Full(text(431, "request head too long")),
    };
    let (out, stream) = match reply {
        Reply::Full(response) => (encode(&response), None),
        Reply::Stream { .. } if !room => (
            encode(&text(
                503,
                "too many event streams open (admin.console_streams_max)",
            )),
            None,
        ),
        Reply::Stream {
            content_type,
            first,
        } => (
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            Some(first),
        ),
    };
    // The handler may have taken a while (views wait for the shards): a
    // fresh allowance for the answer.
    write_all(&mut socket, &out, Instant::now() + limits.timeout)?;
    let Some(first) = stream else {
        socket.shutdown(Shutdown::Write)?;
        return Ok(None);
    };
    socket.set_nonblocking(true)?;
    let mut s = Stream::new(socket, limits.stream_bytes_max);
    Ok(s.send(&first).is_ok().then_some(s))
}

/// Fills `head` until it holds a blank line: `Some(head length)`, or
/// `None` when `max` bytes came without one.
fn read_head(
    stream: &mut TcpStream,
    head: &mut Vec<u8>,
    max: usize,
    deadline: Instant,
) -> io::Result<Option<usize>> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(head) {
            return Ok(Some(end));
        }
        if head.len() >= max {
            return Ok(None);
        }
        stream.set_read_timeout(Some(time_left(deadline)?))?;
        let want = chunk.len().min(max - head.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The length of the head up to and including its blank line (CRLF CRLF,
/// or LF LF from a lenient client).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
}

fn parse(head: &[u8]) -> Result<Request<'_>, &'static str> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| "request line is not UTF-8")?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if !version.starts_with("HTTP/1.") {
        return Err("only HTTP/1.x");
    }
    if method.is_empty() || !target.starts_with('/') {
        return Err("malformed request line");
    }
    let mut authorization = None;
    for line in head[line_end..].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"authorization") {
            let value = std::str::from_utf8(&line[colon + 1..])
                .map_err(|_| "Authorization header is not UTF-8")?;
            authorization = Some(value.trim());
        }
    }
    Ok(Request {
        method,
        target,
        authorization,
    })
}

fn text(status: u16, reason: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        body: format!("{reason}\n").into_bytes(),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn encode(response: &Response) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n{}\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len(),
        match response.status {
            405 => "Allow: GET\r\n",
            401 => "WWW-Authenticate: Bearer realm=\"weft\"\r\n",
            _ => "",
        },
    )
    .into_bytes();
    out.extend_from_slice(&response.body);
    out
}

fn write_all(stream: &mut TcpStream, mut out: &[u8], deadline: Instant) -> io::Result<()> {
    while !out.is_empty() {
        stream.set_write_timeout(Some(time_left(deadline)?))?;
        match stream.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out = &out[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Time until `deadline`, never zero (a zero socket timeout is an error).
fn time_left(deadline: Instant) -> io::Result<Duration> {
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(left),
        _ => Err(io::ErrorKind::TimedOut.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn request_lines() {
        let r = parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!((r.method, r.target), ("GET", "/metrics?x=1"));
        assert!(parse(b"GET /metrics HTTP/1.0\n\n").is_ok());
        assert!(parse(b"GET /metrics\r\n\r\n").is_err());
        assert!(parse(b"GET  /metrics HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GET metrics HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GET /metrics HTTP/2\r\n\r\n").is_err());
        assert!(parse(b"GET /\xff HTTP/1.1\r\n\r\n").is_err());
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        let r = parse(b"GET / HTTP/1.1\r\nHost: a\r\nauthorization:  Bearer x y \r\n\r\n").unwrap();
        assert_eq!(r.authorization, Some("Bearer x y"));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .authorization,
            None
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    }

    /// A server on a real socket: answers, refuses what it must, and keeps
    /// serving after a client that sends nothing.
    #[test]
    fn serves_and_survives_bad_clients() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            request_bytes_max: 256,
            timeout: Duration::from_millis(200),
            streams_max: 1,
            stream_bytes_max: 1024,
        };
        let server = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                serve(
                    listener,
                    limits,
                    || stop.load(Ordering::Relaxed),
                    Plain(|r: &Request<'_>| Response {
                        status: 200,
                        content_type: "text/plain",
                        body: format!("{} {}", r.method, r.target).into_bytes(),
                    }),
                )
            })
        };
        let exchange = |request: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(request).unwrap();
            let mut answer = String::new();
            s.read_to_string(&mut answer).unwrap();
            answer
        };
        let ok = exchange(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        assert!(ok.contains("Connection: close\r\n"), "{ok}");
        // Answers may carry the token in their query: never cached.
        assert!(ok.contains("Cache-Control: no-store\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nGET /a?b=1"), "{ok}");
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(300));
        assert!(exchange(long.as_bytes()).starts_with("HTTP/1.1 431 "));
        assert!(exchange(b"hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
        // Silent clients time out without an answer; the next is served.
        let silent = TcpStream::connect(addr).unwrap();
        let half = TcpStream::connect(addr).unwrap();
        (&half).write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let after = exchange(b"GET /after HTTP/1.0\r\n\r\n");
        assert!(after.ends_with("GET /after"), "{after}");
        drop((silent, half));
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    /// Streams on `/s`: every turn sends `chunk` bytes to each, and
    /// records how many are open.
    struct Firehose {
        open: Arc<std::sync::atomic::AtomicUsize>,
        added: Arc<std::sync::atomic::AtomicUsize>,
        slow: Arc<std::sync::atomic::AtomicUsize>,
        chunk: usize,
    }

    impl Service for Firehose {
        fn handle(&mut self, r: &Request<'_>) -> Reply {
            if r.target == "/s" {
                Reply::Stream {
                    content_type: "text/event-stream",
                    first: b": hi\n\n".to_vec(),
                }
            } else {
                Reply::Full(text(200, "plain"))
            }
        }
        fn tick(&mut self, _: Instant, streams: usize) -> Option<Vec<u8>> {
            self.open.store(streams, Ordering::Relaxed);
            (streams > 0).then(|| vec![b'x'; self.chunk])
        }
        fn wake_at(&self, streams: usize) -> Option<Instant> {
            (streams > 0).then(|| Instant::now() + Duration::from_millis(1))
        }
        fn stream_ended(&mut self, why: crate::admin::sse::Ended) {
            if why == crate::admin::sse::Ended::Slow {
                self.slow.fetch_add(1, Ordering::Relaxed);
            }
        }
        fn stream_added(&mut self, _: Instant) {
            self.added.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A stream whose client reads keeps going; one whose client never
    /// reads is closed at its bound; one beyond `streams_max` is refused
    /// 503; plain requests are answered all along.
    #[test]
    fn streams_are_bounded_and_do_not_block_requests() {
        const WAIT: Duration = Duration::from_secs(20);
        const WAIT_POLLS: u32 = 4000;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let slow = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let added = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let limits = Limits {
            request_bytes_max: 256,
            timeout: Duration::from_millis(500),
            streams_max: 2,
            stream_bytes_max: 64 * 1024,
        };
        let server = {
            let (stop, open, slow, added) =
                (stop.clone(), open.clone(), slow.clone(), added.clone());
            std::thread::spawn(move || {
                serve(
                    listener,
                    limits,
                    || stop.load(Ordering::Relaxed),
                    Firehose {
                        open,
                        added,
                        slow,
                        chunk: 16 * 1024,
                    },
                )
            })
        };
        let open_stream = || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /s HTTP/1.1\r\n\r\n").unwrap();
            s
        };
        let head_of = |s: &mut TcpStream| {
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while head_end(&head).is_none() {
                assert_eq!(s.read(&mut b).unwrap(), 1, "{head:?}");
                head.push(b[0]);
            }
            String::from_utf8(head).unwrap()
        };
        // Polls a bounded number of times, not against a clock.
        let wait_for = |what: &str, cond: &dyn Fn() -> bool| {
            for _ in 0..WAIT_POLLS {
                if cond() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("{what}: not after {WAIT_POLLS} polls");
        };
        // A reader: drains its stream on a thread of its own.
        let mut reader = open_stream();
        let head = head_of(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/event-stream\r\n"),
            "{head}"
        );
        let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let reading = {
            let got = got.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.fetch_add(n, Ordering::Relaxed);
                }
            })
        };
        // A stream that never reads after its head.
        let mut stalled = open_stream();
        assert!(head_of(&mut stalled).starts_with("HTTP/1.1 200 "));
        wait_for("two streams", &|| open.load(Ordering::Relaxed) == 2);
        // A third is refused while both are open.
        let mut third = open_stream();
        let mut answer = String::new();
        third.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
        assert_eq!(
            added.load(Ordering::Relaxed),
            2,
            "a refused stream is not added"
        );
        // The stalled one fills its socket, then its bound: closed.
        wait_for("the stalled stream closed", &|| {
            open.load(Ordering::Relaxed) == 1
        });
        assert_eq!(slow.load(Ordering::Relaxed), 1, "closed as too slow");
        stalled.set_read_timeout(Some(WAIT)).unwrap();
        let mut sink = Vec::new();
        let end = stalled.read_to_end(&mut sink);
        assert!(
            end.is_ok()
                || end
                    .as_ref()
                    .is_err_and(|e| e.kind() != io::ErrorKind::WouldBlock),
            "the stalled stream ends: {end:?}"
        );
        // The reader still gets bytes, and plain requests are answered.
        let before = got.load(Ordering::Relaxed);
        wait_for("the reader reads on", &|| {
            got.load(Ordering::Relaxed) > before + 64 * 1024
        });
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.write_all(b"GET /p HTTP/1.0\r\n\r\n").unwrap();
        let mut answer = String::new();
        plain.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("plain\n"),
            "{answer}"
        );
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        // The server's end closed the reader's stream.
        reading.join().unwrap();
    }
}
