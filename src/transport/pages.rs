//! Replay pages: history read in pages bounded by bytes, shared by the subscribers replaying the
//! same part of it at the same time, all within one memory budget.
//!
//! A subscriber resuming with `Last-Event-ID` (or an unknown one, which replays everything) reads
//! history page by page while it writes its stream. Without bounds, a few subscribers that ask for
//! a large history and then read nothing would make the hub hold that history many times over.
//! So a page holds at most [`PAGE_BYTES`] (or a single larger update), subscribers that replay
//! from the same position at the same time share one page, and every page takes its size from a
//! budget shared by all replays (`replay_memory`): when the budget is spent, replays wait for
//! pages to be released, they do not fail. A subscriber releases its page before asking for the
//! next one, so waiting readers never hold pages and the budget cannot deadlock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};

use super::error::TransportError;
use crate::update::{Dispatched, Seq};

/// Most bytes of updates one page holds (a single larger update makes a page alone).
pub const PAGE_BYTES: usize = 1 << 20;

/// Part of history as a store returns it: every stored update with `after < seq <= through`.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The updates, in order.
    pub updates: Vec<Arc<Dispatched>>,
    /// The chunk is complete up to this sequence number: the last update when the byte bound
    /// stopped the read, else the newest stored update when the read began.
    pub through: Seq,
}

/// A page of history, shared by the replays that read it.
#[derive(Debug)]
pub struct Page(Arc<Slot>);

impl Page {
    /// The updates of the page, in order.
    pub fn updates(&self) -> &[Arc<Dispatched>] {
        self.0.loaded.get().map_or(&[], |loaded| &loaded.chunk.updates)
    }

    /// The page covers history up to this sequence number: the next page starts after it.
    pub fn through(&self) -> Seq {
        self.0.loaded.get().map_or(self.0.after, |loaded| loaded.chunk.through)
    }
}

/// One page, loaded once by its first reader while the others wait for it. The load makes
/// progress when that reader's stream is polled, which a server does whenever the stream is
/// woken (the load completing wakes it); a reader dropped mid-load hands the load to one of
/// those waiting. A caller that polls a stream once and then holds it unpolled would keep the
/// others waiting: the property test of the subscriber stream found that such a test harness
/// deadlocks, and drives its streams concurrently, as a server does.
#[derive(Debug)]
struct Slot {
    after: Seq,
    loaded: OnceCell<Loaded>,
    /// To remove itself from the cache when its last reader is done.
    cache: Weak<Mutex<Cache>>,
}

#[derive(Debug)]
struct Loaded {
    chunk: Chunk,
    /// The page's share of the budget, returned when the page is dropped.
    _budget: OwnedSemaphorePermit,
}

type Cache = HashMap<Seq, Weak<Slot>>;

impl Slot {
    /// Whether a replay up to `bound` may use this page. An empty page read before that replay
    /// registered may end before its bound: it must be read again rather than taken to mean
    /// that history ends there.
    fn covers(&self, bound: Seq) -> bool {
        self.loaded
            .get()
            .is_none_or(|loaded| !loaded.chunk.updates.is_empty() || loaded.chunk.through >= bound)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(cache) = self.cache.upgrade() else { return };
        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A newer page for the same position may have replaced this one.
        if cache.get(&self.after).is_some_and(|slot| slot.strong_count() == 0) {
            cache.remove(&self.after);
        }
    }
}

/// The pages being read and the budget they share. One per transport.
#[derive(Debug)]
pub struct ReplayPages {
    cache: Arc<Mutex<Cache>>,
    budget: Arc<Semaphore>,
    /// Permits one page takes before it is read: a page, or the whole budget if smaller.
    per_page: u32,
}

impl ReplayPages {
    /// Pages sharing `budget` bytes (at least one page's worth is always allowed).
    pub fn new(budget: usize) -> Self {
        let per_page = PAGE_BYTES.min(budget).max(1);
        Self {
            cache: Arc::default(),
            budget: Arc::new(Semaphore::new(budget.max(per_page))),
            per_page: u32::try_from(per_page).unwrap_or(u32::MAX),
        }
    }

    /// The page of history after `after`, for a replay that goes up to `bound`: the page another
    /// replay is reading from the same position when there is one, else a new one read with
    /// `load(max_bytes)` once budget is free.
    pub async fn page<F, Fut>(
        &self,
        after: Seq,
        bound: Seq,
        load: F,
    ) -> Result<Page, TransportError>
    where
        F: FnOnce(usize) -> Fut,
        Fut: std::future::Future<Output = Result<Chunk, TransportError>>,
    {
        // A page set aside below is dropped only after the lock is released: its drop takes the
        // lock to forget itself.
        let mut replaced = None;
        let slot = {
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match cache.get(&after).and_then(Weak::upgrade) {
                Some(slot) if slot.covers(bound) => slot,
                stale => {
                    replaced = stale;
                    let slot = Arc::new(Slot {
                        after,
                        loaded: OnceCell::new(),
                        cache: Arc::downgrade(&self.cache),
                    });
                    cache.insert(after, Arc::downgrade(&slot));
                    slot
                }
            }
        };
        drop(replaced);
        slot.loaded
            .get_or_try_init(|| async {
                let mut budget = self
                    .budget
                    .clone()
                    .acquire_many_owned(self.per_page)
                    .await
                    .map_err(|_| TransportError::closed())?;
                let chunk = load(PAGE_BYTES).await?;
                // Keep what the page holds and return the rest at once. A single update larger
                // than a page keeps one page's worth: the excess is bounded by the publish limit.
                let size: usize = chunk.updates.iter().map(|d| d.size()).sum();
                if size < budget.num_permits() {
                    drop(budget.split(budget.num_permits() - size.max(1)));
                }
                Ok::<_, TransportError>(Loaded { chunk, _budget: budget })
            })
            .await?;
        Ok(Page(slot))
    }

    /// Bytes of the budget currently free (for tests).
    #[cfg(any(test, feature = "unstable-internals"))]
    pub fn available(&self) -> usize {
        self.budget.available_permits()
    }
}

/// Takes updates from `updates` (in sequence order) while they fit in `max_bytes`, always at least
/// one, and says through which sequence number the result is complete: `newest` (the newest
/// stored update when the read began) unless the byte bound stopped it.
pub fn fill(
    updates: impl Iterator<Item = Arc<Dispatched>>,
    max_bytes: usize,
    newest: Seq,
) -> Chunk {
    let mut chunk = Chunk { updates: Vec::new(), through: newest };
    let mut size = 0;
    for update in updates {
        if !chunk.updates.is_empty() && size + update.size() > max_bytes {
            chunk.through = chunk.updates.last().map_or(newest, |d| d.seq);
            break;
        }
        size += update.size();
        chunk.updates.push(update);
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::Update;

    fn updates(range: std::ops::RangeInclusive<Seq>, data_bytes: usize) -> Vec<Arc<Dispatched>> {
        range
            .map(|seq| {
                let mut update = Update::for_test(&format!("u{seq}"));
                update.data = "x".repeat(data_bytes);
                Arc::new(Dispatched::new(seq, update))
            })
            .collect()
    }

    #[test]
    fn pages_are_bounded_by_bytes_but_never_empty() {
        let chunk = fill(updates(1..=10, 300_000).into_iter(), PAGE_BYTES, 10);
        assert_eq!(chunk.updates.len(), 3, "three 300 kB updates fit in 1 MiB, four do not");
        assert_eq!(chunk.through, 3);
        let big = fill(updates(1..=2, 3 * PAGE_BYTES).into_iter(), PAGE_BYTES, 2);
        assert_eq!(big.updates.len(), 1, "an update larger than a page makes a page alone");
        let all = fill(updates(1..=2, 10).into_iter(), PAGE_BYTES, 7);
        assert_eq!((all.updates.len(), all.through), (2, 7), "complete up to the newest");
    }

    #[tokio::test]
    async fn replays_from_the_same_position_share_one_page_and_its_budget() {
        let pages = ReplayPages::new(4 * PAGE_BYTES);
        let history = updates(1..=20, 100_000);
        let load = |max| {
            let history = history.clone();
            async move { Ok(fill(history.into_iter(), max, 20)) }
        };
        let first = pages.page(0, 20, load).await.expect("page");
        let second = pages.page(0, 20, |_| async { panic!("shared, not read again") }).await;
        let second = second.expect("page");
        assert_eq!(first.updates().len(), second.updates().len());
        let held = 4 * PAGE_BYTES - pages.available();
        let size: usize = first.updates().iter().map(|d| d.size()).sum();
        assert_eq!(held, size, "the page counts once, at its size");
        drop((first, second));
        assert_eq!(pages.available(), 4 * PAGE_BYTES, "released with its last reader");
        assert!(pages.cache.lock().expect("cache").is_empty(), "and forgotten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_makes_replays_wait_not_fail() {
        let pages = Arc::new(ReplayPages::new(PAGE_BYTES));
        let history = updates(1..=40, 100_000);
        let load = |after: Seq| {
            let history = history.clone();
            move |max| async move {
                Ok(fill(history.into_iter().filter(move |d| d.seq > after), max, 40))
            }
        };
        let held = pages.page(0, 40, load(0)).await.expect("first page");
        let waiting = {
            let pages = pages.clone();
            let load = load(held.through());
            let after = held.through();
            tokio::spawn(async move { pages.page(after, 40, load).await.map(|p| p.through()) })
        };
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "waits while the budget is held");
        drop(held);
        let through = waiting.await.expect("task").expect("then reads its page");
        assert!(through > 0);
    }

    #[tokio::test]
    async fn an_empty_page_from_before_a_replay_is_not_reused_past_its_end() {
        let pages = ReplayPages::new(2 * PAGE_BYTES);
        let stale = pages.page(5, 5, |_| async { Ok(Chunk { updates: Vec::new(), through: 5 }) });
        let stale = stale.await.expect("page");
        let fresh = pages
            .page(5, 6, |max| async move { Ok(fill(updates(6..=6, 10).into_iter(), max, 6)) })
            .await
            .expect("page");
        assert_eq!((stale.through(), fresh.through()), (5, 6));
        assert_eq!(fresh.updates().len(), 1);
    }
}
