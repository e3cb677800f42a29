//! `GET /explain?topic=T[&account=A][&from=ROUTER]`: route explain
//! (README, "Route explain"): which subscribers on which routers an event
//! on `topic` would reach, over which links, and which rule stops it
//! where. No event is sent.
//!
//! With the mesh on, the request goes to the bridge (`shard::
//! explain_board`), which carries it through the mesh (`mesh::explain`)
//! and answers within `mesh.explain_timeout_ms`; this thread waits a
//! second more for the answer. With the mesh off, the shards are asked
//! here. Either way the shards answer on their tick, from the trie.
//! Must not touch: shard or bridge state directly.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::AdminState;
use crate::mesh::explain::ReplyBody;
use crate::mesh::route::explain::{RouterReport, Unreached};
use crate::topic::ACCOUNT_PREFIX;

/// The answer, as `GET /explain` and `weft explain --json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub topic: String,
    pub account: Option<String>,
    pub from: Option<String>,
    /// Every router on the path answered and nothing was cut.
    pub complete: bool,
    pub routers: Vec<RouterReport>,
    pub unreached: Vec<Unreached>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub topic: String,
    pub account: Option<String>,
    pub from: Option<String>,
}

/// How often the admin thread looks for the answer.
const POLL: Duration = Duration::from_millis(5);
/// Extra wait beyond the mesh's timeout (the bridge's tick, the shards').
const SLACK: Duration = Duration::from_secs(1);

pub fn parse(query: &str) -> Result<Query, String> {
    let mut q = Query {
        topic: String::new(),
        account: None,
        from: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("query parameter {k}: bad escape"))?;
        match k {
            "topic" => q.topic = v,
            "account" if !v.is_empty() => q.account = Some(v),
            "from" if !v.is_empty() => q.from = Some(v),
            "account" | "from" => {}
            _ => return Err(format!("unknown query parameter '{k}'")),
        }
    }
    if q.topic.is_empty() {
        return Err("query parameter topic is required".into());
    }
    if q.topic.contains(['+', '#']) {
        return Err(format!(
            "topic '{}': a topic name, not a filter (no + or #)",
            q.topic
        ));
    }
    if q.topic.starts_with('$') {
        return Err("topic: a client topic (not one starting with $)".into());
    }
    if let Some(a) = &q.account {
        if !a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!("account '{a}': [A-Za-z0-9_-] only"));
        }
    }
    Ok(q)
}

/// `%XX` escapes and `+` as a space (form encoding).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The internal topic of `topic` in `account` (the default account, or
/// none named: the topic itself).
fn internal_topic(q: &Query, default_account: &str) -> String {
    match q.account.as_deref() {
        Some(a) if a != default_account => format!("{ACCOUNT_PREFIX}{a}/{}", q.topic),
        _ => q.topic.clone(),
    }
}

/// Serves one request: (status, JSON or an error line).
pub fn serve(state: &AdminState, query: &str) -> (u16, String) {
    let q = match parse(query) {
        Ok(q) => q,
        Err(e) => return (400, format!("{e}\n")),
    };
    let topic = internal_topic(&q, &state.default_account);
    let router_id = state
        .mesh_view
        .lock()
        .ok()
        .and_then(|v| v.as_ref().map(|v| v.router_id.clone()));
    let board = &state.global.explain;
    let body = match &router_id {
        Some(_) => {
            let Some(ticket) = board.to_bridge(&topic, q.from.as_deref()) else {
                return (503, "too many explain requests in progress\n".into());
            };
            let deadline = Instant::now() + state.explain_timeout + SLACK;
            loop {
                if let Some(body) = board.take_bridge_answer(ticket) {
                    break body;
                }
                if Instant::now() >= deadline {
                    return (504, "the mesh bridge did not answer in time\n".into());
                }
                std::thread::sleep(POLL);
            }
        }
        None => {
            if q.from.is_some() {
                return (400, "from: the mesh is off on this router\n".into());
            }
            match local_only(state, &topic) {
                Some(b) => b,
                None => return (503, "too many explain requests in progress\n".into()),
            }
        }
    };
    let mut unreached = body.unreached;
    if let Some(from) = &q.from {
        if !body.routers.iter().any(|r| &r.router == from)
            && !unreached.iter().any(|u| &u.router == from)
        {
            unreached.push(Unreached {
                router: from.clone(),
                reason: "not_found".into(),
            });
        }
    }
    let mut routers = body.routers;
    if q.account.is_some() {
        for r in &mut routers {
            r.topic = crate::topic::client_topic(&r.topic).to_owned();
        }
    }
    let complete = unreached.is_empty() && !routers.iter().any(|r| r.truncated);
    let e = Explanation {
        topic: q.topic,
        account: q.account,
        from: q.from.or(router_id),
        complete,
        routers,
        unreached,
    };
    (
        200,
        serde_json::to_string_pretty(&e).unwrap_or_default() + "\n",
    )
}

/// The mesh is off: this router alone, from its shards.
fn local_only(state: &AdminState, topic: &str) -> Option<ReplyBody> {
    let board = &state.global.explain;
    let id = board.ask(topic)?;
    let deadline = Instant::now() + SLACK;
    let mut report = RouterReport {
        router: String::new(),
        topic: topic.to_owned(),
        ..RouterReport::default()
    };
    let mut unreached = Vec::new();
    loop {
        if let Some(a) = board.take(id, state.stats.len()) {
            report.deliveries = a.deliveries;
            report.refused = a.refused;
            report.truncated = a.truncated;
            break;
        }
        if Instant::now() >= deadline {
            board.cancel(id);
            unreached.push(Unreached {
                router: String::new(),
                reason: "shards_timeout".into(),
            });
            break;
        }
        std::thread::sleep(POLL);
    }
    Some(ReplyBody {
        routers: vec![report],
        unreached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_precisely() {
        let q = parse("topic=eu%2Fx&from=c&account=").unwrap();
        assert_eq!(q.topic, "eu/x");
        assert_eq!(q.from.as_deref(), Some("c"));
        assert_eq!(q.account, None);
        assert!(parse("from=c").unwrap_err().contains("topic is required"));
        assert!(parse("topic=a/%23").unwrap_err().contains("not a filter"));
        assert!(parse("topic=a&x=1").unwrap_err().contains("unknown"));
        assert!(parse("topic=a%2").unwrap_err().contains("bad escape"));
        assert!(parse("topic=a&account=b/c").is_err());
        let q = parse("topic=a/b&account=acme").unwrap();
        assert_eq!(internal_topic(&q, "default"), "$weft/acct/acme/a/b");
        let q = parse("topic=a/b&account=default").unwrap();
        assert_eq!(internal_topic(&q, "default"), "a/b");
    }
}
