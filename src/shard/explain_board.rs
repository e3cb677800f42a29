//! Where route explain's questions to the shards, and the admin thread's
//! questions to the bridge, wait for their answers (README, "Route
//! explain").
//!
//! Owns: the open questions "which of your subscribers match this
//! topic?" (posted by the admin thread when the mesh is off, by the bridge
//! otherwise; every client shard answers on its housekeeping tick, 50 ms,
//! as for the admin's views), and the admin's explain requests for the
//! bridge with their answers. A shard's tick pays one atomic load while
//! nothing is asked. Must not touch: shard state (the shards compute
//! their answers in `ctx::explain`).
//!
//! Bounds: at most [`ASKS_MAX`] questions to the shards and as many
//! requests for the bridge at once (the rest are refused: the caller says
//! busy); an answer nobody takes is dropped with its question
//! ([`Board::cancel`]), or by age when the board is full.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::mesh::explain::ReplyBody;
use crate::mesh::route::explain::{LocalDelivery, LocalRefusal};

/// Questions (and bridge requests) open at once.
pub const ASKS_MAX: usize = 64;

/// The shards' answer to one question.
#[derive(Debug, Clone, Default)]
pub struct LocalAnswer {
    pub deliveries: Vec<LocalDelivery>,
    pub refused: Vec<LocalRefusal>,
    /// A shard's lists were cut at `admin.view_entries_max`.
    pub truncated: bool,
}

struct Ask {
    id: u64,
    topic: String,
    /// One bit per shard that answered.
    answered: u64,
    answer: LocalAnswer,
}

/// An explain request from the admin thread for the bridge.
#[derive(Debug, Clone)]
pub struct BridgeAsk {
    pub ticket: u64,
    pub topic: String,
    pub from: Option<String>,
}

#[derive(Default)]
pub struct Board {
    /// Questions open: what a shard's tick reads first.
    open: AtomicUsize,
    asks: Mutex<(u64, Vec<Ask>)>,
    to_bridge: Mutex<(u64, Vec<BridgeAsk>)>,
    from_bridge: Mutex<Vec<(u64, ReplyBody)>>,
}

impl Board {
    /// Asks every shard which subscribers match `topic`; None if
    /// [`ASKS_MAX`] are open.
    pub fn ask(&self, topic: &str) -> Option<u64> {
        let mut asks = self.asks.lock().ok()?;
        if asks.1.len() >= ASKS_MAX {
            return None;
        }
        asks.0 += 1;
        let id = asks.0;
        asks.1.push(Ask {
            id,
            topic: topic.to_owned(),
            answered: 0,
            answer: LocalAnswer::default(),
        });
        self.open.store(asks.1.len(), Ordering::Release);
        Some(id)
    }

    /// The answer to `id` once all `shards` answered (it leaves the board).
    pub fn take(&self, id: u64, shards: usize) -> Option<LocalAnswer> {
        let mut asks = self.asks.lock().ok()?;
        let all = if shards >= 64 {
            u64::MAX
        } else {
            (1u64 << shards) - 1
        };
        let at = asks
            .1
            .iter()
            .position(|a| a.id == id && a.answered & all == all)?;
        let ask = asks.1.remove(at);
        self.open.store(asks.1.len(), Ordering::Release);
        Some(ask.answer)
    }

    /// Gives up on `id` (its asker stopped waiting).
    pub fn cancel(&self, id: u64) {
        if let Ok(mut asks) = self.asks.lock() {
            asks.1.retain(|a| a.id != id);
            self.open.store(asks.1.len(), Ordering::Release);
        }
    }

    /// For shard `shard`'s tick: the questions it has not answered yet.
    pub fn questions(&self, shard: usize) -> Vec<(u64, String)> {
        if self.open.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let Ok(asks) = self.asks.lock() else {
            return Vec::new();
        };
        asks.1
            .iter()
            .filter(|a| a.answered & (1 << shard) == 0)
            .map(|a| (a.id, a.topic.clone()))
            .collect()
    }

    /// Shard `shard`'s answer to `id`.
    pub fn answer(&self, shard: usize, id: u64, answer: LocalAnswer) {
        let Ok(mut asks) = self.asks.lock() else {
            return;
        };
        if let Some(a) = asks.1.iter_mut().find(|a| a.id == id) {
            a.answered |= 1 << shard;
            a.answer.deliveries.extend(answer.deliveries);
            a.answer.refused.extend(answer.refused);
            a.answer.truncated |= answer.truncated;
        }
    }

    /// The admin thread's request for the bridge; None if full.
    pub fn to_bridge(&self, topic: &str, from: Option<&str>) -> Option<u64> {
        let mut q = self.to_bridge.lock().ok()?;
        if q.1.len() >= ASKS_MAX {
            return None;
        }
        q.0 += 1;
        let ticket = q.0;
        q.1.push(BridgeAsk {
            ticket,
            topic: topic.to_owned(),
            from: from.map(str::to_owned),
        });
        Some(ticket)
    }

    /// For the bridge's tick: the admin's requests.
    pub fn bridge_requests(&self) -> Vec<BridgeAsk> {
        self.to_bridge
            .lock()
            .map(|mut q| std::mem::take(&mut q.1))
            .unwrap_or_default()
    }

    /// The bridge's answer to `ticket`.
    pub fn bridge_answer(&self, ticket: u64, body: ReplyBody) {
        if let Ok(mut answers) = self.from_bridge.lock() {
            if answers.len() >= ASKS_MAX {
                answers.remove(0);
            }
            answers.push((ticket, body));
        }
    }

    /// The answer to `ticket`, if the bridge gave it (it leaves the board).
    pub fn take_bridge_answer(&self, ticket: u64) -> Option<ReplyBody> {
        let mut answers = self.from_bridge.lock().ok()?;
        let at = answers.iter().position(|(t, _)| *t == ticket)?;
        Some(answers.remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_waits_for_every_shard_and_the_board_is_bounded() {
        let b = Board::default();
        let id = b.ask("a/b").unwrap();
        assert_eq!(b.questions(0), vec![(id, "a/b".to_owned())]);
        b.answer(0, id, LocalAnswer::default());
        assert!(b.questions(0).is_empty(), "answered once");
        assert!(b.take(id, 2).is_none(), "shard 1 has not answered");
        b.answer(
            1,
            id,
            LocalAnswer {
                truncated: true,
                ..LocalAnswer::default()
            },
        );
        assert!(b.take(id, 2).unwrap().truncated);
        assert!(b.questions(1).is_empty());
        for _ in 0..ASKS_MAX {
            assert!(b.ask("x").is_some());
        }
        assert!(b.ask("x").is_none(), "full");
        let t = b.to_bridge("t", Some("c")).unwrap();
        assert_eq!(b.bridge_requests().len(), 1);
        b.bridge_answer(t, ReplyBody::default());
        assert!(b.take_bridge_answer(t).is_some());
        assert!(b.take_bridge_answer(t).is_none());
    }
}
