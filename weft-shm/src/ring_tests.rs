//! The ring's tests: wrap-around, full and empty, the validation of the
//! other side's indices, two threads streaming with a checksum, and the
//! wake protocol under a seeded stress (never a lost wake-up: every wait
//! is bounded, and a lost wake shows as a wait that ran into its bound).

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::doorbell;
use crate::segment::for_tests;

#[test]
fn empty_then_full_then_wraps() {
    let seg = for_tests(4096);
    let mut p = Producer::new(seg.c2r());
    let mut c = Consumer::new(seg.c2r());
    let mut buf = [0u8; 8192];
    assert_eq!(c.read(&mut buf).unwrap(), 0, "empty ring reads nothing");
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    assert_eq!(
        p.write(&data).unwrap(),
        4096,
        "a full ring takes ring_bytes"
    );
    assert_eq!(p.write(&data).unwrap(), 0);
    assert_eq!(
        c.read(&mut buf).unwrap(),
        0,
        "nothing visible before publish"
    );
    assert!(!p.publish(), "the consumer is not sleeping");
    assert_eq!(c.read(&mut buf[..1000]).unwrap(), 1000);
    assert_eq!(&buf[..1000], &data[..1000]);
    assert_eq!(p.write(&data[4096..]).unwrap(), 0, "room not released yet");
    assert!(!c.release());
    // 904 more bytes wrap around the end.
    assert_eq!(p.write(&data[4096..]).unwrap(), 904);
    p.publish();
    assert_eq!(c.read(&mut buf).unwrap(), 4000);
    assert_eq!(&buf[..4000], &data[1000..5000]);
    c.release();
    assert_eq!(p.free().unwrap(), 4096);
    assert!(!p.write_all_or_none(&[0u8; 4097]).unwrap());
    assert!(p.write_all_or_none(&[7u8; 4096]).unwrap());
}

#[test]
fn flags_ask_for_the_doorbell() {
    let seg = for_tests(4096);
    let mut p = Producer::new(seg.c2r());
    let mut c = Consumer::new(seg.c2r());
    assert_eq!(c.start_sleeping().unwrap(), 0);
    p.write(b"x").unwrap();
    assert!(p.publish(), "a sleeping consumer is rung");
    c.stop_sleeping();
    p.write(b"y").unwrap();
    assert!(!p.publish());
    p.write(&[0u8; 4094]).unwrap();
    p.publish();
    assert_eq!(p.start_waiting().unwrap(), 0, "full");
    let mut buf = [0u8; 10];
    c.read(&mut buf).unwrap();
    assert!(c.release(), "a waiting producer is rung");
    p.stop_waiting();
    c.read(&mut buf).unwrap();
    assert!(!c.release());
}

#[test]
fn impossible_indices_are_corrupt() {
    let seg = for_tests(4096);
    let hdr = unsafe { &*(seg.as_ptr() as *const crate::segment::Header) };
    let mut c = Consumer::new(seg.c2r());
    hdr.c2r.tail.store(4097, Ordering::Relaxed);
    let err = c.available().unwrap_err();
    assert_eq!(err.what, "tail");
    hdr.c2r.tail.store(100, Ordering::Relaxed);
    assert_eq!(c.available().unwrap(), 100);
    hdr.c2r.tail.store(50, Ordering::Relaxed);
    assert!(c.available().is_err(), "a tail that goes back is corrupt");

    let mut p = Producer::new(seg.r2c());
    hdr.r2c.head.store(1, Ordering::Relaxed);
    assert_eq!(
        p.free().unwrap_err().what,
        "head",
        "head past the published tail"
    );
    hdr.r2c.head.store(0, Ordering::Relaxed);
    p.write(&[1u8; 10]).unwrap();
    p.publish();
    hdr.r2c.head.store(10, Ordering::Relaxed);
    assert_eq!(p.free().unwrap(), 4096);
    hdr.r2c.head.store(u64::MAX, Ordering::Relaxed);
    assert!(p.free().is_err());
}

/// A small seeded generator (xorshift), so that a failing run repeats.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Streams `total` bytes of a seeded sequence from one thread to another
/// in random chunk sizes; the consumer checks every byte and a checksum.
/// With `sleep`, both sides sleep on real eventfds per the wake protocol,
/// each wait bounded (`wait_rung`): a lost wake-up shows as a timed-out
/// wait, which fails the test.
fn stream(total: u64, ring_bytes: u64, seed: u64, sleep: bool) {
    let seg = for_tests(ring_bytes);
    let to_consumer = doorbell::create().unwrap();
    let to_producer = doorbell::create().unwrap();
    let byte_at = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut p = Producer::new(seg.c2r());
            let mut rng = Rng(seed | 1);
            let mut sent = 0u64;
            let mut chunk = Vec::new();
            let mut sum = 0u64;
            while sent < total {
                let len = (rng.next() % 700 + 1).min(total - sent) as usize;
                chunk.clear();
                chunk.extend((sent..sent + len as u64).map(byte_at));
                let mut off = 0;
                while off < len {
                    let n = p.write(&chunk[off..]).unwrap();
                    for b in &chunk[off..off + n] {
                        sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
                    }
                    off += n;
                    if p.publish() {
                        doorbell::ring(to_consumer.as_fd());
                    }
                    if n == 0 {
                        if sleep && rng.next().is_multiple_of(2) {
                            if p.start_waiting().unwrap() == 0 {
                                wait_rung(to_producer.as_fd(), "room");
                            }
                            p.stop_waiting();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
                sent += len as u64;
            }
            sum
        });
        let mut c = Consumer::new(seg.c2r());
        let mut rng = Rng(seed.rotate_left(17) | 1);
        let mut got = 0u64;
        let mut sum = 0u64;
        let mut buf = vec![0u8; 1500];
        while got < total {
            let want = (rng.next() % 1500 + 1) as usize;
            let n = c.read(&mut buf[..want]).unwrap();
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(
                    *b,
                    byte_at(got + i as u64),
                    "byte {} differs",
                    got + i as u64
                );
                sum = sum.wrapping_mul(31).wrapping_add(u64::from(*b));
            }
            got += n as u64;
            if c.release() {
                doorbell::ring(to_producer.as_fd());
            }
            if n == 0 {
                if sleep && rng.next().is_multiple_of(2) {
                    if c.start_sleeping().unwrap() == 0 {
                        wait_rung(to_consumer.as_fd(), "data");
                    }
                    c.stop_sleeping();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
        assert_eq!(producer.join().unwrap(), sum, "checksums differ");
    });
}

#[test]
fn two_threads_stream_millions_of_bytes_spinning() {
    stream(4 << 20, 4096, 0x5eed, false);
    stream(4 << 20, 64 << 10, 0xfeed, false);
}

#[test]
fn two_threads_stream_with_sleeps_never_lose_a_wake_up() {
    for seed in [1u64, 0xdead_beef, 42, 7777] {
        stream(1 << 20, 4096, seed, true);
    }
}

/// Waits until `bell` is rung, within `WAIT_MAX` in all (a poll cut short
/// by a signal, EINTR, returns early and is waited again).
fn wait_rung(bell: std::os::fd::BorrowedFd<'_>, what: &str) {
    const WAIT_MAX: Duration = Duration::from_secs(5);
    let deadline = std::time::Instant::now() + WAIT_MAX;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if doorbell::wait(bell, None, Some(left)).unwrap().rung {
            return;
        }
        assert!(
            !left.is_zero(),
            "lost wake-up ({what}): the wait ran into its bound"
        );
    }
}
