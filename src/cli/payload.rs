//! What `weft pub` publishes: `-m`, `-f`, `-s` (all of stdin), `-n`
//! (empty), each `-c` times, or `-l` (one message per stdin line, sent as
//! the line arrives).
//!
//! Owns: reading the payloads, each within `PAYLOAD_BYTES_MAX` (a file,
//! stdin or a line longer than that is refused, not buffered without
//! bound). Must not touch: the network.

use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::args::PubArgs;
use super::error::CliError;

/// The largest payload read (MQTT's packet limit is 256 MiB; brokers set
/// lower ones of their own, and say so when a message exceeds them).
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024 * 1024 - 1024;

pub struct Payloads<R> {
    source: Source<R>,
}

enum Source<R> {
    /// The same payload, `left` more times.
    Repeat { payload: Bytes, left: u64 },
    /// One payload per line of the reader.
    Lines(BufReader<R>),
}

impl Payloads<tokio::io::Stdin> {
    /// The payloads `args` name; `-f` and `-s` are read whole here.
    pub async fn from_args(args: &PubArgs) -> Result<Self, CliError> {
        Payloads::new(args, tokio::io::stdin()).await
    }
}

impl<R: AsyncRead + Unpin> Payloads<R> {
    pub async fn new(args: &PubArgs, stdin: R) -> Result<Self, CliError> {
        if args.stdin_line {
            if args.count != 1 {
                return Err(CliError::usage(
                    "-c: stdin lines (-l) are read once; -c repeats -m, -f, -s or -n",
                ));
            }
            return Ok(Payloads {
                source: Source::Lines(BufReader::new(stdin)),
            });
        }
        let payload = if let Some(m) = &args.message {
            Bytes::copy_from_slice(m.as_bytes())
        } else if let Some(path) = &args.file {
            read_file(path).await?
        } else if args.stdin_file {
            read_bounded(stdin, "stdin (-s)").await?
        } else {
            Bytes::new()
        };
        Ok(Payloads {
            source: Source::Repeat {
                payload,
                left: args.count,
            },
        })
    }

    /// The next payload; `None` once all are given (or stdin ended).
    pub async fn next(&mut self) -> Result<Option<Bytes>, CliError> {
        match &mut self.source {
            Source::Repeat { payload, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                *left -= 1;
                Ok(Some(payload.clone()))
            }
            Source::Lines(reader) => read_line(reader).await,
        }
    }
}

async fn read_file(path: &Path) -> Result<Bytes, CliError> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| CliError::runtime(format!("-f {}: {e}", path.display())))?;
    read_bounded(file, &format!("-f {}", path.display())).await
}

async fn read_bounded(reader: impl AsyncRead + Unpin, what: &str) -> Result<Bytes, CliError> {
    let mut out = Vec::new();
    // One byte past the limit tells "too long" from "exactly the limit".
    reader
        .take(PAYLOAD_BYTES_MAX as u64 + 1)
        .read_to_end(&mut out)
        .await
        .map_err(|e| CliError::runtime(format!("{what}: {e}")))?;
    if out.len() > PAYLOAD_BYTES_MAX {
        return Err(CliError::runtime(format!(
            "{what}: longer than {PAYLOAD_BYTES_MAX} bytes"
        )));
    }
    Ok(out.into())
}

/// One line without its end (`\n`, or `\r\n`); the last line may lack
/// it. Refuses a line longer than `PAYLOAD_BYTES_MAX` before holding it.
async fn read_line(
    reader: &mut BufReader<impl AsyncRead + Unpin>,
) -> Result<Option<Bytes>, CliError> {
    let mut line = Vec::new();
    loop {
        let buf = reader
            .fill_buf()
            .await
            .map_err(|e| CliError::runtime(format!("stdin (-l): {e}")))?;
        if buf.is_empty() {
            return Ok((!line.is_empty()).then(|| line.into()));
        }
        let (take, done) = match memchr(buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > PAYLOAD_BYTES_MAX + 2 {
            return Err(CliError::runtime(format!(
                "stdin (-l): a line longer than {PAYLOAD_BYTES_MAX} bytes"
            )));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line.into()));
        }
    }
}

fn memchr(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        p: PubArgs,
    }

    fn args(a: &[&str]) -> PubArgs {
        Cli::try_parse_from(["t", "-t", "x"].iter().chain(a))
            .unwrap()
            .p
    }

    fn all(a: &[&str], stdin: &'static [u8]) -> Result<Vec<Bytes>, CliError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut p = Payloads::new(&args(a), stdin).await?;
            let mut out = Vec::new();
            while let Some(b) = p.next().await? {
                out.push(b);
            }
            Ok(out)
        })
    }

    #[test]
    fn message_repeats_count_times() {
        assert_eq!(
            all(&["-m", "hi", "-c", "3"], b"").unwrap(),
            ["hi", "hi", "hi"]
        );
        assert_eq!(all(&["-n"], b"").unwrap(), [""]);
    }

    #[test]
    fn stdin_whole_and_lines() {
        assert_eq!(all(&["-s"], b"a\nb\n").unwrap(), ["a\nb\n"]);
        assert_eq!(
            all(&["-l"], b"one\r\ntwo\n\nlast").unwrap(),
            ["one", "two", "", "last"]
        );
        assert!(all(&["-l"], b"").unwrap().is_empty());
    }

    #[test]
    fn lines_cannot_repeat() {
        match all(&["-l", "-c", "2"], b"a\n") {
            Err(CliError::Usage(m)) => assert!(m.contains("-c"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_file_is_a_runtime_error_naming_it() {
        match all(&["-f", "/nonexistent/weft-payload"], b"") {
            Err(CliError::Runtime(m)) => {
                assert!(m.starts_with("-f /nonexistent/weft-payload: "), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
}
