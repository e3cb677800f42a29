//! `weft bench`: a load tool for MQTT 3.1.1, NATS and AMQP 1.0 brokers
//! (weft or any other), in the spirit of `nats bench`.
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
//! [`probe::PROBE_MARKER`] + publisher index) every [`probe::PROBE_EVERY`] until every
//! subscriber has seen a probe from every publisher, or fails after
//! `--probe-timeout-ms`. Probes, also late ones, are never counted nor
//! measured.
//!
//! `--transport shm`: the clients are `weft-shm` shared-memory clients of a
//! router's `--shm-listen` socket (`--server PATH`), MQTT QoS 0 or NATS,
//! one thread each as over TCP, same schedule and report (`--spin-us`:
//! how long a client spins before sleeping on its eventfd; `--one-thread`:
//! one thread drives the publisher and the subscriber, never sleeping,
//! for the router's latency alone, `shm_pair`).
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
//! * Durable destinations: `--persistent` subscribers hold MQTT sessions
//!   with clean session 0; `--js` NATS publishers send each message with a
//!   reply inbox and count the answers (a JetStream stream's PubAck) as
//!   acknowledgements, with the same bounded window as MQTT QoS 1. In both
//!   acknowledged modes publishers record the ack latency per message id,
//!   from the intended send time (`--rate`) or the write.
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
//!
//! Files: `args` (options, validated into a `Plan`), `publisher` and
//! `subscriber` (one thread each), `probe` (the probe phase), `wire` (the
//! blocking connection, MQTT framing) and `nats` (NATS framing), `amqp`
//! (AMQP 1.0 framing and link) and `amqp_clients` (the AMQP publisher and
//! subscriber threads), `shm` (the publisher and subscriber threads as
//! `weft-shm` clients, `--transport shm`),
//! `schedule` (clock, send times, core lists), `report` (summary and
//! JSON); this file starts the threads, gathers their histograms and
//! prints progress.

mod amqp;
mod amqp_clients;
mod amqp_codec;
mod args;
mod nats;
mod probe;
mod publisher;
mod report;
mod schedule;
mod shm;
mod shm_pair;
mod stream;
mod subscriber;
mod wire;
mod ws;

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, RecvTimeoutError};
use crossbeam::utils::CachePadded;
use hdrhistogram::Histogram;

use report::{PubResult, SubResult};
use schedule::Clock;

pub(crate) use args::{servers, Plan};
pub use args::{BenchArgs, Protocol, Transport};
pub use schedule::parse_cpu_list;

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
                        // `--one-thread`: one thread drives publisher 0 and subscriber 0.
    let threads = if plan.one_thread { 1 } else { clients };
    let ready = Arc::new(Barrier::new(threads + 1));
    let probed = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let (tx, rx) = channel::unbounded::<Interval>();
    let run_id = std::process::id();

    let mut pair = None;
    if plan.one_thread {
        let (shared, tx) = (shared.clone(), tx.clone());
        let gates = [ready.clone(), probed.clone(), go.clone()];
        pair = Some(
            thread::Builder::new()
                .name("pair-0".into())
                .spawn(move || {
                    let r = shm_pair::pair(&shared, run_id, &gates, &tx);
                    shared.finished.fetch_add(2, Ordering::Release);
                    r
                })?,
        );
    }
    let mut sub_handles = Vec::new();
    for n in (0..plan.subs).filter(|_| pair.is_none()) {
        let (shared, tx) = (shared.clone(), tx.clone());
        let gates = [ready.clone(), probed.clone(), go.clone()];
        sub_handles.push(
            thread::Builder::new()
                .name(format!("sub-{n}"))
                .spawn(move || {
                    let r = if shared.plan.transport == Transport::Shm {
                        shm::subscriber(&shared, n, run_id, &gates, &tx)
                    } else if shared.plan.proto == Protocol::Amqp {
                        amqp_clients::subscriber(&shared, n, run_id, &gates, &tx)
                    } else {
                        subscriber::subscriber(&shared, n, run_id, &gates, &tx)
                    };
                    shared.finished.fetch_add(1, Ordering::Release);
                    r
                })?,
        );
    }
    drop(tx);
    let mut pub_handles = Vec::new();
    for n in (0..plan.pubs).filter(|_| pair.is_none()) {
        let shared = shared.clone();
        let gates = [ready.clone(), probed.clone(), go.clone()];
        pub_handles.push(
            thread::Builder::new()
                .name(format!("pub-{n}"))
                .spawn(move || {
                    let r = if shared.plan.transport == Transport::Shm {
                        shm::publisher(&shared, n, run_id, &gates)
                    } else if shared.plan.proto == Protocol::Amqp {
                        amqp_clients::publisher(&shared, n, run_id, &gates)
                    } else {
                        publisher::publisher(&shared, n, run_id, &gates)
                    };
                    shared.finished.fetch_add(1, Ordering::Release);
                    r
                })?,
        );
    }

    ready.wait();
    let probe = probe::await_probes(&shared);
    shared.probe_over.store(true, Ordering::Release);
    probed.wait();
    let probe_ms = match probe {
        Ok(ms) => ms,
        Err(e) => {
            shared.abort.store(true, Ordering::Release);
            go.wait();
            if let Some(h) = pair {
                let _ = h.join();
            }
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

    let mut pubs: Vec<PubResult> = pub_handles
        .into_iter()
        .map(|h| h.join().expect("publisher thread panicked"))
        .collect();
    let mut subs: Vec<SubResult> = sub_handles
        .into_iter()
        .map(|h| h.join().expect("subscriber thread panicked"))
        .collect();
    if let Some(h) = pair {
        let (p, s) = h.join().expect("the --one-thread thread panicked");
        pubs.push(p);
        subs.push(s);
    }
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
