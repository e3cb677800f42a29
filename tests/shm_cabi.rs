//! weft-shm's C ABI end to end: `tests/shm_cabi/peer.c` compiled with the
//! system C compiler (found by the `cc` crate: `$CC`, else `cc`) against
//! `weft-shm/include/weft_shm.h` and linked to the `libweft_shm.so` cargo
//! built for this test, then run against a real router: it publishes to
//! an async-nats subscriber and receives from an async-nats publisher, and
//! checks the ABI's codes (bad arguments, an empty receive, a buffer too
//! small keeping the message, an unsubscribe of nothing).
//!
//! No C compiler: the test fails and says so (nothing is installed by
//! hand). Bounded waits only.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::*;
use futures::StreamExt;

/// The folder holding the `libweft_shm.so` cargo built with this test
/// (the test binary's own `deps/` folder, or the profile folder above).
fn cdylib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        if dir.join("libweft_shm.so").exists() {
            return dir.to_path_buf();
        }
    }
    panic!(
        "no libweft_shm.so next to {} (weft-shm's crate-type lists cdylib)",
        exe.display()
    );
}

/// Compiles and links the C peer into the test's temp folder.
fn build_peer() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weft-shm-c-peer");
    let lib = cdylib_dir();
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let compiler = cc::Build::new()
        .cargo_metadata(false)
        .target(&target)
        .host(&target)
        .opt_level(0)
        .try_get_compiler()
        .unwrap_or_else(|e| panic!("no C compiler for the C ABI test ($CC or cc): {e}"));
    let mut cmd = compiler.to_command();
    cmd.arg("-std=c99")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(root.join("weft-shm/include"))
        .arg(root.join("tests/shm_cabi/peer.c"))
        .arg("-o")
        .arg(&out)
        .arg(format!("-L{}", lib.display()))
        .arg("-lweft_shm")
        .arg(format!("-Wl,-rpath,{}", lib.display()));
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cmd:?}: {e}"));
    assert!(
        result.status.success(),
        "compiling the C peer failed: {cmd:?}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    out
}

/// The C peer's process, killed if the test ends before it does.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn start(bin: &Path, sock: &Path) -> Peer {
        let mut child = Command::new(bin)
            .arg(sock)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the C peer");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Peer { child, lines }
    }

    /// The peer's next line (bounded by `WAIT`), which must be `want`-ish.
    async fn expect(&self, prefix: &str) -> String {
        let line = tokio::task::block_in_place(|| self.lines.recv_timeout(WAIT))
            .unwrap_or_else(|_| panic!("the C peer said nothing more; expected {prefix:?}"));
        assert!(
            line.starts_with(prefix),
            "C peer: {line:?}, expected {prefix:?}"
        );
        line
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_program_publishes_and_receives_through_the_c_abi() {
    let peer_bin = build_peer();
    let sock = common::shm::socket_path("cabi", "peer");
    let weft = Weft::launch_args(2, "", &["--shm-listen", sock.to_str().unwrap()]);
    let nats = nats(weft.nats).await;
    let mut from_c = nats.subscribe("c.out").await.unwrap();
    nats_sync(&nats).await;
    // Waits for the listener, as the C peer does not retry.
    drop(
        tokio::task::spawn_blocking({
            let sock = sock.clone();
            move || common::shm::connect(&sock, weft_shm::Options::nats("probe"), WAIT)
        })
        .await
        .unwrap(),
    );

    let mut peer = Peer::start(&peer_bin, &sock);
    peer.expect("READY").await;

    // C -> async-nats.
    let m = tokio::time::timeout(WAIT, from_c.next())
        .await
        .expect("the C peer's message in time")
        .unwrap();
    assert_eq!(&m.payload[..], b"hello from C");

    // async-nats -> C (its subscription was taken before READY).
    nats.publish("c.in", "hello from Rust".into())
        .await
        .unwrap();
    nats.flush().await.unwrap();
    let got = peer.expect("GOT").await;
    assert_eq!(got, "GOT c.in hello from Rust");
    peer.expect("DONE").await;
    let status = tokio::task::block_in_place(|| peer.child.wait()).unwrap();
    assert!(status.success(), "C peer: {status}");
    drop(weft);
    let _ = std::fs::remove_file(&sock);
}
