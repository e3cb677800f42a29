//! A TCP proxy between two routers (or a client and a router) that a
//! test can cut and restore: a link's network failure, made on loopback.

use super::*;

/// A TCP forwarder between a router's `--link` and its peer's mesh port:
/// `cut` drops every forwarded connection and refuses new ones (accepts
/// and closes them at once) until `restore`; `blackhole` keeps the
/// connections open but discards what crosses them, both ways (a silent
/// network), until `restore`.
pub struct Proxy {
    pub addr: SocketAddr,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hole: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to` until either ends; discards while `hole` is set.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if hole.load(std::sync::atomic::Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(AtomicBool::new(true));
        let hole = std::sync::Arc::new(AtomicBool::new(false));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let (open2, hole2, conns2) = (open.clone(), hole.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let mut conns = conns2.lock().unwrap();
                if !open2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let hole = hole2.clone();
                conns.push(tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::select! {
                        _ = pump(ir, ow, hole.clone()) => {}
                        _ = pump(or, iw, hole) => {}
                    }
                }));
            }
        });
        Proxy {
            addr,
            open,
            hole,
            conns,
            accept,
        }
    }

    pub fn cut(&self) {
        let mut conns = self.conns.lock().unwrap();
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in conns.drain(..) {
            c.abort();
        }
    }

    pub fn blackhole(&self) {
        self.hole.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.hole.store(false, std::sync::atomic::Ordering::SeqCst);
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
