//! The clock and the fixed-rate send schedule (pure arithmetic, tested).
//!
//! All times are nanoseconds since one shared epoch, an [`Instant`] taken
//! once before any thread starts, so that a time written into a payload by a
//! publisher thread means the same thing to every subscriber thread.
//! Message `i` of a publisher is *intended* to be sent at
//! `start + offset + i * 1e9 / rate`, whether or not the publisher manages
//! to send it then: latency is measured from that intended time, so a
//! stalled broker (or a stalled publisher) shows up in the histogram instead
//! of silently delaying the measurements (no coordinated omission).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Sleeps until `t_ns` (returns at once if it has passed).
    pub fn sleep_until(&self, t_ns: u64) {
        let now = self.now_ns();
        if t_ns > now {
            std::thread::sleep(Duration::from_nanos(t_ns - now));
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The send schedule of one publisher at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Intended send time of message 0.
    pub start_ns: u64,
    /// Messages per second (> 0).
    pub rate: u64,
}

impl Schedule {
    /// Publisher `index` of `count` at `rate` messages per second each,
    /// starting at `start_ns`: publishers are staggered evenly within one
    /// interval so that they do not all send at the same instants.
    pub fn staggered(start_ns: u64, rate: u64, index: usize, count: usize) -> Schedule {
        assert!(rate > 0);
        let count = count.max(1) as u128;
        let offset = (index as u128 % count) * 1_000_000_000 / (u128::from(rate) * count);
        Schedule {
            start_ns: start_ns + offset as u64,
            rate,
        }
    }

    /// Intended send time of message `i`.
    #[inline]
    pub fn intended_ns(&self, i: u64) -> u64 {
        self.start_ns + (u128::from(i) * 1_000_000_000 / u128::from(self.rate)) as u64
    }

    /// How many messages are due at `now_ns`: the number of `i` with
    /// `intended_ns(i) <= now_ns`.
    #[inline]
    pub fn due_at(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let elapsed = u128::from(now_ns - self.start_ns);
        // Largest i with floor(i * 1e9 / rate) <= elapsed is
        // floor(((elapsed + 1) * rate - 1) / 1e9).
        let last = ((elapsed + 1) * u128::from(self.rate) - 1) / 1_000_000_000;
        (last + 1) as u64
    }

    /// Messages whose intended time falls before `end_ns` (duration mode).
    pub fn count_before(&self, end_ns: u64) -> u64 {
        if end_ns == 0 {
            return 0;
        }
        self.due_at(end_ns - 1)
    }
}

/// Parses a CPU list such as `1`, `0,2` or `2-3,6`.
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| format!("invalid CPU list {s:?}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("invalid CPU range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_follow_the_rate() {
        let s = Schedule {
            start_ns: 1_000,
            rate: 10_000,
        };
        assert_eq!(s.intended_ns(0), 1_000);
        assert_eq!(s.intended_ns(1), 1_000 + 100_000);
        assert_eq!(s.intended_ns(10_000), 1_000 + 1_000_000_000);
        // Rates that do not divide a second: no drift over many messages.
        let s = Schedule {
            start_ns: 0,
            rate: 3,
        };
        assert_eq!(s.intended_ns(1), 333_333_333);
        assert_eq!(s.intended_ns(3), 1_000_000_000);
        assert_eq!(s.intended_ns(3_000_000), 1_000_000 * 1_000_000_000);
    }

    #[test]
    fn due_at_is_the_inverse_of_intended() {
        for rate in [1u64, 3, 7, 1000, 50_000, 1_000_003] {
            let s = Schedule {
                start_ns: 12_345,
                rate,
            };
            assert_eq!(s.due_at(0), 0);
            assert_eq!(s.due_at(12_344), 0);
            for i in [0u64, 1, 2, 5, 99, 12_345, 1_000_000] {
                let t = s.intended_ns(i);
                assert_eq!(s.due_at(t), i + 1, "rate {rate} i {i}");
                if s.intended_ns(i + 1) > t + 1 {
                    assert_eq!(s.due_at(t + 1), i + 1);
                }
                if i > 0 && t > s.intended_ns(i - 1) {
                    assert_eq!(s.due_at(t - 1), i, "rate {rate} i {i}");
                }
            }
        }
    }

    #[test]
    fn count_before_a_deadline() {
        let s = Schedule {
            start_ns: 0,
            rate: 1000,
        };
        // One second at 1000/s: messages at 0, 1 ms, ..., 999 ms.
        assert_eq!(s.count_before(1_000_000_000), 1000);
        assert_eq!(s.count_before(1_000_000_001), 1001);
        assert_eq!(s.count_before(0), 0);
        assert_eq!(s.count_before(1), 1);
    }

    #[test]
    fn publishers_are_staggered_within_one_interval() {
        let a = Schedule::staggered(0, 1000, 0, 4);
        let b = Schedule::staggered(0, 1000, 1, 4);
        let d = Schedule::staggered(0, 1000, 3, 4);
        assert_eq!(a.start_ns, 0);
        assert_eq!(b.start_ns, 250_000);
        assert_eq!(d.start_ns, 750_000);
        assert!(d.start_ns < a.intended_ns(1));
        assert_eq!(Schedule::staggered(5, 1000, 0, 0).start_ns, 5);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("0,2-4").unwrap(), vec![0, 2, 3, 4]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }
}
