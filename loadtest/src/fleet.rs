//! Many subscribers driven together, one task each.
//!
//! A [`Fleet`] spawns one task per subscription. Each task opens its stream at one of the subscribe
//! URLs (round-robin, see [`hub_of`]; within `--connect-concurrency` slots unless told otherwise),
//! then reads events until its phase token is
//! cancelled, recording into its own [`Tracker`] which updates it received (to count lost,
//! duplicate, unexpected and out-of-order deliveries exactly) and, into shared histograms and
//! counters, latencies and progress. The scenario polls the counters and decides when to end the
//! phase; the tasks then hand back their trackers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::http::Selector;
use crate::payload;
use crate::stats::{self, ShardedHistogram};
use crate::subscriber::SseStream;

/// Latency shards: enough that tasks on a few cores rarely meet on the same lock.
const LATENCY_SHARDS: usize = 64;

/// Which sequence numbers a subscriber should receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Every sequence number in `start..end`.
    Range {
        /// First expected.
        start: u64,
        /// One past the last expected.
        end: u64,
    },
    /// Exactly these, sorted and without repeats.
    List(Vec<u64>),
}

impl Expected {
    /// Nothing at all.
    pub const NONE: Expected = Expected::Range { start: 0, end: 0 };

    /// Number of expected updates.
    pub fn len(&self) -> usize {
        match self {
            Expected::Range { start, end } => {
                usize::try_from(end.saturating_sub(*start)).unwrap_or(usize::MAX)
            }
            Expected::List(seqs) => seqs.len(),
        }
    }

    /// Whether nothing is expected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Position of `seq` among the expected ones.
    fn index(&self, seq: u64) -> Option<usize> {
        match self {
            Expected::Range { start, end } => {
                (*start..*end).contains(&seq).then(|| (seq - start) as usize)
            }
            Expected::List(seqs) => seqs.binary_search(&seq).ok(),
        }
    }

    /// The expected sequence numbers, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let (range, list) = match self {
            Expected::Range { start, end } => (Some(*start..*end), None),
            Expected::List(seqs) => (None, Some(seqs.iter().copied())),
        };
        range.into_iter().flatten().chain(list.into_iter().flatten())
    }
}

/// What happened to one received update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First receipt of an expected update.
    New,
    /// An expected update received again.
    Duplicate,
    /// An update this subscriber should not have received.
    Unexpected,
}

/// Which of its expected updates one subscriber received.
#[derive(Debug, Clone)]
pub struct Tracker {
    expected: Expected,
    seen: Vec<u64>,
    unique: usize,
    /// Repeated receipts.
    pub duplicates: u64,
    /// Receipts of updates not expected here.
    pub unexpected: u64,
    /// Receipts whose sequence number is lower than one received before.
    pub out_of_order: u64,
    highest: Option<u64>,
}

impl Tracker {
    /// A tracker expecting `expected`.
    pub fn new(expected: Expected) -> Self {
        let words = expected.len().div_ceil(64);
        Tracker {
            expected,
            seen: vec![0; words],
            unique: 0,
            duplicates: 0,
            unexpected: 0,
            out_of_order: 0,
            highest: None,
        }
    }

    /// Records the receipt of update `seq`.
    pub fn record(&mut self, seq: u64) -> Receipt {
        if self.highest.is_some_and(|highest| seq < highest) {
            self.out_of_order += 1;
        }
        self.highest = Some(self.highest.map_or(seq, |highest| highest.max(seq)));
        let Some(index) = self.expected.index(seq) else {
            self.unexpected += 1;
            return Receipt::Unexpected;
        };
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        self.seen[word] |= bit;
        self.unique += 1;
        Receipt::New
    }

    /// Number of distinct expected updates received.
    pub fn unique(&self) -> usize {
        self.unique
    }

    /// Whether every expected update was received.
    pub fn is_complete(&self) -> bool {
        self.unique == self.expected.len()
    }

    /// Counts expected updates that were acknowledged by the hub (`acked(seq)`) and were received
    /// or not: `(received, lost)`.
    pub fn tally(&self, acked: impl Fn(u64) -> bool) -> (u64, u64) {
        let mut received = 0;
        let mut lost = 0;
        for (index, seq) in self.expected.iter().enumerate() {
            let seen = self.seen[index / 64] & (1u64 << (index % 64)) != 0;
            match (acked(seq), seen) {
                (true, true) => received += 1,
                (true, false) => lost += 1,
                (false, _) => {}
            }
        }
        (received, lost)
    }

    /// Expected updates received although their publication was not acknowledged.
    pub fn received_unacked(&self, acked: impl Fn(u64) -> bool) -> u64 {
        self.expected
            .iter()
            .enumerate()
            .filter(|&(index, seq)| {
                !acked(seq) && self.seen[index / 64] & (1u64 << (index % 64)) != 0
            })
            .count() as u64
    }
}

/// One subscription to open.
#[derive(Debug, Clone)]
pub struct SubSpec {
    /// Its topic selectors.
    pub topics: Vec<Selector>,
    /// `Last-Event-ID` to send, if any.
    pub last_event_id: Option<String>,
    /// What it should receive.
    pub expected: Expected,
}

/// Counters and histograms shared by the tasks of a fleet.
#[derive(Debug)]
pub struct FleetShared {
    /// Subscriptions opened.
    pub connected: AtomicU64,
    /// Subscriptions that failed to open.
    pub failed: AtomicU64,
    /// Subscribers that received everything they expected.
    pub complete: AtomicU64,
    /// Updates of this run received (duplicates included).
    pub received: AtomicU64,
    /// Events that were not updates of this run.
    pub foreign: AtomicU64,
    /// Streams that ended (closed by the hub, or an error) before the phase ended.
    pub closed_early: AtomicU64,
    /// Of those, the ones that had not received everything they expected: they never will.
    pub gave_up: AtomicU64,
    /// Responses whose `Last-Event-ID` header differs from the one sent.
    pub last_event_id_mismatch: AtomicU64,
    /// Latest delivery, in [`Ctx::now_offset_ns`] time (0: none).
    pub last_delivery_ns: AtomicU64,
    /// Delivery latency: receive time minus the send time in the data, first receipts only; one
    /// histogram per subscribe URL, in the order of [`Ctx::subscribe`].
    latency_by_hub: Vec<ShardedHistogram>,
    /// Connect time (to the first bytes of the stream).
    pub connect: Mutex<Histogram<u64>>,
    /// Time from the fleet's start until each subscriber had all it expected.
    pub completion: Mutex<Histogram<u64>>,
}

impl FleetShared {
    /// Delivery latency over every subscribe URL.
    pub fn latency(&self) -> Histogram<u64> {
        let mut total = stats::histogram();
        for hub in &self.latency_by_hub {
            // Same bounds on both sides, so adding cannot fail.
            total.add(hub.merged()).expect("histograms with the same bounds");
        }
        total
    }

    /// Delivery latency of the subscribers of subscribe URL `hub` (an index in [`Ctx::subscribe`]).
    pub fn latency_via(&self, hub: usize) -> Histogram<u64> {
        self.latency_by_hub.get(hub).map_or_else(stats::histogram, ShardedHistogram::merged)
    }
}

/// Which of `hubs` subscribe URLs subscriber `index` of a fleet uses: round-robin, turned by
/// `shift` places, so that a second fleet with shift 1 puts every subscriber on another URL than a
/// first one with shift 0 did (when there are several).
pub fn hub_of(index: usize, hubs: usize, shift: usize) -> usize {
    (index + shift) % hubs.max(1)
}

/// What one subscriber task hands back.
#[derive(Debug)]
pub struct SubOutcome {
    /// Whether its stream opened.
    pub connected: bool,
    /// What it received.
    pub tracker: Tracker,
}

/// A set of subscriber tasks.
#[derive(Debug)]
pub struct Fleet {
    /// Shared counters, readable while the tasks run.
    pub shared: Arc<FleetShared>,
    /// When the tasks were spawned.
    pub started: Instant,
    size: u64,
    handles: Vec<JoinHandle<SubOutcome>>,
}

impl Fleet {
    /// Spawns one task per spec; subscriber `i` connects to subscribe URL
    /// [`hub_of`]`(i, URLs, shift)`. `limit_connects` makes them wait for a connection slot;
    /// without it they all connect at once. Tasks stop when `phase` is cancelled.
    pub fn spawn(
        ctx: &Arc<Ctx>,
        specs: Vec<SubSpec>,
        phase: &CancellationToken,
        limit_connects: bool,
        shift: usize,
    ) -> anyhow::Result<Self> {
        // None for anonymous subscribers (`--anonymous`).
        let token: Option<Arc<str>> = ctx.subscriber_token()?.map(Arc::from);
        let hubs = ctx.subscribe.len();
        // Errors name the URL when there are several, so that a failing node shows.
        let error_prefixes: Vec<Arc<str>> = ctx
            .subscribe
            .iter()
            .map(|endpoint| match hubs {
                1 => Arc::from("subscribe"),
                _ => Arc::from(format!("subscribe via {}", endpoint.name())),
            })
            .collect();
        let shared = Arc::new(FleetShared {
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            complete: AtomicU64::new(0),
            received: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            last_event_id_mismatch: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            latency_by_hub: (0..hubs)
                .map(|_| ShardedHistogram::new(LATENCY_SHARDS.div_ceil(hubs)))
                .collect(),
            connect: Mutex::new(stats::histogram()),
            completion: Mutex::new(stats::histogram()),
        });
        let started = Instant::now();
        let size = specs.len() as u64;
        let handles = specs
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let hub = hub_of(index, hubs, shift);
                let task = SubscriberTask {
                    ctx: Arc::clone(ctx),
                    shared: Arc::clone(&shared),
                    token: token.clone(),
                    phase: phase.clone(),
                    index,
                    hub,
                    error_prefix: Arc::clone(&error_prefixes[hub]),
                    started,
                    limit_connects,
                };
                tokio::spawn(task.run(spec))
            })
            .collect();
        Ok(Fleet { shared, started, size, handles })
    }

    /// Number of subscribers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Subscribers whose opening is over, successfully or not.
    pub fn settled(&self) -> u64 {
        self.shared.connected.load(Ordering::Relaxed) + self.shared.failed.load(Ordering::Relaxed)
    }

    /// Subscribers that will not progress any more: complete, or ended before completing.
    pub fn done(&self) -> u64 {
        self.shared.complete.load(Ordering::Relaxed) + self.shared.gave_up.load(Ordering::Relaxed)
    }

    /// Waits for the tasks to end (their phase must have been cancelled) and collects them.
    pub async fn join(self) -> Vec<SubOutcome> {
        let mut outcomes = Vec::with_capacity(self.handles.len());
        for handle in self.handles {
            match handle.await {
                Ok(outcome) => outcomes.push(outcome),
                // A task cannot panic by design; should one, it counts as never connected.
                Err(error) => eprintln!("a subscriber task failed: {error}"),
            }
        }
        outcomes
    }
}

/// Everything one subscriber task needs.
struct SubscriberTask {
    ctx: Arc<Ctx>,
    shared: Arc<FleetShared>,
    token: Option<Arc<str>>,
    phase: CancellationToken,
    index: usize,
    /// Its subscribe URL, an index in [`Ctx::subscribe`].
    hub: usize,
    /// What its error kinds start with.
    error_prefix: Arc<str>,
    started: Instant,
    limit_connects: bool,
}

impl SubscriberTask {
    async fn run(self, spec: SubSpec) -> SubOutcome {
        let mut tracker = Tracker::new(spec.expected);
        let ctx = &self.ctx;
        let shared = &self.shared;

        let permit = if self.limit_connects {
            tokio::select! {
                () = self.phase.cancelled() => None,
                permit = ctx.connect_slots.acquire() => permit.ok(),
            }
        } else {
            None
        };
        if self.limit_connects && permit.is_none() {
            self.error("run stopped before the stream opened");
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return SubOutcome { connected: false, tracker };
        }
        let endpoint = &ctx.subscribe[self.hub];
        let opening = SseStream::open(
            &endpoint.connector,
            &endpoint.target,
            self.token.as_deref(),
            &spec.topics,
            spec.last_event_id.as_deref(),
            ctx.timeout,
        );
        let opened = tokio::select! {
            () = self.phase.cancelled() => None,
            opened = opening => Some(opened),
        };
        drop(permit);
        let mut stream = match opened {
            Some(Ok(opened)) => {
                let mut connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner);
                stats::record(&mut connect, opened.connect_time);
                opened.stream
            }
            Some(Err(error)) => {
                self.error(error.kind());
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return SubOutcome { connected: false, tracker };
            }
            None => {
                self.error("run stopped before the stream opened");
                shared.failed.fetch_add(1, Ordering::Relaxed);
                return SubOutcome { connected: false, tracker };
            }
        };
        if spec.last_event_id.is_some() && stream.head.last_event_id != spec.last_event_id {
            shared.last_event_id_mismatch.fetch_add(1, Ordering::Relaxed);
        }
        shared.connected.fetch_add(1, Ordering::Relaxed);
        if tracker.is_complete() {
            self.complete();
        }

        loop {
            let event = tokio::select! {
                biased;
                () = self.phase.cancelled() => break,
                event = stream.next_event() => event,
            };
            let event = match event {
                Ok(Some(event)) => event,
                Ok(None) => {
                    self.error("stream ended by the hub");
                    self.closed_early(&tracker);
                    break;
                }
                Err(error) => {
                    self.error(error.kind());
                    self.closed_early(&tracker);
                    break;
                }
            };
            let received_ns = payload::now_ns();
            let stamp = match payload::decode(&event.data) {
                Some(stamp) if stamp.run == ctx.run_id => stamp,
                _ => {
                    shared.foreign.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            shared.received.fetch_add(1, Ordering::Relaxed);
            shared.last_delivery_ns.fetch_max(ctx.now_offset_ns(), Ordering::Relaxed);
            if tracker.record(stamp.seq) == Receipt::New {
                let micros = received_ns.saturating_sub(stamp.sent_ns) / 1000;
                // The subscribers of one URL have indices `hub + k * hubs`: divide to use every
                // shard.
                let shard = self.index / ctx.subscribe.len();
                shared.latency_by_hub[self.hub].record_micros(shard, micros);
                if tracker.is_complete() {
                    self.complete();
                }
            }
        }
        SubOutcome { connected: true, tracker }
    }

    /// Counts an error of kind `kind`, prefixed by the subscribe URL when there are several.
    fn error(&self, kind: impl std::fmt::Display) {
        self.ctx.errors.add(format!("{}: {kind}", self.error_prefix));
    }

    /// Counts a stream that ended before its phase.
    fn closed_early(&self, tracker: &Tracker) {
        self.shared.closed_early.fetch_add(1, Ordering::Relaxed);
        if !tracker.is_complete() {
            self.shared.gave_up.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Marks this subscriber complete, with the time it took since the fleet started.
    fn complete(&self) {
        self.shared.complete.fetch_add(1, Ordering::Relaxed);
        let mut completion = self.shared.completion.lock().unwrap_or_else(PoisonError::into_inner);
        stats::record(&mut completion, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_new_duplicate_unexpected_and_order() {
        let mut tracker = Tracker::new(Expected::Range { start: 10, end: 14 });
        assert_eq!(tracker.record(10), Receipt::New);
        assert_eq!(tracker.record(12), Receipt::New);
        assert_eq!(tracker.record(11), Receipt::New);
        assert_eq!(tracker.record(12), Receipt::Duplicate);
        assert_eq!(tracker.record(9), Receipt::Unexpected);
        assert_eq!(tracker.record(14), Receipt::Unexpected);
        assert_eq!(tracker.unique(), 3);
        assert_eq!(tracker.duplicates, 1);
        assert_eq!(tracker.unexpected, 2);
        // 11 after 12, and 9 after 12 (a repeat of the highest is not out of order).
        assert_eq!(tracker.out_of_order, 2);
        assert!(!tracker.is_complete());
        assert_eq!(tracker.record(13), Receipt::New);
        assert!(tracker.is_complete());
    }

    #[test]
    fn tracker_with_a_list_and_acknowledgements() {
        let mut tracker = Tracker::new(Expected::List(vec![3, 7, 100, 101]));
        assert_eq!(tracker.record(7), Receipt::New);
        assert_eq!(tracker.record(8), Receipt::Unexpected);
        assert_eq!(tracker.record(101), Receipt::New);
        // 100 was never acknowledged by the hub: not lost, and its receipt is reported apart.
        assert_eq!(tracker.tally(|seq| seq != 100), (2, 1));
        assert_eq!(tracker.received_unacked(|seq| seq != 101), 1);
    }

    #[test]
    fn subscribers_are_spread_over_the_urls() {
        let spread = |count: usize, hubs: usize, shift: usize| -> Vec<usize> {
            let mut per_hub = vec![0; hubs];
            for index in 0..count {
                per_hub[hub_of(index, hubs, shift)] += 1;
            }
            per_hub
        };
        assert_eq!(spread(10, 1, 0), [10]);
        assert_eq!(spread(10, 1, 1), [10]);
        assert_eq!(spread(10, 3, 0), [4, 3, 3]);
        assert_eq!(spread(10, 3, 1), [3, 4, 3]);
        // A second fleet shifted by one puts every subscriber on another URL.
        assert!((0..10).all(|index| hub_of(index, 3, 0) != hub_of(index, 3, 1)));
        assert!((0..10).all(|index| hub_of(index, 2, 0) != hub_of(index, 2, 1)));
    }

    /// A loopback port nothing listens on (just released).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port()
    }

    #[tokio::test]
    async fn each_subscriber_connects_to_its_url() {
        let ports = [closed_port(), closed_port()];
        let urls = ports.map(|port| format!("http://127.0.0.1:{port}/.well-known/mercure"));
        let cli = crate::cli::Cli::try_parse_checked([
            "loadtest",
            "idle",
            "--key",
            "k",
            "--subscribe-hub",
            &urls[0],
            "--subscribe-hub",
            &urls[1],
        ])
        .expect("valid command line");
        let ctx = Arc::new(Ctx::new(&cli.common).await.expect("a context"));
        let spec = SubSpec {
            topics: vec![Selector::Topic("t".into())],
            last_event_id: None,
            expected: Expected::NONE,
        };
        let phase = CancellationToken::new();
        let fleet = Fleet::spawn(&ctx, vec![spec; 5], &phase, true, 0).expect("spawned");
        let outcomes = fleet.join().await;

        // Nothing listens: every subscriber fails, and its error names the URL it used.
        assert!(outcomes.iter().all(|outcome| !outcome.connected));
        let errors = ctx.errors.snapshot();
        let refused = |port: u16| {
            errors.get(&format!("subscribe via 127.0.0.1:{port}: connect: refused")).copied()
        };
        assert_eq!((refused(ports[0]), refused(ports[1])), (Some(3), Some(2)), "{errors:?}");
    }

    #[test]
    fn expected_sets() {
        assert!(Expected::NONE.is_empty());
        assert!(Tracker::new(Expected::NONE).is_complete());
        let range = Expected::Range { start: 5, end: 8 };
        assert_eq!(range.iter().collect::<Vec<_>>(), vec![5, 6, 7]);
        let list = Expected::List(vec![1, 9]);
        assert_eq!(list.iter().collect::<Vec<_>>(), vec![1, 9]);
        assert_eq!(list.len(), 2);
        // More than one word of bits.
        let mut tracker = Tracker::new(Expected::Range { start: 0, end: 200 });
        for seq in 0..200 {
            assert_eq!(tracker.record(seq), Receipt::New);
        }
        assert!(tracker.is_complete());
        assert_eq!(tracker.out_of_order, 0);
    }
}
