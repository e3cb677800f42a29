//! reactor-proto: what one reactor turn costs in glommio 0.9 and in compio,
//! for the same toy, to decide whether weft's runtime seam (`src/shard/`)
//! should move (perf/README.md, "Reactor: glommio vs compio").
//!
//! The toy is a TCP echo of fixed 64-byte messages: one server connection
//! on one executor pinned to a core, one blocking client thread pinned to
//! another, loopback. The server does nothing but read what is there and
//! write it back, so its time and its system calls are the runtime's: the
//! cost of a turn (wait, complete the read, run the task, submit the
//! write). The client keeps `window` messages in flight; each carries its
//! send time, so every echo is one round-trip sample (window 1 = pure
//! latency, a larger window = throughput with batching).
//!
//! `server RUNTIME PORT CORE` serves one connection and exits at its EOF
//! (so `perf stat -- reactor-proto server ...` counts exactly one run);
//! `client PORT CORE SECONDS WINDOW` prints one line of results.
//! `run.sh` beside this file alternates the runtimes and repeats.
//!
//! Runtimes:
//! - `glommio`: glommio 0.9, `LocalExecutorBuilder` with `Placement::Fixed`
//!   as weft builds its shards (512 KiB io memory, no spin), a
//!   non-buffered `TcpStream` (one io_uring recv/send per call).
//! - `compio`: compio's io_uring proactor, default flags.
//! - `compio-defer`: + IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN |
//!   COOP_TASKRUN (completions run only when the thread enters the ring).
//! - `compio-multishot`: `compio-defer` + one multishot receive into the
//!   ring's provided buffers (`read_multi`): no recv submission per read.
//! - `compio-split`: `compio-defer` with the receive always armed (a
//!   reader task feeds a writer task), as a router's connection works.
//! - `compio-sqpoll`: SQPOLL (the kernel thread on the server's core, 10 ms
//!   idle): submissions without io_uring_enter while it polls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MSG_BYTES: usize = 64;
const READ_BYTES: usize = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i).map(String::as_str).unwrap_or_else(|| {
            eprintln!(
                "usage: reactor-proto server RUNTIME PORT CORE | client PORT CORE SECONDS WINDOW"
            );
            std::process::exit(2)
        })
    };
    let num = |i: usize| -> u64 { arg(i).parse().expect("a number") };
    match arg(0) {
        "server" => {
            let (runtime, port, core) = (arg(1).to_string(), num(2) as u16, num(3) as usize);
            match runtime.as_str() {
                "glommio" => glommio_server(port, core),
                "compio" | "compio-defer" | "compio-multishot" | "compio-sqpoll"
                | "compio-split" => compio_server(&runtime, port, core),
                other => panic!("unknown runtime {other}"),
            }
        }
        "client" => client(num(1) as u16, num(2) as usize, num(3), num(4) as usize),
        other => panic!("unknown command {other}"),
    }
}

fn glommio_server(port: u16, core: usize) {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{LocalExecutorBuilder, Placement};
    LocalExecutorBuilder::new(Placement::Fixed(core))
        .io_memory(512 * 1024)
        .spawn(move || async move {
            let listener = glommio::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            let mut stream = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buf = vec![0u8; READ_BYTES];
            loop {
                // EOF or a reset (the client leaves with echoes in flight)
                // ends the run.
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

fn compio_server(runtime: &str, port: u16, core: usize) {
    use compio::io::{AsyncRead, AsyncWriteExt};
    use compio::BufResult;
    assert!(core_affinity::set_for_current(core_affinity::CoreId {
        id: core
    }));
    let mut proactor = compio::driver::ProactorBuilder::new();
    match runtime {
        "compio" => {}
        "compio-defer" | "compio-multishot" | "compio-split" => {
            proactor
                .single_issuer(true)
                .defer_taskrun(true)
                .coop_taskrun(true);
        }
        "compio-sqpoll" => {
            proactor
                .sqpoll_idle(Duration::from_millis(10))
                .sqpoll_cpu(core as u32);
        }
        _ => unreachable!(),
    }
    if runtime == "compio-multishot" {
        proactor
            .buffer_pool_size(std::num::NonZero::new(64).unwrap())
            .buffer_pool_buffer_len(READ_BYTES);
    }
    let rt = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()
        .unwrap();
    let multishot = runtime == "compio-multishot";
    let split = runtime == "compio-split";
    rt.block_on(async move {
        let listener = compio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        if multishot {
            use compio::io::AsyncReadMulti;
            use futures_util::StreamExt;
            let mut reader = &stream;
            let mut chunks = std::pin::pin!(reader.read_multi(READ_BYTES));
            let mut writer = &stream;
            while let Some(chunk) = chunks.next().await {
                let Ok(chunk) = chunk else { break };
                if chunk.is_empty() {
                    break;
                }
                let BufResult(r, _) = writer.write_all(chunk).await;
                if r.is_err() {
                    break;
                }
            }
            return;
        }
        if split {
            split_echo(stream).await;
            return;
        }
        let mut buf = Vec::with_capacity(READ_BYTES);
        loop {
            buf.clear();
            let BufResult(r, b) = stream.read(buf).await;
            buf = b;
            if !matches!(r, Ok(n) if n > 0) {
                break;
            }
            let BufResult(r, b) = stream.write_all(buf).await;
            if r.is_err() {
                break;
            }
            buf = b;
        }
    });
}

/// The echo with a receive always armed: a reader task hands what it read
/// to a writer task (as weft's drivers read while their writer drains), so
/// a send's completion never holds up the next receive.
async fn split_echo(stream: compio::net::TcpStream) {
    use compio::io::{AsyncRead, AsyncWriteExt};
    use compio::BufResult;
    use futures_util::StreamExt;
    let (mut reader, mut writer) = stream.into_split();
    // Unbounded in type, bounded in fact: the client keeps at most
    // `window` messages in flight.
    let (tx, mut rx) = futures_channel::mpsc::unbounded::<Vec<u8>>();
    let writing = compio::runtime::spawn(async move {
        while let Some(first) = rx.next().await {
            // Everything read meanwhile goes out in one send.
            let mut batch = first;
            while let Ok(more) = rx.try_recv() {
                batch.extend_from_slice(&more);
            }
            let BufResult(r, _) = writer.write_all(batch).await;
            if r.is_err() {
                break;
            }
        }
    });
    loop {
        let BufResult(r, buf) = reader.read(Vec::with_capacity(READ_BYTES)).await;
        if !matches!(r, Ok(n) if n > 0) || tx.unbounded_send(buf).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writing.await;
}

/// Keeps `window` messages in flight for `secs` seconds (after a 0.5 s
/// warm-up), then prints: messages, msgs/s, p50/p99/p99.9 round trip (µs).
fn client(port: u16, core: usize, secs: u64, window: usize) {
    assert!(core_affinity::set_for_current(core_affinity::CoreId {
        id: core
    }));
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("connect: {e}"),
        }
    };
    stream.set_nodelay(true).unwrap();
    let origin = Instant::now();
    let message = |out: &mut Vec<u8>| {
        let mut m = [0u8; MSG_BYTES];
        m[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        out.extend_from_slice(&m);
    };
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut out = Vec::with_capacity(window * MSG_BYTES);
    for _ in 0..window {
        message(&mut out);
    }
    stream.write_all(&out).unwrap();
    let mut inbuf = vec![0u8; READ_BYTES];
    let mut have = 0;
    let warm_until = Instant::now() + Duration::from_millis(500);
    let mut measuring: Option<(Instant, u64)> = None;
    let mut count = 0u64;
    // Every echo, warm-up included: the server's system calls divide by it.
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut inbuf[have..]).unwrap();
        assert!(n > 0, "server closed");
        have += n;
        let now_ns = origin.elapsed().as_nanos() as u64;
        let whole = have / MSG_BYTES;
        out.clear();
        total += whole as u64;
        for i in 0..whole {
            let m = &inbuf[i * MSG_BYTES..(i + 1) * MSG_BYTES];
            let sent = u64::from_le_bytes(m[..8].try_into().unwrap());
            if measuring.is_some() {
                hist.record(now_ns.saturating_sub(sent).max(1)).unwrap();
                count += 1;
            }
            message(&mut out);
        }
        inbuf.copy_within(whole * MSG_BYTES..have, 0);
        have -= whole * MSG_BYTES;
        let now = Instant::now();
        match measuring {
            None if now >= warm_until => measuring = Some((now, count)),
            Some((start, _)) if now - start >= Duration::from_secs(secs) => {
                let elapsed = (now - start).as_secs_f64();
                println!(
                    "msgs={count} total={total} rate={:.0} p50_us={:.1} p99_us={:.1} p999_us={:.1}",
                    count as f64 / elapsed,
                    hist.value_at_quantile(0.5) as f64 / 1000.0,
                    hist.value_at_quantile(0.99) as f64 / 1000.0,
                    hist.value_at_quantile(0.999) as f64 / 1000.0,
                );
                return; // dropping the stream ends the server
            }
            _ => {}
        }
        stream.write_all(&out).unwrap();
    }
}
