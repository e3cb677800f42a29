//! The script a session target reads from its fuzz input: steps from the
//! front, the outcomes of the machine's requests from the back (so that a
//! seed is only steps, and every answer defaults to the plain success).
//!
//! A step is one opcode byte and its argument:
//! - `FEED n` + n bytes: bytes arrive from the peer (one read);
//! - `WAIT b`: virtual time advances by b³ ms (up to ~4.6 h, so that
//!   connect timeouts, keep-alives and link silence are all reachable);
//! - `CLOSE b`: the driver ends the connection (reason chosen by b);
//! - `OTHER b`: a step of the target's own (link: release an obligation).

use std::time::Duration;

pub const FEED: u8 = 0;
pub const WAIT: u8 = 1;
pub const CLOSE: u8 = 2;
pub const OTHER: u8 = 3;

#[derive(Debug)]
pub enum Step<'a> {
    Feed(&'a [u8]),
    Wait(Duration),
    Close(u8),
    Other(u8),
}

pub struct Script<'a> {
    data: &'a [u8],
    front: usize,
    back: usize,
}

impl<'a> Script<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Script {
            data,
            front: 0,
            back: data.len(),
        }
    }

    fn byte(&mut self) -> u8 {
        if self.front < self.back {
            self.front += 1;
            self.data[self.front - 1]
        } else {
            0
        }
    }

    pub fn step(&mut self) -> Option<Step<'a>> {
        if self.front >= self.back {
            return None;
        }
        let op = self.byte();
        let arg = self.byte();
        Some(match op % 4 {
            FEED => {
                let n = (arg as usize).min(self.back - self.front);
                self.front += n;
                Step::Feed(&self.data[self.front - n..self.front])
            }
            WAIT => Step::Wait(Duration::from_millis(u64::from(arg).pow(3))),
            CLOSE => Step::Close(arg),
            _ => Step::Other(arg),
        })
    }

    /// The outcome of a request: a byte from the back, 0 once the two
    /// ends meet.
    pub fn outcome(&mut self) -> u8 {
        if self.back > self.front {
            self.back -= 1;
            self.data[self.back]
        } else {
            0
        }
    }
}

/// Builds a seed script (the inverse of [`Script`], outcomes all 0).
#[derive(Default)]
pub struct Seed(pub Vec<u8>);

impl Seed {
    pub fn feed(mut self, bytes: &[u8]) -> Self {
        for chunk in bytes.chunks(255) {
            self.0.extend_from_slice(&[FEED, chunk.len() as u8]);
            self.0.extend_from_slice(chunk);
        }
        self
    }

    pub fn wait(mut self, cube_root_ms: u8) -> Self {
        self.0.extend_from_slice(&[WAIT, cube_root_ms]);
        self
    }

    pub fn close(mut self, which: u8) -> Self {
        self.0.extend_from_slice(&[CLOSE, which]);
        self
    }

    pub fn other(mut self, arg: u8) -> Self {
        self.0.extend_from_slice(&[OTHER, arg]);
        self
    }
}
