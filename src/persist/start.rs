//! Start-up with persistence on: read every shard's log of the last run,
//! fold them into the state they describe (`recover`), and write that
//! state again as one snapshot per shard of this run (the shard count may
//! differ), before any executor starts. Runs on the main thread with
//! plain file IO: nothing is served yet, and the shards' io_uring writers
//! take over from the snapshots.
//!
//! Layout: `<dir>/CURRENT` names the generation in force (`gen-<n>`), whose
//! directory holds `shard-<k>/` logs. A start writes generation n+1 in
//! full, syncs it, then switches `CURRENT` (write to a temporary file,
//! fsync, rename, fsync the directory) and removes generation n. A crash
//! at any step leaves `CURRENT` naming a whole generation; directories of
//! other generations are leftovers of such a crash and are removed.
//!
//! Owns: the directory layout and the dealing of recovered state to the
//! shards. Must not touch: the shards (they install what this returns).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::log::snapshot::sync_dir;
use super::log::{read_shard, write_snapshot};
use super::records::Record;
use super::recover::{self, fnv, retained_owner};
use crate::config::Persistence;
use crate::event::Event;

/// What one shard starts with.
pub struct ShardStart {
    /// Its log directory (this run's generation).
    pub dir: PathBuf,
    /// The sessions it hosts (their client id's directory shard), with
    /// the session numbers its snapshot gave them.
    pub sessions: Vec<recover::Session>,
    /// The first session number the snapshot did not use.
    pub next_sn: u64,
}

/// What the mesh's bridge starts with: its log directory and, per peer
/// router, the QoS 1 copies its resend store held (by sequence number).
pub struct BridgeStart {
    pub dir: PathBuf,
    pub outboxes: Vec<(Box<str>, Vec<(u64, Vec<u8>)>)>,
}

/// What the start found.
pub struct Started {
    pub shards: Vec<ShardStart>,
    /// With the mesh on.
    pub bridge: Option<BridgeStart>,
    /// Every retained message (each shard holds them all).
    pub retained: Vec<(u64, Event)>,
    pub took: Duration,
    pub records: u64,
    pub bad_crc: u64,
    pub torn_tails: u64,
    pub sessions: usize,
}

fn generation_dir(dir: &Path, gen: u64) -> PathBuf {
    dir.join(format!("gen-{gen}"))
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix("gen-")?.parse().ok()
}

/// Reads the last run's logs and writes this run's snapshots for
/// `shards` shards. An error names the path and what failed.
pub fn prepare(p: &Persistence, shards: usize, mesh: bool) -> Result<Started, String> {
    let started = Instant::now();
    let dir = Path::new(&p.dir);
    let ctx = |what: &str, path: &Path, e: io::Error| format!("{what} {}: {e}", path.display());
    fs::create_dir_all(dir).map_err(|e| ctx("cannot create persistence.dir", dir, e))?;
    let current_path = dir.join("CURRENT");
    let current =
        match fs::read_to_string(&current_path) {
            Ok(s) => Some(parse_generation(s.trim()).ok_or_else(|| {
                format!("{}: not a generation name: {s:?}", current_path.display())
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ctx("cannot read", &current_path, e)),
        };
    // Leftovers of a start that crashed before switching CURRENT.
    for entry in fs::read_dir(dir).map_err(|e| ctx("cannot list", dir, e))? {
        let entry = entry.map_err(|e| ctx("cannot list", dir, e))?;
        let name = entry.file_name();
        if let Some(g) = name.to_str().and_then(parse_generation) {
            if Some(g) != current {
                fs::remove_dir_all(entry.path())
                    .map_err(|e| ctx("cannot remove leftover", &entry.path(), e))?;
            }
        }
    }
    let mut logs = Vec::new();
    let (mut bad_crc, mut torn_tails) = (0, 0);
    if let Some(g) = current {
        let gen_dir = generation_dir(dir, g);
        let mut shard_dirs =
            super::log::shard_dirs(&gen_dir).map_err(|e| ctx("cannot list", &gen_dir, e))?;
        shard_dirs.sort();
        for (_, shard_dir) in shard_dirs {
            let replay = read_shard(&shard_dir).map_err(|e| ctx("cannot read", &shard_dir, e))?;
            bad_crc += replay.bad_crc_skipped;
            torn_tails += replay.torn_truncated;
            logs.push(replay.records);
        }
        let bridge_dir = gen_dir.join("bridge");
        if bridge_dir.is_dir() {
            let replay = read_shard(&bridge_dir).map_err(|e| ctx("cannot read", &bridge_dir, e))?;
            bad_crc += replay.bad_crc_skipped;
            torn_tails += replay.torn_truncated;
            logs.push(replay.records);
        }
    }
    let recovered = recover::replay(logs);
    let records = recovered.records;
    let session_count = recovered.sessions.len();

    // Deal the state out to this run's shards.
    let next = current.map_or(1, |g| g + 1);
    let gen_dir = generation_dir(dir, next);
    let now_ms = crate::event::wall_ns() / 1_000_000;
    let mut per_shard: Vec<(Vec<Record>, Vec<recover::Session>)> =
        (0..shards).map(|_| (Vec::new(), Vec::new())).collect();
    let retained: Vec<(u64, Event)> = recovered.retained.into_values().collect();
    for (stamp, event) in &retained {
        per_shard[retained_owner(event.topic(), shards)]
            .0
            .push(Record::Retain {
                stamp: *stamp,
                event: event.clone(),
            });
    }
    for mut s in recovered.sessions {
        let shard = (fnv(&s.open.client_id) % shards.max(1) as u64) as usize;
        let (records, sessions) = &mut per_shard[shard];
        s.open.sn = recover::sn(shard, sessions.len() as u64 + 1);
        // Connected when the router stopped: offline from now.
        s.offline_wall_ms.get_or_insert(now_ms);
        records.extend(recover::session_records(
            &s.open,
            s.offline_wall_ms,
            &s.backlog,
        ));
        sessions.push(s);
    }
    let mut out = Vec::with_capacity(shards);
    for (k, (records, sessions)) in per_shard.into_iter().enumerate() {
        let shard_dir = gen_dir.join(format!("shard-{k}"));
        write_snapshot(&shard_dir, records.iter().map(Record::to_bytes))
            .map_err(|e| ctx("cannot write the start-up snapshot in", &shard_dir, e))?;
        out.push(ShardStart {
            dir: shard_dir,
            next_sn: sessions.len() as u64 + 1,
            sessions,
        });
    }
    let bridge = if mesh {
        let dir = gen_dir.join("bridge");
        let outboxes: Vec<(Box<str>, Vec<(u64, Vec<u8>)>)> = recovered
            .mesh
            .into_iter()
            .map(|(peer, kept)| (peer, kept.into_iter().collect()))
            .collect();
        let records = outboxes.iter().flat_map(|(peer, kept)| {
            kept.iter().map(|(seq, frame)| {
                Record::MeshKeep {
                    peer: peer.clone(),
                    seq: *seq,
                    frame: frame.clone(),
                }
                .to_bytes()
            })
        });
        write_snapshot(&dir, records)
            .map_err(|e| ctx("cannot write the start-up snapshot in", &dir, e))?;
        Some(BridgeStart { dir, outboxes })
    } else {
        if !recovered.mesh.is_empty() {
            tracing::warn!(
                peers = recovered.mesh.len(),
                "persistence: QoS 1 copies kept for other routers are dropped: the mesh is off"
            );
        }
        None
    };
    sync_dir(&gen_dir).map_err(|e| ctx("cannot sync", &gen_dir, e))?;
    // Switch to the new generation, then drop the old one.
    let tmp = dir.join("CURRENT.tmp");
    let switch = || -> io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(format!("gen-{next}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &current_path)?;
        sync_dir(dir)
    };
    switch().map_err(|e| ctx("cannot switch", &current_path, e))?;
    if let Some(g) = current {
        let old = generation_dir(dir, g);
        fs::remove_dir_all(&old).map_err(|e| ctx("cannot remove", &old, e))?;
    }
    Ok(Started {
        shards: out,
        bridge,
        retained,
        took: started.elapsed(),
        records,
        bad_crc,
        torn_tails,
        sessions: session_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::records::SessionOpen;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("weft-start-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn session(id: &str) -> Record {
        Record::Session(Box::new(SessionOpen {
            sn: 1,
            gen: 1,
            client_id: id.into(),
            version: 4,
            expiry_s: None,
            subscriptions: vec![("a/#".into(), 1)],
            identifiers: vec![],
            awaiting_release: vec![],
            will: None,
        }))
    }

    #[test]
    fn a_restart_with_another_shard_count_keeps_every_session_and_retained_message() {
        let dir = temp_dir("reshard");
        let p = Persistence {
            dir: dir.to_string_lossy().into(),
            ..Persistence::default()
        };
        // First run: nothing there; two shards.
        let s = prepare(&p, 2, false).unwrap();
        assert_eq!((s.sessions, s.retained.len()), (0, 0));
        // What that run wrote: sessions and retained in shard 0's log.
        let mut records = vec![];
        for i in 0..20 {
            let mut r = session(&format!("c{i}"));
            if let Record::Session(s) = &mut r {
                s.sn = i + 1;
            }
            records.push(r);
        }
        for i in 0..10 {
            records.push(Record::Retain {
                stamp: 0,
                event: Event::new(&format!("t/{i}"), b"x", 0, true),
            });
        }
        write_snapshot(&s.shards[0].dir, records.iter().map(Record::to_bytes)).unwrap();
        for shards in [3, 1, 4] {
            let s = prepare(&p, shards, false).unwrap();
            assert_eq!(s.sessions, 20, "{shards} shards");
            assert_eq!(s.retained.len(), 10);
            assert_eq!(s.shards.len(), shards);
            let hosted: usize = s.shards.iter().map(|x| x.sessions.len()).sum();
            assert_eq!(hosted, 20);
            // Only this generation is left.
            let gens = fs::read_dir(&dir)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("gen-")
                })
                .count();
            assert_eq!(gens, 1);
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_start_that_crashed_before_switching_leaves_the_old_generation_in_force() {
        let dir = temp_dir("crashed");
        let p = Persistence {
            dir: dir.to_string_lossy().into(),
            ..Persistence::default()
        };
        let s = prepare(&p, 1, false).unwrap();
        write_snapshot(
            &s.shards[0].dir,
            std::iter::once(session("kept").to_bytes()),
        )
        .unwrap();
        // A half-written next generation (its CURRENT never switched).
        let stray = dir.join("gen-99/shard-0");
        write_snapshot(&stray, std::iter::once(session("stray").to_bytes())).unwrap();
        let s = prepare(&p, 1, false).unwrap();
        let ids: Vec<_> = s.shards[0]
            .sessions
            .iter()
            .map(|x| x.open.client_id.to_string())
            .collect();
        assert_eq!(ids, vec!["kept".to_string()]);
        assert!(!dir.join("gen-99").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
