//! `weft-load`: a small MQTT 3.1.1 load generator (std threads, blocking
//! sockets, no async), built to cost less CPU than the broker it measures.
//!
//! Throughput mode (the default): `--subscribers` connect, SUBSCRIBE to
//! `--topic` and wait for SUBACK; then `--publishers` each send `--messages`
//! PUBLISHes as fast as they can. Publishers pre-encode a 64 KiB batch of
//! packets once and write it again and again (patching packet ids for QoS 1),
//! so that sending costs little more than the `write` syscalls; QoS 1 keeps a
//! bounded window of unacknowledged PUBLISHes (`--window`). Subscribers count
//! PUBLISH packets (answering PUBACK for QoS 1) until they have
//! publishers × messages or nothing arrived for `--quiet-ms`. A final line
//! `RESULT key=value ...` is meant for scripts (perf/compare-mqtt.sh).
//!
//! Hold modes, for memory measurements (perf/memory.sh): `--hold-idle N`
//! opens N connections (CONNECT, CONNACK, keep-alive 0) and stays idle;
//! `--hold-subs N --hold-conns C` subscribes C connections to N distinct
//! filters in total (`site/{i/1000}/dev/{i%1000}/temp`, 64 per SUBSCRIBE).
//! Both print `READY` and then wait until stdin is closed.
//!
//! Packets are encoded with `weft::mqtt::codec::{encode, put_publish}` and
//! decoded with `weft::mqtt::codec::decode`.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clap::Parser;
use weft::mqtt::codec::{self, Connect, DecodeLimits, Packet};

#[derive(Parser, Debug, Clone)]
#[command(name = "weft-load", about = "MQTT 3.1.1 load generator")]
struct Opts {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Messages each publisher sends.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// QoS of publishes and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    #[arg(long, default_value = "weft/load/t")]
    topic: String,
    /// Cores to pin load threads to, round-robin, e.g. "1" or "2-3".
    #[arg(long, value_name = "LIST")]
    pin_core: Option<String>,
    /// Bytes written per write syscall by publishers.
    #[arg(long, default_value_t = 64 * 1024)]
    batch: usize,
    /// QoS 1: most unacknowledged PUBLISHes per publisher.
    #[arg(long, default_value_t = 1024)]
    window: usize,
    /// A subscriber stops after this long without receiving anything.
    #[arg(long, default_value_t = 2000)]
    quiet_ms: u64,
    /// Hold mode: open this many idle connections, print READY, wait for EOF on stdin.
    #[arg(long)]
    hold_idle: Option<usize>,
    /// Hold mode: subscribe this many distinct filters in total, print READY, wait.
    #[arg(long)]
    hold_subs: Option<usize>,
    /// Connections the --hold-subs filters are spread over.
    #[arg(long, default_value_t = 16)]
    hold_conns: usize,
    /// Hold modes: spread the connections over the source addresses
    /// 127.0.0.1 ..= 127.0.0.N, 25,000 each (one source address has
    /// ~28,000 ephemeral ports towards one listener).
    #[arg(long, default_value_t = 1)]
    source_ips: u8,
}

fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                out.extend(a.trim().parse::<usize>().unwrap()..=b.trim().parse::<usize>().unwrap())
            }
            None => out.push(part.trim().parse().unwrap()),
        }
    }
    out
}

fn pin(cores: &[usize], n: usize) {
    if cores.is_empty() {
        return;
    }
    let core = cores[n % cores.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("weft-load: cannot pin to core {core}");
    }
}

const LIMITS: DecodeLimits = DecodeLimits {
    packet_bytes_max: 16 * 1024 * 1024,
    filters_per_packet_max: 1024,
};

/// A blocking MQTT connection with its own read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Conn {
    fn open(opts: &Opts, client_id: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect((opts.host.as_str(), opts.port))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
        };
        c.send_connect(client_id)?;
        c.expect_connack()?;
        Ok(c)
    }

    /// Opens a connection with a small read buffer (hold modes), the
    /// `nth` of the run (its source address, `--source-ips`).
    fn open_small(opts: &Opts, client_id: &str, nth: usize) -> io::Result<Conn> {
        let stream = if opts.source_ips > 1 {
            let ip = std::net::Ipv4Addr::new(127, 0, 0, 1 + (nth / 25_000) as u8);
            let to: std::net::SocketAddr = (
                opts.host
                    .parse::<std::net::Ipv4Addr>()
                    .map_err(io::Error::other)?,
                opts.port,
            )
                .into();
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
            s.bind(&std::net::SocketAddr::from((ip, 0)).into())?;
            s.connect(&to.into())?;
            s.into()
        } else {
            TcpStream::connect((opts.host.as_str(), opts.port))?
        };
        let mut c = Conn {
            stream,
            buf: vec![0; 4096],
            start: 0,
            end: 0,
        };
        c.send_connect(client_id)?;
        Ok(c)
    }

    fn send_connect(&mut self, client_id: &str) -> io::Result<()> {
        let mut out = Vec::new();
        codec::encode(
            &Packet::Connect(Connect {
                protocol_name: codec::PROTOCOL_NAME,
                level: codec::PROTOCOL_LEVEL_311,
                clean_session: true,
                keep_alive_s: 0,
                client_id,
                will: None,
                username: None,
                password: None,
            }),
            &mut out,
        );
        self.stream.write_all(&out)
    }

    fn expect_connack(&mut self) -> io::Result<()> {
        self.next_packet(|p| match p {
            Packet::ConnAck { code: 0, .. } => Ok(()),
            other => Err(io::Error::other(format!(
                "expected CONNACK 0, got {other:?}"
            ))),
        })
    }

    /// Reads until one whole packet is buffered and hands it to `f`.
    fn next_packet<T>(&mut self, f: impl FnOnce(Packet<'_>) -> io::Result<T>) -> io::Result<T> {
        loop {
            match codec::decode(&self.buf[self.start..self.end], &LIMITS) {
                Ok(Some((p, used))) => {
                    self.start += used;
                    return f(p);
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
    }

    /// One read into the buffer (compacting first); errors on EOF.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.end += n;
        Ok(())
    }
}

struct SubResult {
    received: u64,
    /// From the common start to the last PUBLISH received.
    elapsed: Duration,
    error: Option<String>,
}

fn subscriber(
    opts: Opts,
    n: usize,
    ready: Arc<Barrier>,
    start_at: Arc<AtomicU64>,
    t0: Instant,
) -> SubResult {
    pin(
        &opts
            .pin_core
            .as_deref()
            .map(parse_cpu_list)
            .unwrap_or_default(),
        n,
    );
    let expected = opts.publishers as u64 * opts.messages;
    let mut received = 0u64;
    let mut last = t0;
    let setup = || -> io::Result<Conn> {
        let mut c = Conn::open(&opts, &format!("weft-load-sub-{n}"))?;
        let mut out = Vec::new();
        codec::encode(
            &Packet::Subscribe {
                packet_id: 1,
                filters: vec![(opts.topic.as_str(), opts.qos)],
            },
            &mut out,
        );
        c.stream.write_all(&out)?;
        c.next_packet(|p| match p {
            Packet::SubAck { codes, .. } if codes.first().is_some_and(|&c| c <= 2) => Ok(()),
            other => Err(io::Error::other(format!("expected SUBACK, got {other:?}"))),
        })?;
        Ok(c)
    };
    let conn = setup();
    // Everyone meets here, even after an error, so that nobody waits forever.
    ready.wait();
    let run = || -> io::Result<()> {
        let mut c = conn?;
        c.stream
            .set_read_timeout(Some(Duration::from_millis(opts.quiet_ms)))?;
        let mut acks: Vec<u8> = Vec::with_capacity(64 * 1024);
        while received < expected {
            loop {
                match codec::decode(&c.buf[c.start..c.end], &LIMITS) {
                    Ok(Some((p, used))) => {
                        c.start += used;
                        if let Packet::Publish(p) = p {
                            received += 1;
                            if p.qos == 1 {
                                acks.extend_from_slice(&[0x40, 2]);
                                acks.extend_from_slice(&p.packet_id.to_be_bytes());
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(io::Error::other(e.to_string())),
                }
            }
            last = Instant::now();
            if !acks.is_empty() {
                c.stream.write_all(&acks)?;
                acks.clear();
            }
            if received >= expected {
                break;
            }
            match c.fill() {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(()); // quiet timeout
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    };
    let error = run().err().map(|e| e.to_string());
    let started = Duration::from_nanos(start_at.load(Ordering::Acquire));
    SubResult {
        received,
        elapsed: (last - t0).saturating_sub(started),
        error,
    }
}

struct PubResult {
    sent: u64,
    acked: u64,
    elapsed: Duration,
    error: Option<String>,
}

/// Encodes as many PUBLISHes as fit in `batch` bytes (at least one) and
/// returns the buffer and the offsets of their packet ids (QoS 1).
fn prebuild(opts: &Opts) -> (Vec<u8>, Vec<usize>) {
    let payload = vec![0xa5u8; opts.payload];
    let one = codec::publish_len(opts.topic.len(), opts.qos, opts.payload);
    let count = (opts.batch / one).max(1);
    let mut buf = Vec::with_capacity(count * one);
    let mut id_at = Vec::with_capacity(count);
    for _ in 0..count {
        let before = buf.len();
        codec::put_publish(
            &mut buf,
            false,
            opts.qos,
            false,
            opts.topic.as_bytes(),
            1,
            &payload,
        );
        // Packet id follows the topic; the payload follows the id.
        id_at.push(before + one - opts.payload - 2);
    }
    (buf, id_at)
}

fn publisher(opts: Opts, n: usize, ready: Arc<Barrier>, go: Arc<Barrier>) -> PubResult {
    pin(
        &opts
            .pin_core
            .as_deref()
            .map(parse_cpu_list)
            .unwrap_or_default(),
        opts.subscribers + n,
    );
    let (mut batch, id_at) = prebuild(&opts);
    let per_batch = id_at.len() as u64;
    let one = batch.len() / id_at.len();
    let mut sent = 0u64;
    let mut acked = 0u64;
    let mut t_start = Instant::now();
    let mut conn = Conn::open(&opts, &format!("weft-load-pub-{n}"));
    ready.wait();
    go.wait();
    let mut run = || -> io::Result<()> {
        let c = conn
            .as_mut()
            .map_err(|e| io::Error::new(e.kind(), e.to_string()))?;
        c.stream
            .set_read_timeout(Some(Duration::from_millis(opts.quiet_ms.max(10_000))))?;
        t_start = Instant::now();
        let window = opts.window.max(1) as u64;
        let mut next_id: u16 = 1;
        while sent < opts.messages {
            let mut k = (opts.messages - sent).min(per_batch);
            if opts.qos == 1 {
                // Refill only when half the window is free, so that writes
                // stay large.
                while sent - acked > window / 2 {
                    c.fill()?;
                    acked += drain_acks(c)?;
                }
                k = k.min(window - (sent - acked));
                for &at in &id_at[..k as usize] {
                    batch[at..at + 2].copy_from_slice(&next_id.to_be_bytes());
                    next_id = next_id.wrapping_add(1).max(1);
                }
            }
            c.stream.write_all(&batch[..k as usize * one])?;
            sent += k;
        }
        if opts.qos == 1 {
            while acked < sent {
                c.fill()?;
                acked += drain_acks(c)?;
            }
        }
        Ok(())
    };
    let error = run().err().map(|e| e.to_string());
    PubResult {
        sent,
        acked,
        elapsed: t_start.elapsed(),
        error,
    }
}

fn drain_acks(c: &mut Conn) -> io::Result<u64> {
    let mut n = 0;
    loop {
        match codec::decode(&c.buf[c.start..c.end], &LIMITS) {
            Ok(Some((p, used))) => {
                c.start += used;
                if let Packet::PubAck(_) = p {
                    n += 1;
                }
            }
            Ok(None) => return Ok(n),
            Err(e) => return Err(io::Error::other(e.to_string())),
        }
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

fn throughput(opts: Opts) -> i32 {
    let t0 = Instant::now();
    let ready = Arc::new(Barrier::new(opts.publishers + opts.subscribers + 1));
    let go = Arc::new(Barrier::new(opts.publishers + 1));
    let start_at = Arc::new(AtomicU64::new(0));
    let subs: Vec<_> = (0..opts.subscribers)
        .map(|i| {
            let (o, r, s) = (opts.clone(), ready.clone(), start_at.clone());
            std::thread::spawn(move || subscriber(o, i, r, s, t0))
        })
        .collect();
    let pubs: Vec<_> = (0..opts.publishers)
        .map(|i| {
            let (o, r, g) = (opts.clone(), ready.clone(), go.clone());
            std::thread::spawn(move || publisher(o, i, r, g))
        })
        .collect();
    ready.wait();
    start_at.store(t0.elapsed().as_nanos() as u64, Ordering::Release);
    go.wait();
    let pub_results: Vec<PubResult> = pubs
        .into_iter()
        .map(|h| h.join().expect("publisher panicked"))
        .collect();
    let sub_results: Vec<SubResult> = subs
        .into_iter()
        .map(|h| h.join().expect("subscriber panicked"))
        .collect();

    let mut status = 0;
    let mut sent_total = 0;
    let mut sent_rate = 0.0;
    for (i, p) in pub_results.iter().enumerate() {
        sent_total += p.sent;
        sent_rate += rate(p.sent, p.elapsed);
        let acks = if opts.qos == 1 {
            format!(", {} acked", p.acked)
        } else {
            String::new()
        };
        println!(
            "publisher {i}: sent {} in {:.3} s = {:.0} msgs/s{acks}",
            p.sent,
            p.elapsed.as_secs_f64(),
            rate(p.sent, p.elapsed)
        );
        if let Some(e) = &p.error {
            println!("publisher {i}: error: {e}");
            status = 1;
        }
    }
    let expected = sent_total;
    let mut recv_total = 0;
    let mut recv_rate = 0.0;
    let mut lost = 0;
    for (i, s) in sub_results.iter().enumerate() {
        recv_total += s.received;
        recv_rate += rate(s.received, s.elapsed);
        lost += expected.saturating_sub(s.received);
        println!(
            "subscriber {i}: received {} of {expected} in {:.3} s = {:.0} msgs/s, lost {}",
            s.received,
            s.elapsed.as_secs_f64(),
            rate(s.received, s.elapsed),
            expected.saturating_sub(s.received)
        );
        if let Some(e) = &s.error {
            println!("subscriber {i}: error: {e}");
            status = 1;
        }
    }
    println!(
        "total: sent {sent_total} ({sent_rate:.0} msgs/s), received {recv_total} ({recv_rate:.0} msgs/s), lost {lost}"
    );
    println!(
        "RESULT qos={} payload={} publishers={} subscribers={} sent={sent_total} sent_rate={sent_rate:.0} received={recv_total} recv_rate={recv_rate:.0} lost={lost}",
        opts.qos, opts.payload, opts.publishers, opts.subscribers
    );
    status
}

fn wait_stdin() {
    println!("READY");
    let _ = io::stdout().flush();
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
}

fn hold_idle(opts: &Opts, n: usize) -> io::Result<()> {
    let mut conns = Vec::with_capacity(n);
    // Pipeline CONNECTs in chunks, then collect the CONNACKs.
    for chunk in 0..n.div_ceil(256) {
        let from = chunk * 256;
        let to = (from + 256).min(n);
        let mut pending = Vec::new();
        for i in from..to {
            pending.push(Conn::open_small(opts, &format!("idle-{i}"), i)?);
        }
        for mut c in pending {
            c.expect_connack()?;
            c.buf = Vec::new();
            conns.push(c);
        }
    }
    eprintln!("weft-load: {} idle connections open", conns.len());
    wait_stdin();
    drop(conns);
    Ok(())
}

fn hold_subs(opts: &Opts, total: usize, conns_n: usize) -> io::Result<()> {
    let per_conn = total.div_ceil(conns_n);
    let mut conns = Vec::new();
    let mut next = 0usize;
    for ci in 0..conns_n {
        let mut c = Conn::open_small(opts, &format!("subs-{ci}"), ci)?;
        c.expect_connack()?;
        let end = (next + per_conn).min(total);
        // Up to 32 SUBSCRIBE packets in flight per connection.
        let mut in_flight = 0;
        let mut packet_id: u16 = 0;
        let mut out = Vec::new();
        while next < end || in_flight > 0 {
            while next < end && in_flight < 32 {
                let upto = (next + 64).min(end);
                let names: Vec<String> = (next..upto)
                    .map(|i| format!("site/{}/dev/{}/temp", i / 1000, i % 1000))
                    .collect();
                packet_id = packet_id.wrapping_add(1).max(1);
                out.clear();
                codec::encode(
                    &Packet::Subscribe {
                        packet_id,
                        filters: names.iter().map(|s| (s.as_str(), 0u8)).collect(),
                    },
                    &mut out,
                );
                c.stream.write_all(&out)?;
                next = upto;
                in_flight += 1;
            }
            c.next_packet(|p| match p {
                Packet::SubAck { codes, .. } if codes.iter().all(|&c| c <= 2) => Ok(()),
                other => Err(io::Error::other(format!("expected SUBACK, got {other:?}"))),
            })?;
            in_flight -= 1;
        }
        c.buf = Vec::new();
        conns.push(c);
    }
    eprintln!(
        "weft-load: {next} subscriptions on {} connections",
        conns.len()
    );
    wait_stdin();
    drop(conns);
    Ok(())
}

fn main() {
    let opts = Opts::parse();
    let held = if let Some(n) = opts.hold_idle {
        Some(hold_idle(&opts, n))
    } else {
        opts.hold_subs
            .map(|n| hold_subs(&opts, n, opts.hold_conns.max(1)))
    };
    match held {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            eprintln!("weft-load: error: {e}");
            std::process::exit(1);
        }
        None => std::process::exit(throughput(opts)),
    }
}
