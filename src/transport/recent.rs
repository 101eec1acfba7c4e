//! Ephemeral updates: numbered with the rest of history and replayed like it, but kept in memory
//! only, and only the most recent ones.
//!
//! Subscription events (presence) are such updates. They describe connections of this process,
//! which a restart ends anyway, and a busy hub makes two per selector of every connection: kept
//! in durable history they would grow it without end (the default `history_size` keeps
//! everything) and cost a durable write each. Kept here, a client following presence still
//! resumes with `Last-Event-ID` without a gap, as long as it was away for less than the last
//! [`RECENT_EPHEMERAL`] events.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::update::{Dispatched, Seq};

/// Ephemeral updates kept for replays: at about 700 bytes per subscription event, about 7 MB.
pub const RECENT_EPHEMERAL: usize = 10_000;

/// How long a publication is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// In history, as long as `history_size` allows (durably with the embedded store).
    History,
    /// In memory, among the last [`RECENT_EPHEMERAL`] ephemeral updates.
    Recent,
}

/// The most recent ephemeral updates, in sequence order.
#[derive(Debug, Default)]
pub struct Recent {
    updates: VecDeque<Arc<Dispatched>>,
}

impl Recent {
    /// Keeps `update`, forgetting the oldest one past [`RECENT_EPHEMERAL`]; returns the one
    /// forgotten.
    pub fn push(&mut self, update: Arc<Dispatched>) -> Option<Arc<Dispatched>> {
        let forgotten =
            (self.updates.len() == RECENT_EPHEMERAL).then(|| self.updates.pop_front()).flatten();
        self.updates.push_back(update);
        forgotten
    }

    /// Forgets the oldest kept update, and returns it.
    pub fn pop_oldest(&mut self) -> Option<Arc<Dispatched>> {
        self.updates.pop_front()
    }

    /// The sequence number of the oldest kept update.
    pub fn oldest(&self) -> Option<Seq> {
        self.updates.front().map(|d| d.seq)
    }

    /// The sequence number of the newest kept update.
    pub fn newest(&self) -> Option<Seq> {
        self.updates.back().map(|d| d.seq)
    }

    /// Forgets the updates numbered after `seq` (their write failed, their numbers are reused).
    pub fn truncate_after(&mut self, seq: Seq) {
        while self.updates.back().is_some_and(|d| d.seq > seq) {
            self.updates.pop_back();
        }
    }

    /// The first kept update whose id is `id`.
    pub fn find(&self, id: &str) -> Option<Arc<Dispatched>> {
        self.updates.iter().find(|d| d.id.as_str() == id).cloned()
    }

    /// The kept updates with `after < seq <= through`, in order.
    pub fn range(&self, after: Seq, through: Seq) -> impl Iterator<Item = Arc<Dispatched>> + '_ {
        let start = self.updates.partition_point(|d| d.seq <= after);
        self.updates.range(start..).take_while(move |d| d.seq <= through).cloned()
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.updates.len()
    }

    /// Whether none is kept.
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }
}

/// Merges two iterators of updates, each in sequence order, into one in sequence order.
pub fn merge(
    a: impl Iterator<Item = Arc<Dispatched>>,
    b: impl Iterator<Item = Arc<Dispatched>>,
) -> impl Iterator<Item = Arc<Dispatched>> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y.seq < x.seq => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Update;

    fn at(seq: Seq) -> Arc<Dispatched> {
        Arc::new(Dispatched::new(seq, Update::for_test(&format!("u{seq}"))))
    }

    #[test]
    fn keeps_the_most_recent_and_serves_ranges_and_ids() {
        let mut recent = Recent::default();
        for seq in 1..=(RECENT_EPHEMERAL as Seq + 5) {
            recent.push(at(seq * 2));
        }
        assert_eq!(recent.len(), RECENT_EPHEMERAL);
        assert!(recent.find("u2").is_none(), "the oldest are forgotten");
        assert_eq!(recent.find("u40").map(|d| d.seq), Some(40));
        let seqs: Vec<Seq> = recent.range(39, 45).map(|d| d.seq).collect();
        assert_eq!(seqs, [40, 42, 44]);
        recent.truncate_after(40);
        assert_eq!(recent.range(0, Seq::MAX).last().map(|d| d.seq), Some(40));
    }

    #[test]
    fn merges_in_sequence_order() {
        let a = [1, 4, 5, 9].map(at);
        let b = [2, 3, 6, 10, 11].map(at);
        let merged: Vec<Seq> = merge(a.into_iter(), b.into_iter()).map(|d| d.seq).collect();
        assert_eq!(merged, [1, 2, 3, 4, 5, 6, 9, 10, 11]);
    }
}
