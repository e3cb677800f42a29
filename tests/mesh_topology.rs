//! The mesh as a graph across real processes: three `weft` routers in a
//! triangle, and router A's `GET /topology` (every router's link-state
//! record, flooded over the links).
//!
//! The cut: C's link to B runs through a TCP relay the test owns, and the
//! test closes the relay (its listener too, so C's redials are refused).
//! Not `kill` of C: a killed router's last record stays in A's graph,
//! saying its links are up, until it expires (`mesh.topology_expiry_ms`);
//! with the relay both B and C live on and each reports the cut itself
//! (C, the dialler, as held, then, past `mesh.link_hold_ms`, down while
//! its redials fail),
//! which is the behaviour an operator needs to see, and C's report still
//! reaches A over the A–C link. Nothing here asserts a time; every wait
//! is bounded by `common::WAIT`.

mod common;

use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::*;

/// Fast keepalive and reconnects, so cuts are noticed quickly.
const MESH_TOML: &str = "[mesh]
keepalive_ms = 200
link_timeout_ms = 2000
reconnect_min_ms = 50
reconnect_max_ms = 200
link_hold_ms = 500
";

/// A TCP relay to `target`: each connection accepted is joined to a new
/// connection to `target` by two copying threads. `close` stops the
/// listener and shuts every connection down, as a cut cable would.
struct Relay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<JoinHandle<()>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let (stop, sockets) = (stop.clone(), sockets.clone());
            std::thread::spawn(move || {
                for inbound in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return; // the listener closes with this thread
                    }
                    let Ok(inbound) = inbound else { continue };
                    let Ok(outbound) = TcpStream::connect(target) else {
                        continue;
                    };
                    let mut all = sockets.lock().unwrap();
                    for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                        let (mut from, mut to) =
                            (from.try_clone().unwrap(), to.try_clone().unwrap());
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(Shutdown::Write);
                        });
                    }
                    all.push(inbound);
                    all.push(outbound);
                }
            })
        };
        Relay {
            addr,
            stop,
            sockets,
            accept: Some(accept),
        }
    }

    fn close(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then ends and drops the listener.
        match TcpStream::connect(self.addr) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        }
        if let Some(t) = self.accept.take() {
            t.join().unwrap();
        }
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// `GET /topology` of `admin`, parsed.
async fn topology(admin: SocketAddr) -> serde_json::Value {
    let (status, body) = admin_get(admin, "/topology").await;
    assert_eq!(status, 200, "GET /topology: {body}");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET /topology is not JSON ({e}): {body}"))
}

/// The state of the edge `from` → `to` in `t`, if listed.
fn edge(t: &serde_json::Value, from: &str, to: &str) -> Option<String> {
    t["edges"]
        .as_array()?
        .iter()
        .find(|e| e["from"] == from && e["to"] == to)
        .map(|e| e["state"].as_str().expect("state is a string").to_owned())
}

/// Ids of the routers with a record of their own in `t`.
fn routers_with_records(t: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = t["routers"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter(|r| r["age_ms"].is_u64())
                .map(|r| r["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_link_shows_in_a_third_routers_topology() {
    let a = mesh_router("A", MESH_TOML, "info", "127.0.0.1:0", &[]);
    let a_mesh = a.mesh.expect("A's mesh listener");
    let b = mesh_router("B", MESH_TOML, "info", "127.0.0.1:0", &[a_mesh]);
    let mut relay = Relay::start(b.mesh.expect("B's mesh listener"));
    // C dials A directly and B through the relay.
    let c = mesh_router("C", MESH_TOML, "info", "127.0.0.1:0", &[a_mesh, relay.addr]);
    let pairs = [
        ("A", "B"),
        ("A", "C"),
        ("B", "A"),
        ("B", "C"),
        ("C", "A"),
        ("C", "B"),
    ];
    let whole = wait_until(
        "A's /topology shows A, B, C and every edge up",
        WAIT,
        || async {
            let t = topology(a.admin).await;
            let ids = routers_with_records(&t);
            let down: Vec<_> = pairs
                .iter()
                .filter(|(f, to)| edge(&t, f, to).as_deref() != Some("up"))
                .collect();
            if ids == ["A", "B", "C"] && down.is_empty() {
                Ok(t)
            } else {
                Err(format!("routers {ids:?}, edges not up {down:?}: {t}"))
            }
        },
    )
    .await;
    assert_eq!(whole["router_id"], "A");
    assert_eq!(whole["routers"][0]["id"], "A", "this router first");
    assert_eq!(whole["routers"][0]["self"], true);
    assert_eq!(whole["routers"][0]["age_ms"], 0);
    assert_eq!(whole["routers"][0]["links"], 2);
    for e in whole["edges"].as_array().unwrap() {
        assert_eq!(e["tls"], false, "{e}");
        for field in ["events_out", "events_in", "dropped"] {
            assert!(e[field].is_u64(), "{field} in {e}");
        }
        assert!(e["rtt_us"].is_u64() || e["rtt_us"].is_null(), "{e}");
    }
    // B and C see the same graph (each from its own side).
    for (name, w) in [("B", &b), ("C", &c)] {
        wait_until(
            &format!("{name}'s /topology shows A, B, C"),
            WAIT,
            || async {
                let t = topology(w.admin).await;
                match routers_with_records(&t) == ["A", "B", "C"] {
                    true => Ok(()),
                    false => Err(t.to_string()),
                }
            },
        )
        .await;
    }

    relay.close();
    let cut = wait_until("A's /topology shows the B-C link not up", WAIT, || async {
        let t = topology(a.admin).await;
        let b_to_c = edge(&t, "B", "C");
        let c_to_b = edge(&t, "C", "B");
        let others_up = [("A", "B"), ("A", "C"), ("B", "A"), ("C", "A")]
            .iter()
            .all(|(f, to)| edge(&t, f, to).as_deref() == Some("up"));
        // C dialled: it keeps listing the link (held, then down or
        // connecting while it redials); B accepted: held, then gone.
        let c_reports_cut = c_to_b.as_deref().is_some_and(|s| s != "up");
        if c_reports_cut && b_to_c.as_deref() != Some("up") && others_up {
            Ok(t)
        } else {
            Err(format!("B->C {b_to_c:?}, C->B {c_to_b:?}: {t}"))
        }
    })
    .await;
    let state = edge(&cut, "C", "B").unwrap();
    assert!(
        ["held", "down", "connecting"].contains(&state.as_str()),
        "C->B is {state}"
    );
    println!(
        "after the cut, A sees C->B {state}, B->C {:?}",
        edge(&cut, "B", "C")
    );
    // Past mesh.link_hold_ms: C, the dialler, still lists the link (down
    // or connecting while its redials are refused); B, which accepted it,
    // no longer does.
    let later = wait_until("A's /topology shows C->B down, B->C gone", WAIT, || async {
        let t = topology(a.admin).await;
        let c_to_b = edge(&t, "C", "B");
        let b_to_c = edge(&t, "B", "C");
        let redialling = c_to_b
            .as_deref()
            .is_some_and(|s| s == "down" || s == "connecting");
        if redialling && b_to_c.is_none() {
            Ok(t)
        } else {
            Err(format!("B->C {b_to_c:?}, C->B {c_to_b:?}: {t}"))
        }
    })
    .await;
    println!("later, A sees C->B {:?}", edge(&later, "C", "B"));
    drop((a, b, c));
}
