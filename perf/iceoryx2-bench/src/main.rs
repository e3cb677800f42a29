//! iceoryx2 publish-subscribe measured the way `weft bench --transport shm`
//! measures weft, for perf/shm-compare.sh: one publisher thread and one
//! subscriber thread of one process (each with its own iceoryx2 node, so
//! that they meet only through shared memory), `--size` byte payloads.
//!
//! * Throughput (`--rate 0`): the publisher sends `--msgs` as fast as it
//!   can, losslessly (safe overflow off, `RetryUntilDelivered`), the
//!   subscriber counts them; the rate is what the subscriber received per
//!   second from the first send to the last receive.
//! * Latency (`--rate R`): message `i` is due at `start + i/R` and carries
//!   that intended send time in its first 8 bytes (ns since one epoch shared
//!   by both threads); the subscriber records `receive time - intended time`
//!   into an HdrHistogram, so a stall counts in full (open loop, no
//!   coordinated omission), as `weft bench --rate` does.
//!
//! The subscriber waits for data either by spinning on `receive()`
//! (`--wait spin`, iceoryx2's own benchmark style) or, when nothing is
//! there, by sleeping on an iceoryx2 event service that the publisher
//! notifies after every send (`--wait event`: a syscall per message, which
//! is what iceoryx2 offers for blocking receivers).
//!
//! Output: one summary line on stdout and `--json FILE` with the numbers
//! perf/shm-compare.sh tabulates. Its own crate (not in weft's workspace).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::prelude::*;

#[derive(Clone, Debug)]
struct Args {
    size: usize,
    msgs: u64,
    duration: Option<f64>,
    rate: u64,
    pub_core: Option<usize>,
    sub_core: Option<usize>,
    event: bool,
    json: Option<String>,
    buffer: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: iceoryx2-bench [--size B] [--msgs N | --duration SECS] [--rate R] \
         [--pub-core C] [--sub-core C] [--wait spin|event] [--buffer N] [--json FILE]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut a = Args {
        size: 64,
        msgs: 1_000_000,
        duration: None,
        rate: 0,
        pub_core: None,
        sub_core: None,
        event: false,
        json: None,
        buffer: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--size" => a.size = value().parse().unwrap_or_else(|_| usage()),
            "--msgs" => a.msgs = value().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = Some(value().parse().unwrap_or_else(|_| usage())),
            "--rate" => a.rate = value().parse().unwrap_or_else(|_| usage()),
            "--pub-core" => a.pub_core = Some(value().parse().unwrap_or_else(|_| usage())),
            "--sub-core" => a.sub_core = Some(value().parse().unwrap_or_else(|_| usage())),
            "--buffer" => a.buffer = value().parse().unwrap_or_else(|_| usage()),
            "--json" => a.json = Some(value()),
            "--wait" => {
                a.event = match value().as_str() {
                    "spin" => false,
                    "event" => true,
                    _ => usage(),
                }
            }
            _ => usage(),
        }
    }
    if a.size < 8 || a.buffer == 0 {
        usage();
    }
    a
}

struct Shared {
    args: Args,
    epoch: Instant,
    start_ns: AtomicU64,
    /// Messages the publisher sent in total, once it is done.
    sent: AtomicU64,
    pub_done: AtomicBool,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
            eprintln!("iceoryx2-bench: cannot pin to core {id}");
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("bounds")
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn names() -> (ServiceName, ServiceName) {
    let id = std::process::id();
    (
        format!("weft-bench/{id}/data").as_str().try_into().expect("name"),
        format!("weft-bench/{id}/wake").as_str().try_into().expect("name"),
    )
}

fn data_service(
    node: &Node<ipc::Service>,
    a: &Args,
) -> Result<iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, [u8], ()>, Error>
{
    Ok(node
        .service_builder(&names().0)
        .publish_subscribe::<[u8]>()
        .enable_safe_overflow(false)
        .subscriber_max_buffer_size(a.buffer)
        .history_size(0)
        .max_publishers(1)
        .max_subscribers(1)
        .open_or_create()
        .map_err(|e| format!("pubsub service: {e:?}"))?)
}

fn send(
    publisher: &Publisher<ipc::Service, [u8], ()>,
    payload: &[u8],
) -> Result<(), Error> {
    loop {
        match publisher.loan_slice_uninit(payload.len()) {
            Ok(s) => {
                s.write_from_slice(payload)
                    .send()
                    .map_err(|e| format!("send: {e:?}"))?;
                return Ok(());
            }
            // All samples out (the subscriber holds them): retry.
            Err(_) => std::hint::spin_loop(),
        }
    }
}

fn publisher(shared: &Shared, ready: &Barrier) -> Result<(u64, Histogram<u64>), Error> {
    let a = &shared.args;
    pin(a.pub_core);
    let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1");
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| format!("node: {e:?}"))?;
    let service = data_service(&node, a)?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(a.size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(|e| format!("publisher: {e:?}"))?;
    let notifier = if a.event {
        let ev = node
            .service_builder(&names().1)
            .event()
            .open_or_create()
            .map_err(|e| format!("event service: {e:?}"))?;
        Some(
            ev.notifier_builder()
                .create()
                .map_err(|e| format!("notifier: {e:?}"))?,
        )
    } else {
        None
    };
    ready.wait(); // the subscriber is connected
    ready.wait(); // start time set
    let start = shared.start_ns.load(Ordering::Acquire);
    let mut lag = histogram();
    let mut payload = vec![0xa5u8; a.size];
    let limit = match (a.duration, a.rate) {
        (Some(d), r) if r > 0 => (d * r as f64) as u64,
        _ => a.msgs,
    };
    let end_ns = a.duration.map(|d| start + (d * 1e9) as u64);
    while shared.now_ns() < start {
        std::hint::spin_loop();
    }
    let mut sent = 0u64;
    while sent < limit {
        if a.rate > 0 {
            let due = start + (u128::from(sent) * 1_000_000_000 / u128::from(a.rate)) as u64;
            let mut now = shared.now_ns();
            if now < due {
                if due - now > 60_000 {
                    std::thread::sleep(Duration::from_nanos(due - now - 50_000));
                }
                while {
                    now = shared.now_ns();
                    now < due
                } {
                    std::hint::spin_loop();
                }
            }
            lag.saturating_record(now.saturating_sub(due).max(1));
            payload[..8].copy_from_slice(&due.to_le_bytes());
        } else if end_ns.is_some_and(|e| sent.is_multiple_of(1024) && shared.now_ns() >= e) {
            break;
        }
        send(&publisher, &payload)?;
        if let Some(n) = &notifier {
            n.notify().map_err(|e| format!("notify: {e:?}"))?;
        }
        sent += 1;
    }
    shared.sent.store(sent, Ordering::Release);
    shared.pub_done.store(true, Ordering::Release);
    Ok((sent, lag))
}

struct SubResult {
    received: u64,
    last_ns: u64,
    latency: Histogram<u64>,
}

fn subscriber(shared: &Shared, ready: &Barrier) -> Result<SubResult, Error> {
    let a = &shared.args;
    pin(a.sub_core);
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .map_err(|e| format!("node: {e:?}"))?;
    let service = data_service(&node, a)?;
    let subscriber = service
        .subscriber_builder()
        .buffer_size(a.buffer)
        .create()
        .map_err(|e| format!("subscriber: {e:?}"))?;
    let listener = if a.event {
        let ev = node
            .service_builder(&names().1)
            .event()
            .open_or_create()
            .map_err(|e| format!("event service: {e:?}"))?;
        Some(
            ev.listener_builder()
                .create()
                .map_err(|e| format!("listener: {e:?}"))?,
        )
    } else {
        None
    };
    ready.wait();
    ready.wait();
    let latency_mode = a.rate > 0;
    let mut r = SubResult {
        received: 0,
        last_ns: 0,
        latency: histogram(),
    };
    let mut quiet_since: Option<u64> = None;
    loop {
        match subscriber.receive().map_err(|e| format!("receive: {e:?}"))? {
            Some(sample) => {
                let now = shared.now_ns();
                if latency_mode {
                    let p = sample.payload();
                    let ts = u64::from_le_bytes(p[..8].try_into().unwrap());
                    r.latency.saturating_record(now.saturating_sub(ts).max(1));
                }
                r.received += 1;
                r.last_ns = now;
                quiet_since = None;
            }
            None => {
                if shared.pub_done.load(Ordering::Acquire) {
                    if r.received >= shared.sent.load(Ordering::Acquire) {
                        return Ok(r);
                    }
                    let now = shared.now_ns();
                    match quiet_since {
                        Some(t) if now - t > 2_000_000_000 => return Ok(r),
                        Some(_) => {}
                        None => quiet_since = Some(now),
                    }
                }
                match &listener {
                    Some(l) => {
                        l.timed_wait(|_| {}, Duration::from_millis(10))
                            .map_err(|e| format!("wait: {e:?}"))?;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
    }
}

fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

fn main() {
    let args = parse();
    set_log_level(LogLevel::Error);
    let shared = Arc::new(Shared {
        args: args.clone(),
        epoch: Instant::now(),
        start_ns: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        pub_done: AtomicBool::new(false),
    });
    // The service is created here first, so that both threads open it.
    let node = NodeBuilder::new()
        .create::<ipc::Service>()
        .expect("iceoryx2 node");
    let _service = data_service(&node, &args).expect("iceoryx2 service");
    let ready = Arc::new(Barrier::new(3));
    let sub = {
        let (s, r) = (shared.clone(), ready.clone());
        std::thread::spawn(move || subscriber(&s, &r))
    };
    let publ = {
        let (s, r) = (shared.clone(), ready.clone());
        std::thread::spawn(move || publisher(&s, &r))
    };
    ready.wait();
    let start = shared.now_ns() + 2_000_000;
    shared.start_ns.store(start, Ordering::Release);
    ready.wait();
    let (sent, lag) = match publ.join().expect("publisher thread") {
        Ok(v) => v,
        Err(e) => {
            eprintln!("iceoryx2-bench: publisher: {e}");
            std::process::exit(1)
        }
    };
    let r = match sub.join().expect("subscriber thread") {
        Ok(r) => r,
        Err(e) => {
            eprintln!("iceoryx2-bench: subscriber: {e}");
            std::process::exit(1)
        }
    };
    let secs = r.last_ns.saturating_sub(start) as f64 / 1e9;
    let rate = if secs > 0.0 { r.received as f64 / secs } else { 0.0 };
    let wait = if args.event { "event" } else { "spin" };
    let mut line = format!(
        "iceoryx2 {} B wait={wait} pub-core={:?} sub-core={:?}: sent {sent} received {} lost {} in {secs:.3} s = {:.0} msg/s",
        args.size,
        args.pub_core,
        args.sub_core,
        r.received,
        sent.saturating_sub(r.received),
        rate
    );
    let mut json = format!(
        "{{\"system\":\"iceoryx2 0.10.0\",\"size\":{},\"rate_per_pub\":{},\"wait\":\"{wait}\",\"sent\":{sent},\"received\":{},\"lost\":{},\"secs\":{secs},\"msgs_per_s\":{rate}",
        args.size,
        args.rate,
        r.received,
        sent.saturating_sub(r.received)
    );
    if args.rate > 0 && !r.latency.is_empty() {
        let h = &r.latency;
        line.push_str(&format!(
            "; latency p50 {:.2} µs p99 {:.2} µs p99.9 {:.2} µs max {:.2} µs; send lag p99 {:.2} µs",
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
            h.max() as f64 / 1e3,
            us(&lag, 0.99)
        ));
        json.push_str(&format!(
            ",\"latency\":{{\"count\":{},\"p50_us\":{},\"p99_us\":{},\"p99_9_us\":{},\"max_us\":{}}},\"send_lag_p99_us\":{}",
            h.len(),
            us(h, 0.5),
            us(h, 0.99),
            us(h, 0.999),
            h.max() as f64 / 1e3,
            us(&lag, 0.99)
        ));
    }
    json.push_str("}\n");
    println!("{line}");
    if let Some(path) = &args.json {
        std::fs::write(path, json).expect("write --json");
    }
}
