//! The properties weft's fuzz targets assert, one module per target, and
//! the seed inputs each target starts from.
//!
//! Every decoder here is a sans-IO `decode(&buf) -> Result<Option<(value,
//! used)>, error>`, and every one makes the same promise about where it
//! stops reading, checked by [`decoder_contract`]:
//! - `used` is at least 1 and at most the input length;
//! - the `used` bytes alone decode to the same value (what follows a packet
//!   never changes it);
//! - every shorter prefix of a decoded packet is "need more" (`Ok(None)`),
//!   never an error;
//! - a decision, once made, is final: a prefix of any input is either
//!   "need more" or decides exactly as the whole input does (same value or
//!   same error), so the outcome never depends on how TCP split the bytes.
//!
//! On top of that each codec with an encoder checks the round trip: a
//! decoded packet re-encodes to the same bytes where the format is
//! canonical (MQTT 3.1.1, the link protocol) and to bytes that decode to the
//! same packet otherwise (MQTT 5 and NATS, where the peer may choose among
//! equivalent forms).
//!
//! The session targets (`mqtt_session`, `nats_session`, `link_session`,
//! and `amqp_decode`'s second half)
//! drive a protocol's session machine with a script of steps instead (see
//! [`script`]): bytes from the peer, time passing, the driver's answers
//! and closes; each checks the rules of `weft::session` after every call.
//!
//! The fuzz targets (`fuzz_targets/*.rs`) are one line each and call
//! `check` here, so that `cargo test` in this folder runs the same checks
//! over the committed seeds without a fuzzer.

use std::fmt::Debug;

pub mod amqp_decode;
pub mod amqp_message;
pub mod link_decode;
pub mod link_session;
pub mod mqtt311_decode;
pub mod mqtt5_decode;
pub mod mqtt_session;
pub mod nats_decode;
pub mod nats_session;
pub mod script;
pub mod subject;
pub mod topic;
pub mod ws_decode;

/// Each target's name (as in Cargo.toml), checker and seeds.
pub type Target = (&'static str, fn(&[u8]), fn() -> Vec<Vec<u8>>);

pub fn targets() -> Vec<Target> {
    vec![
        (
            "mqtt311_decode",
            mqtt311_decode::check,
            mqtt311_decode::seeds,
        ),
        ("mqtt5_decode", mqtt5_decode::check, mqtt5_decode::seeds),
        ("nats_decode", nats_decode::check, nats_decode::seeds),
        ("link_decode", link_decode::check, link_decode::seeds),
        ("amqp_message", amqp_message::check, amqp_message::seeds),
        ("topic", topic::check, topic::seeds),
        ("subject", subject::check, subject::seeds),
        ("mqtt_session", mqtt_session::check, mqtt_session::seeds),
        ("nats_session", nats_session::check, nats_session::seeds),
        ("link_session", link_session::check, link_session::seeds),
        ("ws_decode", ws_decode::check, ws_decode::seeds),
        ("amqp_decode", amqp_decode::check, amqp_decode::seeds),
    ]
}

/// The prefix lengths to try below `len`: all of them for short inputs,
/// the first and last 64 and a spread in between for long ones (the check
/// stays linear-ish so the fuzzer keeps its speed).
fn cuts(len: usize) -> impl Iterator<Item = usize> {
    let step = if len <= 256 { 1 } else { len / 64 };
    (0..len).filter(move |&cut| cut < 64 || cut + 64 >= len || cut % step == 0)
}

/// Checks the stopping rules of a decoder (see the crate comment) on
/// `data` and returns its decision on the whole input.
pub fn decoder_contract<'a, P, E>(
    data: &'a [u8],
    decode: impl Fn(&'a [u8]) -> Result<Option<(P, usize)>, E>,
) -> Result<Option<(P, usize)>, E>
where
    P: PartialEq + Debug,
    E: PartialEq + Debug,
{
    let whole = decode(data);
    match &whole {
        Ok(Some((_, used))) => {
            let used = *used;
            assert!(used > 0, "a decoded packet takes at least one byte");
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            assert_eq!(
                decode(&data[..used]),
                whole,
                "the packet's own bytes decide it"
            );
            for cut in cuts(used) {
                assert_eq!(
                    decode(&data[..cut]),
                    Ok(None),
                    "prefix {cut} of a {used}-byte packet"
                );
            }
        }
        Ok(None) | Err(_) => {
            for cut in cuts(data.len()) {
                let part = decode(&data[..cut]);
                assert!(
                    part == Ok(None) || part == whole,
                    "prefix {cut} decided {part:?}, the whole input {whole:?}"
                );
            }
        }
    }
    whole
}

/// Splits a fuzz input into UTF-8 strings on the byte 0xff (which never
/// occurs in UTF-8); pieces that are not UTF-8 are skipped.
pub fn strings(data: &[u8]) -> Vec<&str> {
    data.split(|&b| b == 0xff)
        .filter_map(|piece| std::str::from_utf8(piece).ok())
        .collect()
}

/// Joins strings into one seed input, the inverse of [`strings`].
pub fn join(pieces: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            out.push(0xff);
        }
        out.extend_from_slice(piece.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn corpus_dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target)
    }

    /// The committed seeds are exactly what `seeds()` makes (run with
    /// WEFT_FUZZ_WRITE_SEEDS=1 to rewrite them after changing a generator).
    #[test]
    fn committed_seeds_are_current() {
        let write = std::env::var_os("WEFT_FUZZ_WRITE_SEEDS").is_some();
        for (name, _, seeds) in targets() {
            let dir = corpus_dir(name);
            for (i, seed) in seeds().iter().enumerate() {
                let path = dir.join(format!("seed-{i:02}"));
                if write {
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::write(&path, seed).unwrap();
                }
                let on_disk =
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(&on_disk, seed, "{}", path.display());
            }
        }
    }

    /// Every seed passes its target's checks, and every file in a corpus
    /// folder too (so a crash input copied there replays here).
    #[test]
    fn corpus_passes_checks() {
        for (name, check, seeds) in targets() {
            for seed in seeds() {
                check(&seed);
            }
            if let Ok(entries) = std::fs::read_dir(corpus_dir(name)) {
                for entry in entries {
                    check(&std::fs::read(entry.unwrap().path()).unwrap());
                }
            }
        }
    }

    #[test]
    fn cuts_cover_short_inputs_and_both_ends_of_long_ones() {
        assert_eq!(cuts(3).collect::<Vec<_>>(), vec![0, 1, 2]);
        let long: Vec<_> = cuts(4096).collect();
        assert!(long.contains(&0) && long.contains(&63) && long.contains(&4095));
        assert!(long.len() < 300);
    }
}
