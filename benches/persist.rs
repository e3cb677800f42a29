//! The durable log's append path: what a record costs to frame (CRC-32C
//! over kind and body) and to append through `weft::persist::Log` with its
//! writer task running (policy `none`: writes to the kernel, no fdatasync,
//! so the number is the log's own cost, not the disk's).
//!
//! `frame_encode`: `frame::encode` of a 100 B and a 1 KiB body into a
//! reused buffer. `append_none`: one glommio executor on a temp directory;
//! each sample times `iters` appends of a 100 B body, in bursts of 1000
//! followed by `wait_durable` of the burst's last position (the writer
//! runs between bursts, one write per burst), as a shard appends between
//! its ticks. Reported time is per record.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-perf cargo bench --bench persist`

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weft::config::{Persistence, SyncPolicy};
use weft::persist::log::frame;
use weft::persist::Log;

fn frame_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    for size in [100usize, 1024] {
        let body = vec![0xa5u8; size];
        let mut out = Vec::with_capacity(1 << 20);
        g.throughput(Throughput::Bytes(frame::frame_bytes(size) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                if out.len() > (1 << 20) - 2048 {
                    out.clear();
                }
                frame::encode(20, std::hint::black_box(&body), &mut out);
            })
        });
    }
    g.finish();
}

fn append_none(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("weft-bench-persist-{}", std::process::id()));
    let mut g = c.benchmark_group("append_none");
    g.throughput(Throughput::Elements(1));
    g.bench_function("100B", |b| {
        b.iter_custom(|iters| {
            let _ = std::fs::remove_dir_all(&dir);
            let took = Arc::new(Mutex::new(Duration::ZERO));
            let (d, t) = (dir.clone(), took.clone());
            glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let cfg = Persistence {
                        dir: "bench".into(),
                        sync: SyncPolicy::None,
                        ..Persistence::default()
                    };
                    let log = Log::open(&d, &cfg, Default::default()).unwrap();
                    let writer = glommio::spawn_local(log.clone().run());
                    let body = [0x5au8; 100];
                    let start = Instant::now();
                    let mut left = iters;
                    while left > 0 {
                        let burst = left.min(1000);
                        let mut last = 0;
                        for _ in 0..burst {
                            last = log.append(20, &body).unwrap();
                        }
                        log.wait_durable(last).await.unwrap();
                        left -= burst;
                    }
                    *t.lock().unwrap() = start.elapsed();
                    log.close();
                    writer.await;
                })
                .unwrap()
                .join()
                .unwrap();
            let took = *took.lock().unwrap();
            took
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, frame_encode, append_none);
criterion_main!(benches);
