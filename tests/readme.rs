//! The README's walkthroughs, run as a reader pastes them: every fenced
//! block marked `<!-- ci: walkthrough NAME … -->` runs in bash, in an
//! empty temporary directory, with the built `weft` first on the PATH.
//! Verbatim: the walkthroughs run one at a time on the README's own
//! ports. Only where one of those ports is taken already (a router the
//! developer runs, another copy of this test) is the text changed, and
//! then only its ports: each `127.0.0.1:PORT` and `-p PORT` becomes a free
//! port, and the run says so. On CI's clean machine the ports are free.
//! The walkthroughs' MQTT and NATS clients are `weft pub` / `weft sub`
//! (the built binary); they also need curl and openssl.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest run of one walkthrough; it bounds a hang, it measures nothing.
const RUN_MAX: Duration = Duration::from_secs(120);

/// The marked blocks of README.md by name, their indentation removed.
fn walkthroughs() -> BTreeMap<String, String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let mut out = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim().strip_prefix("<!-- ci: walkthrough ") else {
            continue;
        };
        let name = rest.split_whitespace().next().expect("a name").to_string();
        let fence = lines.next().expect("a fenced block after the marker");
        let indent = fence.len() - fence.trim_start().len();
        assert_eq!(
            fence.trim(),
            "```sh",
            "walkthrough {name}: the marker must be followed by a ```sh block"
        );
        let mut block = String::new();
        for line in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            block.push_str(line.get(indent..).unwrap_or(line.trim_start()));
            block.push('\n');
        }
        assert!(
            out.insert(name.clone(), block).is_none(),
            "two walkthroughs named {name}"
        );
    }
    out
}

/// Where a block names ports: after `127.0.0.1:` and after `-p `.
const PORT_CONTEXTS: [&str; 2] = ["127.0.0.1:", "-p "];

fn digits_at(s: &str, i: usize) -> String {
    s[i..].chars().take_while(char::is_ascii_digit).collect()
}

/// Every port the block names (see `PORT_CONTEXTS`).
fn ports_named(block: &str) -> std::collections::BTreeSet<String> {
    let mut ports = std::collections::BTreeSet::new();
    for ctx in PORT_CONTEXTS {
        for (i, _) in block.match_indices(ctx) {
            let p = digits_at(block, i + ctx.len());
            if !p.is_empty() {
                ports.insert(p);
            }
        }
    }
    ports
}

/// Whether every port the block names can be bound on 127.0.0.1 now.
fn ports_free(block: &str) -> bool {
    ports_named(block).iter().all(|p| {
        let port: u16 = p.parse().expect("a port number");
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
    })
}

/// Every port the block names, each mapped to a port that was free a
/// moment ago.
fn substitute_ports(block: &str) -> String {
    const CONTEXTS: [&str; 2] = PORT_CONTEXTS;
    let ports = ports_named(block);
    // Hold every probe socket until all ports are chosen: no port twice.
    let probes: Vec<std::net::TcpListener> = ports
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let map: BTreeMap<&String, u16> = ports
        .iter()
        .zip(&probes)
        .map(|(p, l)| (p, l.local_addr().unwrap().port()))
        .collect();
    drop(probes);
    let mut text = block.to_string();
    for ctx in CONTEXTS {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(ctx) {
            out.push_str(&rest[..i + ctx.len()]);
            rest = &rest[i + ctx.len()..];
            let p = digits_at(rest, 0);
            if let Some(new) = map.get(&p) {
                out.push_str(&new.to_string());
                rest = &rest[p.len()..];
            }
        }
        out.push_str(rest);
        text = out;
    }
    text
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the walkthrough `name` with bash; its exit status, stdout, stderr.
fn run_walkthrough(name: &str) -> (i32, String, String) {
    for t in ["curl", "openssl"] {
        assert!(
            tool(t),
            "{t} is not installed: the README walkthroughs need curl and openssl \
             (scripts/test.sh installs them)"
        );
    }
    let blocks = walkthroughs();
    let block = blocks
        .get(name)
        .unwrap_or_else(|| panic!("README.md has no walkthrough '{name}': {:?}", blocks.keys()));
    // One walkthrough at a time: they use the same ports.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let script = if ports_free(block) {
        block.clone()
    } else {
        eprintln!("walkthrough {name}: a README port is in use here: running it on free ports");
        substitute_ports(block)
    };
    let dir: PathBuf =
        std::env::temp_dir().join(format!("weft-readme-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_weft")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        // -e: a failing step (weft wait timing out) ends the run there.
        .arg(format!("set -e\n{script}"))
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: whatever it leaves running is ended below.
        .process_group(0)
        .spawn()
        .expect("bash");
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_MAX;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            break -1;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Anything the block left running (it should leave nothing).
    let leftover = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL).is_ok();
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        !leftover,
        "walkthrough {name} left processes running (it must stop its routers)\n\
         script:\n{script}\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert_eq!(
        status, 0,
        "walkthrough {name} failed or hung\nscript:\n{script}\nstdout:\n{out}\nstderr:\n{err}"
    );
    (status, out, err)
}

#[test]
fn mesh_walkthrough_runs_as_pasted() {
    let (_, out, err) = run_walkthrough("mesh");
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("sensors/")).collect();
    assert_eq!(
        got,
        ["sensors/t1 21.5"],
        "C's subscriber printed A's publish once\nstdout:\n{out}\nstderr:\n{err}"
    );
    // B's /links: both links up.
    let links = out
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"router_id\":\"B\""))
        .unwrap_or_else(|| panic!("B's /links in the output:\n{out}"));
    let links: serde_json::Value = serde_json::from_str(links).unwrap();
    let up = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["state"] == "up")
        .count();
    assert_eq!(up, 2, "B has its links to A and C up: {links}");
    assert!(
        out.lines().any(|l| l.starts_with("weft_mesh_link_up{")),
        "A's metrics were printed:\n{out}"
    );
}

#[test]
fn tls_walkthrough_runs_as_pasted() {
    let (_, out, err) = run_walkthrough("tls");
    assert!(out.contains("A.toml is valid"), "check-config:\n{out}");
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("sensors/")).collect();
    assert_eq!(
        got,
        ["sensors/t1 21.5"],
        "B's subscriber printed A's publish once\nstdout:\n{out}\nstderr:\n{err}"
    );
    let links = out
        .lines()
        .find(|l| l.starts_with('{') && l.contains("\"router_id\":\"A\""))
        .unwrap_or_else(|| panic!("A's /links in the output:\n{out}"));
    let links: serde_json::Value = serde_json::from_str(links).unwrap();
    assert_eq!(links["tls"], true, "{links}");
    assert_eq!(links["links"][0]["peer"], "B", "{links}");
    assert_eq!(links["links"][0]["state"], "up", "{links}");
}

/// weft pub's one line for a refused connection, at 127.0.0.1 on whichever
/// port the walkthrough ran (1883 as pasted, another one when 1883 is taken
/// on this machine: a Debian mosquitto service, say).
fn refused_line(err: &str, reason: &str) -> bool {
    err.lines().any(|l| {
        l.strip_prefix("weft pub: error: 127.0.0.1:")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(port, rest)| {
                port.parse::<u16>().is_ok() && rest == format!("refused the connection: {reason}")
            })
    })
}

#[test]
fn secure_walkthrough_runs_as_pasted() {
    let (_, out, err) = run_walkthrough("secure");
    let all = format!("stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("secure.toml is valid"), "{all}");
    let got: Vec<&str> = out.lines().filter(|l| l.starts_with("sensors/")).collect();
    assert_eq!(got, ["sensors/t1 21.5"], "alice read no secret: {all}");
    for line in [
        "wrong password: refused",
        "anonymous: refused",
        "alarms/x: denied",
        "fleet: nothing from the default account",
    ] {
        assert!(out.contains(line), "{line}: {all}");
    }
    // weft pub's one line for each refusal (MQTT 5 reason codes).
    assert!(refused_line(&err, "BadUserNamePassword"), "{all}");
    assert!(refused_line(&err, "NotAuthorized"), "{all}");
    assert!(
        err.contains("the broker refused the message on 'alarms/x': PUBACK NotAuthorized"),
        "PUBACK 0x87: {all}"
    );
    assert!(
        err.contains("weft sub: error: no message within 2 s"),
        "fleet's subscriber: {all}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("weft_auth_failures_total{")),
        "{all}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("weft_authz_denied_total{") && l.contains("action=\"publish\"")),
        "{all}"
    );
}
