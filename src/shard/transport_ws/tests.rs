//! `Ws` over the in-memory transport, polled by hand (no executor, no
//! socket): control frames never land inside a half-written data frame,
//! the reader answers pings itself when the writer is idle, protocol errors
//! and the peer's close are answered with their codes.

use std::task::{Context, Poll, Waker};

use super::*;
use crate::shard::transport_mem::{pair, MemoryEnd};

const MASK: [u8; 4] = [9, 8, 7, 6];

fn limits() -> WsLimits {
    WsLimits {
        frame: frame::Limits {
            frame_bytes_max: 1 << 20,
            message_bytes_max: 1 << 20,
            text_allowed: false,
        },
        read_buffer_bytes: 1024,
        write_frame_bytes_max: 4096,
    }
}

fn cx() -> Context<'static> {
    Context::from_waker(Waker::noop())
}

fn client_send(client: &MemoryEnd, opcode: Opcode, payload: &[u8]) {
    let mut out = Vec::new();
    frame::encode_frame(&mut out, true, opcode, payload, Some(MASK));
    match client.poll_write(&mut cx(), &out) {
        Poll::Ready(Ok(n)) => assert_eq!(n, out.len(), "the pipe takes the frame"),
        other => panic!("{other:?}"),
    }
}

/// Appends everything the client can read now to `wire`.
fn client_reads(client: &MemoryEnd, wire: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    while let Poll::Ready(Ok(n)) = client.poll_read(&mut cx(), &mut chunk) {
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&chunk[..n]);
    }
}

/// The server's frames in `wire`, in order: (opcode, payload).
fn frames(wire: &[u8]) -> Vec<(Opcode, Vec<u8>)> {
    let mut decoder = Decoder::new(Role::Client, limits().frame);
    let mut buf = wire.to_vec();
    let mut out = Vec::new();
    let mut message = Vec::new();
    loop {
        let step = decoder.decode(&mut buf).expect("valid server frames");
        if step.consumed == 0 && step.item.is_none() {
            assert!(buf.is_empty(), "no partial frame left: {buf:?}");
            return out;
        }
        match step.item {
            Some(Item::Data { range, fin }) => {
                message.extend_from_slice(&buf[range]);
                if fin {
                    out.push((Opcode::Binary, std::mem::take(&mut message)));
                }
            }
            Some(Item::Ping(r)) => out.push((Opcode::Ping, buf[r].to_vec())),
            Some(Item::Pong(r)) => out.push((Opcode::Pong, buf[r].to_vec())),
            Some(Item::Close { code, reason }) => {
                let mut payload = code.map_or(Vec::new(), |c| c.0.to_be_bytes().to_vec());
                payload.extend_from_slice(&buf[reason]);
                out.push((Opcode::Close, payload));
            }
            None => {}
        }
        buf.drain(..step.consumed);
    }
}

#[test]
fn a_pong_waits_for_the_data_frame_begun() {
    let (server_end, client) = pair(100);
    let ws = Ws::new(server_end, limits(), &[]);
    // A 1000-byte frame: the pipe takes 100 bytes of it now.
    let data = vec![7u8; 1000];
    assert!(matches!(
        ws.poll_write(&mut cx(), &data),
        Poll::Ready(Ok(1000))
    ));
    // A ping arrives meanwhile; the reader queues the pong.
    client_send(&client, Opcode::Ping, b"now?");
    let mut buf = [0u8; 64];
    assert!(ws.poll_read(&mut cx(), &mut buf).is_pending());
    // The client drains, the writer flushes, until all is out.
    let mut wire = Vec::new();
    for _ in 0..100 {
        client_reads(&client, &mut wire);
        if let Poll::Ready(r) = ws.poll_flush(&mut cx()) {
            r.unwrap();
            client_reads(&client, &mut wire);
            break;
        }
    }
    assert_eq!(
        frames(&wire),
        vec![(Opcode::Binary, data), (Opcode::Pong, b"now?".to_vec())]
    );
}

#[test]
fn an_idle_writer_leaves_the_pong_to_the_reader_and_data_flows_through() {
    let (server_end, client) = pair(4096);
    let ws = Ws::new(server_end, limits(), &[]);
    client_send(&client, Opcode::Ping, b"p");
    client_send(&client, Opcode::Binary, b"hello");
    let mut buf = [0u8; 3];
    // Read in small pieces: "hel", "lo".
    assert!(matches!(
        ws.poll_read(&mut cx(), &mut buf),
        Poll::Ready(Ok(3))
    ));
    assert_eq!(&buf, b"hel");
    assert!(matches!(
        ws.poll_read(&mut cx(), &mut buf),
        Poll::Ready(Ok(2))
    ));
    assert_eq!(&buf[..2], b"lo");
    let mut wire = Vec::new();
    client_reads(&client, &mut wire);
    assert_eq!(frames(&wire), vec![(Opcode::Pong, b"p".to_vec())]);
    // A large write goes out as frames of at most write_frame_bytes_max.
    let big = vec![1u8; 10_000];
    let mut written = 0;
    let mut wire = Vec::new();
    while written < big.len() {
        if let Poll::Ready(r) = ws.poll_write(&mut cx(), &big[written..]) {
            let n = r.unwrap();
            assert!(n <= 4096);
            written += n;
        }
        client_reads(&client, &mut wire);
    }
    while ws.poll_flush(&mut cx()).is_pending() {
        client_reads(&client, &mut wire);
    }
    client_reads(&client, &mut wire);
    let got = frames(&wire);
    assert_eq!(got.len(), 3, "4096 + 4096 + 1808");
    let joined: Vec<u8> = got.into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(joined, big);
}

#[test]
fn errors_and_closes_are_answered_with_their_codes() {
    // A text frame where only binary is served: 1003, and the read fails.
    let (server_end, client) = pair(4096);
    let ws = Ws::new(server_end, limits(), &[]);
    client_send(&client, Opcode::Text, b"hi");
    let mut buf = [0u8; 16];
    match ws.poll_read(&mut cx(), &mut buf) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
        other => panic!("{other:?}"),
    }
    let mut wire = Vec::new();
    client_reads(&client, &mut wire);
    let got = frames(&wire);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Opcode::Close);
    assert_eq!(&got[0].1[..2], &1003u16.to_be_bytes());
    // Nothing is written after the close.
    assert!(matches!(
        ws.poll_write(&mut cx(), b"x"),
        Poll::Ready(Err(_))
    ));

    // The peer's close: echoed with its code, and the end of the stream.
    let (server_end, client) = pair(4096);
    let ws = Ws::new(server_end, limits(), &[]);
    client_send(&client, Opcode::Close, &4001u16.to_be_bytes());
    assert!(matches!(
        ws.poll_read(&mut cx(), &mut buf),
        Poll::Ready(Ok(0))
    ));
    let mut wire = Vec::new();
    client_reads(&client, &mut wire);
    let got = frames(&wire);
    assert_eq!(got[0].0, Opcode::Close);
    assert_eq!(&got[0].1[..2], &4001u16.to_be_bytes());

    // A server-side end (dropped without a close): a 1000 close frame.
    let (server_end, client) = pair(4096);
    drop(Ws::new(server_end, limits(), &[]));
    let mut wire = Vec::new();
    client_reads(&client, &mut wire);
    let got = frames(&wire);
    assert_eq!(got[0].0, Opcode::Close);
    assert_eq!(&got[0].1[..2], &1000u16.to_be_bytes());
}

#[test]
fn bytes_sent_with_the_upgrade_are_read_first() {
    let (server_end, _client) = pair(64);
    let mut early = Vec::new();
    frame::encode_frame(&mut early, true, Opcode::Binary, b"early", Some(MASK));
    let ws = Ws::new(server_end, limits(), &early);
    let mut buf = [0u8; 16];
    assert!(matches!(
        ws.poll_read(&mut cx(), &mut buf),
        Poll::Ready(Ok(5))
    ));
    assert_eq!(&buf[..5], b"early");
}

#[test]
fn a_flood_of_empty_frames_yields_the_shard() {
    let (server_end, client) = pair(1 << 20);
    let ws = Ws::new(server_end, limits(), &[]);
    for _ in 0..600 {
        client_send(&client, Opcode::Binary, b"");
    }
    client_send(&client, Opcode::Binary, b"x");
    let mut buf = [0u8; 4];
    let mut yields = 0;
    let n = loop {
        match ws.poll_read(&mut cx(), &mut buf) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => yields += 1,
        }
        assert!(yields < 100, "never got through the flood");
    };
    assert_eq!((n, buf[0]), (1, b'x'));
    assert!(
        yields >= 2,
        "600 empty frames in turns of 256: it yielded {yields} times"
    );
}

/// Counts its wakes.
struct Count(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A socket that takes part of a frame then is full: the write reports
/// the frame (it is held whole), the flush does not report it flushed
/// while the socket holds the rest back, and the writer is woken when the
/// socket drains (the path a 1 KiB WebSocket stall was first suspected on;
/// the stall was in the bench client, `bench::ws`).
#[test]
fn a_full_socket_wakes_the_writer_when_it_drains() {
    use std::sync::atomic::Ordering;
    let (server_end, client) = pair(100);
    let ws = Ws::new(server_end, limits(), &[]);
    let count = std::sync::Arc::new(Count(0.into()));
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let data = vec![5u8; 1000];
    assert!(matches!(
        ws.poll_write(&mut cx, &data),
        Poll::Ready(Ok(1000))
    ));
    assert_eq!(client.readable(), 100, "the socket took part of the frame");
    let mut wire = Vec::new();
    let mut wakes = 0;
    loop {
        match ws.poll_flush(&mut cx) {
            Poll::Ready(r) => break r.unwrap(),
            Poll::Pending => {
                assert_eq!(
                    client.readable(),
                    100,
                    "pending only while the socket is full"
                );
                let before = count.0.load(Ordering::SeqCst);
                client_reads(&client, &mut wire);
                assert!(
                    count.0.load(Ordering::SeqCst) > before,
                    "the drain woke the writer"
                );
                wakes += 1;
                assert!(wakes < 100, "never flushed");
            }
        }
    }
    client_reads(&client, &mut wire);
    assert!(
        wakes >= 9,
        "1000 bytes through a 100-byte socket: {wakes} wakes"
    );
    assert_eq!(frames(&wire), vec![(Opcode::Binary, data)]);
}
