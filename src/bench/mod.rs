//! `weft bench`: a load tool for MQTT 3.1.1 and NATS brokers (weft or any
//! other), in the spirit of `nats bench`.
//!
//! N publishers and M subscribers, one thread and one blocking TCP
//! connection each (pinned round-robin with `--pin-cores`), all on one
//! topic/subject: 1→M is fan-out, N→1 fan-in. Subscribers SUBSCRIBE and are
//! confirmed (SUBACK, or the PONG after SUB) before any publisher starts.
//!
//! Subscribers may connect to another server than publishers
//! (`--sub-server`, e.g. another router of a mesh). A SUBACK there does not
//! mean that the publishers' server knows the interest yet, so before the
//! measured run each publisher sends a probe message (same subject, payload
//! [`PROBE_MARKER`] + publisher index) every [`PROBE_EVERY`] until every
//! subscriber has seen a probe from every publisher, or fails after
//! `--probe-timeout-ms`. Probes, also late ones, are never counted nor
//! measured.
//!
//! * Throughput (`--rate 0`, the default): publishers pre-encode a batch of
//!   messages (`--batch`, 64 KiB) and write it again and again; QoS 1 keeps a
//!   bounded window of unacknowledged PUBLISHes (`--window`).
//! * Latency (`--rate R` per publisher): message `i` is due at
//!   `start + i/R` and carries that *intended* send time in its first 8
//!   bytes (ns since an epoch shared by all threads); subscribers record
//!   `receive time - intended time` into an HdrHistogram, so stalls count in
//!   full (no coordinated omission). The publishers' own lateness ("send
//!   lag") is reported too, as a check on the tool itself.
//!
//! The run ends after `--msgs` per publisher or `--duration` seconds; a
//! subscriber stops when it got every message sent, or when the publishers
//! are done and nothing arrived for `--quiet-ms`. Output: a summary on
//! stdout (rates per client and in total, losses, latency percentiles, the
//! tool's own CPU use), optional `--json` and `--hdr-log` files, and a
//! progress line per second on stderr for runs longer than 2 s.
//!
//! Exit status: 0 success, 1 a client failed (or messages were lost with
//! `--fail-on-loss`), 2 usage error.

mod nats;
mod report;
mod schedule;
mod wire;

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, RecvTimeoutError, Sender};
use crossbeam::utils::CachePadded;
use hdrhistogram::Histogram;

use report::{PubResult, SubResult};
use schedule::{Clock, Schedule};
use wire::{Conn, Inbound};

pub use schedule::parse_cpu_list;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Mqtt,
    Nats,
}

/// Options of `weft bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Protocol spoken to the server.
    #[arg(long, value_enum, default_value_t = Protocol::Mqtt)]
    pub protocol: Protocol,
    /// Server address, HOST:PORT [default: 127.0.0.1:1883 for mqtt, 127.0.0.1:4222 for nats].
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Subscribers connect here instead of --server (e.g. another router of
    /// a mesh); publishers stay on --server [default: --server].
    #[arg(long, value_name = "HOST:PORT")]
    pub sub_server: Option<String>,
    /// With --sub-server other than --server: how long publishers send
    /// probe messages (every 20 ms) waiting for every subscriber to receive
    /// one before the measured run starts; 0 = no probing.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub probe_timeout_ms: u64,
    /// Number of publishers (one connection and thread each).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub pubs: usize,
    /// Number of subscribers (one connection and thread each).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub subs: usize,
    /// Messages per publisher [default: 100000 unless --duration is given].
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub msgs: Option<u64>,
    /// Run for this many seconds instead of a message count.
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Payload bytes per message (at least 8 with --rate).
    #[arg(long, default_value_t = 128, value_name = "BYTES")]
    pub size: usize,
    /// MQTT QoS of publishes and subscriptions (0 or 1).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Topic (MQTT) or subject (NATS) [default: weft/bench or weft.bench].
    #[arg(long, visible_alias = "topic", value_name = "NAME")]
    pub subject: Option<String>,
    /// Messages per second per publisher; 0 = as fast as possible. With a
    /// rate, end-to-end latency is measured.
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    pub rate: u64,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// Write per-second latency histograms (ns) as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    pub hdr_log: Option<std::path::PathBuf>,
    /// Pin client threads round-robin to these cores, e.g. 1 or 2-3.
    #[arg(long, value_name = "LIST")]
    pub pin_cores: Option<String>,
    /// QoS 1: most unacknowledged PUBLISHes per publisher.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub window: usize,
    /// Bytes per write when publishing as fast as possible.
    #[arg(long, default_value_t = 64 * 1024, value_name = "BYTES")]
    pub batch: usize,
    /// After the publishers finish, a subscriber waits this long without
    /// receiving anything before counting the rest as lost.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub quiet_ms: u64,
    /// Exit with status 1 if any message was lost.
    #[arg(long)]
    pub fail_on_loss: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    pub no_progress: bool,
}

/// The validated plan of a run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub proto: Protocol,
    pub server: String,
    /// Where subscribers connect (the same as `server` unless --sub-server).
    pub sub_server: String,
    pub subject: String,
    pub pubs: usize,
    pub subs: usize,
    pub msgs: Option<u64>,
    pub duration_ns: Option<u64>,
    pub size: usize,
    pub qos: u8,
    pub rate: u64,
    pub window: u64,
    pub batch: usize,
    pub quiet_ns: u64,
    pub pin: Vec<usize>,
    /// Probe before the run, giving up after this long (None: no probe).
    pub probe_timeout: Option<Duration>,
}

impl Plan {
    fn from_args(a: &BenchArgs) -> Result<Plan, String> {
        if a.pubs == 0 && a.subs == 0 {
            return Err("nothing to do: --pubs and --subs are both 0".into());
        }
        if a.proto_is_nats() && a.qos != 0 {
            return Err("--qos applies to MQTT only (NATS core is at most once)".into());
        }
        if a.rate > 0 && a.size < 8 {
            return Err(
                "--rate needs --size of at least 8 (the send time travels in the payload)".into(),
            );
        }
        if a.window == 0 || a.window > 65_535 {
            return Err("--window must be between 1 and 65535".into());
        }
        let duration_ns = match a.duration {
            Some(d) if !(d > 0.0 && d.is_finite()) => {
                return Err("--duration must be a positive number of seconds".into())
            }
            Some(d) => Some((d * 1e9) as u64),
            None => None,
        };
        let pin = match &a.pin_cores {
            Some(s) => parse_cpu_list(s)?,
            None => Vec::new(),
        };
        let (server, subject) = match a.protocol {
            Protocol::Mqtt => ("127.0.0.1:1883", "weft/bench"),
            Protocol::Nats => ("127.0.0.1:4222", "weft.bench"),
        };
        let server = a.server.clone().unwrap_or_else(|| server.into());
        let sub_server = a.sub_server.clone().unwrap_or_else(|| server.clone());
        let probe = sub_server != server && a.pubs > 0 && a.subs > 0 && a.probe_timeout_ms > 0;
        Ok(Plan {
            proto: a.protocol,
            server,
            sub_server,
            subject: a.subject.clone().unwrap_or_else(|| subject.into()),
            pubs: a.pubs,
            subs: a.subs,
            msgs: match (a.msgs, duration_ns) {
                (Some(m), _) => Some(m),
                (None, None) => Some(100_000),
                (None, Some(_)) => None,
            },
            duration_ns,
            size: a.size,
            qos: a.qos,
            rate: a.rate,
            window: a.window as u64,
            batch: a.batch.max(1),
            quiet_ns: a.quiet_ms.saturating_mul(1_000_000),
            pin,
            probe_timeout: probe.then(|| Duration::from_millis(a.probe_timeout_ms)),
        })
    }
}

/// "HOST:PORT", or "HOST:PORT (subs at HOST:PORT)" with --sub-server.
pub(crate) fn servers(server: &str, sub_server: &str) -> String {
    if sub_server == server {
        server.to_string()
    } else {
        format!("{server} (subs at {sub_server})")
    }
}

impl BenchArgs {
    fn proto_is_nats(&self) -> bool {
        self.protocol == Protocol::Nats
    }
}

/// State shared by all client threads and the main (progress) thread.
pub(crate) struct Shared {
    pub plan: Plan,
    pub clock: Clock,
    /// Intended start of publishing (ns since the clock's epoch).
    pub start_ns: AtomicU64,
    pub abort: AtomicBool,
    pub sent: Vec<CachePadded<AtomicU64>>,
    pub received: Vec<CachePadded<AtomicU64>>,
    /// Publishers finished, their messages in total, and when the last one
    /// finished.
    pub pubs_done: AtomicUsize,
    pub total_sent: AtomicU64,
    pub pubs_done_ns: AtomicU64,
    /// Client threads finished.
    pub finished: AtomicUsize,
    /// Probe phase: subscribers that have seen a probe from every
    /// publisher, and whether the phase is over (probes stop).
    pub probed_subs: AtomicUsize,
    pub probe_over: AtomicBool,
}

/// One subscriber's latency histogram for one second of the run.
pub(crate) struct Interval {
    pub sub: usize,
    pub index: u64,
    pub hist: Histogram<u64>,
}

pub(crate) fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

fn pin(plan: &Plan, n: usize) {
    if plan.pin.is_empty() {
        return;
    }
    let core = plan.pin[n % plan.pin.len()];
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("weft bench: cannot pin a thread to core {core}");
    }
}

/// Best effort: ask for precise sleeps (the default timer slack is 50 µs).
fn tighten_timer_slack() {
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1");
}

const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Start of a probe message's payload (followed by the publisher's index,
/// u32 little-endian). Measured payloads cannot start with it: throughput
/// payloads start with 0xa5, and in latency mode the first 8 bytes are a
/// time in ns since the run's epoch, which would have to be at least
/// 0x72 << 56 ns (260 years) to match byte 7 ('r').
pub(crate) const PROBE_MARKER: &[u8] = b"\xffweft-probe\xff";
/// How often publishers send a probe.
const PROBE_EVERY: Duration = Duration::from_millis(20);

fn probe_from(payload: &[u8]) -> Option<usize> {
    let rest = payload.strip_prefix(PROBE_MARKER)?;
    Some(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize)
}

/// Throughput mode: a subscriber read smaller than this is followed by a
/// pause of [`COALESCE_PAUSE`] (at most that much delay on the last message).
const COALESCE_BYTES: usize = 16 * 1024;
const COALESCE_PAUSE: Duration = Duration::from_micros(200);

pub fn run(args: BenchArgs) -> ExitCode {
    let plan = match Plan::from_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("weft bench: error: {e}");
            return ExitCode::from(2);
        }
    };
    match execute(plan, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("weft bench: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn execute(plan: Plan, args: &BenchArgs) -> io::Result<ExitCode> {
    let clients = plan.pubs + plan.subs;
    let shared = Arc::new(Shared {
        clock: Clock::new(),
        start_ns: AtomicU64::new(0),
        abort: AtomicBool::new(false),
        sent: (0..plan.pubs).map(|_| Default::default()).collect(),
        received: (0..plan.subs).map(|_| Default::default()).collect(),
        pubs_done: AtomicUsize::new(0),
        total_sent: AtomicU64::new(0),
        pubs_done_ns: AtomicU64::new(0),
        finished: AtomicUsize::new(0),
        probed_subs: AtomicUsize::new(0),
        probe_over: AtomicBool::new(false),
        plan,
    });
    let plan = &shared.plan;
    // Counted before pinning narrows this thread's affinity mask.
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    pin(plan, clients); // the main thread shares the first cores
    let ready = Arc::new(Barrier::new(clients + 1));
    let probed = Arc::new(Barrier::new(clients + 1));
    let go = Arc::new(Barrier::new(clients + 1));
    let (tx, rx) = channel::unbounded::<Interval>();
    let run_id = std::process::id();

    let mut sub_handles = Vec::new();
    for n in 0..plan.subs {
        let (shared, tx) = (shared.clone(), tx.clone());
        let gates = [ready.clone(), probed.clone(), go.clone()];
        sub_handles.push(
            thread::Builder::new()
                .name(format!("sub-{n}"))
                .spawn(move || {
                    let r = subscriber(&shared, n, run_id, &gates, &tx);
                    shared.finished.fetch_add(1, Ordering::Release);
                    r
                })?,
        );
    }
    drop(tx);
    let mut pub_handles = Vec::new();
    for n in 0..plan.pubs {
        let shared = shared.clone();
        let gates = [ready.clone(), probed.clone(), go.clone()];
        pub_handles.push(
            thread::Builder::new()
                .name(format!("pub-{n}"))
                .spawn(move || {
                    let r = publisher(&shared, n, run_id, &gates);
                    shared.finished.fetch_add(1, Ordering::Release);
                    r
                })?,
        );
    }

    ready.wait();
    let probe = await_probes(&shared);
    shared.probe_over.store(true, Ordering::Release);
    probed.wait();
    let probe_ms = match probe {
        Ok(ms) => ms,
        Err(e) => {
            shared.abort.store(true, Ordering::Release);
            go.wait();
            for h in pub_handles {
                let _ = h.join();
            }
            for h in sub_handles {
                let _ = h.join();
            }
            return Err(e);
        }
    };
    let cpu_before = report::cpu_now();
    // A moment for every thread to pass the second barrier.
    let start_ns = shared.clock.now_ns() + 2_000_000;
    shared.start_ns.store(start_ns, Ordering::Release);
    let started_at = std::time::SystemTime::now();
    go.wait();

    let collected = collect(&shared, &rx, args, started_at)?;

    let pubs: Vec<PubResult> = pub_handles
        .into_iter()
        .map(|h| h.join().expect("publisher thread panicked"))
        .collect();
    let subs: Vec<SubResult> = sub_handles
        .into_iter()
        .map(|h| h.join().expect("subscriber thread panicked"))
        .collect();
    let end_ns = shared.clock.now_ns();
    let cpu_after = report::cpu_now();

    let summary = report::Summary::build(
        plan,
        &pubs,
        &subs,
        collected,
        probe_ms,
        (end_ns.saturating_sub(start_ns)) as f64 / 1e9,
        cpu_after.minus(&cpu_before),
        cores,
        started_at,
    );
    summary.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&summary).unwrap() + "\n")
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    let failed = summary.errors > 0;
    let lost = summary.totals.lost > 0;
    Ok(if failed || (lost && args.fail_on_loss) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The probe phase, seen from the main thread: waits until every subscriber
/// has seen a probe from every publisher. Returns how long that took (ms),
/// None without a probe phase or when a client failed (it reports why).
fn await_probes(shared: &Shared) -> io::Result<Option<f64>> {
    let plan = &shared.plan;
    let Some(timeout) = plan.probe_timeout else {
        return Ok(None);
    };
    let t0 = std::time::Instant::now();
    loop {
        if shared.abort.load(Ordering::Acquire) {
            return Ok(None);
        }
        let done = shared.probed_subs.load(Ordering::Acquire);
        if done == plan.subs {
            return Ok(Some(t0.elapsed().as_secs_f64() * 1e3));
        }
        if t0.elapsed() >= timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "probe: after {} ms only {done} of {} subscriber(s) at {} had received a probe \
                     from each of the {} publisher(s) at {}: the publishers' server does not \
                     route the subject {:?} to the subscribers' server (mesh link down or interest \
                     not propagated?); see --probe-timeout-ms",
                    timeout.as_millis(),
                    plan.subs,
                    plan.sub_server,
                    plan.pubs,
                    plan.server,
                    plan.subject,
                ),
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// What the main thread gathers while the clients run.
pub(crate) struct Collected {
    pub per_sub: Vec<Option<Histogram<u64>>>,
}

/// Runs until every client thread is done: merges the subscribers'
/// interval histograms, writes the HdrHistogram log, prints progress.
fn collect(
    shared: &Shared,
    rx: &Receiver<Interval>,
    args: &BenchArgs,
    started_at: std::time::SystemTime,
) -> io::Result<Collected> {
    use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
    use hdrhistogram::serialization::V2DeflateSerializer;
    use std::collections::BTreeMap;
    use std::io::Write;

    let plan = &shared.plan;
    let clients = plan.pubs + plan.subs;
    let start_ns = shared.start_ns.load(Ordering::Acquire);
    let mut per_sub: Vec<Option<Histogram<u64>>> = (0..plan.subs).map(|_| None).collect();
    // Per-second histograms merged over subscribers, not yet written.
    let mut pending: BTreeMap<u64, Histogram<u64>> = BTreeMap::new();

    let mut file = match &args.hdr_log {
        Some(p) => Some(io::BufWriter::new(std::fs::File::create(p).map_err(
            |e| io::Error::new(e.kind(), format!("{}: {e}", p.display())),
        )?)),
        None => None,
    };
    let mut serializer = V2DeflateSerializer::new();
    let mut log = match file.as_mut() {
        Some(f) => Some(
            IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "weft bench {} latency log: {} {} {}->{} size {} rate {}/s per publisher",
                    env!("CARGO_PKG_VERSION"),
                    format!("{:?}", plan.proto).to_lowercase(),
                    servers(&plan.server, &plan.sub_server),
                    plan.pubs,
                    plan.subs,
                    plan.size,
                    plan.rate
                ))
                .add_comment("values: end-to-end latency in nanoseconds from the intended send time; max column in microseconds")
                .with_start_time(started_at)
                .with_base_time(started_at)
                .with_max_value_divisor(1000.0)
                .begin_log_with(f, &mut serializer)?,
        ),
        None => None,
    };
    let mut write_interval = |index: u64, h: &Histogram<u64>| -> io::Result<()> {
        if let Some(log) = log.as_mut() {
            log.write_histogram(h, Duration::from_secs(index), Duration::from_secs(1), None)
                .map_err(|e| io::Error::other(format!("hdr log: {e:?}")))?;
        }
        Ok(())
    };

    let progress = !args.no_progress;
    let long_run = plan.duration_ns.is_some_and(|d| d > 2_000_000_000);
    let mut tick = 1u64;
    let mut last_sent = 0u64;
    let mut last_recv = 0u64;
    let mut last_p99: Option<f64> = None;
    loop {
        let now = shared.clock.now_ns();
        let next_tick_ns = start_ns + tick * 1_000_000_000;
        let wait = Duration::from_nanos(next_tick_ns.saturating_sub(now).min(100_000_000));
        match rx.recv_timeout(wait) {
            Ok(iv) => {
                match &mut per_sub[iv.sub] {
                    Some(h) => h.add(&iv.hist).expect("same bounds"),
                    slot => *slot = Some(iv.hist.clone()),
                }
                match pending.get_mut(&iv.index) {
                    Some(h) => h.add(&iv.hist).expect("same bounds"),
                    None => {
                        pending.insert(iv.index, iv.hist);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {}
        }
        let now = shared.clock.now_ns();
        if now >= next_tick_ns {
            // Intervals two seconds old are complete: every subscriber
            // rotates at least every 100 ms.
            let complete: Vec<u64> = pending.keys().copied().filter(|&i| i + 2 <= tick).collect();
            for i in complete {
                let h = pending.remove(&i).unwrap();
                if !h.is_empty() {
                    last_p99 = Some(h.value_at_quantile(0.99) as f64 / 1e3);
                }
                write_interval(i, &h)?;
            }
            let sent: u64 = shared.sent.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let recv: u64 = shared
                .received
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .sum();
            if progress
                && (tick >= 2 || long_run)
                && shared.finished.load(Ordering::Acquire) < clients
            {
                let mut line = format!(
                    "[{tick:>4}s] sent {} ({}/s)  received {} ({}/s)",
                    report::si(sent as f64),
                    report::si(sent.saturating_sub(last_sent) as f64),
                    report::si(recv as f64),
                    report::si(recv.saturating_sub(last_recv) as f64),
                );
                if let Some(p99) = last_p99 {
                    line.push_str(&format!("  p99 {p99:.1} µs"));
                }
                eprintln!("{line}");
            }
            last_sent = sent;
            last_recv = recv;
            tick += 1;
        }
        if shared.finished.load(Ordering::Acquire) == clients && rx.is_empty() {
            // Senders are gone once the threads ended; drain stragglers.
            while let Ok(iv) = rx.try_recv() {
                let _ = iv;
            }
            break;
        }
    }
    for (i, h) in pending {
        write_interval(i, &h)?;
    }
    drop(log);
    if let Some(mut f) = file {
        f.flush()?;
    }
    Ok(Collected { per_sub })
}

/// The three meeting points of every client thread and the main thread:
/// set up (connected, subscribed), probed, go.
type Gates = [Arc<Barrier>; 3];

fn subscriber(
    shared: &Shared,
    n: usize,
    run_id: u32,
    [ready, probed, go]: &Gates,
    tx: &Sender<Interval>,
) -> SubResult {
    let plan = &shared.plan;
    pin(plan, n);
    let setup = || -> io::Result<Conn> {
        let mut c = Conn::open(
            plan.proto,
            &plan.sub_server,
            &format!("weft-bench-{run_id}-sub-{n}"),
            SETUP_TIMEOUT,
        )?;
        c.subscribe(&plan.subject, plan.qos)?;
        Ok(c)
    };
    let mut conn = setup();
    if conn.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    // Everyone meets here, even after an error, so that nobody waits forever.
    ready.wait();
    if plan.probe_timeout.is_some() {
        if let Ok(c) = &mut conn {
            if let Err(e) = await_probe(shared, c) {
                shared.abort.store(true, Ordering::Release);
                conn = Err(io::Error::new(e.kind(), format!("probe: {e}")));
            }
        }
    }
    probed.wait();
    go.wait();
    let mut result = SubResult::default();
    let mut conn = match conn {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => c,
        Ok(c) => {
            c.close();
            return result;
        }
        Err(e) => {
            result.error = Some(format!("subscriber {n}: setup: {e}"));
            return result;
        }
    };
    let start_ns = shared.start_ns.load(Ordering::Acquire);
    let latency = plan.rate > 0;
    let expected = plan.msgs.map(|m| m * plan.pubs as u64);
    let mut interval = latency.then(new_histogram);
    let mut index = 0u64;
    let mut received = 0u64;
    let mut last_ns = start_ns;
    let mut run = |result: &mut SubResult| -> io::Result<()> {
        conn.stream
            .set_read_timeout(Some(Duration::from_millis(100)))?;
        loop {
            if expected.is_some_and(|e| received >= e) || shared.abort.load(Ordering::Relaxed) {
                return Ok(());
            }
            let r = conn.fill();
            let now = shared.clock.now_ns();
            match r {
                Ok(bytes) => {
                    // Throughput mode: after a small read, let data pile up
                    // for a moment, so that the tool spends its CPU on
                    // messages rather than on read syscalls (latency mode
                    // reads as soon as anything arrives).
                    if !latency && bytes < COALESCE_BYTES {
                        thread::sleep(COALESCE_PAUSE);
                    }
                    let mut got = 0u64;
                    let h = &mut interval;
                    conn.drain(|ev| {
                        if let Inbound::Msg(p) = ev {
                            if p.starts_with(PROBE_MARKER) {
                                return; // a late probe
                            }
                            got += 1;
                            if let (Some(h), Some(ts)) = (h.as_mut(), p.get(..8)) {
                                let ts = u64::from_le_bytes(ts.try_into().unwrap());
                                h.saturating_record(now.saturating_sub(ts).max(1));
                            }
                        }
                    })?;
                    conn.flush_replies()?;
                    if got > 0 {
                        received += got;
                        last_ns = now;
                        shared.received[n].store(received, Ordering::Relaxed);
                    }
                }
                Err(e) if wire::is_timeout(&e) => {}
                Err(e) => return Err(e),
            }
            if let Some(h) = interval.as_mut() {
                let i = now.saturating_sub(start_ns) / 1_000_000_000;
                if i != index {
                    let full = std::mem::replace(h, new_histogram());
                    let _ = tx.send(Interval {
                        sub: n,
                        index,
                        hist: full,
                    });
                    index = i;
                }
            }
            if shared.pubs_done.load(Ordering::Acquire) == plan.pubs {
                let total = shared.total_sent.load(Ordering::Acquire);
                if received >= total {
                    return Ok(());
                }
                let since = last_ns.max(shared.pubs_done_ns.load(Ordering::Acquire));
                if now.saturating_sub(since) > plan.quiet_ns {
                    result.quiet_timeout = true;
                    return Ok(());
                }
            }
        }
    };
    if let Err(e) = run(&mut result) {
        result.error = Some(format!("subscriber {n}: {e}"));
    }
    if let Some(h) = interval.take() {
        let _ = tx.send(Interval {
            sub: n,
            index,
            hist: h,
        });
    }
    result.received = received;
    result.elapsed_s = last_ns.saturating_sub(start_ns) as f64 / 1e9;
    conn.close();
    result
}

/// Probe phase of a subscriber: reads until it has seen a probe from every
/// publisher, then goes on reading (and dropping) until the phase is over.
fn await_probe(shared: &Shared, conn: &mut Conn) -> io::Result<()> {
    let plan = &shared.plan;
    let mut seen = vec![false; plan.pubs];
    let mut missing = plan.pubs;
    conn.stream
        .set_read_timeout(Some(Duration::from_millis(5)))?;
    while !shared.probe_over.load(Ordering::Acquire) && !shared.abort.load(Ordering::Acquire) {
        match conn.fill() {
            Ok(_) => {}
            Err(e) if wire::is_timeout(&e) => continue,
            Err(e) => return Err(e),
        }
        let before = missing;
        conn.drain(|ev| {
            if let Inbound::Msg(p) = ev {
                if let Some(i) = probe_from(p) {
                    if i < seen.len() && !seen[i] {
                        seen[i] = true;
                        missing -= 1;
                    }
                }
            }
        })?;
        conn.flush_replies()?;
        if before > 0 && missing == 0 {
            shared.probed_subs.fetch_add(1, Ordering::AcqRel);
        }
    }
    Ok(())
}

/// Probe phase of a publisher: a probe message every [`PROBE_EVERY`] until
/// the phase is over. Probes go at QoS 0 (no packet ids, no PUBACKs).
fn send_probes(shared: &Shared, n: usize, conn: &mut Conn) -> io::Result<()> {
    let plan = &shared.plan;
    let mut payload = PROBE_MARKER.to_vec();
    payload.extend_from_slice(&(n as u32).to_le_bytes());
    let mut probe = Vec::new();
    wire::put_message(plan.proto, &mut probe, &plan.subject, 0, &payload);
    let over = || shared.probe_over.load(Ordering::Acquire) || shared.abort.load(Ordering::Acquire);
    while !over() {
        conn.write_all(&probe)?;
        let next = std::time::Instant::now() + PROBE_EVERY;
        while !over() && std::time::Instant::now() < next {
            // Answer NATS PINGs, notice -ERR.
            if conn.try_fill()? > 0 {
                conn.drain(|_| {})?;
                conn.flush_replies()?;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

fn publisher(shared: &Shared, n: usize, run_id: u32, [ready, probed, go]: &Gates) -> PubResult {
    let plan = &shared.plan;
    pin(plan, plan.subs + n);
    if plan.rate > 0 {
        tighten_timer_slack();
    }
    let mut conn = Conn::open(
        plan.proto,
        &plan.server,
        &format!("weft-bench-{run_id}-pub-{n}"),
        SETUP_TIMEOUT,
    );
    if conn.is_err() {
        shared.abort.store(true, Ordering::Release);
    }
    ready.wait();
    if plan.probe_timeout.is_some() {
        if let Ok(c) = &mut conn {
            if let Err(e) = send_probes(shared, n, c) {
                shared.abort.store(true, Ordering::Release);
                conn = Err(io::Error::new(e.kind(), format!("probe: {e}")));
            }
        }
    }
    probed.wait();
    go.wait();
    let mut result = PubResult::default();
    match conn {
        Ok(c) if !shared.abort.load(Ordering::Acquire) => {
            let mut p = Publisher::new(shared, n, c);
            if let Err(e) = p.run() {
                result.error = Some(format!("publisher {n}: {e}"));
            }
            result.sent = p.sent;
            result.acked = p.acked;
            result.elapsed_s = p.elapsed_ns as f64 / 1e9;
            result.send_lag = p.lag;
            p.conn.close();
        }
        Ok(c) => c.close(),
        Err(e) => result.error = Some(format!("publisher {n}: setup: {e}")),
    }
    let now = shared.clock.now_ns();
    shared.total_sent.fetch_add(result.sent, Ordering::AcqRel);
    shared.pubs_done_ns.fetch_max(now, Ordering::AcqRel);
    shared.pubs_done.fetch_add(1, Ordering::AcqRel);
    result
}

struct Publisher<'a> {
    shared: &'a Shared,
    plan: &'a Plan,
    n: usize,
    conn: Conn,
    sent: u64,
    acked: u64,
    next_id: u16,
    elapsed_ns: u64,
    /// Rate mode: how late each message was written, in ns.
    lag: Option<Histogram<u64>>,
}

impl<'a> Publisher<'a> {
    fn new(shared: &'a Shared, n: usize, conn: Conn) -> Self {
        Publisher {
            shared,
            plan: &shared.plan,
            n,
            conn,
            sent: 0,
            acked: 0,
            next_id: 1,
            elapsed_ns: 0,
            lag: (shared.plan.rate > 0).then(new_histogram),
        }
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = if id == u16::MAX { 1 } else { id + 1 };
        id
    }

    /// Reads whatever is waiting (PUBACKs, PINGs) without blocking, or
    /// blocks for at least one read if `block`.
    fn poll(&mut self, block: bool) -> io::Result<()> {
        if block {
            match self.conn.fill() {
                Ok(_) => {}
                Err(e) if wire::is_timeout(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no PUBACK for {} s ({} unacknowledged)",
                            SETUP_TIMEOUT.as_secs(),
                            self.sent - self.acked
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        } else if self.conn.try_fill()? == 0 {
            return Ok(());
        }
        let mut acks = 0;
        self.conn.drain(|ev| {
            if let Inbound::PubAck = ev {
                acks += 1;
            }
        })?;
        self.acked += acks;
        self.conn.flush_replies()
    }

    /// QoS 1: how many more messages the window allows, blocking until at
    /// least `min(want, at_least)` are allowed (waiting for a larger room
    /// keeps writes large when publishing as fast as possible).
    fn window_room(&mut self, want: u64, at_least: u64) -> io::Result<u64> {
        if self.plan.qos == 0 {
            return Ok(want);
        }
        let need = want.min(at_least).max(1);
        loop {
            let in_flight = self.sent - self.acked;
            let room = self.plan.window.saturating_sub(in_flight);
            if room >= need {
                return Ok(want.min(room));
            }
            self.poll(true)?;
        }
    }

    fn run(&mut self) -> io::Result<()> {
        let start_ns = self.shared.start_ns.load(Ordering::Acquire);
        self.conn.stream.set_read_timeout(Some(SETUP_TIMEOUT))?;
        self.shared.clock.sleep_until(start_ns);
        let t0 = self.shared.clock.now_ns();
        let r = if self.plan.rate == 0 {
            self.run_unthrottled(start_ns)
        } else {
            self.run_at_rate(start_ns)
        };
        let r = r.and_then(|()| self.finish());
        self.elapsed_ns = self.shared.clock.now_ns() - t0;
        r
    }

    fn run_unthrottled(&mut self, start_ns: u64) -> io::Result<()> {
        let plan = self.plan;
        let payload = vec![0xa5u8; plan.size];
        let one = wire::message_len(plan.proto, &plan.subject, plan.qos, plan.size);
        let per_batch = (plan.batch / one).max(1);
        let mut batch = Vec::with_capacity(per_batch * one);
        let mut id_at = Vec::with_capacity(per_batch);
        for _ in 0..per_batch {
            let (id, _) =
                wire::put_message(plan.proto, &mut batch, &plan.subject, plan.qos, &payload);
            id_at.push(id);
        }
        let end_ns = plan.duration_ns.map(|d| start_ns + d);
        let limit = plan.msgs.unwrap_or(u64::MAX);
        let mut polls = 0u32;
        while self.sent < limit {
            let mut k = (limit - self.sent).min(per_batch as u64);
            if plan.qos == 1 {
                // Acknowledgements are read as they come, so that the
                // window rarely closes.
                self.poll(false)?;
                k = self.window_room(k, plan.window / 2)?;
                for i in 0..k as usize {
                    let id = self.take_id();
                    batch[id_at[i]..id_at[i] + 2].copy_from_slice(&id.to_be_bytes());
                }
            } else if plan.proto == Protocol::Nats {
                // Answer server PINGs and notice -ERR now and then.
                polls += 1;
                if polls.is_multiple_of(16) {
                    self.poll(false)?;
                }
            }
            self.conn.write_all(&batch[..k as usize * one])?;
            self.sent += k;
            self.shared.sent[self.n].store(self.sent, Ordering::Relaxed);
            if end_ns.is_some_and(|e| self.shared.clock.now_ns() >= e) {
                break;
            }
        }
        Ok(())
    }

    fn run_at_rate(&mut self, start_ns: u64) -> io::Result<()> {
        let plan = self.plan;
        let clock = self.shared.clock;
        let sched = Schedule::staggered(start_ns, plan.rate, self.n, plan.pubs);
        let limit = match (plan.msgs, plan.duration_ns) {
            (Some(m), _) => m,
            (None, Some(d)) => sched.count_before(start_ns + d),
            (None, None) => unreachable!("a count or a duration"),
        };
        let one = wire::message_len(plan.proto, &plan.subject, plan.qos, plan.size);
        let per_batch = (plan.batch / one).max(1) as u64;
        let mut payload = vec![0xa5u8; plan.size];
        let mut out = Vec::with_capacity(plan.batch.max(one));
        let mut last_poll = 0u64;
        while self.sent < limit {
            let now = clock.now_ns();
            if now.saturating_sub(last_poll) >= 1_000_000 {
                self.poll(false)?;
                last_poll = now;
            }
            let due = sched.due_at(now).min(limit);
            if due <= self.sent {
                clock.sleep_until(sched.intended_ns(self.sent));
                continue;
            }
            let k = self.window_room((due - self.sent).min(per_batch), 1)?;
            out.clear();
            let now = clock.now_ns();
            for i in self.sent..self.sent + k {
                let t = sched.intended_ns(i);
                payload[..8].copy_from_slice(&t.to_le_bytes());
                let (id_at, _) =
                    wire::put_message(plan.proto, &mut out, &plan.subject, plan.qos, &payload);
                if plan.qos == 1 {
                    let id = self.take_id();
                    out[id_at..id_at + 2].copy_from_slice(&id.to_be_bytes());
                }
                if let Some(h) = self.lag.as_mut() {
                    h.saturating_record(now.saturating_sub(t).max(1));
                }
            }
            self.conn.write_all(&out)?;
            self.sent += k;
            self.shared.sent[self.n].store(self.sent, Ordering::Relaxed);
        }
        Ok(())
    }

    /// QoS 1: waits for every PUBACK. NATS: a PING/PONG round trip, so that
    /// the server has read everything when the publisher reports done.
    fn finish(&mut self) -> io::Result<()> {
        if self.plan.qos == 1 {
            while self.acked < self.sent {
                self.poll(true)?;
            }
        }
        if self.plan.proto == Protocol::Nats {
            self.conn.write_all(b"PING\r\n")?;
            let mut pong = false;
            while !pong {
                match self.conn.fill() {
                    Ok(_) => {}
                    Err(e) if wire::is_timeout(&e) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "no PONG after publishing",
                        ))
                    }
                    Err(e) => return Err(e),
                }
                self.conn.drain(|ev| pong |= matches!(ev, Inbound::Pong))?;
                self.conn.flush_replies()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn plan(args: &[&str]) -> Plan {
        let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .expect("arguments parse");
        Plan::from_args(&cli.bench).expect("a valid plan")
    }

    #[test]
    fn sub_server_defaults_to_server_and_probes_only_when_elsewhere() {
        let p = plan(&["--server", "10.0.0.1:1883"]);
        assert_eq!(p.sub_server, "10.0.0.1:1883");
        assert_eq!(p.probe_timeout, None);
        let p = plan(&["--protocol", "nats"]);
        assert_eq!(
            (p.server.as_str(), p.sub_server.as_str()),
            ("127.0.0.1:4222", "127.0.0.1:4222")
        );
        let p = plan(&["--sub-server", "127.0.0.1:1883"]);
        assert_eq!(p.probe_timeout, None, "the same server: no probe");
        let p = plan(&["--sub-server", "127.0.0.1:2883"]);
        assert_eq!(p.server, "127.0.0.1:1883");
        assert_eq!(p.probe_timeout, Some(Duration::from_secs(10)));
        let p = plan(&["--sub-server", "127.0.0.1:2883", "--probe-timeout-ms", "0"]);
        assert_eq!(p.probe_timeout, None);
        let p = plan(&["--sub-server", "127.0.0.1:2883", "--pubs", "0"]);
        assert_eq!(p.probe_timeout, None, "nobody to send probes");
        assert_eq!(servers("a:1", "a:1"), "a:1");
        assert_eq!(servers("a:1", "b:2"), "a:1 (subs at b:2)");
    }

    #[test]
    fn probes_are_told_apart_from_measured_payloads() {
        let mut probe = PROBE_MARKER.to_vec();
        probe.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(probe_from(&probe), Some(7));
        assert_eq!(probe_from(PROBE_MARKER), None, "no index");
        // Throughput payloads.
        assert!(![0xa5u8; 64].starts_with(PROBE_MARKER));
        // Latency payloads: the send time (ns since the run's epoch) in the
        // first 8 bytes, whatever its low bytes and whatever follows, for
        // any run shorter than a century.
        let century = 100 * 365 * 86_400 * 1_000_000_000u64;
        for t in [0u64, 1, 0xff, 86_400 * 1_000_000_000, century] {
            let mut p = PROBE_MARKER.to_vec();
            p.extend_from_slice(&[0; 8]);
            p[..8].copy_from_slice(&(t | 0xff).to_le_bytes());
            assert!(!p.starts_with(PROBE_MARKER), "{t:#x}");
        }
    }
}
