//! The console's page: the three static files of `src/admin/console/`
//! (`index.html`, `console.js`, `console.css`), built into the binary with
//! `include_str!` and served at `/`, `/console.js` and `/console.css`,
//! behind the admin token like every other path (the page forwards the
//! `access_token` it was opened with to its assets and to
//! `/console/events`).
//!
//! Owns: which path is which file, and its content type. Nothing is read
//! from disk at run time and nothing is built: the router's host needs no
//! node, no network and no build step for the console (why plain SVG and
//! vanilla JS: see the head of `console/console.js`). Bounds: three fixed
//! bodies, a few tens of KiB.

const INDEX_HTML: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The asset served at `path` (no query): its content type and body.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX_HTML)),
        "/console.js" => Some(("text/javascript; charset=utf-8", CONSOLE_JS)),
        "/console.css" => Some(("text/css; charset=utf-8", CONSOLE_CSS)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_what_is_served() {
        let (kind, html) = asset("/").unwrap();
        assert!(kind.starts_with("text/html"));
        // The page loads its assets by the names served here.
        for name in ["console.js", "console.css"] {
            assert!(html.contains(&format!("\"{name}\"")), "{name}");
            assert!(asset(&format!("/{name}")).is_some(), "{name}");
        }
        // The hooks tests/console.rs relies on.
        assert!(html.contains("id=\"status\""));
        let (_, js) = asset("/console.js").unwrap();
        for hook in ["data-router", "data-edge", "data-state", "console/events"] {
            assert!(js.contains(hook), "{hook}");
        }
        assert!(asset("/console.json").is_none());
        assert!(asset("/../Cargo.toml").is_none());
    }
}
