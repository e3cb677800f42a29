//! The probe phase of a run whose subscribers are on another server than
//! its publishers (`--sub-server`, e.g. another router of a mesh): before
//! anything is measured, publishers send probes until every subscriber has
//! seen one from every publisher, so that interest has travelled.
//!
//! Owns: the probe payload ([`PROBE_MARKER`]) and the three sides of the
//! phase (publisher, subscriber, main thread). Must not touch: the measured
//! run; probes are never counted nor measured, also late ones.

use std::io;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use super::wire::{self, Conn, Inbound};
use super::Shared;

/// Start of a probe message's payload (followed by the publisher's index,
/// u32 little-endian). Measured payloads cannot start with it: throughput
/// payloads start with 0xa5, and in latency mode the first 8 bytes are a
/// time in ns since the run's epoch, which would have to be at least
/// 0x72 << 56 ns (260 years) to match byte 7 ('r').
pub(crate) const PROBE_MARKER: &[u8] = b"\xffweft-probe\xff";
/// How often publishers send a probe.
pub(super) const PROBE_EVERY: Duration = Duration::from_millis(20);

pub(super) fn probe_from(payload: &[u8]) -> Option<usize> {
    let rest = payload.strip_prefix(PROBE_MARKER)?;
    Some(u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize)
}

/// The probe phase, seen from the main thread: waits until every subscriber
/// has seen a probe from every publisher. Returns how long that took (ms),
/// None without a probe phase or when a client failed (it reports why).
pub(super) fn await_probes(shared: &Shared) -> io::Result<Option<f64>> {
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

/// Probe phase of a subscriber: reads until it has seen a probe from every
/// publisher, then goes on reading (and dropping) until the phase is over.
pub(super) fn await_probe(shared: &Shared, conn: &mut Conn) -> io::Result<()> {
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
pub(super) fn send_probes(shared: &Shared, n: usize, conn: &mut Conn) -> io::Result<()> {
    let plan = &shared.plan;
    let mut payload = PROBE_MARKER.to_vec();
    payload.extend_from_slice(&(n as u32).to_le_bytes());
    let mut probe = Vec::new();
    wire::put_message(plan.proto, &mut probe, &plan.subject, 0, None, &payload);
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

#[cfg(test)]
mod tests {
    use super::*;

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
