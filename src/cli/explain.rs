//! `weft explain TOPIC`: asks a router's admin endpoint (`GET /explain`)
//! where an event on TOPIC would go, and prints the answer as a tree (or
//! the JSON with `--json`). No event is sent. Exit status: 0 answered, 1
//! the request failed (one line on stderr), 2 bad flags.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Options of `weft explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The topic an event would be published on (MQTT form, as a client
    /// of the account writes it).
    pub topic: String,
    /// The router's admin endpoint (HOST:PORT or http://HOST:PORT).
    #[arg(long, value_name = "URL", default_value = "127.0.0.1:8222")]
    pub admin: String,
    /// Explain as if published at this router of the mesh.
    #[arg(long, value_name = "ROUTER")]
    pub from: Option<String>,
    /// The publisher's account (security.accounts); default: the default account.
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// The admin token (admin.token), if the endpoint requires one.
    #[arg(long, value_name = "T")]
    pub token: Option<String>,
    /// Print the JSON answer as the endpoint gives it.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer (the mesh's own timeout is
    /// mesh.explain_timeout_ms on the router).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

pub fn run(args: ExplainArgs) -> ExitCode {
    match explain(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft explain: {e}");
            ExitCode::from(1)
        }
    }
}

/// `application/x-www-form-urlencoded` for a query value.
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn explain(args: &ExplainArgs) -> Result<String, String> {
    let addr = args
        .admin
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let mut path = format!("/explain?topic={}", encode(&args.topic));
    if let Some(f) = &args.from {
        let _ = write!(path, "&from={}", encode(f));
    }
    if let Some(a) = &args.account {
        let _ = write!(path, "&account={}", encode(a));
    }
    let (status, body) = crate::wait::http_get_with(
        addr,
        &path,
        args.token.as_deref(),
        Duration::from_millis(args.timeout_ms),
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let text = String::from_utf8_lossy(&body).into_owned();
    if status != 200 {
        return Err(format!("{addr}: HTTP {status}: {}", text.trim()));
    }
    if args.json {
        return Ok(text);
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{addr}: bad JSON: {e}"))?;
    Ok(tree(&v))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The answer as a tree: each router under the one whose link the event
/// would cross to reach it.
pub fn tree(v: &Value) -> String {
    let mut out = String::new();
    let empty = Vec::new();
    let routers = v.get("routers").and_then(Value::as_array).unwrap_or(&empty);
    let _ = writeln!(
        out,
        "{} published at {}{}",
        s(v, "topic"),
        s(v, "from"),
        v.get("account")
            .and_then(Value::as_str)
            .map_or(String::new(), |a| format!(" (account {a})"))
    );
    let roots: Vec<&Value> = routers
        .iter()
        .filter(|r| {
            r.get("arrived_from").is_none_or(Value::is_null)
                || !routers
                    .iter()
                    .any(|o| s(o, "router") == s(r, "arrived_from"))
        })
        .collect();
    for r in roots {
        router(&mut out, r, routers, 1);
    }
    for u in v
        .get("unreached")
        .and_then(Value::as_array)
        .unwrap_or(&empty)
    {
        let _ = writeln!(out, "not reached: {} ({})", s(u, "router"), s(u, "reason"));
    }
    let complete = v.get("complete").and_then(Value::as_bool).unwrap_or(false);
    let _ = writeln!(out, "complete: {}", if complete { "yes" } else { "no" });
    out
}

fn router(out: &mut String, r: &Value, all: &[Value], depth: usize) {
    let pad = "  ".repeat(depth);
    let name = s(r, "router");
    let _ = write!(out, "{pad}router {} (topic {})", name, s(r, "topic"));
    if let Some(i) = r.get("import").filter(|i| !i.is_null()) {
        if s(i, "action") == "refused" {
            let _ = write!(
                out,
                ": REFUSED on import from {} by {} {}",
                s(i, "from"),
                s(i, "by"),
                s(i, "rule")
            );
        } else if let Some(p) = i.get("prefix").and_then(Value::as_str) {
            let _ = write!(out, ", import prefix {p}");
        }
    }
    let _ = writeln!(out);
    let list = |key: &str| {
        r.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for d in list("deliveries") {
        let group = d
            .get("queue_group")
            .and_then(Value::as_str)
            .map_or(String::new(), |g| format!(", one of group {g}"));
        let _ = writeln!(
            out,
            "{pad}  deliver to {} {} (filter {}, qos {}, shard {}{group})",
            s(&d, "protocol"),
            s(&d, "client_id"),
            s(&d, "filter"),
            d.get("qos").and_then(Value::as_u64).unwrap_or(0),
            d.get("shard").and_then(Value::as_u64).unwrap_or(0),
        );
    }
    for d in list("refused") {
        let _ = writeln!(
            out,
            "{pad}  REFUSED {} {} (filter {}) by {}: {}",
            s(&d, "protocol"),
            s(&d, "client_id"),
            s(&d, "filter"),
            s(&d, "by"),
            s(&d, "rule"),
        );
    }
    for l in list("links") {
        let peer = s(&l, "peer");
        if s(&l, "action") == "forward" {
            let dests: Vec<&str> = l
                .get("dests")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{pad}  link to {peer}: forward for {}",
                dests.join(", ")
            );
            for child in all
                .iter()
                .filter(|c| s(c, "router") == peer && s(c, "arrived_from") == name)
            {
                router(out, child, all, depth + 2);
            }
        } else {
            let _ = writeln!(
                out,
                "{pad}  link to {peer}: REFUSED by {} {}",
                s(&l, "by"),
                s(&l, "rule")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_nests_routers_under_their_links() {
        let v: Value = serde_json::from_str(
            r#"{"topic":"eu/x","account":null,"from":"a","complete":false,
            "routers":[
             {"router":"a","topic":"eu/x","arrived_from":null,"import":null,
              "deliveries":[{"shard":0,"protocol":"mqtt","client_id":"c1","filter":"eu/#","qos":1,"queue_group":null}],
              "refused":[],
              "links":[{"peer":"b","action":"forward","dests":["b"]},
                       {"peer":"c","action":"refused","by":"export_deny","rule":"eu/x"}]},
             {"router":"b","topic":"from-a/eu/x","arrived_from":"a",
              "import":{"from":"a","action":"accepted","by":null,"rule":null,"prefix":"from-a/"},
              "deliveries":[],"refused":[],"links":[]}],
            "unreached":[{"router":"d","reason":"timeout"}]}"#,
        )
        .unwrap();
        let t = tree(&v);
        assert!(
            t.contains("  router a (topic eu/x)\n    deliver to mqtt c1"),
            "{t}"
        );
        assert!(t.contains("    link to b: forward for b\n      router b (topic from-a/eu/x), import prefix from-a/"), "{t}");
        assert!(t.contains("link to c: REFUSED by export_deny eu/x"), "{t}");
        assert!(t.contains("not reached: d (timeout)\ncomplete: no"), "{t}");
        assert_eq!(encode("a b/é#"), "a%20b/%C3%A9%23");
    }
}
