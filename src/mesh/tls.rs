//! TLS for mesh links: mutual authentication against the mesh's own CA.
//!
//! With `[mesh.tls]` set, every link (dialled and accepted) is TLS 1.2/1.3
//! and both ends present a certificate signed by one of the CAs in
//! `mesh.tls.ca`: a router without one cannot join, read or inject. The
//! dialling router checks the certificate against `mesh.tls.server_name`
//! (or, when that is empty, the IP address it dialled); with
//! `mesh.tls.router_id_in_cert` each end also requires the peer's
//! certificate to name the router id its hello claims (as a DNS name in the
//! subject alternative names), so that a certificate is one router's, not
//! the whole mesh's.
//!
//! Owns: the router-id check against a peer's certificate. Loading the
//! PEM files into rustls configurations is configuration's
//! (`config::tls`, so that `config` does not depend on `mesh`). Must not
//! touch: sockets (the handshake itself runs in `shard::bridge`, on the
//! link's glommio stream through futures-rustls). rustls does the
//! protocol; nothing here is hand-written cryptography.

use rustls::pki_types::{CertificateDer, ServerName};

pub use crate::config::MeshTls;

/// Ok when `cert` (the peer's end-entity certificate, already verified
/// against the mesh CA by the handshake) names `router_id` as a DNS name.
pub fn check_router_id(cert: &CertificateDer<'_>, router_id: &str) -> Result<(), String> {
    let name = ServerName::try_from(router_id).map_err(|_| {
        format!("router id '{router_id}' is not a DNS name a certificate can carry")
    })?;
    let cert = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("peer certificate unreadable: {e:?}"))?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("peer certificate does not name router id '{router_id}'"))
}
