//! The hello rule of the link protocol: what a router checks in the first
//! frame its peer sends before the link may carry anything (the frame,
//! its router id, the protocol version, the mesh name, not itself).
//! Split from `link.rs` (the frame codec) as its own concern; the link
//! session (`mesh::session`) applies it.

use thiserror::Error;

use super::*;

/// Why a link is refused at hello. The `Display` form is the log line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HelloError {
    #[error("link refused: expected a hello as the peer's first frame, got {0}")]
    NotHello(&'static str),
    #[error(
        "link refused: peer sent an invalid router id {0:?} \
         (1 to {ROUTER_ID_MAX} printable ASCII characters, no spaces)"
    )]
    BadRouterId(String),
    #[error(
        "link refused: peer router {peer:?} speaks link protocol version {theirs}, \
         this router speaks version {ours}"
    )]
    VersionMismatch {
        peer: String,
        ours: u16,
        theirs: u16,
    },
    #[error(
        "link refused: peer router {peer:?} is in mesh {theirs:?}, \
         this router is in mesh {ours:?}"
    )]
    MeshMismatch {
        peer: String,
        ours: String,
        theirs: String,
    },
    #[error(
        "link refused: peer claims this router's own id {0:?} \
         (a link to itself, or two routers configured with the same id)"
    )]
    SameRouterId(String),
}

/// Checks the peer's first frame against our own hello. Checks, in order:
/// it is a hello, its router id is valid, the versions are equal, the mesh
/// names are equal, and the peer is not ourselves.
pub fn check_hello(ours: &Hello<'_>, theirs: &Frame<'_>) -> Result<(), HelloError> {
    debug_assert!(valid_router_id(ours.router_id));
    let Frame::Hello(theirs) = theirs else {
        return Err(HelloError::NotHello(theirs.name()));
    };
    if !valid_router_id(theirs.router_id) {
        // Bounded, so that a hostile id cannot flood the log.
        let shown: String = theirs.router_id.chars().take(ROUTER_ID_MAX + 1).collect();
        return Err(HelloError::BadRouterId(shown));
    }
    let peer = || theirs.router_id.to_owned();
    if theirs.version != ours.version {
        return Err(HelloError::VersionMismatch {
            peer: peer(),
            ours: ours.version,
            theirs: theirs.version,
        });
    }
    if theirs.mesh != ours.mesh {
        return Err(HelloError::MeshMismatch {
            peer: peer(),
            ours: ours.mesh.to_owned(),
            theirs: theirs.mesh.chars().take(256).collect(),
        });
    }
    if theirs.router_id == ours.router_id {
        return Err(HelloError::SameRouterId(peer()));
    }
    Ok(())
}
