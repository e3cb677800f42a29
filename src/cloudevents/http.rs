//! The HTTP binding 1.0.2 read from a request's headers and body: binary,
//! structured and batched modes, and a body that is no CloudEvent.
//!
//! Owns: telling the content mode (HTTP binding 3) and reading binary
//! mode's headers (3.1). Must not touch: the HTTP framing (the HTTP edge
//! parses the request and hands over header pairs and the body).

use super::binding::{attribute_of_header, order_required, read_header};
use super::json::{read_batch, read_structured};
use super::{check_required, check_value, is_structured_content_type, CeError, Incoming};
use crate::event::EventMeta;

const STRUCTURED_JSON: &str = "application/cloudevents+json";
const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// The events in one HTTP request, in weft's form (see the module doc):
/// - `Content-Type: application/cloudevents-batch+json`: a batch (3.3);
/// - `Content-Type: application/cloudevents+json`: one structured event
///   (3.2);
/// - another `application/cloudevents*` type: 415, a format weft does not
///   read (3: a receiver MAY forward it as binary; weft says why not);
/// - any `ce-` header: one binary-mode event (3.1), `Content-Type` its
///   `datacontenttype` (3.1.1);
/// - otherwise a plain event: the body, its content type kept.
///
/// Header names are case-insensitive (3.1.3.1).
pub fn from_http(headers: &[(&str, &[u8])], body: &[u8]) -> Result<Vec<Incoming>, CeError> {
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(k, v)| {
            std::str::from_utf8(v)
                .map(str::trim)
                .map_err(|_| CeError::BadHeaderValue {
                    name: k.to_string(),
                    reason: "not ASCII",
                })
        })
        .transpose()?;
    if let Some(ct) = content_type.filter(|ct| is_structured_content_type(ct)) {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case(BATCH_JSON) {
            return read_batch(body);
        }
        if essence.eq_ignore_ascii_case(STRUCTURED_JSON) {
            return read_structured(body).map(|event| vec![event]);
        }
        return Err(CeError::UnsupportedFormat(essence.to_string()));
    }
    let mut meta = EventMeta::default();
    let mut binary = false;
    for (key, raw) in headers {
        let Some(prefix) = key.get(..3) else {
            continue;
        };
        if !prefix.eq_ignore_ascii_case("ce-") {
            continue;
        }
        binary = true;
        let name = attribute_of_header(key)
            .ok_or_else(|| CeError::BadAttributeName(key[3..].to_ascii_lowercase()))?;
        read_header(&mut meta, key, name, raw)?;
    }
    if let Some(ct) = content_type {
        if binary {
            check_value("datacontenttype", ct)?;
        }
        meta.content_type = Some(ct.into());
    }
    if binary {
        check_required(&meta)?;
        order_required(&mut meta);
    }
    Ok(vec![Incoming {
        payload: body.to_vec(),
        meta: (!meta.is_empty()).then_some(meta),
    }])
}
