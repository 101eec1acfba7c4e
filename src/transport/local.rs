//! The single-node transport: one sequencer thread in front of a [`Store`].
//!
//! Publishers send their update to the sequencer through a bounded queue and wait for its answer.
//! The sequencer takes everything queued (group commit: one durable write for a whole batch, so
//! many concurrent publishers cost one fsync), numbers the batch, then feeds each update to the
//! router in sequence order before answering. So the router sees exactly the stored order, and an
//! acknowledged update is both durable and on its way to subscribers (more than the "durably
//! ordered" that [`Transport::publish`] promises).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::feed::{Feed, NewFeed};
use super::pages::{Page, ReplayPages};
use super::recent::Keep;
use super::{Store, Transport, TransportError};
use crate::metrics::Metrics;
use crate::update::{Dispatched, Seq, Update};

/// Publications waiting for the sequencer. Past this, publishers wait (backpressure).
const QUEUE_CAPACITY: usize = 4096;
/// Updates past which the sequencer stops taking more requests into one transaction; bounds the
/// latency added to the first publisher.
const MAX_BATCH: usize = 512;

/// The sequencer's one message: updates to store together, in one transaction, how they are
/// kept, and where to answer with the last one's sequence number.
struct Append {
    updates: Vec<Update>,
    keep: Keep,
    answer: oneshot::Sender<Result<Seq, TransportError>>,
}

/// A [`Transport`] over a local [`Store`].
#[derive(Debug)]
pub struct LocalTransport<S> {
    requests: mpsc::Sender<Append>,
    store: Arc<S>,
    /// Whether the last write succeeded: set by the sequencer, read by the readiness probe. An
    /// atomic rather than a message, so that a probe never waits behind a batch of writes.
    ready: Arc<AtomicBool>,
    /// Replay pages being read, and the memory budget they share.
    pages: Arc<ReplayPages>,
    /// Store reads running at once (see [`CONCURRENT_READS`]).
    reads: Arc<Semaphore>,
}

impl<S: Store + std::fmt::Debug> LocalTransport<S> {
    /// Starts the sequencer thread, which feeds the router through `feed` after telling it where
    /// `store`'s history ends. It stops when every handle is dropped. Replays share
    /// `replay_memory` bytes of pages.
    pub fn start(
        store: S,
        feed: NewFeed,
        metrics: Metrics,
        replay_memory: usize,
    ) -> Result<Self, TransportError> {
        let last = store.last()?.map_or(0, |newest| newest.seq);
        let router = feed.start(last);
        let (requests, queue) = mpsc::channel(QUEUE_CAPACITY);
        let store = Arc::new(store);
        let ready = Arc::new(AtomicBool::new(true));
        metrics.set_history_size(store.len());
        let sequencer = Sequencer { store: store.clone(), ready: ready.clone(), router, metrics };
        std::thread::Builder::new()
            .name("quicksilver-sequencer".into())
            .spawn(move || sequencer.run(queue))
            .map_err(|e| {
                TransportError::Store(format!("cannot start the sequencer thread: {e}"))
            })?;
        Ok(Self {
            requests,
            store,
            ready,
            pages: Arc::new(ReplayPages::new(replay_memory)),
            reads: Arc::new(Semaphore::new(CONCURRENT_READS)),
        })
    }
}

impl<S: Store> LocalTransport<S> {
    /// Runs a store read off the HTTP worker threads (a disk read must not stall other
    /// connections), at most [`CONCURRENT_READS`] at once.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&S) -> Result<T, TransportError> + Send + 'static,
    ) -> Result<T, TransportError> {
        let _permit = self.reads.acquire().await.map_err(|_| TransportError::closed())?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|_| TransportError::closed())?
    }
}

// Not derived: a derive would require `S: Clone`, but only the `Arc`s are cloned.
impl<S> Clone for LocalTransport<S> {
    fn clone(&self) -> Self {
        Self {
            requests: self.requests.clone(),
            store: self.store.clone(),
            ready: self.ready.clone(),
            pages: self.pages.clone(),
            reads: self.reads.clone(),
        }
    }
}

struct Sequencer<S> {
    store: Arc<S>,
    ready: Arc<AtomicBool>,
    router: Feed,
    metrics: Metrics,
}

impl<S: Store> Sequencer<S> {
    fn run(self, mut queue: mpsc::Receiver<Append>) {
        let mut batch: Vec<Append> = Vec::new();
        while let Some(first) = queue.blocking_recv() {
            let mut size = first.updates.len();
            batch.push(first);
            while size < MAX_BATCH {
                match queue.try_recv() {
                    Ok(request) => {
                        size += request.updates.len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            let mut counts = Vec::with_capacity(batch.len());
            let mut answers = Vec::with_capacity(batch.len());
            let mut updates = Vec::with_capacity(size);
            for Append { updates: request, keep, answer } in batch.drain(..) {
                counts.push(request.len());
                answers.push(answer);
                updates.extend(request.into_iter().map(|update| (update, keep)));
            }
            match self.store.append(updates) {
                Ok(stored) => {
                    self.ready.store(true, Ordering::Release);
                    self.metrics.set_history_size(self.store.len());
                    let mut stored = stored.into_iter();
                    for (count, answer) in counts.into_iter().zip(answers) {
                        let mut last = 0;
                        for dispatched in stored.by_ref().take(count) {
                            last = dispatched.seq;
                            // Fails only once the router has stopped (the hub is shutting down):
                            // the update is stored all the same, and replayed on resumption.
                            let _ = self.router.blocking_send(dispatched);
                        }
                        // The publisher may have given up (client gone); the updates stand.
                        let _ = answer.send(Ok(last));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "cannot store updates; answering 500 to publishers");
                    self.ready.store(false, Ordering::Release);
                    for answer in answers {
                        let _ = answer.send(Err(error.clone()));
                    }
                }
            }
        }
    }
}

#[async_trait]
impl<S: Store> Transport for LocalTransport<S> {
    async fn publish_all(&self, updates: Vec<Update>, keep: Keep) -> Result<Seq, TransportError> {
        let (answer, result) = oneshot::channel();
        let request = Append { updates, keep, answer };
        self.requests.send(request).await.map_err(|_| TransportError::closed())?;
        result.await.map_err(|_| TransportError::closed())?
    }

    async fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
        let id = id.to_owned();
        self.blocking(move |store| store.find(&id)).await
    }

    async fn read(&self, after: Seq, bound: Seq) -> Result<Page, TransportError> {
        let load = |max_bytes| self.blocking(move |store| store.read(after, max_bytes));
        self.pages.page(after, bound, load).await
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.requests.is_closed()
    }
}

/// Store reads running at once. A reconnect storm makes every subscriber read history at the
/// same moment; without a bound each read would take a thread of its own (seen: 6 → 124 threads
/// for 1,000 reconnections), for no gain on 2–8 cores.
const CONCURRENT_READS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::feed::{self, Fed, FeedReceiver};
    use crate::transport::memory::MemoryStore;
    use crate::transport::pages::{Chunk, PAGE_BYTES};

    /// A store whose disk can "fail": appends are refused while `broken` is set.
    #[derive(Debug, Default)]
    struct FlakyStore {
        inner: MemoryStore,
        broken: AtomicBool,
    }

    impl Store for FlakyStore {
        fn last(&self) -> Result<Option<Arc<Dispatched>>, TransportError> {
            self.inner.last()
        }
        fn append(
            &self,
            updates: Vec<(Update, Keep)>,
        ) -> Result<Vec<Arc<Dispatched>>, TransportError> {
            if self.broken.load(Ordering::Acquire) {
                return Err(TransportError::Store("disk full".into()));
            }
            self.inner.append(updates)
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn find(&self, id: &str) -> Result<Option<Arc<Dispatched>>, TransportError> {
            self.inner.find(id)
        }
        fn read(&self, after: Seq, max_bytes: usize) -> Result<Chunk, TransportError> {
            self.inner.read(after, max_bytes)
        }
    }

    /// A transport over `store` and the router's end of its feed.
    fn start<S: Store + std::fmt::Debug>(store: S) -> (LocalTransport<S>, FeedReceiver) {
        let (feed, received) = feed::channel();
        let transport = LocalTransport::start(store, feed, Metrics::new(), PAGE_BYTES);
        (transport.expect("start"), received)
    }

    #[tokio::test]
    async fn a_failing_store_refuses_publications_and_turns_unready() {
        let (transport, _received) = start(FlakyStore::default());
        assert_eq!(transport.publish(Update::for_test("a")).await.expect("stored"), 1);
        assert!(transport.is_ready());

        transport.store.broken.store(true, Ordering::Release);
        let error = transport.publish(Update::for_test("b")).await.expect_err("refused");
        assert!(matches!(error, TransportError::Store(_)), "{error:?}");
        assert!(error.to_string().contains("disk full"), "{error}");
        assert!(!transport.is_ready(), "readiness follows the store");

        transport.store.broken.store(false, Ordering::Release);
        assert_eq!(transport.publish(Update::for_test("c")).await.expect("stored again"), 2);
        assert!(transport.is_ready(), "and recovers with it");
    }

    #[tokio::test]
    async fn the_feed_starts_where_history_ends_and_follows_the_stored_order() {
        let store = MemoryStore::new(0);
        store.append(vec![(Update::for_test("old"), Keep::History)]).expect("stored");
        let (transport, mut received) = start(store);
        assert_eq!(received.started().await, Some(1), "the newest stored update");
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let transport = transport.clone();
                tokio::spawn(
                    async move { transport.publish(Update::for_test(&format!("u{i}"))).await },
                )
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.expect("task").expect("published"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=201).collect::<Vec<_>>(), "one order, no gap");
        for seq in 2..=201 {
            let fed = received.recv().await;
            assert!(matches!(fed, Some(Fed::Update(d)) if d.seq == seq), "fed in that order");
        }
    }

    #[tokio::test]
    async fn a_page_is_never_empty_while_updates_remain_in_its_range() {
        // History keeps the last 5 updates, and ephemeral ones leave gaps in the numbers.
        let (transport, _received) = start(MemoryStore::new(5));
        for n in 1..=20 {
            let keep = if n % 3 == 0 { Keep::Recent } else { Keep::History };
            transport
                .publish_all(vec![Update::for_test(&format!("u{n}"))], keep)
                .await
                .expect("ok");
        }
        // From the start: the first page begins at what is left, whatever was trimmed before it.
        // (A replay releases its page before it reads the next: the budget is one page here.)
        let first = transport.read(0, 20).await.expect("page").updates().first().map(|d| d.seq);
        assert_eq!(first, Some(3), "the oldest ephemeral kept");
        let mut after = 0;
        let mut seen = Vec::new();
        loop {
            let page = transport.read(after, 20).await.expect("page");
            if page.updates().is_empty() {
                break;
            }
            seen.extend(page.updates().iter().map(|d| d.seq));
            after = page.through();
        }
        assert_eq!(seen, [3, 6, 9, 12, 14, 15, 16, 17, 18, 19, 20], "in order, to the end");
        assert!(transport.read(20, 20).await.expect("page").updates().is_empty(), "none left");
    }

    #[tokio::test]
    async fn publications_stored_after_the_router_stopped_are_still_acknowledged() {
        let (transport, received) = start(MemoryStore::new(0));
        drop(received);
        assert_eq!(transport.publish(Update::for_test("a")).await.expect("durable"), 1);
        assert_eq!(transport.find("a").await.expect("read").map(|d| d.seq), Some(1));
    }
}
