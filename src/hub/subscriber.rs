//! A subscriber connection: the actor that turns its history and live updates into the bytes of
//! its event stream.
//!
//! The actor is the response body itself ([`SubscriberStream`]): it owns the subscriber's state
//! (its queue from the router, its replay cursor, its heartbeat and deadline timers) and is driven
//! by the HTTP connection polling it. That costs no extra task and no extra channel per connection,
//! and backpressure is natural: when the client stops reading, nothing is polled and the bounded
//! queue fills. Either the router drops the subscriber when its queue is full, or the connection
//! under the HTTP layer ends itself after `dispatch_timeout` without progress and raises the
//! stream's [`CutOff`] flag; the stream then tells the router why, so that the subscriber is
//! counted once as cut off.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::client_streams::ClientSlot;
use super::presence::Departure;
use super::router::{Queue, Registered, Registration};
use crate::metrics::{DropReason, Metrics};
use crate::subscription::Subscription;
use crate::transport::pages::Page;
use crate::transport::{Transport, TransportError};
use crate::update::Seq;

/// Updates a subscriber may have waiting before it counts as too slow and is dropped; the same
/// figure as the reference hub. The queue holds pointers to shared frames, so this bounds memory
/// per subscriber to a few kilobytes of pointers plus the frames themselves.
pub const QUEUE_CAPACITY: usize = 1000;
/// The SSE comment line: sent first (so `EventSource.onopen` fires at once) and as heartbeat.
const COMMENT: &[u8] = b":\n";

/// Raised by a connection that the hub ended because its client accepted nothing for
/// `dispatch_timeout`; read by the stream it carried, when dropped. Cheap to clone: the
/// connection and the stream each hold one.
#[derive(Debug, Clone, Default)]
pub struct CutOff(Arc<AtomicBool>);

impl CutOff {
    /// Marks the connection as ended for not reading.
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the connection was ended for not reading.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

type PageRequest = Pin<Box<dyn Future<Output = Result<Page, TransportError>>>>;

/// Where the replay of history stands.
enum Replay {
    /// Replaying: everything with `cursor < seq <= bound` still has to be sent. One page is held
    /// at a time, and released before the next one is requested.
    Running {
        cursor: Seq,
        request: Option<PageRequest>,
        /// The page being sent and the index of its next update.
        page: Option<(Page, usize)>,
    },
    Done,
}

/// The event stream of one subscriber connection.
pub struct SubscriberStream {
    subscription: Arc<Subscription>,
    transport: Arc<dyn Transport>,
    queue: Queue,
    /// Keeps the subscriber registered while the stream lives.
    registration: Registration,
    /// Raised by the connection when it ends itself because the client stopped reading.
    cut_off: Option<CutOff>,
    /// Dropped after the registration, so the departure is announced once it is effective.
    _departure: Option<Departure>,
    /// Counts the stream against its client's `max_streams_per_client` while it lives.
    _client_slot: Option<ClientSlot>,
    /// Live updates up to this sequence number were covered by history (or skipped): not resent.
    bound: Seq,
    replay: Replay,
    opened: bool,
    /// Once the stream has ended, it stays ended, whatever is polled again.
    ended: bool,
    heartbeat: Option<(Duration, Pin<Box<Sleep>>)>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Counted as connected while the stream lives (from `new` to `drop`).
    metrics: Metrics,
}

impl Drop for SubscriberStream {
    fn drop(&mut self) {
        self.metrics.subscriber_disconnected();
        if self.cut_off.as_ref().is_some_and(CutOff::is_raised) {
            self.registration.cut_off(DropReason::DispatchTimeout);
        }
    }
}

/// How a new stream starts.
#[derive(Debug)]
pub struct StreamStart {
    /// Replay history after this sequence number (`None`: no replay).
    pub replay_after: Option<Seq>,
    /// Send a comment after this much silence.
    pub heartbeat: Option<Duration>,
    /// End the stream at this instant (write timeout, token expiry).
    pub deadline: Option<Instant>,
    /// Announces the end of the subscription when the stream is dropped.
    pub departure: Option<Departure>,
    /// The connection's flag for "ended because the client stopped reading", when it has one.
    pub cut_off: Option<CutOff>,
    /// The stream's place among its client's streams (`max_streams_per_client`), if counted.
    pub client_slot: Option<ClientSlot>,
}

impl SubscriberStream {
    /// Builds the stream of a registered subscriber. `bound` is the sequence number the router
    /// returned at registration: history covers up to it, the queue everything after.
    pub fn new(
        subscription: Arc<Subscription>,
        transport: Arc<dyn Transport>,
        Registered { registration, queue, bound }: Registered,
        start: StreamStart,
        metrics: Metrics,
    ) -> Self {
        metrics.subscriber_connected();
        let replay = match start.replay_after {
            Some(cursor) if cursor < bound => Replay::Running { cursor, request: None, page: None },
            _ => Replay::Done,
        };
        Self {
            subscription,
            transport,
            queue,
            registration,
            cut_off: start.cut_off,
            _client_slot: start.client_slot,
            _departure: start.departure,
            // A cursor found *after* the bound (published while we registered) means the client
            // already has everything up to it, live updates included.
            bound: bound.max(start.replay_after.unwrap_or(0)),
            replay,
            opened: false,
            ended: false,
            heartbeat: start.heartbeat.map(|every| (every, Box::pin(tokio::time::sleep(every)))),
            deadline: start.deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            metrics,
        }
    }

    /// Polls the history replay; `Ready(None)` once it is complete.
    fn poll_replay(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ()>>> {
        let bound = self.bound;
        loop {
            let Replay::Running { cursor, request, page } = &mut self.replay else {
                return Poll::Ready(None);
            };
            if let Some((current, next)) = page {
                while let Some(update) = current.updates().get(*next) {
                    *next += 1;
                    if update.seq <= *cursor {
                        continue;
                    }
                    if update.seq > bound {
                        self.replay = Replay::Done;
                        return Poll::Ready(None);
                    }
                    *cursor = update.seq;
                    if self.subscription.wants(update) {
                        return Poll::Ready(Some(Ok(update.frame.clone())));
                    }
                }
                *cursor = (*cursor).max(current.through());
                *page = None;
            }
            if *cursor >= bound {
                self.replay = Replay::Done;
                return Poll::Ready(None);
            }
            let fetch = request.get_or_insert_with(|| {
                let (transport, after) = (self.transport.clone(), *cursor);
                Box::pin(async move { transport.read(after, bound).await })
            });
            let next = match fetch.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    tracing::error!(%error, "history replay failed; closing the stream");
                    self.replay = Replay::Done;
                    return Poll::Ready(Some(Err(())));
                }
                Poll::Ready(Ok(next)) => next,
            };
            *request = None;
            if next.updates().is_empty() && next.through() <= *cursor {
                // Nothing is stored after the cursor: the rest of the range was trimmed.
                self.replay = Replay::Done;
                return Poll::Ready(None);
            }
            *page = Some((next, 0));
        }
    }

    fn reset_heartbeat(&mut self) {
        if let Some((every, timer)) = &mut self.heartbeat {
            timer.as_mut().reset(Instant::now() + *every);
        }
    }

    /// A comment when the heartbeat is due, else `Pending` (with the timer's wake-up set).
    fn poll_heartbeat(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        if let Some((every, timer)) = &mut self.heartbeat {
            if timer.as_mut().poll(cx).is_ready() {
                timer.as_mut().reset(Instant::now() + *every);
                return Poll::Ready(Some(Ok(Bytes::from_static(COMMENT))));
            }
        }
        Poll::Pending
    }

    /// The next bytes to send, before [`Stream::poll_next`] makes the end final.
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Infallible>>> {
        if !self.opened {
            self.opened = true;
            return Poll::Ready(Some(Ok(Bytes::from_static(COMMENT))));
        }
        if let Some(deadline) = &mut self.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        match self.poll_replay(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.reset_heartbeat();
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(()))) => return Poll::Ready(None),
            // Waiting for a page (replay memory, or the store): the heartbeat still runs, so
            // that the connection is not silent for longer than its period.
            Poll::Pending => return self.poll_heartbeat(cx),
            Poll::Ready(None) => {}
        }
        loop {
            match self.queue.poll_recv(cx) {
                Poll::Ready(Some(update)) => {
                    if update.seq <= self.bound {
                        continue;
                    }
                    self.reset_heartbeat();
                    return Poll::Ready(Some(Ok(update.frame.clone())));
                }
                // The router dropped us (too slow, or shutting down): end cleanly so the client
                // reconnects and resumes from history.
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => break,
            }
        }
        self.poll_heartbeat(cx)
    }
}

impl Stream for SubscriberStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let next = self.poll_frame(cx);
        if let Poll::Ready(None) = next {
            self.ended = true;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    //! The actor driven as the HTTP layer drives it, by polling the stream, over a real local
    //! transport whose feed goes to a real router, both on the test's runtime.
    //!
    //! Every test runs on a paused clock. Time then moves only when the runtime has nothing left
    //! to do (or when a test advances it), so heartbeats and deadlines are checked at exact
    //! instants, and a stream that would wait forever fails its test at once, through the
    //! hour-long guard of [`next`], instead of hanging it.

    use futures_util::{FutureExt, StreamExt};

    use super::*;
    use crate::hub::router::{self, Router};
    use crate::transport::feed;
    use crate::transport::local::LocalTransport;
    use crate::transport::memory::MemoryStore;
    use crate::transport::pages::PAGE_BYTES;
    use crate::transport::recent::Keep;
    use crate::transport::Store;
    use crate::update::{Dispatched, Topic, Update};

    /// A hub without HTTP: a memory transport feeding a router, as `Hub::start` wires them.
    struct Setup {
        transport: Arc<LocalTransport<MemoryStore>>,
        router: Router,
        metrics: Metrics,
    }

    impl Setup {
        /// Starts with `history` already stored, as after a restart: the router knows from the
        /// start that history ends at its last update, so that every registration is bounded by
        /// it. Replays share `replay_memory` bytes of pages.
        fn start(history: Vec<Update>, replay_memory: usize) -> Self {
            let store = MemoryStore::new(0);
            if !history.is_empty() {
                let history = history.into_iter().map(|update| (update, Keep::History)).collect();
                store.append(history).expect("history stored");
            }
            Self::over(store, replay_memory)
        }

        /// Starts over `store`, whose capacity trims its history as updates are published.
        fn over(store: MemoryStore, replay_memory: usize) -> Self {
            let metrics = Metrics::new();
            let (feed, received) = feed::channel();
            let router = router::spawn(received, metrics.clone());
            let transport = LocalTransport::start(store, feed, metrics.clone(), replay_memory);
            Self { transport: Arc::new(transport.expect("transport started")), router, metrics }
        }

        /// Publishes `update` through the transport; returns its sequence number once it is
        /// stored and fed to the router. The sequencer answers from a thread of its own: awaited
        /// directly, the paused clock would jump to the next timer while the runtime waits for
        /// that thread. A blocking task keeps the clock still until it is done.
        async fn publish(&self, update: Update) -> Seq {
            let transport = self.transport.clone();
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(transport.publish(update)))
                .await
                .expect("publishing task")
                .expect("published")
        }

        /// Registers `subscription` with a queue of `capacity` updates and builds its stream.
        async fn open_with(
            &self,
            subscription: Arc<Subscription>,
            capacity: usize,
            start: StreamStart,
        ) -> SubscriberStream {
            let registered = self.router.register(subscription.clone(), capacity).await;
            let registered = registered.expect("registered");
            self.stream(subscription, registered, start)
        }

        /// [`Self::open_with`] with the hub's queue capacity.
        async fn open(
            &self,
            subscription: Arc<Subscription>,
            start: StreamStart,
        ) -> SubscriberStream {
            self.open_with(subscription, QUEUE_CAPACITY, start).await
        }

        /// The stream of an already registered subscriber.
        fn stream(
            &self,
            subscription: Arc<Subscription>,
            registered: Registered,
            start: StreamStart,
        ) -> SubscriberStream {
            let transport: Arc<dyn Transport> = self.transport.clone();
            SubscriberStream::new(subscription, transport, registered, start, self.metrics.clone())
        }

        /// The value of the sample `name` (with its labels) in the rendered metrics.
        fn sample(&self, name: &str) -> String {
            let text = self.metrics.render();
            let prefix = format!("{name} ");
            let value = text.lines().find_map(|line| line.strip_prefix(prefix.as_str()));
            value.unwrap_or_else(|| panic!("no sample {name} in:\n{text}")).to_owned()
        }
    }

    /// A stream start that replays after `replay_after`, with no heartbeat, deadline, departure
    /// or cut-off flag.
    fn replaying(replay_after: Option<Seq>) -> StreamStart {
        StreamStart {
            replay_after,
            heartbeat: None,
            deadline: None,
            departure: None,
            cut_off: None,
            client_slot: None,
        }
    }

    /// A public update `id` on `topic`, or a private one.
    fn update(id: &str, topic: &str, private: bool) -> Update {
        let mut update = Update::for_test(id);
        update.topics = vec![Topic::new(topic).expect("valid topic")];
        update.private = private;
        update
    }

    /// The next thing the stream sends, readably: `":"` for the comment line, the id of an
    /// event, `None` once the stream has ended. A stream that would never send anything again
    /// fails the test: with the clock paused, the hour passes as soon as nothing else can run.
    async fn next(stream: &mut SubscriberStream) -> Option<String> {
        let next = tokio::time::timeout(Duration::from_secs(3600), stream.next()).await;
        next.expect("the stream sends something or ends").map(describe)
    }

    /// Whether the stream has nothing to send now (and has not ended).
    fn is_pending(stream: &mut SubscriberStream) -> bool {
        stream.next().now_or_never().is_none()
    }

    /// `":"` for the comment line, else the id of the event `item` holds.
    fn describe(item: Result<Bytes, Infallible>) -> String {
        let Ok(frame) = item;
        if frame == b":\n"[..] {
            return ":".to_owned();
        }
        let text = std::str::from_utf8(&frame).expect("an event is text");
        assert!(text.ends_with("\n\n"), "an event ends with an empty line: {text:?}");
        let id = text.lines().find_map(|line| line.strip_prefix("id: "));
        id.unwrap_or_else(|| panic!("an event has an id: {text:?}")).to_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn the_opening_comment_comes_first_even_with_history_and_updates_waiting() {
        let setup = Setup::start(vec![update("h1", "/a", false)], PAGE_BYTES);
        let mut stream =
            setup.open(Subscription::for_test(&["/a"], None), replaying(Some(0))).await;
        setup.publish(update("l2", "/a", false)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"), "so that `onopen` fires at once");
        assert_eq!(next(&mut stream).await.as_deref(), Some("h1"));
        assert_eq!(next(&mut stream).await.as_deref(), Some("l2"));
        assert!(is_pending(&mut stream));
    }

    #[tokio::test(start_paused = true)]
    async fn history_then_live_updates_without_gap_or_duplicate() {
        let history = vec![
            update("h1", "/books/1", false),
            update("h2", "/books/2", false),
            update("h3", "/users/1", false),
            update("h4", "/books/3", true),
            update("h5", "/books/1", true),
            update("h6", "/books/4", false),
        ];
        let setup = Setup::start(history, PAGE_BYTES);
        // Selects every book; its token allows the private updates of book 1 only.
        let reader = Subscription::for_test(&["/books/{id}"], Some(&["/books/1"]));
        let registered = setup.router.register(reader.clone(), QUEUE_CAPACITY).await;
        let registered = registered.expect("registered");
        assert_eq!(registered.bound, 6, "history covers everything stored before registration");
        // Resuming after h1.
        let mut stream = setup.stream(reader, registered, replaying(Some(1)));
        // Published before the stream reads history: l7 is both in the page it reads and in
        // its queue.
        setup.publish(update("l7", "/books/5", false)).await;
        setup.publish(update("l8", "/users/2", false)).await;
        setup.publish(update("l9", "/books/6", true)).await;
        let mut sent = Vec::new();
        for _ in 0..5 {
            sent.extend(next(&mut stream).await);
        }
        assert_eq!(sent, [":", "h2", "h5", "h6", "l7"]);
        setup.publish(update("l10", "/books/7", false)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some("l10"));
        assert!(is_pending(&mut stream), "nothing else: no update twice, none it may not read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cursor_published_while_registering_is_not_sent_again() {
        let setup = Setup::start(vec![update("h1", "/a", false)], PAGE_BYTES);
        let reader = Subscription::for_test(&["/a"], None);
        let registered = setup.router.register(reader.clone(), QUEUE_CAPACITY).await;
        let registered = registered.expect("registered");
        assert_eq!(registered.bound, 1);
        // The client's Last-Event-ID is found after the registration, and is newer than its
        // bound: the client has it, though it is in the queue.
        let cursor = setup.publish(update("l2", "/a", false)).await;
        setup.publish(update("l3", "/a", false)).await;
        let mut stream = setup.stream(reader, registered, replaying(Some(cursor)));
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        assert_eq!(next(&mut stream).await.as_deref(), Some("l3"));
        assert!(is_pending(&mut stream));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_cursor_nothing_is_replayed() {
        let history = vec![update("h1", "/a", false), update("h2", "/a", false)];
        let setup = Setup::start(history, PAGE_BYTES);
        let mut stream = setup.open(Subscription::for_test(&["/a"], None), replaying(None)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        assert!(is_pending(&mut stream), "no history");
        setup.publish(update("l3", "/a", false)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some("l3"), "only live updates");
        assert!(is_pending(&mut stream));
    }

    #[tokio::test(start_paused = true)]
    async fn a_history_of_several_pages_is_replayed_in_order_one_page_at_a_time() {
        // 30 updates of 100 kB, every seventh on a topic the subscriber does not select.
        let history: Vec<Update> = (1..=30)
            .map(|i| {
                let topic = if i % 7 == 0 { "/b" } else { "/a" };
                let mut update = update(&format!("h{i}"), topic, false);
                update.data = "x".repeat(100_000);
                update
            })
            .collect();
        let size: usize = history.iter().map(|u| Dispatched::new(0, u.clone()).size()).sum();
        assert!(size > 2 * PAGE_BYTES, "at least three pages: {size} bytes");
        let expected: Vec<String> =
            (1..=30).filter(|i| i % 7 != 0).map(|i| format!("h{i}")).collect();
        // A budget of one page: reading the next page while holding the last would wait forever.
        let setup = Setup::start(history, PAGE_BYTES);
        let mut stream =
            setup.open(Subscription::for_test(&["/a"], None), replaying(Some(0))).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        let mut replayed = Vec::new();
        for _ in 0..expected.len() {
            replayed.extend(next(&mut stream).await);
        }
        assert_eq!(replayed, expected);
        setup.publish(update("l31", "/a", false)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some("l31"), "then live");
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_follows_each_silence_and_a_delivery_restarts_it() {
        let setup = Setup::start(Vec::new(), PAGE_BYTES);
        let every = Duration::from_secs(10);
        let start = StreamStart { heartbeat: Some(every), ..replaying(None) };
        let opened = Instant::now();
        let mut stream = setup.open(Subscription::for_test(&["/a"], None), start).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"), "the opening comment");
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        assert_eq!(opened.elapsed(), every, "after a whole period of silence, not before");
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        assert_eq!(opened.elapsed(), 2 * every, "and again");
        tokio::time::advance(Duration::from_secs(5)).await;
        setup.publish(update("l1", "/a", false)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some("l1"));
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        let since_the_update = opened.elapsed() - Duration::from_secs(25);
        assert_eq!(since_the_update, every, "a period after the update, not after the comment");
    }

    #[tokio::test(start_paused = true)]
    async fn the_heartbeat_runs_while_the_replay_waits_for_memory() {
        let history = vec![update("h1", "/a", false), update("h2", "/a", false)];
        let setup = Setup::start(history, PAGE_BYTES);
        // Another replay holds a page: with a budget of one page, this one must wait for it.
        let held = setup.transport.read(0, 2).await.expect("a page");
        let every = Duration::from_secs(10);
        let start = StreamStart { heartbeat: Some(every), ..replaying(Some(1)) };
        let opened = Instant::now();
        let mut stream = setup.open(Subscription::for_test(&["/a"], None), start).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"), "the opening comment");
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"), "a heartbeat while waiting");
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"), "and the next");
        assert_eq!(opened.elapsed(), 2 * every);
        drop(held);
        assert_eq!(next(&mut stream).await.as_deref(), Some("h2"), "then the replay goes on");
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_ends_at_its_deadline() {
        let setup = Setup::start(Vec::new(), PAGE_BYTES);
        let deadline = Instant::now() + Duration::from_secs(30);
        let start = || StreamStart { deadline: Some(deadline), ..replaying(None) };
        let mut reading = setup.open(Subscription::for_test(&["/a"], None), start()).await;
        let mut waiting = setup.open(Subscription::for_test(&["/a"], None), start()).await;
        assert_eq!(next(&mut reading).await.as_deref(), Some(":"));
        assert_eq!(next(&mut waiting).await.as_deref(), Some(":"));
        tokio::time::advance(Duration::from_secs(10)).await;
        setup.publish(update("l1", "/a", false)).await;
        assert_eq!(next(&mut reading).await.as_deref(), Some("l1"));
        assert_eq!(next(&mut reading).await, None);
        assert_eq!(Instant::now(), deadline, "woken by its deadline, exactly then");
        // The token may have expired: what is still waiting is not sent.
        assert_eq!(next(&mut waiting).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_ends_the_stream_after_what_it_held_and_counts_once() {
        let setup = Setup::start(Vec::new(), PAGE_BYTES);
        // Sees every update once the router has offered it to every subscriber.
        let watcher = setup.router.register(Subscription::for_test(&["*"], None), 10).await;
        let mut watcher = watcher.expect("registered");
        let cut_off = CutOff::default();
        let start = StreamStart { cut_off: Some(cut_off.clone()), ..replaying(None) };
        let mut stream = setup.open_with(Subscription::for_test(&["*"], None), 2, start).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        for id in ["l1", "l2", "l3"] {
            setup.publish(update(id, "/a", false)).await;
        }
        // The router offers each update to every subscriber before the next one: once the
        // watcher has the third, the stream's queue was full when it came.
        for seq in 1..=3 {
            assert_eq!(watcher.queue.recv().await.map(|d| d.seq), Some(seq));
        }
        assert_eq!(next(&mut stream).await.as_deref(), Some("l1"));
        assert_eq!(next(&mut stream).await.as_deref(), Some("l2"));
        assert_eq!(next(&mut stream).await, None, "so that the client resumes from history");
        // Its connection ending afterwards as cut off does not count it a second time.
        cut_off.raise();
        drop(stream);
        setup.router.snapshot().await.expect("the router has seen the stream go");
        assert_eq!(setup.sample("mercure_subscribers_dropped_total{reason=\"queue_full\"}"), "1");
        let timeouts =
            setup.sample("mercure_subscribers_dropped_total{reason=\"dispatch_timeout\"}");
        assert_eq!(timeouts, "0");
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_ends_the_stream_after_what_it_held() {
        let setup = Setup::start(Vec::new(), PAGE_BYTES);
        // Sees every update once the router has offered it to every subscriber.
        let watcher = setup.router.register(Subscription::for_test(&["*"], None), 10).await;
        let mut watcher = watcher.expect("registered");
        let mut stream = setup.open(Subscription::for_test(&["*"], None), replaying(None)).await;
        assert_eq!(next(&mut stream).await.as_deref(), Some(":"));
        setup.publish(update("l1", "/a", false)).await;
        assert_eq!(
            watcher.queue.recv().await.map(|d| d.seq),
            Some(1),
            "l1 is in the stream's queue"
        );
        let drained = Instant::now();
        let within = Duration::from_secs(10);
        setup.router.drain(within).expect("draining");
        assert_eq!(next(&mut stream).await.as_deref(), Some("l1"));
        assert_eq!(next(&mut stream).await, None);
        assert!(drained.elapsed() <= within, "within the drain time: {:?}", drained.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_off_stream_is_counted_once_as_dispatch_timeout_and_a_plain_drop_not_at_all() {
        let setup = Setup::start(Vec::new(), PAGE_BYTES);
        let timeouts = "mercure_subscribers_dropped_total{reason=\"dispatch_timeout\"}";
        let (raised, lowered) = (CutOff::default(), CutOff::default());
        let flagged =
            |flag: &CutOff| StreamStart { cut_off: Some(flag.clone()), ..replaying(None) };
        let cut = setup.open(Subscription::for_test(&["*"], None), flagged(&raised)).await;
        let kept = setup.open(Subscription::for_test(&["*"], None), flagged(&lowered)).await;
        let bare = setup.open(Subscription::for_test(&["*"], None), replaying(None)).await;
        assert_eq!(setup.sample("mercure_subscribers_connected"), "3");
        assert_eq!(setup.sample("mercure_subscribers_total"), "3");

        raised.raise();
        drop(cut);
        assert_eq!(setup.sample("mercure_subscribers_connected"), "2", "down on drop");
        // The router counts when it handles the unregistration; a snapshot is answered after.
        setup.router.snapshot().await.expect("snapshot");
        assert_eq!(setup.sample(timeouts), "1");

        drop((kept, bare));
        let snapshot = setup.router.snapshot().await.expect("snapshot");
        assert!(snapshot.subscriptions.is_empty(), "every stream unregistered on drop");
        assert_eq!(setup.sample(timeouts), "1", "a plain drop is not counted");
        assert_eq!(setup.sample("mercure_subscribers_dropped_total{reason=\"queue_full\"}"), "0");
        assert_eq!(setup.sample("mercure_subscribers_connected"), "0");
        assert_eq!(setup.sample("mercure_subscribers_total"), "3");
    }

    /// History then live, under random interleavings of publishing, subscribing (with or
    /// without a cursor), reading and trimming (a history capacity that drops the oldest
    /// updates as new ones come).
    mod interleavings {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::*;
        use crate::subscription::arbitrary::{self, authorization, selectors, update_shape};

        /// Every subscription also selects this topic: an update published on it last marks
        /// the end of what each stream may send, so that reading up to it reads everything
        /// without waiting for silence (which would depend on timing).
        const FENCE: &str = "/fence";

        #[derive(Debug, Clone)]
        enum Cursor {
            /// No `Last-Event-ID`: live updates only.
            None,
            /// `earliest`: the whole history.
            Earliest,
            /// The id of the n-th update published so far (modulo their number).
            After(usize),
        }

        #[derive(Debug, Clone)]
        enum Step {
            Publish {
                topics: Vec<usize>,
                private: bool,
            },
            Subscribe {
                selected: Vec<usize>,
                authorized: Option<Vec<usize>>,
                cursor: Cursor,
            },
            /// Reads what the n-th stream (modulo their number) has ready now, if anything.
            Read(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            let cursor = prop_oneof![
                Just(Cursor::None),
                Just(Cursor::Earliest),
                any::<usize>().prop_map(Cursor::After),
            ];
            prop_oneof![
                3 => update_shape().prop_map(|(topics, private)| Step::Publish { topics, private }),
                1 => (selectors(1), authorization(), cursor).prop_map(
                    |(selected, authorized, cursor)| Step::Subscribe { selected, authorized, cursor }
                ),
                2 => any::<usize>().prop_map(Step::Read),
            ]
        }

        /// An update published in a run: its sequence number and what it was made of.
        struct Published {
            seq: Seq,
            topics: Vec<usize>,
            private: bool,
        }

        /// A stream opened in a run, with what it has sent so far (event ids).
        struct Opened {
            stream: SubscriberStream,
            selected: Vec<usize>,
            authorized: Option<Vec<usize>>,
            /// Updates after this sequence number are due: the cursor's, else the bound's.
            after: Seq,
            /// The router's bound: updates after it come live, never from history.
            bound: Seq,
            sent: Vec<String>,
        }

        /// Sends what `stream` has ready now into `sent` (the opening comment left out).
        fn read_ready(opened: &mut Opened) {
            while let Some(item) = opened.stream.next().now_or_never() {
                let id = describe(item.expect("the stream does not end"));
                if id != ":" {
                    opened.sent.push(id);
                }
            }
        }

        /// Reads `opened` up to the fence, within a minute (a guard: the fence is published
        /// before this is called, so only a stream that hangs takes that long).
        async fn read_to_fence(opened: &mut Opened) {
            loop {
                let next = tokio::time::timeout(Duration::from_secs(60), opened.stream.next());
                let id = describe(next.await.expect("the fence arrives").expect("not ended"));
                if id == "fence" {
                    return;
                }
                if id != ":" {
                    opened.sent.push(id);
                }
            }
        }

        async fn run(capacity: u64, steps: Vec<Step>) {
            // Room for every page at once: the property is about order, not memory waits
            // (`a_history_of_several_pages_is_replayed_in_order_one_page_at_a_time` is).
            let setup = Setup::over(MemoryStore::new(capacity), 64 * PAGE_BYTES);
            let mut published: Vec<Published> = Vec::new();
            let mut opened: Vec<Opened> = Vec::new();
            for step in steps {
                match step {
                    Step::Publish { topics, private } => {
                        let id = format!("u{}", published.len());
                        let update = arbitrary::make_update(&id, &topics, private);
                        let seq = setup.publish(update).await;
                        published.push(Published { seq, topics, private });
                    }
                    Step::Subscribe { selected, authorized, cursor } => {
                        let subscription = Arc::new(arbitrary::subscription(
                            &selected,
                            authorized.as_deref(),
                            &[FENCE],
                        ));
                        let registered =
                            setup.router.register(subscription.clone(), QUEUE_CAPACITY).await;
                        let registered = registered.expect("registered");
                        let bound = registered.bound;
                        let replay_after = match cursor {
                            Cursor::None => None,
                            Cursor::After(n) if !published.is_empty() => {
                                Some(published[n % published.len()].seq)
                            }
                            Cursor::Earliest | Cursor::After(_) => Some(0),
                        };
                        let stream =
                            setup.stream(subscription, registered, replaying(replay_after));
                        let after = replay_after.map_or(bound, |cursor| cursor);
                        opened.push(Opened {
                            stream,
                            selected,
                            authorized,
                            after,
                            bound,
                            sent: Vec::new(),
                        });
                    }
                    Step::Read(n) => {
                        if !opened.is_empty() {
                            let len = opened.len();
                            read_ready(&mut opened[n % len]);
                        }
                    }
                }
            }
            let fence_seq = setup.publish(update("fence", FENCE, false)).await;
            // What the store still holds: never trimmed, so every stream could read it.
            let kept_after = if capacity == 0 { 0 } else { fence_seq.saturating_sub(capacity) };

            // Every stream read at once, as a server drives its connections: a stream that
            // started loading a history page others wait for must be polled to finish it.
            futures_util::future::join_all(opened.iter_mut().map(read_to_fence)).await;
            for opened in &opened {
                let due: Vec<(String, Seq)> = published
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.seq > opened.after)
                    .filter(|(_, u)| {
                        let authorized = opened.authorized.as_deref();
                        arbitrary::expected(&opened.selected, authorized, &u.topics, u.private)
                    })
                    .map(|(i, u)| (format!("u{i}"), u.seq))
                    .collect();
                let seq_of = |id: &String| due.iter().find(|(due, _)| due == id).map(|(_, s)| *s);
                // Nothing it may not have, nothing twice, in order: sequence numbers only grow.
                let sent: Vec<Seq> = opened
                    .sent
                    .iter()
                    .map(|id| seq_of(id).unwrap_or_else(|| panic!("{id} was not due")))
                    .collect();
                assert!(sent.windows(2).all(|w| w[0] < w[1]), "in order, once: {:?}", opened.sent);
                // No gap: every due update that came live, or that history still holds, is sent.
                let live_after = opened.bound.max(opened.after);
                for (id, seq) in &due {
                    if *seq > live_after || *seq > kept_after {
                        assert!(opened.sent.contains(id), "{id} missing from {:?}", opened.sent);
                    }
                }
                if capacity == 0 {
                    assert_eq!(sent.len(), due.len(), "nothing trimmed: everything due is sent");
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn history_then_live_without_gap_or_duplicate(
                capacity in prop_oneof![Just(0u64), 1u64..8],
                steps in vec(step(), 1..48),
            ) {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(run(capacity, steps));
            }
        }
    }
}
