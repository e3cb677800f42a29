//! Results: per-client numbers, totals, latency percentiles, the tool's own
//! CPU use; printed as text and serialised as JSON.

use std::time::SystemTime;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Collected, Plan, Protocol};

#[derive(Debug, Default)]
pub struct PubResult {
    pub sent: u64,
    pub acked: u64,
    pub elapsed_s: f64,
    pub send_lag: Option<Histogram<u64>>,
    /// QoS 1 / `--js`: acknowledgement latency, ns.
    pub ack_latency: Option<Histogram<u64>>,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct SubResult {
    pub received: u64,
    /// From the start of publishing to the last message received.
    pub elapsed_s: f64,
    /// Stopped waiting for missing messages after --quiet-ms.
    pub quiet_timeout: bool,
    pub error: Option<String>,
}

/// CPU time of this process.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    pub user_s: f64,
    pub sys_s: f64,
}

impl Cpu {
    pub fn minus(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            user_s: self.user_s - earlier.user_s,
            sys_s: self.sys_s - earlier.sys_s,
        }
    }
}

pub fn cpu_now() -> Cpu {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            Cpu {
                user_s: s(u.user_time()),
                sys_s: s(u.system_time()),
            }
        }
        Err(_) => Cpu {
            user_s: 0.0,
            sys_s: 0.0,
        },
    }
}

#[derive(Debug, Serialize)]
pub struct Rate {
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
}

impl Rate {
    fn new(msgs: u64, secs: f64, size: usize) -> Rate {
        if secs <= 0.0 {
            return Rate {
                msgs_per_s: 0.0,
                mb_per_s: 0.0,
            };
        }
        let r = msgs as f64 / secs;
        Rate {
            msgs_per_s: r,
            mb_per_s: r * size as f64 / 1e6,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
    /// (percentile, microseconds) pairs for plotting.
    pub percentiles: Vec<(f64, f64)>,
}

const PLOT_PERCENTILES: [f64; 16] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    99.9999, 100.0,
];

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |v: u64| v as f64 / 1e3;
        let q = |p: f64| us(h.value_at_quantile(p));
        Some(Latency {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1e3,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p99_9_us: q(0.999),
            p99_99_us: q(0.9999),
            max_us: us(h.max()),
            percentiles: PLOT_PERCENTILES
                .iter()
                .map(|&p| (p, q(p / 100.0)))
                .collect(),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct PubSummary {
    pub id: usize,
    pub sent: u64,
    pub acked: u64,
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub rate: Rate,
    pub send_lag: Option<Latency>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SubSummary {
    pub id: usize,
    pub received: u64,
    pub elapsed_s: f64,
    #[serde(flatten)]
    pub rate: Rate,
    pub latency: Option<Latency>,
    pub quiet_timeout: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Totals {
    pub sent: u64,
    /// sent × subscribers.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    /// Received beyond the expected count (QoS 1 redeliveries).
    pub extra: u64,
    pub publish: Rate,
    pub deliver: Rate,
}

#[derive(Debug, Serialize)]
pub struct CpuSummary {
    pub user_s: f64,
    pub sys_s: f64,
    pub wall_s: f64,
    pub cores: usize,
    /// (user + sys) / wall.
    pub pct_of_one_core: f64,
    /// (user + sys) / (wall × cores).
    pub pct_of_all_cores: f64,
}

#[derive(Debug, Serialize)]
pub struct Config {
    pub protocol: Protocol,
    /// `tcp`, or `shm` (`--transport shm`: `server` is a socket path).
    pub transport: super::Transport,
    pub server: String,
    /// Where the subscribers connected (`server` unless --sub-server).
    pub sub_server: String,
    pub subject: String,
    pub pubs: usize,
    pub subs: usize,
    pub msgs_per_pub: Option<u64>,
    pub duration_s: Option<f64>,
    pub size: usize,
    pub qos: u8,
    pub rate_per_pub: u64,
    pub window: u64,
    pub batch: usize,
    pub pin_cores: Vec<usize>,
    /// Subscribers with clean session 0 (`--persistent`).
    pub persistent: bool,
    /// NATS publishes answered on a reply inbox (`--js`).
    pub js: bool,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub version: &'static str,
    pub started_at_unix_s: f64,
    /// Names the run's clients: `weft-bench-{run_id}-pub-N` / `-sub-N`
    /// (a `--persistent` subscriber's session stays under that id).
    pub run_id: u32,
    pub config: Config,
    pub wall_s: f64,
    pub publishers: Vec<PubSummary>,
    pub subscribers: Vec<SubSummary>,
    pub totals: Totals,
    /// End-to-end, from the intended send time (rate mode only).
    pub latency: Option<Latency>,
    /// How late publishers wrote messages versus their schedule.
    pub send_lag: Option<Latency>,
    /// QoS 1 / `--js`: from the intended send time (rate mode) or the
    /// write (as fast as possible) to the publisher's acknowledgement.
    pub ack_latency: Option<Latency>,
    /// With --sub-server: how long until every subscriber had received a
    /// probe from every publisher, before the measured run (ms).
    pub probe_ms: Option<f64>,
    pub cpu: CpuSummary,
    pub errors: usize,
}

impl Summary {
    // Every argument is a distinct measurement of one run; a struct to
    // carry them would only be this list again.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        plan: &Plan,
        pubs: &[super::report::PubResult],
        subs: &[SubResult],
        collected: Collected,
        probe_ms: Option<f64>,
        wall_s: f64,
        cpu: Cpu,
        cores: usize,
        started_at: SystemTime,
    ) -> Summary {
        let size = plan.size;
        let sent: u64 = pubs.iter().map(|p| p.sent).sum();
        let received: u64 = subs.iter().map(|s| s.received).sum();
        let expected = sent * plan.subs as u64;
        let pub_secs = pubs.iter().map(|p| p.elapsed_s).fold(0.0, f64::max);
        let sub_secs = subs.iter().map(|s| s.elapsed_s).fold(0.0, f64::max);
        let mut all = super::new_histogram();
        let mut lag_all = super::new_histogram();
        let mut ack_all = super::new_histogram();
        for h in collected.per_sub.iter().flatten() {
            all.add(h).expect("same bounds");
        }
        for p in pubs {
            if let Some(h) = &p.send_lag {
                lag_all.add(h).expect("same bounds");
            }
            if let Some(h) = &p.ack_latency {
                ack_all.add(h).expect("same bounds");
            }
        }
        let busy = cpu.user_s + cpu.sys_s;
        let errors = pubs.iter().filter(|p| p.error.is_some()).count()
            + subs.iter().filter(|s| s.error.is_some()).count();
        Summary {
            tool: "weft bench",
            version: env!("CARGO_PKG_VERSION"),
            started_at_unix_s: started_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            // The same as `execute`'s run id.
            run_id: std::process::id(),
            config: Config {
                protocol: plan.proto,
                transport: plan.transport,
                server: plan.server.clone(),
                sub_server: plan.sub_server.clone(),
                subject: plan.subject.clone(),
                pubs: plan.pubs,
                subs: plan.subs,
                msgs_per_pub: plan.msgs,
                duration_s: plan.duration_ns.map(|d| d as f64 / 1e9),
                size,
                qos: plan.qos,
                rate_per_pub: plan.rate,
                window: plan.window,
                batch: plan.batch,
                pin_cores: plan.pin.clone(),
                persistent: plan.persistent,
                js: plan.js,
            },
            wall_s,
            publishers: pubs
                .iter()
                .enumerate()
                .map(|(id, p)| PubSummary {
                    id,
                    sent: p.sent,
                    acked: p.acked,
                    elapsed_s: p.elapsed_s,
                    rate: Rate::new(p.sent, p.elapsed_s, size),
                    send_lag: p.send_lag.as_ref().and_then(Latency::of),
                    error: p.error.clone(),
                })
                .collect(),
            subscribers: subs
                .iter()
                .enumerate()
                .map(|(id, s)| SubSummary {
                    id,
                    received: s.received,
                    elapsed_s: s.elapsed_s,
                    rate: Rate::new(s.received, s.elapsed_s, size),
                    latency: collected.per_sub[id].as_ref().and_then(Latency::of),
                    quiet_timeout: s.quiet_timeout,
                    error: s.error.clone(),
                })
                .collect(),
            totals: Totals {
                sent,
                expected,
                received,
                lost: expected.saturating_sub(received),
                extra: received.saturating_sub(expected),
                publish: Rate::new(sent, pub_secs, size),
                deliver: Rate::new(received, sub_secs, size),
            },
            latency: Latency::of(&all),
            send_lag: Latency::of(&lag_all),
            ack_latency: Latency::of(&ack_all),
            probe_ms,
            cpu: CpuSummary {
                user_s: cpu.user_s,
                sys_s: cpu.sys_s,
                wall_s,
                cores,
                pct_of_one_core: pct(busy, wall_s),
                pct_of_all_cores: pct(busy, wall_s * cores as f64),
            },
            errors,
        }
    }

    pub fn print(&self) {
        let c = &self.config;
        let mode = match (c.msgs_per_pub, c.duration_s) {
            (Some(m), _) => format!("{m} msgs/pub"),
            (None, Some(d)) => format!("{d} s"),
            _ => String::new(),
        };
        let rate = if c.rate_per_pub == 0 {
            "unthrottled".to_string()
        } else {
            format!("{} msg/s per pub", c.rate_per_pub)
        };
        let qos = match c.protocol {
            Protocol::Mqtt => format!(", QoS {}", c.qos),
            Protocol::Nats if c.js => ", acknowledged (--js)".to_string(),
            Protocol::Nats => String::new(),
            Protocol::Amqp if c.qos == 1 => ", unsettled".to_string(),
            Protocol::Amqp => ", pre-settled".to_string(),
        };
        let qos = if c.persistent {
            format!("{qos}, persistent subscribers")
        } else {
            qos
        };
        let server = super::servers(&c.server, &c.sub_server);
        let server = match c.transport {
            super::Transport::Tcp => server,
            super::Transport::Shm => format!("shm {server}"),
        };
        println!(
            "weft bench: {} {server} {:?}, {} pub -> {} sub, {mode}, {} B{qos}, {rate}",
            match c.protocol {
                Protocol::Mqtt => "mqtt",
                Protocol::Nats => "nats",
                Protocol::Amqp => "amqp",
            },
            c.subject,
            c.pubs,
            c.subs,
            c.size
        );
        if let Some(ms) = self.probe_ms {
            println!("  probe: every subscriber reached by every publisher after {ms:.1} ms (not measured)");
        }
        for p in &self.publishers {
            let mut line = format!(
                "  pub {:>3}: sent {:>10} in {:>7.3} s  {:>9} msg/s {:>9.2} MB/s",
                p.id,
                p.sent,
                p.elapsed_s,
                si(p.rate.msgs_per_s),
                p.rate.mb_per_s
            );
            if c.qos == 1 || c.js {
                line.push_str(&format!("  acked {}", p.acked));
            }
            if let Some(e) = &p.error {
                line.push_str(&format!("  ERROR {e}"));
            }
            println!("{line}");
        }
        for s in &self.subscribers {
            let mut line = format!(
                "  sub {:>3}: recv {:>10} in {:>7.3} s  {:>9} msg/s {:>9.2} MB/s",
                s.id,
                s.received,
                s.elapsed_s,
                si(s.rate.msgs_per_s),
                s.rate.mb_per_s
            );
            if let Some(l) = &s.latency {
                line.push_str(&format!("  p50 {:.1} p99 {:.1} µs", l.p50_us, l.p99_us));
            }
            if s.quiet_timeout {
                line.push_str("  (gave up waiting)");
            }
            if let Some(e) = &s.error {
                line.push_str(&format!("  ERROR {e}"));
            }
            println!("{line}");
        }
        let t = &self.totals;
        println!(
            "  total: publish {} msg/s {:.2} MB/s | deliver {} msg/s {:.2} MB/s",
            si(t.publish.msgs_per_s),
            t.publish.mb_per_s,
            si(t.deliver.msgs_per_s),
            t.deliver.mb_per_s
        );
        let lost_pct = if t.expected > 0 {
            100.0 * t.lost as f64 / t.expected as f64
        } else {
            0.0
        };
        println!(
            "  messages: sent {} expected {} received {} lost {} ({lost_pct:.3}%){}",
            t.sent,
            t.expected,
            t.received,
            t.lost,
            if t.extra > 0 {
                format!(" extra {}", t.extra)
            } else {
                String::new()
            }
        );
        if let Some(l) = &self.latency {
            println!(
                "  latency µs ({} samples, from intended send time): p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} p99.99 {:.1} max {:.1}",
                l.count, l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.max_us
            );
        }
        if let Some(l) = &self.ack_latency {
            println!(
                "  ack latency µs ({} acks, from {} to acknowledgement): p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
                l.count,
                if c.rate_per_pub > 0 { "intended send time" } else { "write" },
                l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.max_us
            );
        }
        if let Some(l) = &self.send_lag {
            println!(
                "  send lag µs (publisher behind schedule): p50 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}",
                l.p50_us, l.p99_us, l.p99_9_us, l.max_us
            );
        }
        let cpu = &self.cpu;
        println!(
            "  bench cpu: {:.2} s user + {:.2} s sys over {:.2} s = {:.1}% of one core, {:.1}% of {} cores",
            cpu.user_s, cpu.sys_s, cpu.wall_s, cpu.pct_of_one_core, cpu.pct_of_all_cores, cpu.cores
        );
        if self.errors > 0 {
            println!("  {} client(s) failed", self.errors);
        }
    }
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        100.0 * part / whole
    } else {
        0.0
    }
}

/// 1234567 -> "1.23M".
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(2.5e9), "2.50G");
    }

    #[test]
    fn rates_and_latency() {
        let r = Rate::new(1_000_000, 2.0, 100);
        assert_eq!(r.msgs_per_s, 500_000.0);
        assert_eq!(r.mb_per_s, 50.0);
        assert_eq!(Rate::new(5, 0.0, 1).msgs_per_s, 0.0);
        let mut h = super::super::new_histogram();
        assert!(Latency::of(&h).is_none());
        for v in 1..=100_000u64 {
            h.record(v * 1000).unwrap(); // 1 µs .. 100 ms
        }
        let l = Latency::of(&h).unwrap();
        assert_eq!(l.count, 100_000);
        assert!(
            (l.p50_us - 50_000.0).abs() / 50_000.0 < 0.001,
            "{}",
            l.p50_us
        );
        assert!(
            (l.p99_us - 99_000.0).abs() / 99_000.0 < 0.001,
            "{}",
            l.p99_us
        );
        assert!(l.max_us >= 100_000.0 * 0.999);
        assert_eq!(l.percentiles.len(), PLOT_PERCENTILES.len());
    }
}
