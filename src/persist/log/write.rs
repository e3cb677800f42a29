//! The runtime writer: one [`Log`] per shard, shared as `Rc` on the shard's
//! thread, never across threads (no lock, no store shared between shards).
//!
//! Owns: the append buffer, segment files of this run, the sync policy and
//! group commit, durability waiters, compaction's segment deletion, and the
//! retry of a failing disk. Must not touch: what records mean (callers
//! hand `(kind, body)`), sockets, other shards.
//!
//! Shape: `append` is synchronous and cheap (encode into the buffer of the
//! segment being filled, bump the position, wake the writer task); the
//! writer task ([`Log::run`]) hands whatever accumulated to the kernel in
//! one write, then fdatasyncs as the policy says, so one write and one
//! fdatasync cover every record appended while the previous ones ran
//! (group commit). Positions are record numbers of this run (the first
//! append is 1); `durable()` only grows.
//!
//! Why glommio's `BufferedFile` (io_uring writes into the page cache, then
//! fdatasync) and not its `DmaFile` (O_DIRECT): a group commit is usually
//! a few hundred bytes; O_DIRECT writes whole aligned blocks, so every
//! small commit would rewrite a 4 KiB block (and its tail again next
//! time), and tmpfs (tests, some containers) refuses O_DIRECT outright.
//! The cost: `write_at` takes its buffer by value, so each write copies
//! the batch once (per batch, never per record).
//!
//! Failure (ENOSPC, EIO): the bytes stay buffered, `health()` and
//! `append` answer `Failed`, every waiter gets `Err`, one warn line is
//! logged, and the writer retries every 500 ms: it first truncates the
//! segment to the end of the last whole frame it wrote (a short write
//! leaves part of a frame), then writes again from there. Written bytes
//! are kept until their fdatasync succeeded: after a failed fdatasync the
//! page cache may have dropped them (Linux marks them clean), so they are
//! rewritten, not trusted. When a retry succeeds, health is Ok again.
//! Nothing that was not appended can reach the file, and a half-written
//! frame at the end reads as a torn tail (truncated at start-up).
//!
//! Bounds: bytes appended but not yet written, `buffer_bytes_max`; bytes on
//! disk plus those, the shard's share of `bytes_max` (appends past either
//! fail `Full`); written-not-synced bytes, one write batch plus
//! `sync_bytes`; waiters, one per caller waiting (callers bound their own
//! in-flight work). A compaction's snapshot is the one thing allowed past
//! `buffer_bytes_max` (it restates state the shard already holds in
//! memory); one over the disk budget is abandoned.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::io::{BufferedFile, OpenOptions};

use super::frame::{self, RECORD_BYTES_MAX, SNAP_BEGIN, SNAP_END};
use super::read::{list_segments, segment_path};
use crate::config::{Persistence, SyncPolicy};
use crate::shard::stats::PersistStats;

/// Why an append or a wait failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The append buffer (`buffer_bytes_max`) or the disk budget
    /// (`bytes_max`) is full, or the record is over the record maximum.
    #[error("persistence log full")]
    Full,
    /// Writing or syncing failed (full disk, IO error); the first error's
    /// message. Retried every 500 ms.
    #[error("persistence log failed: {0}")]
    Failed(String),
}

/// Time between retries of a failing write or fdatasync.
const RETRY: Duration = Duration::from_millis(500);

/// The bytes of one segment that are not durable yet.
struct Chunk {
    seq: u64,
    /// Starts at file offset `base`; the front `written` bytes are in the
    /// kernel (kept until fdatasync'ed, or dropped at once under `none`).
    buf: Vec<u8>,
    base: u64,
    written: usize,
    /// Position of the last record in `buf`.
    last_pos: u64,
}

enum Waiter {
    Task(Rc<WaitSlot>),
    Callback(Box<dyn FnOnce(Result<(), LogError>)>),
}

#[derive(Default)]
struct WaitSlot {
    result: RefCell<Option<Result<(), LogError>>>,
    waker: RefCell<Option<Waker>>,
}

impl Waiter {
    fn complete(self, result: Result<(), LogError>) {
        match self {
            Waiter::Task(slot) => {
                *slot.result.borrow_mut() = Some(result);
                if let Some(w) = slot.waker.borrow_mut().take() {
                    w.wake();
                }
            }
            Waiter::Callback(f) => f(result),
        }
    }
}

struct State {
    /// Oldest first; the back one is being appended to. Never empty.
    chunks: VecDeque<Chunk>,
    /// Bytes appended but not handed to the kernel.
    unwritten: u64,
    /// Bytes of this shard's segment files (what was written).
    disk_bytes: u64,
    /// Segment files on disk, oldest first: (seq, bytes).
    segments: VecDeque<(u64, u64)>,
    /// Bytes of the back chunk's segment, written or not.
    append_segment_bytes: u64,
    next_seq: u64,
    appended: u64,
    written_pos: u64,
    durable: u64,
    failed: Option<String>,
    /// Sorted by position.
    waiters: VecDeque<(u64, Waiter)>,
    /// Set by append/compact/close; the writer clears it.
    kicked: bool,
    writer: Option<Waker>,
    closing: bool,
    /// A compaction in flight: (its segment, position of its SNAP_END).
    compaction: Option<(u64, u64)>,
    snapshot_bytes: u64,
}

/// One shard's durable log. See the module comment.
pub struct Log {
    dir: PathBuf,
    policy: SyncPolicy,
    sync_interval: Duration,
    sync_bytes: u64,
    budget_bytes: u64,
    segment_bytes: u64,
    buffer_bytes_max: u64,
    state: RefCell<State>,
    /// Completions collected under the borrow, run after it (a callback
    /// may append).
    scratch: RefCell<Vec<(Waiter, Result<(), LogError>)>>,
    stats: Arc<PersistStats>,
    #[cfg(test)]
    pub(super) inject: Cell<Option<Inject>>,
    #[cfg(not(test))]
    _inject: Cell<()>,
}

/// A failure the tests make the writer meet (the disk-full test on tmpfs
/// covers the real thing where mounting is allowed).
#[cfg(test)]
#[derive(Clone, Copy, Debug)]
pub(super) enum Inject {
    /// The next `n` writes write half their bytes, then fail with ENOSPC.
    PartialWrites(u32),
    /// The next `n` fdatasyncs fail with EIO.
    Syncs(u32),
}

enum Step {
    Write,
    Sync,
    Rotate,
    Wait(Option<Duration>),
    Retry,
    Done,
}

impl Log {
    /// Opens the log of one shard in `shard_dir` (created if missing),
    /// starting a new segment after any there (old ones are never
    /// appended to). `cfg` is this shard's share
    /// ([`Persistence::per_shard`]). Synchronous: runs before the shard
    /// serves; the writer task ([`Log::run`]) does the IO.
    pub fn open(
        shard_dir: &Path,
        cfg: &Persistence,
        stats: Arc<PersistStats>,
    ) -> io::Result<Rc<Log>> {
        std::fs::create_dir_all(shard_dir)?;
        let existing = list_segments(shard_dir)?;
        let mut segments = VecDeque::new();
        let mut disk_bytes = 0;
        for (seq, path) in &existing {
            let bytes = std::fs::metadata(path)?.len();
            disk_bytes += bytes;
            segments.push_back((*seq, bytes));
        }
        let seq = existing.last().map_or(1, |(s, _)| s + 1);
        stats.on.store(true, Relaxed);
        stats.bytes.store(disk_bytes, Relaxed);
        stats.segments.store(segments.len() as u64, Relaxed);
        let budget_bytes = cfg.bytes_max.max(1);
        Ok(Rc::new(Log {
            dir: shard_dir.to_path_buf(),
            policy: cfg.sync,
            sync_interval: Duration::from_micros(cfg.sync_interval_us),
            sync_bytes: cfg.sync_bytes.max(1),
            budget_bytes,
            // A quarter of the budget at most, so that compaction (at half
            // the budget) has whole segments to delete.
            segment_bytes: cfg.segment_bytes.min(budget_bytes / 4).max(4096),
            buffer_bytes_max: cfg.buffer_bytes_max,
            state: RefCell::new(State {
                chunks: VecDeque::from([Chunk {
                    seq,
                    buf: Vec::new(),
                    base: 0,
                    written: 0,
                    last_pos: 0,
                }]),
                unwritten: 0,
                disk_bytes,
                segments,
                append_segment_bytes: 0,
                next_seq: seq + 1,
                appended: 0,
                written_pos: 0,
                durable: 0,
                failed: None,
                waiters: VecDeque::new(),
                kicked: false,
                writer: None,
                closing: false,
                compaction: None,
                snapshot_bytes: 0,
            }),
            scratch: RefCell::new(Vec::new()),
            stats,
            #[cfg(test)]
            inject: Cell::new(None),
            #[cfg(not(test))]
            _inject: Cell::new(()),
        }))
    }

    /// Appends one record; returns its position. Never waits: `Full` when
    /// the buffer or the disk budget has no room, `Failed` while the disk
    /// fails.
    pub fn append(&self, kind: u8, body: &[u8]) -> Result<u64, LogError> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = &st.failed {
            return Err(LogError::Failed(e.clone()));
        }
        if body.len() as u64 >= RECORD_BYTES_MAX {
            return Err(LogError::Full);
        }
        let bytes = frame::frame_bytes(body.len()) as u64;
        if st.unwritten + bytes > self.buffer_bytes_max
            || st.disk_bytes + st.unwritten + bytes > self.budget_bytes
        {
            return Err(LogError::Full);
        }
        if st.append_segment_bytes > 0 && st.append_segment_bytes + bytes > self.segment_bytes {
            let (seq, last_pos) = (st.next_seq, st.appended);
            st.next_seq += 1;
            st.chunks.push_back(Chunk {
                seq,
                buf: Vec::new(),
                base: 0,
                written: 0,
                last_pos,
            });
            st.append_segment_bytes = 0;
        }
        st.appended += 1;
        let pos = st.appended;
        let chunk = st.chunks.back_mut().expect("never empty");
        frame::encode(kind, body, &mut chunk.buf);
        chunk.last_pos = pos;
        st.unwritten += bytes;
        st.append_segment_bytes += bytes;
        PersistStats::bump(&self.stats.appended_records, 1);
        Self::kick(&mut st);
        Ok(pos)
    }

    fn kick(st: &mut State) {
        st.kicked = true;
        if let Some(w) = st.writer.take() {
            w.wake();
        }
    }

    /// Position of the last record appended (0: none yet).
    pub fn appended(&self) -> u64 {
        self.state.borrow().appended
    }

    /// Every position up to this one is durable as the policy says.
    pub fn durable(&self) -> u64 {
        self.state.borrow().durable
    }

    /// Completes once `pos` is durable; `Err` if the disk fails first (the
    /// record stays buffered and is written when the disk recovers, but
    /// the caller must not promise it).
    pub fn wait_durable(&self, pos: u64) -> impl Future<Output = Result<(), LogError>> {
        let slot = Rc::new(WaitSlot::default());
        let result = self.check_or_queue(pos, || Waiter::Task(slot.clone()));
        if let Some(r) = result {
            *slot.result.borrow_mut() = Some(r);
        }
        WaitDurable { slot }
    }

    /// Calls `f` once `pos` is durable (or the disk failed), on this
    /// shard, in position order; at once if it already is.
    pub fn on_durable(&self, pos: u64, f: Box<dyn FnOnce(Result<(), LogError>)>) {
        let mut f = Some(f);
        if let Some(r) = self.check_or_queue(pos, || Waiter::Callback(f.take().expect("once"))) {
            (f.take().expect("not queued"))(r);
        }
    }

    fn check_or_queue(
        &self,
        pos: u64,
        waiter: impl FnOnce() -> Waiter,
    ) -> Option<Result<(), LogError>> {
        let mut st = self.state.borrow_mut();
        if pos <= st.durable {
            return Some(Ok(()));
        }
        if let Some(e) = &st.failed {
            return Some(Err(LogError::Failed(e.clone())));
        }
        // Positions mostly arrive in order: push at the back, else insert
        // after every waiter of a position <= pos (order kept).
        let at = if st.waiters.back().is_none_or(|(p, _)| *p <= pos) {
            st.waiters.len()
        } else {
            st.waiters.partition_point(|(p, _)| *p <= pos)
        };
        st.waiters.insert(at, (pos, waiter()));
        None
    }

    /// Ok, or why new work that needs durability must be refused now.
    pub fn health(&self) -> Result<(), LogError> {
        let st = self.state.borrow();
        if let Some(e) = &st.failed {
            return Err(LogError::Failed(e.clone()));
        }
        if st.disk_bytes + st.unwritten >= self.budget_bytes {
            return Err(LogError::Full);
        }
        Ok(())
    }

    /// True when a compaction would pay: the log is past half its budget
    /// and at least half of it is not the last snapshot; false while one
    /// runs.
    pub fn wants_compaction(&self) -> bool {
        let st = self.state.borrow();
        let total = st.disk_bytes + st.unwritten;
        st.compaction.is_none()
            && st.failed.is_none()
            && total > self.budget_bytes / 2
            && total > 2 * st.snapshot_bytes
    }

    /// Starts a new segment holding `SNAP_BEGIN, records.., SNAP_END` (the
    /// shard's whole state now); anything appended after is after it. Once
    /// its SNAP_END is durable every older segment is deleted. Ignored
    /// while a compaction runs or the disk fails; abandoned (nothing
    /// appended) if the snapshot alone is over the disk budget.
    /// `records` must not call this log.
    pub fn compact(&self, records: impl Iterator<Item = (u8, Vec<u8>)>) {
        {
            let st = self.state.borrow();
            if st.compaction.is_some() || st.failed.is_some() {
                return;
            }
        }
        let mut buf = Vec::with_capacity(64 * 1024);
        frame::encode(SNAP_BEGIN, &[], &mut buf);
        let mut count = 2;
        for (kind, body) in records {
            if body.len() as u64 >= RECORD_BYTES_MAX || buf.len() as u64 > self.budget_bytes {
                tracing::warn!(
                    dir = %self.dir.display(),
                    bytes = buf.len(),
                    "persistence: compaction abandoned: the snapshot is over the shard's share of persistence.bytes_max"
                );
                PersistStats::bump(&self.stats.errors, 1);
                return;
            }
            frame::encode(kind, &body, &mut buf);
            count += 1;
        }
        frame::encode(SNAP_END, &[], &mut buf);
        let mut st = self.state.borrow_mut();
        let seq = st.next_seq;
        st.next_seq += 1;
        let end = st.appended + count;
        st.appended = end;
        let bytes = buf.len() as u64;
        st.chunks.push_back(Chunk {
            seq,
            buf,
            base: 0,
            written: 0,
            last_pos: end,
        });
        st.unwritten += bytes;
        st.append_segment_bytes = bytes;
        st.snapshot_bytes = bytes;
        st.compaction = Some((seq, end));
        PersistStats::bump(&self.stats.appended_records, count);
        Self::kick(&mut st);
    }

    /// Asks the writer to finish what is buffered and return (at once if
    /// the disk is failing: what it holds was never promised).
    pub fn close(&self) {
        let mut st = self.state.borrow_mut();
        st.closing = true;
        Self::kick(&mut st);
    }

    /// The writer task; spawn it once on the shard's executor.
    pub async fn run(self: Rc<Self>) {
        let mut file: Option<(u64, BufferedFile)> = None;
        // Written bytes not synced yet, and when the first of them was.
        let mut unsynced_bytes = 0u64;
        let mut unsynced_since: Option<Instant> = None;
        // A step failed: the next one waits, then repairs the segment.
        let mut repair_due = false;
        loop {
            match self.next_step(repair_due, unsynced_bytes, unsynced_since) {
                Step::Write => {
                    if let Err(e) = self.write_front(&mut file).await {
                        self.fail(e);
                        repair_due = true;
                        continue;
                    }
                    let st = self.state.borrow();
                    let front = st.chunks.front().expect("never empty");
                    unsynced_bytes = front.written as u64;
                    unsynced_since.get_or_insert_with(Instant::now);
                    if self.policy == SyncPolicy::None {
                        drop(st);
                        self.advance_durable(None);
                        unsynced_bytes = 0;
                        unsynced_since = None;
                    }
                }
                Step::Sync => {
                    let Some((_, f)) = &file else {
                        unreachable!("written bytes without a file")
                    };
                    let upto = self.state.borrow().written_pos;
                    let took = Instant::now();
                    match self.sync(f).await {
                        Ok(()) => {
                            self.stats.record_fsync(took.elapsed());
                            self.advance_durable(Some(upto));
                            unsynced_bytes = 0;
                            unsynced_since = None;
                        }
                        Err(e) => {
                            // The page cache may have dropped what the
                            // failed fdatasync covered: write it again.
                            self.unwrite_front();
                            unsynced_bytes = 0;
                            unsynced_since = None;
                            self.fail(e);
                            repair_due = true;
                        }
                    }
                }
                Step::Rotate => {
                    if let Some((_, f)) = file.take() {
                        let _ = f.close().await;
                    }
                    self.state.borrow_mut().chunks.pop_front();
                }
                Step::Wait(timeout) => {
                    let kicked = Kicked { log: &self };
                    match timeout {
                        Some(t) => futures_lite::future::or(kicked, glommio::timer::sleep(t)).await,
                        None => kicked.await,
                    }
                }
                Step::Retry => {
                    glommio::timer::sleep(RETRY).await;
                    match self.repair(&file).await {
                        Ok(()) => repair_due = false,
                        Err(e) => self.fail(e),
                    }
                }
                Step::Done => {
                    if let Some((_, f)) = file.take() {
                        let _ = f.close().await;
                    }
                    self.fail_waiters("persistence log closed".into());
                    return;
                }
            }
            self.finish_compaction().await;
        }
    }

    fn next_step(
        &self,
        repair_due: bool,
        unsynced_bytes: u64,
        unsynced_since: Option<Instant>,
    ) -> Step {
        let st = self.state.borrow();
        if repair_due {
            return if st.closing { Step::Done } else { Step::Retry };
        }
        let front = st.chunks.front().expect("never empty");
        if front.buf.len() > front.written {
            return Step::Write;
        }
        if front.written > 0 {
            match self.policy {
                SyncPolicy::Always => return Step::Sync,
                SyncPolicy::Batch => {
                    let waited = unsynced_since.map_or(Duration::ZERO, |t| t.elapsed());
                    // Closing or rotating: sync now rather than wait.
                    if unsynced_bytes >= self.sync_bytes
                        || waited >= self.sync_interval
                        || st.closing
                        || st.chunks.len() > 1
                    {
                        return Step::Sync;
                    }
                    return Step::Wait(Some(self.sync_interval - waited));
                }
                SyncPolicy::None => unreachable!("none drops written bytes at once"),
            }
        }
        if st.chunks.len() > 1 {
            return Step::Rotate;
        }
        if st.closing {
            return Step::Done;
        }
        Step::Wait(None)
    }

    /// Hands the front chunk's unwritten bytes to the kernel.
    async fn write_front(&self, file: &mut Option<(u64, BufferedFile)>) -> io::Result<()> {
        let (seq, data, offset, upto, end) = {
            let st = self.state.borrow();
            let c = st.chunks.front().expect("never empty");
            (
                c.seq,
                c.buf[c.written..].to_vec(),
                c.base + c.written as u64,
                c.last_pos,
                c.buf.len(),
            )
        };
        if file.as_ref().is_none_or(|(s, _)| *s != seq) {
            *file = Some((seq, self.create_segment(seq).await?));
        }
        let (_, f) = file.as_ref().expect("opened");
        let len = data.len();
        #[cfg(test)]
        if let Some(Inject::PartialWrites(n)) = self.inject.get() {
            self.inject
                .set((n > 1).then_some(Inject::PartialWrites(n - 1)));
            let half = data[..len / 2].to_vec();
            let _ = f.write_at(half, offset).await;
            return Err(io::Error::from_raw_os_error(libc_enospc()));
        }
        let mut done = f.write_at(data, offset).await.map_err(io::Error::from)?;
        while done < len {
            // Short write (the disk filled up mid-way): the rest, or the
            // error that says why.
            let rest = {
                let st = self.state.borrow();
                let c = st.chunks.front().expect("never empty");
                c.buf[c.written + done..end].to_vec()
            };
            let n = f
                .write_at(rest, offset + done as u64)
                .await
                .map_err(io::Error::from)?;
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc_enospc()));
            }
            done += n;
        }
        let mut st = self.state.borrow_mut();
        let c = st.chunks.front_mut().expect("never empty");
        c.written = end;
        st.written_pos = upto;
        st.unwritten -= len as u64;
        st.disk_bytes += len as u64;
        if let Some(s) = st.segments.back_mut() {
            s.1 += len as u64;
        }
        self.stats.bytes.store(st.disk_bytes, Relaxed);
        Ok(())
    }

    async fn create_segment(&self, seq: u64) -> io::Result<BufferedFile> {
        let path = segment_path(&self.dir, seq);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(io::Error::from)?;
        if self.policy != SyncPolicy::None {
            // The new name must be durable before anything in it is.
            let d = glommio::io::Directory::open(&self.dir)
                .await
                .map_err(io::Error::from)?;
            d.sync().await.map_err(io::Error::from)?;
            let _ = d.close().await;
        }
        let mut st = self.state.borrow_mut();
        if st.segments.back().is_none_or(|(s, _)| *s != seq) {
            st.segments.push_back((seq, 0));
        }
        self.stats.segments.store(st.segments.len() as u64, Relaxed);
        Ok(f)
    }

    async fn sync(&self, f: &BufferedFile) -> io::Result<()> {
        #[cfg(test)]
        if let Some(Inject::Syncs(n)) = self.inject.get() {
            self.inject.set((n > 1).then_some(Inject::Syncs(n - 1)));
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        f.fdatasync().await.map_err(io::Error::from)
    }

    /// After a failed fdatasync: the front chunk's written bytes count as
    /// unwritten again (the retry truncates and rewrites them).
    fn unwrite_front(&self) {
        let mut st = self.state.borrow_mut();
        let c = st.chunks.front_mut().expect("never empty");
        let n = c.written as u64;
        c.written = 0;
        st.unwritten += n;
        st.disk_bytes -= n;
        if let Some(s) = st.segments.back_mut() {
            s.1 -= n;
        }
        st.written_pos = st.durable;
        self.stats.bytes.store(st.disk_bytes, Relaxed);
    }

    /// Before a retry: cut the segment back to the end of the last whole
    /// frame written (a failed write may have left part of one).
    async fn repair(&self, file: &Option<(u64, BufferedFile)>) -> io::Result<()> {
        let (seq, good) = {
            let st = self.state.borrow();
            let c = st.chunks.front().expect("never empty");
            (c.seq, c.base + c.written as u64)
        };
        if let Some((s, f)) = file {
            if *s == seq {
                f.truncate(good).await.map_err(io::Error::from)?;
            }
        }
        Ok(())
    }

    /// Durable up to `upto` (`None`: everything written, under `none`);
    /// drops the bytes that no retry will need; completes waiters.
    fn advance_durable(&self, upto: Option<u64>) {
        let mut scratch = self.scratch.take();
        {
            let mut st = self.state.borrow_mut();
            let upto = upto.unwrap_or(st.written_pos);
            st.durable = st.durable.max(upto);
            if st.failed.take().is_some() {
                tracing::info!(dir = %self.dir.display(), "persistence: log writes recovered");
            }
            let c = st.chunks.front_mut().expect("never empty");
            let n = c.written;
            c.buf.drain(..n);
            c.base += n as u64;
            c.written = 0;
            while st.waiters.front().is_some_and(|(p, _)| *p <= st.durable) {
                let (_, w) = st.waiters.pop_front().expect("checked");
                scratch.push((w, Ok(())));
            }
        }
        for (w, r) in scratch.drain(..) {
            w.complete(r);
        }
        *self.scratch.borrow_mut() = scratch;
    }

    /// Marks the log failed: one warn line per failure spell, every
    /// waiter answered `Err`.
    fn fail(&self, e: io::Error) {
        PersistStats::bump(&self.stats.errors, 1);
        let msg = {
            let mut st = self.state.borrow_mut();
            let first = st.failed.is_none();
            let msg = e.to_string();
            st.failed = Some(msg.clone());
            if first {
                tracing::warn!(
                    dir = %self.dir.display(),
                    error = %msg,
                    "persistence: log write failed; work that needs durability is refused, retrying every 500 ms"
                );
            }
            msg
        };
        self.fail_waiters(msg);
    }

    fn fail_waiters(&self, msg: String) {
        let mut scratch = self.scratch.take();
        scratch.extend(
            self.state
                .borrow_mut()
                .waiters
                .drain(..)
                .map(|(_, w)| (w, Err(LogError::Failed(msg.clone())))),
        );
        for (w, r) in scratch.drain(..) {
            w.complete(r);
        }
        *self.scratch.borrow_mut() = scratch;
    }

    /// Once a compaction's SNAP_END is durable, deletes the segments its
    /// snapshot supersedes.
    async fn finish_compaction(&self) {
        let older: Vec<u64> = {
            let st = self.state.borrow();
            match st.compaction {
                Some((seq, end)) if st.durable >= end => st
                    .segments
                    .iter()
                    .map(|(s, _)| *s)
                    .filter(|s| *s < seq)
                    .collect(),
                _ => return,
            }
        };
        for seq in older {
            let path = segment_path(&self.dir, seq);
            if let Err(e) = glommio::io::remove(&path).await {
                // Left for the next compaction; start-up skips it anyway.
                tracing::warn!(path = %path.display(), error = %e, "persistence: cannot remove a compacted segment");
                continue;
            }
            let mut st = self.state.borrow_mut();
            if let Some(i) = st.segments.iter().position(|(s, _)| *s == seq) {
                let (_, bytes) = st.segments.remove(i).expect("found");
                st.disk_bytes -= bytes;
            }
            self.stats.bytes.store(st.disk_bytes, Relaxed);
            self.stats.segments.store(st.segments.len() as u64, Relaxed);
        }
        self.state.borrow_mut().compaction = None;
    }
}

fn libc_enospc() -> i32 {
    28
}

/// The future of [`Log::wait_durable`].
struct WaitDurable {
    slot: Rc<WaitSlot>,
}

impl Future for WaitDurable {
    type Output = Result<(), LogError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.slot.result.borrow_mut().take() {
            return Poll::Ready(r);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Ready once something was appended, compacted or closed since the
/// writer last looked.
struct Kicked<'a> {
    log: &'a Log,
}

impl Future for Kicked<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.log.state.borrow_mut();
        if std::mem::take(&mut st.kicked) {
            return Poll::Ready(());
        }
        st.writer = Some(cx.waker().clone());
        Poll::Pending
    }
}
