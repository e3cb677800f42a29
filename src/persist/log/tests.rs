//! The log's tests: framing and start-up reading with no executor, the
//! writer on a glommio executor over a temp directory (and a 64 KiB tmpfs
//! for a real full disk, when this process may mount one).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::frame::{self, Decoded, SNAP_BEGIN, SNAP_END};
use super::read::{list_segments, read_shard, segment_path, shard_dirs};
use super::snapshot::{remove_before, remove_shard_dir, write_snapshot};
use super::stats::PersistStats;
use super::write::{Inject, Log, LogError};
use crate::config::{Persistence, SyncPolicy};

/// A fresh directory under the temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "weft-log-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(i: usize) -> (u8, Vec<u8>) {
    (
        16 + (i % 5) as u8,
        format!("record {i} ").repeat(1 + i % 7).into_bytes(),
    )
}

fn frames(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, b) in records {
        frame::encode(*k, b, &mut out);
    }
    out
}

#[test]
fn frames_round_trip() {
    let records: Vec<_> = (0..50).map(record).chain([(200, Vec::new())]).collect();
    let buf = frames(&records);
    let mut at = 0;
    for (k, b) in &records {
        match frame::decode(&buf[at..]) {
            Decoded::Record { kind, body, bytes } => {
                assert_eq!((kind, body), (*k, &b[..]));
                assert_eq!(bytes, frame::frame_bytes(b.len()));
                at += bytes;
            }
            other => panic!("at {at}: {other:?}"),
        }
    }
    assert_eq!(frame::decode(&buf[at..]), Decoded::End);
    // Every strict prefix of a frame is torn, never a record.
    let one = frames(&records[3..4]);
    for cut in 1..one.len() {
        assert_eq!(frame::decode(&one[..cut]), Decoded::Torn, "cut {cut}");
    }
    // A length of zero (a zero-filled tail) and one past the maximum.
    assert_eq!(frame::decode(&[0u8; 32]), Decoded::Torn);
    let mut huge = one.clone();
    huge[0..4].copy_from_slice(&(frame::RECORD_BYTES_MAX as u32 + 1).to_le_bytes());
    assert_eq!(frame::decode(&huge), Decoded::Torn);
    // One flipped bit in kind or body: a bad CRC of the same length.
    for i in frame::HEADER_BYTES..one.len() {
        let mut bad = one.clone();
        bad[i] ^= 0x10;
        assert_eq!(
            frame::decode(&bad),
            Decoded::BadCrc { bytes: one.len() },
            "byte {i}"
        );
    }
}

#[test]
fn torn_tail_is_truncated_at_every_cut() {
    let records: Vec<_> = (0..3).map(record).collect();
    let whole = frames(&records);
    let ends: Vec<usize> = records
        .iter()
        .scan(0, |at, (_, b)| {
            *at += frame::frame_bytes(b.len());
            Some(*at)
        })
        .collect();
    for cut in 0..=whole.len() {
        let dir = TempDir::new("torn");
        let path = segment_path(&dir.0, 1);
        std::fs::write(&path, &whole[..cut]).unwrap();
        let replay = read_shard(&dir.0).unwrap();
        let kept = ends.iter().filter(|e| **e <= cut).count();
        assert_eq!(replay.records, records[..kept], "cut {cut}");
        let good = if kept == 0 { 0 } else { ends[kept - 1] };
        let torn = cut != good;
        assert_eq!(replay.torn_truncated, u64::from(torn), "cut {cut}");
        assert_eq!(replay.torn_bytes, (cut - good) as u64, "cut {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good as u64);
        // Read again: clean now.
        let again = read_shard(&dir.0).unwrap();
        assert_eq!((again.records.len(), again.torn_truncated), (kept, 0));
    }
}

#[test]
fn bad_crc_is_skipped_and_counted() {
    let dir = TempDir::new("crc");
    let records: Vec<_> = (0..4).map(record).collect();
    let mut data = frames(&records);
    let second = frame::frame_bytes(records[0].1.len());
    data[second + frame::HEADER_BYTES + 2] ^= 0xff; // in record 1's body
    std::fs::write(segment_path(&dir.0, 7), &data).unwrap();
    let replay = read_shard(&dir.0).unwrap();
    assert_eq!(replay.bad_crc_skipped, 1);
    assert_eq!(replay.torn_truncated, 0);
    let expected = vec![records[0].clone(), records[2].clone(), records[3].clone()];
    assert_eq!(replay.records, expected);
    assert_eq!(replay.bytes, data.len() as u64);
}

fn snapshot_segment(records: &[(u8, Vec<u8>)], complete: bool) -> Vec<u8> {
    let mut all = vec![(SNAP_BEGIN, Vec::new())];
    all.extend_from_slice(records);
    if complete {
        all.push((SNAP_END, Vec::new()));
    }
    frames(&all)
}

#[test]
fn snapshots_select_where_reading_starts() {
    let dir = TempDir::new("snap");
    let r: Vec<_> = (0..10).map(record).collect();
    // 1: plain records; 2: a complete snapshot then a record; 3: plain;
    // 4: an incomplete snapshot (the writer stopped mid-compaction); 5:
    // plain.
    std::fs::write(segment_path(&dir.0, 1), frames(&r[0..2])).unwrap();
    let mut two = snapshot_segment(&r[2..4], true);
    two.extend(frames(&r[4..5]));
    std::fs::write(segment_path(&dir.0, 2), two).unwrap();
    std::fs::write(segment_path(&dir.0, 3), frames(&r[5..6])).unwrap();
    std::fs::write(segment_path(&dir.0, 4), snapshot_segment(&r[6..8], false)).unwrap();
    std::fs::write(segment_path(&dir.0, 5), frames(&r[8..10])).unwrap();
    let replay = read_shard(&dir.0).unwrap();
    let expected: Vec<_> = r[2..6].iter().chain(&r[8..10]).cloned().collect();
    assert_eq!(replay.records, expected);
    assert_eq!(replay.segments, 4);
    // Without any complete snapshot: from the first segment.
    std::fs::remove_file(segment_path(&dir.0, 2)).unwrap();
    let replay = read_shard(&dir.0).unwrap();
    let expected: Vec<_> = r[0..2]
        .iter()
        .chain(&r[5..6])
        .chain(&r[8..10])
        .cloned()
        .collect();
    assert_eq!(replay.records, expected);
    // A snapshot whose SNAP_END is torn off is incomplete, whichever the cut.
    let dir = TempDir::new("snap-torn");
    std::fs::write(segment_path(&dir.0, 1), frames(&r[0..1])).unwrap();
    let snap = snapshot_segment(&r[1..3], true);
    std::fs::write(segment_path(&dir.0, 2), &snap[..snap.len() - 1]).unwrap();
    let replay = read_shard(&dir.0).unwrap();
    assert_eq!(replay.records, r[0..1]);
    assert_eq!(replay.torn_truncated, 1);
}

#[test]
fn offline_snapshots_supersede_and_remove() {
    let root = TempDir::new("offline");
    let shard = root.0.join("shard-0");
    std::fs::create_dir_all(&shard).unwrap();
    std::fs::create_dir_all(root.0.join("shard-3")).unwrap();
    std::fs::create_dir_all(root.0.join("other")).unwrap();
    let r: Vec<_> = (0..6).map(record).collect();
    std::fs::write(segment_path(&shard, 1), frames(&r[0..3])).unwrap();
    let seq = write_snapshot(&shard, r[3..5].iter().cloned()).unwrap();
    assert_eq!(seq, 2);
    assert_eq!(read_shard(&shard).unwrap().records, r[3..5]);
    assert_eq!(remove_before(&shard, seq).unwrap(), 1);
    assert_eq!(list_segments(&shard).unwrap().len(), 1);
    assert_eq!(read_shard(&shard).unwrap().records, r[3..5]);
    let dirs = shard_dirs(&root.0).unwrap();
    assert_eq!(dirs.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![0, 3]);
    remove_shard_dir(&dirs[1].1).unwrap();
    assert_eq!(shard_dirs(&root.0).unwrap().len(), 1);
}

// ---- the writer, on a glommio executor ----

fn run<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(body)
        .expect("executor")
        .join()
        .expect("test body");
}

fn config(sync: SyncPolicy) -> Persistence {
    Persistence {
        dir: "unused".into(),
        sync,
        ..Persistence::default()
    }
}

/// Polls `check` every 10 ms for at most 20 s (a bound, not a speed).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if check() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

#[test]
fn appends_become_durable_and_read_back_under_each_policy() {
    for policy in [SyncPolicy::Always, SyncPolicy::Batch, SyncPolicy::None] {
        let dir = TempDir::new("policy");
        let path = dir.0.clone();
        let records: Vec<_> = (0..300).map(record).collect();
        let expected = records.clone();
        run(move || async move {
            let stats = Arc::new(PersistStats::default());
            let log = Log::open(&path, &config(policy), stats.clone()).unwrap();
            let writer = glommio::spawn_local(log.clone().run());
            let order = Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut last = 0;
            for (i, (k, b)) in records.iter().enumerate() {
                last = log.append(*k, b).unwrap();
                assert_eq!(last, i as u64 + 1);
                if i % 50 == 0 {
                    let order = order.clone();
                    log.on_durable(last, Box::new(move |r| order.borrow_mut().push((last, r))));
                }
                if i % 100 == 99 {
                    // Let the writer run between bursts.
                    log.wait_durable(last).await.unwrap();
                    assert!(log.durable() >= last);
                }
            }
            log.wait_durable(last).await.unwrap();
            assert_eq!(log.appended(), 300);
            assert!(log.durable() >= 300);
            let seen = order.borrow().clone();
            assert_eq!(seen.len(), 6, "{policy:?}");
            assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "in order");
            assert!(seen.iter().all(|(_, r)| r.is_ok()));
            // Already durable: at once.
            log.wait_durable(1).await.unwrap();
            log.health().unwrap();
            log.close();
            writer.await;
            use std::sync::atomic::Ordering::Relaxed;
            assert_eq!(stats.appended_records.load(Relaxed), 300);
            assert_eq!(stats.segments.load(Relaxed), 1);
            let fsyncs = stats.fsync.lock().unwrap().len();
            assert_eq!(
                fsyncs == 0,
                policy == SyncPolicy::None,
                "{policy:?}: {fsyncs}"
            );
        });
        let replay = read_shard(&dir.0).unwrap();
        assert_eq!(replay.records, expected, "{policy:?}");
        assert_eq!((replay.torn_truncated, replay.bad_crc_skipped), (0, 0));
    }
}

#[test]
fn segments_rotate_and_a_reopen_starts_a_new_one() {
    let dir = TempDir::new("rotate");
    let path = dir.0.clone();
    let records: Vec<_> = (0..400).map(record).collect();
    let expected: Vec<_> = records.iter().chain(&records[..10]).cloned().collect();
    run(move || async move {
        let cfg = Persistence {
            segment_bytes: 4096,
            ..config(SyncPolicy::Batch)
        };
        let log = Log::open(&path, &cfg, Default::default()).unwrap();
        let writer = glommio::spawn_local(log.clone().run());
        let mut last = 0;
        for (k, b) in &records {
            last = log.append(*k, b).unwrap();
        }
        log.wait_durable(last).await.unwrap();
        log.close();
        writer.await;
        let segments = list_segments(&path).unwrap();
        assert!(segments.len() > 5, "{}", segments.len());
        for (_, p) in &segments {
            assert!(std::fs::metadata(p).unwrap().len() <= 4096);
        }
        // A second run appends to a segment of its own.
        let log = Log::open(&path, &cfg, Default::default()).unwrap();
        let writer = glommio::spawn_local(log.clone().run());
        for (k, b) in &records[..10] {
            last = log.append(*k, b).unwrap();
        }
        log.wait_durable(last).await.unwrap();
        log.close();
        writer.await;
        assert_eq!(list_segments(&path).unwrap().len(), segments.len() + 1);
    });
    assert_eq!(read_shard(&dir.0).unwrap().records, expected);
}

#[test]
fn compaction_deletes_superseded_segments() {
    let dir = TempDir::new("compact");
    let path = dir.0.clone();
    run(move || async move {
        let cfg = Persistence {
            bytes_max: 64 * 1024,
            segment_bytes: 4096,
            ..config(SyncPolicy::Always)
        };
        let stats = Arc::new(PersistStats::default());
        let log = Log::open(&path, &cfg, stats.clone()).unwrap();
        let writer = glommio::spawn_local(log.clone().run());
        let mut last = 0;
        let mut i = 0;
        while !log.wants_compaction() {
            let (k, b) = record(i);
            last = log.append(k, &b).unwrap();
            i += 1;
        }
        log.wait_durable(last).await.unwrap();
        let before = list_segments(&path).unwrap().len();
        assert!(before > 3, "{before}");
        let state: Vec<_> = (1000..1010).map(record).collect();
        log.compact(state.clone().into_iter());
        assert!(!log.wants_compaction(), "one at a time");
        let after: Vec<_> = (2000..2005).map(record).collect();
        for (k, b) in &after {
            last = log.append(*k, b).unwrap();
        }
        log.wait_durable(last).await.unwrap();
        let stats2 = stats.clone();
        eventually("old segments deleted", || {
            list_segments(&path).unwrap().len() == 1
                && stats2.segments.load(std::sync::atomic::Ordering::Relaxed) == 1
        })
        .await;
        log.close();
        writer.await;
        let replay = read_shard(&path).unwrap();
        let expected: Vec<_> = state.iter().chain(&after).cloned().collect();
        assert_eq!(replay.records, expected);
        let on_disk = std::fs::metadata(&list_segments(&path).unwrap()[0].1)
            .unwrap()
            .len();
        assert_eq!(
            stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
            on_disk
        );
    });
}

#[test]
fn full_buffer_and_full_budget_refuse_appends() {
    let dir = TempDir::new("full");
    let path = dir.0.clone();
    run(move || async move {
        let cfg = Persistence {
            buffer_bytes_max: 4096,
            bytes_max: 32 * 1024,
            segment_bytes: 4096,
            ..config(SyncPolicy::None)
        };
        let log = Log::open(&path, &cfg, Default::default()).unwrap();
        // The writer is not running: the buffer fills.
        let body = vec![7u8; 1000];
        let mut n = 0;
        while log.append(20, &body).is_ok() {
            n += 1;
        }
        assert_eq!(n, 4);
        assert_eq!(log.append(20, &body), Err(LogError::Full));
        let writer = glommio::spawn_local(log.clone().run());
        log.wait_durable(4).await.unwrap();
        log.health().unwrap();
        // Now the disk budget: 32 KiB in all.
        let mut last = 4;
        loop {
            match log.append(20, &body) {
                Ok(p) => last = p,
                Err(LogError::Full) if log.durable() < last => {
                    log.wait_durable(last).await.unwrap();
                }
                Err(e) => {
                    assert_eq!(e, LogError::Full);
                    break;
                }
            }
        }
        assert_eq!(log.health(), Err(LogError::Full));
        assert!(
            last * 1009 <= 32 * 1024 && (last + 1) * 1009 > 32 * 1024,
            "{last}"
        );
        log.close();
        writer.await;
    });
}

/// Appends `count` records, and checks that a failing disk refuses work,
/// fails waiters, recovers, and leaves exactly the appended records.
async fn fail_and_recover(log: Rc<Log>, count: usize, heal: impl FnOnce()) -> u64 {
    let mut last = 0;
    for i in 0..count {
        let (k, b) = record(i);
        last = log.append(k, &b).unwrap();
    }
    assert!(log.wait_durable(last).await.is_err());
    assert!(matches!(log.health(), Err(LogError::Failed(_))));
    assert!(matches!(log.append(20, b"x"), Err(LogError::Failed(_))));
    let called = Rc::new(std::cell::Cell::new(false));
    let c = called.clone();
    log.on_durable(last, Box::new(move |r| c.set(r.is_err())));
    assert!(
        called.get(),
        "a waiter during the failure is answered Err at once"
    );
    heal();
    let log2 = log.clone();
    eventually("recovered", move || log2.health().is_ok()).await;
    log.wait_durable(last).await.unwrap();
    last
}

#[test]
fn injected_write_and_sync_failures_recover_without_corruption() {
    for (inject, policy) in [
        (Inject::PartialWrites(3), SyncPolicy::Always),
        (Inject::PartialWrites(1), SyncPolicy::None),
        (Inject::Syncs(2), SyncPolicy::Batch),
    ] {
        let dir = TempDir::new("inject");
        let path = dir.0.clone();
        run(move || async move {
            let stats = Arc::new(PersistStats::default());
            let log = Log::open(&path, &config(policy), stats.clone()).unwrap();
            // Some records durable before the failure.
            let writer = glommio::spawn_local(log.clone().run());
            let (k, b) = record(99);
            let p = log.append(k, &b).unwrap();
            log.wait_durable(p).await.unwrap();
            log.inject.set(Some(inject));
            let last = fail_and_recover(log.clone(), 50, || {}).await;
            assert_eq!(last, 51);
            assert!(stats.errors.load(std::sync::atomic::Ordering::Relaxed) >= 1);
            log.close();
            writer.await;
        });
        let replay = read_shard(&dir.0).unwrap();
        let expected: Vec<_> = [record(99)]
            .into_iter()
            .chain((0..50).map(record))
            .collect();
        assert_eq!(replay.records, expected, "{inject:?}");
        assert_eq!((replay.torn_truncated, replay.bad_crc_skipped), (0, 0));
    }
}

fn is_root() -> bool {
    // /proc/self/status: "Uid:\treal\teffective\t...".
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// A real full disk: a 64 KiB tmpfs with a ballast file; the log fills the
/// rest, fails, and recovers once the ballast is removed.
#[test]
fn full_disk_refuses_then_recovers_on_tmpfs() {
    if !is_root() {
        // Mounting needs root; the injected failures above cover the path.
        eprintln!("not root: the tmpfs full-disk test needs mount(2)");
        return;
    }
    let mount = TempDir::new("tmpfs");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mount.0)
        .status()
        .expect("mount");
    assert!(status.success(), "root but cannot mount a tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.0.clone());
    let ballast = mount.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 60 * 1024]).unwrap();
    let shard = mount.0.join("shard-0");
    let check = shard.clone();
    run(move || async move {
        let log = Log::open(&shard, &config(SyncPolicy::Always), Default::default()).unwrap();
        let writer = glommio::spawn_local(log.clone().run());
        // ~14 KiB of records into ~4 KiB of room.
        let last = fail_and_recover(log.clone(), 240, move || {
            std::fs::remove_file(&ballast).unwrap();
        })
        .await;
        assert_eq!(last, 240);
        log.close();
        writer.await;
    });
    let replay = read_shard(&check).unwrap();
    let expected: Vec<_> = (0..240).map(record).collect();
    assert_eq!(replay.records.len(), expected.len());
    assert_eq!(replay.records, expected);
    assert_eq!((replay.torn_truncated, replay.bad_crc_skipped), (0, 0));
}
