//! Prometheus metrics of the hub.
//!
//! Owns one private registry and a cloneable [`Metrics`] handle to it. The handlers, the router and
//! the subscriber actors call its methods on their hot paths; the metrics endpoint calls
//! [`Metrics::render`] and answers with [`Metrics::CONTENT_TYPE`].
//!
//! The reference hub registers `mercure_subscribers_total`, `mercure_subscribers_connected` and
//! `mercure_updates_total`; we keep those names and add `mercure_updates_failed_total`, which its
//! documentation lists but its code does not register, plus our own drop, latency and HTTP
//! counters.
//!
//! The `nats` transport adds its own family (`NatsMetrics`, `mercure_nats_*`), exported only
//! on the nodes that use it.
//!
//! `mercure_runtime_alive_tasks` counts the tokio tasks alive in every runtime of the process that
//! has called into these metrics (each noted from its own thread): the soak scenario of the load
//! tool reads it to tell a leak of tasks from churn. Tokio counts only the tasks of its own
//! scheduler (`tokio::spawn`: the transport's, the JWK Set fetches'), not those of a `LocalSet`,
//! which is where actix runs each connection (`actix_web::rt::spawn` is `spawn_local`): a leaked
//! connection shows in the open files and `mercure_subscribers_connected` instead.
//!
//! Output is OpenMetrics text. prometheus-client appends `_total` to counter samples and the unit
//! to the histogram name, so counters are registered under their base names.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio::runtime::{Handle, Id};

/// Upper bounds, in seconds, of the publish latency buckets: 50 µs to 5 s in 1-2.5-5 steps. A
/// publish into memory takes tens of microseconds; one that waits on a disk sync or a slow cluster
/// transport can take seconds.
const PUBLISH_DURATION_BUCKETS: [f64; 16] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
];

/// Why a subscriber was disconnected by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DropReason {
    /// Its bounded queue was full: it reads more slowly than updates arrive.
    QueueFull,
    /// Its connection accepted no data for `dispatch_timeout` while updates waited.
    DispatchTimeout,
}

impl DropReason {
    /// The value of the `reason` label: `queue_full` or `dispatch_timeout`.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::DispatchTimeout => "dispatch_timeout",
        }
    }
}

/// Labels of `mercure_subscribers_dropped_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Labels of `mercure_http_responses_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: u16,
}

/// The hub's metrics. Cheap to clone (shared inside); every method is lock-free or nearly so,
/// because they are called on hot paths (every publish, every delivery batch).
///
/// Counters and gauges are single atomics. The histogram takes one short uncontended mutex per
/// observation, and `http_response` a read lock on its label map (a write lock only the first time
/// a status code is seen).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Kept only for [`Metrics::render`]; the metric handles below share their values with it.
    registry: Registry,
    subscribers_connected: Gauge,
    subscribers: Counter,
    updates: Counter,
    updates_failed: Counter,
    updates_dispatched: Counter,
    /// Handles into the `mercure_subscribers_dropped` family, created up front so that dropping a
    /// subscriber takes no lock and both series are exported (at 0) from the start.
    dropped_queue_full: Counter,
    dropped_dispatch_timeout: Counter,
    publish_duration: Histogram,
    history_updates: Gauge<u64, AtomicU64>,
    http_responses: Family<StatusLabels, Counter>,
    /// Set from [`Inner::runtimes`] at each render.
    alive_tasks: Gauge<u64, AtomicU64>,
    /// Every tokio runtime seen calling into these metrics. The hub runs several: the main one
    /// (the router, the transport) and one per HTTP worker, each a current-thread runtime that
    /// only it can name with `Handle::current()`; they are noted from their own threads.
    runtimes: Mutex<Vec<(Id, Handle)>>,
    /// The `nats` transport's metrics, once it asked for them.
    nats: OnceLock<NatsMetrics>,
}

thread_local! {
    /// The metrics (their address) and the runtime last noted from this thread, so that noting
    /// again costs a comparison rather than a lock. A thread may run several runtimes one after
    /// the other, and a process (tests) several hubs.
    static NOTED: Cell<Option<(usize, Id)>> = const { Cell::new(None) };
}

impl Metrics {
    /// The Content-Type of [`Metrics::render`]'s output.
    pub const CONTENT_TYPE: &'static str =
        "application/openmetrics-text; version=1.0.0; charset=utf-8";

    /// Creates the metrics, all at zero, in a registry of their own.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();

        let subscribers_connected = Gauge::default();
        registry.register(
            "mercure_subscribers_connected",
            "Number of subscribers currently connected",
            subscribers_connected.clone(),
        );
        let subscribers = Counter::default();
        registry.register(
            "mercure_subscribers",
            "Total number of subscriber connections handled",
            subscribers.clone(),
        );
        let updates = Counter::default();
        registry.register("mercure_updates", "Total number of updates published", updates.clone());
        let updates_failed = Counter::default();
        registry.register(
            "mercure_updates_failed",
            "Total number of publish attempts that failed after authorization",
            updates_failed.clone(),
        );
        let updates_dispatched = Counter::default();
        registry.register(
            "mercure_updates_dispatched",
            "Total number of update deliveries, one per subscriber that received an update",
            updates_dispatched.clone(),
        );

        let dropped = Family::<ReasonLabels, Counter>::default();
        let dropped_counter = |reason: DropReason| {
            dropped.get_or_create_owned(&ReasonLabels { reason: reason.as_str() })
        };
        let dropped_queue_full = dropped_counter(DropReason::QueueFull);
        let dropped_dispatch_timeout = dropped_counter(DropReason::DispatchTimeout);
        registry.register(
            "mercure_subscribers_dropped",
            "Total number of subscribers disconnected by the hub, by reason",
            dropped,
        );

        let publish_duration = Histogram::new(PUBLISH_DURATION_BUCKETS);
        registry.register_with_unit(
            "mercure_publish_duration",
            "Time taken to publish an update, from request to stored and routed",
            Unit::Seconds,
            publish_duration.clone(),
        );
        let history_updates = Gauge::default();
        registry.register(
            "mercure_history_updates",
            "Number of updates kept in the history",
            history_updates.clone(),
        );
        let http_responses = Family::default();
        registry.register(
            "mercure_http_responses",
            "Total number of HTTP responses sent, by status code",
            http_responses.clone(),
        );
        let alive_tasks = Gauge::default();
        registry.register(
            "mercure_runtime_alive_tasks",
            "Number of tokio tasks alive (tokio::spawn, not the LocalSet tasks of actix's \
             connections), summed over the runtimes of the hub: the main one and each HTTP \
             worker's once it has answered a request",
            alive_tasks.clone(),
        );

        let metrics = Self {
            inner: Arc::new(Inner {
                registry,
                subscribers_connected,
                subscribers,
                updates,
                updates_failed,
                updates_dispatched,
                dropped_queue_full,
                dropped_dispatch_timeout,
                publish_duration,
                history_updates,
                http_responses,
                alive_tasks,
                runtimes: Mutex::default(),
                nats: OnceLock::new(),
            }),
        };
        metrics.note_runtime();
        metrics
    }

    /// Remembers the tokio runtime this thread runs in, if any, so that its tasks are counted in
    /// `mercure_runtime_alive_tasks`. Called where every runtime of the hub passes: at creation
    /// (the main runtime) and on each HTTP response and subscription (the workers').
    fn note_runtime(&self) {
        let Ok(handle) = Handle::try_current() else {
            return;
        };
        let key = (Arc::as_ptr(&self.inner) as usize, handle.id());
        if NOTED.get() == Some(key) {
            return;
        }
        let mut runtimes = self.inner.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        if !runtimes.iter().any(|(id, _)| *id == key.1) {
            runtimes.push((key.1, handle));
        }
        NOTED.set(Some(key));
    }

    /// Tasks alive in the runtimes noted so far. A runtime that has shut down counts none.
    fn alive_tasks(&self) -> u64 {
        let runtimes = self.inner.runtimes.lock().unwrap_or_else(PoisonError::into_inner);
        runtimes.iter().map(|(_, handle)| handle.metrics().num_alive_tasks() as u64).sum()
    }

    /// A subscriber connected: one more connected now, one more in total.
    pub(crate) fn subscriber_connected(&self) {
        self.note_runtime();
        self.inner.subscribers_connected.inc();
        self.inner.subscribers.inc();
    }

    /// A subscriber disconnected, whatever the reason.
    pub(crate) fn subscriber_disconnected(&self) {
        self.inner.subscribers_connected.dec();
    }

    /// An update was published successfully; `latency` is how long the publish took.
    pub(crate) fn update_published(&self, latency: Duration) {
        self.inner.updates.inc();
        self.inner.publish_duration.observe(latency.as_secs_f64());
    }

    /// An authorized publish failed (invalid form, storage or transport error).
    pub(crate) fn publish_failed(&self) {
        self.inner.updates_failed.inc();
    }

    /// `deliveries` subscribers received an update.
    pub(crate) fn updates_dispatched(&self, deliveries: u64) {
        self.inner.updates_dispatched.inc_by(deliveries);
    }

    /// The hub disconnected a subscriber for `reason`.
    pub(crate) fn subscriber_dropped(&self, reason: DropReason) {
        match reason {
            DropReason::QueueFull => self.inner.dropped_queue_full.inc(),
            DropReason::DispatchTimeout => self.inner.dropped_dispatch_timeout.inc(),
        };
    }

    /// The history now holds `updates` updates.
    pub(crate) fn set_history_size(&self, updates: u64) {
        self.inner.history_updates.set(updates);
    }

    /// The hub sent an HTTP response with this status code.
    pub(crate) fn http_response(&self, status: u16) {
        self.note_runtime();
        self.inner.http_responses.get_or_create(&StatusLabels { status }).inc();
    }

    /// The `nats` transport's metrics, registered (and exported from now on) at the first call.
    pub(crate) fn nats(&self) -> NatsMetrics {
        self.inner.nats.get_or_init(NatsMetrics::new).clone()
    }

    /// All metrics in the OpenMetrics text format, ending with `# EOF`.
    pub fn render(&self) -> String {
        self.note_runtime();
        self.inner.alive_tasks.set(self.alive_tasks());
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail and none of our label or value types can fail to
        // encode; if that ever changes, a partial page beats a panic in the scrape handler.
        let mut encoded = encode_registry(&mut out, &self.inner.registry);
        if let Some(nats) = self.inner.nats.get() {
            encoded = encoded.and_then(|()| encode_registry(&mut out, &nats.inner.registry));
        }
        if let Err(error) = encoded.and_then(|()| encode_eof(&mut out)) {
            tracing::error!(%error, "failed to encode metrics");
        }
        out
    }
}

/// Upper bounds, in seconds, of the JetStream acknowledgement buckets: 250 µs to 10 s. A local
/// server acknowledges in about a millisecond, a replicated stream in a few; a stream leader
/// election holds publications for seconds.
const ACK_DURATION_BUCKETS: [f64; 14] =
    [0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The metrics of the `nats` transport, got from [`Metrics::nats`]. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct NatsMetrics {
    inner: Arc<NatsInner>,
}

#[derive(Debug)]
struct NatsInner {
    registry: Registry,
    connected: Gauge,
    ack_duration: Histogram,
    consumer_lag: Gauge<u64, AtomicU64>,
    consumer_recreations: Counter,
    stream_resets: Counter,
}

impl NatsMetrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let connected = Gauge::default();
        registry.register(
            "mercure_nats_connected",
            "Whether the node is connected to NATS (1) or not (0)",
            connected.clone(),
        );
        let ack_duration = Histogram::new(ACK_DURATION_BUCKETS);
        registry.register_with_unit(
            "mercure_nats_ack_duration",
            "Time from sending a publication to JetStream's acknowledgement, retries included",
            Unit::Seconds,
            ack_duration.clone(),
        );
        let consumer_lag = Gauge::default();
        registry.register(
            "mercure_nats_consumer_lag",
            "Updates stored in the stream that this node has not read yet",
            consumer_lag.clone(),
        );
        let consumer_recreations = Counter::default();
        registry.register(
            "mercure_nats_consumer_recreations",
            "Times this node's consumer of the stream failed and was created again",
            consumer_recreations.clone(),
        );
        let stream_resets = Counter::default();
        registry.register(
            "mercure_nats_stream_resets",
            "Times the stream no longer continued what this node had read (deleted, recreated, \
             or trimmed past it), ending every open stream",
            stream_resets.clone(),
        );
        Self {
            inner: Arc::new(NatsInner {
                registry,
                connected,
                ack_duration,
                consumer_lag,
                consumer_recreations,
                stream_resets,
            }),
        }
    }

    /// The connection to NATS is up (`true`) or down.
    pub(crate) fn set_connected(&self, connected: bool) {
        self.inner.connected.set(i64::from(connected));
    }

    /// JetStream acknowledged a publication `latency` after it was first sent.
    pub(crate) fn acknowledged(&self, latency: Duration) {
        self.inner.ack_duration.observe(latency.as_secs_f64());
    }

    /// The stream holds `updates` that this node has not read yet.
    pub(crate) fn set_consumer_lag(&self, updates: u64) {
        self.inner.consumer_lag.set(updates);
    }

    /// The node's consumer failed and is being created again.
    pub(crate) fn consumer_recreated(&self) {
        self.inner.consumer_recreations.inc();
    }

    /// The stream no longer continued what this node had read.
    pub(crate) fn stream_reset(&self) {
        self.inner.stream_resets.inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every metric family and the sample name it exports.
    const FAMILIES: [(&str, &str, &str); 10] = [
        ("mercure_subscribers_connected", "gauge", "mercure_subscribers_connected"),
        ("mercure_subscribers", "counter", "mercure_subscribers_total"),
        ("mercure_updates", "counter", "mercure_updates_total"),
        ("mercure_updates_failed", "counter", "mercure_updates_failed_total"),
        ("mercure_updates_dispatched", "counter", "mercure_updates_dispatched_total"),
        ("mercure_subscribers_dropped", "counter", "mercure_subscribers_dropped_total"),
        ("mercure_publish_duration_seconds", "histogram", "mercure_publish_duration_seconds_count"),
        ("mercure_history_updates", "gauge", "mercure_history_updates"),
        ("mercure_http_responses", "counter", "mercure_http_responses_total"),
        ("mercure_runtime_alive_tasks", "gauge", "mercure_runtime_alive_tasks"),
    ];

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[track_caller]
    fn assert_line(text: &str, line: &str) {
        assert!(lines(text).contains(&line), "missing line {line:?} in:\n{text}");
    }

    #[test]
    fn fresh_metrics_are_zero_and_end_with_eof() {
        let text = Metrics::new().render();
        assert_line(&text, "mercure_subscribers_connected 0");
        assert_line(&text, "mercure_subscribers_total 0");
        assert_line(&text, "mercure_updates_total 0");
        assert_line(&text, "mercure_updates_failed_total 0");
        assert_line(&text, "mercure_updates_dispatched_total 0");
        assert_line(&text, "mercure_history_updates 0");
        assert_line(&text, "mercure_publish_duration_seconds_count 0");
        // Both drop reasons exist from the start, so rate() works before the first drop.
        assert_line(&text, "mercure_subscribers_dropped_total{reason=\"queue_full\"} 0");
        assert_line(&text, "mercure_subscribers_dropped_total{reason=\"dispatch_timeout\"} 0");
        // A status code appears only once a response with it has been sent.
        assert!(!text.contains("mercure_http_responses_total{"), "{text}");
        assert_eq!(text.lines().last(), Some("# EOF"));
        assert!(!text.contains("mercure_nats"), "no NATS metrics without the nats transport");
    }

    #[test]
    fn nats_metrics_are_exported_once_asked_for() {
        let metrics = Metrics::new();
        let nats = metrics.nats();
        nats.set_connected(true);
        nats.acknowledged(Duration::from_millis(2));
        nats.set_consumer_lag(7);
        nats.consumer_recreated();
        nats.stream_reset();
        metrics.nats().stream_reset();
        let text = metrics.render();
        assert_line(&text, "# TYPE mercure_nats_connected gauge");
        assert_line(&text, "mercure_nats_connected 1");
        assert_line(&text, "mercure_nats_ack_duration_seconds_count 1");
        assert_line(&text, "mercure_nats_consumer_lag 7");
        assert_line(&text, "mercure_nats_consumer_recreations_total 1");
        assert_line(&text, "mercure_nats_stream_resets_total 2");
        assert_eq!(text.matches("# EOF").count(), 1);
        assert_eq!(text.lines().last(), Some("# EOF"));
    }

    #[test]
    fn every_metric_has_help_and_type() {
        let metrics = Metrics::new();
        // A labelled family with no series yet is not rendered at all, so give it one.
        metrics.http_response(204);
        let text = metrics.render();
        for (family, kind, sample) in FAMILIES {
            let help = format!("# HELP {family} ");
            assert!(
                text.lines().any(|line| line.starts_with(&help) && line.len() > help.len()),
                "no HELP for {family} in:\n{text}"
            );
            assert_line(&text, &format!("# TYPE {family} {kind}"));
            assert!(
                text.lines().any(|line| line.starts_with(sample)),
                "no sample {sample} in:\n{text}"
            );
        }
        assert_line(&text, "# UNIT mercure_publish_duration_seconds seconds");
    }

    #[test]
    fn subscribers_connected_and_total() {
        let metrics = Metrics::new();
        metrics.subscriber_connected();
        metrics.subscriber_connected();
        metrics.subscriber_connected();
        metrics.subscriber_disconnected();
        let text = metrics.render();
        assert_line(&text, "mercure_subscribers_connected 2");
        assert_line(&text, "mercure_subscribers_total 3");
    }

    #[test]
    fn clones_share_values() {
        let metrics = Metrics::default();
        let clone = metrics.clone();
        clone.update_published(Duration::from_micros(80));
        metrics.update_published(Duration::from_millis(3));
        assert_line(&metrics.render(), "mercure_updates_total 2");
        assert_eq!(metrics.render(), clone.render());
    }

    #[test]
    fn publish_counters_and_histogram() {
        let metrics = Metrics::new();
        metrics.update_published(Duration::from_micros(80));
        metrics.update_published(Duration::from_millis(3));
        metrics.publish_failed();
        metrics.updates_dispatched(5);
        metrics.updates_dispatched(0);
        metrics.updates_dispatched(2);
        let text = metrics.render();
        assert_line(&text, "mercure_updates_total 2");
        assert_line(&text, "mercure_updates_failed_total 1");
        assert_line(&text, "mercure_updates_dispatched_total 7");
        assert_line(&text, "mercure_publish_duration_seconds_count 2");
        let sum: f64 = text
            .lines()
            .find_map(|line| line.strip_prefix("mercure_publish_duration_seconds_sum "))
            .and_then(|value| value.parse().ok())
            .expect("a parsable histogram sum");
        assert!((sum - 0.003_08).abs() < 1e-12, "{sum}");
        // Buckets are cumulative: 80 µs falls in le=0.0001, 3 ms in le=0.005.
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"0.00005\"} 0");
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"0.0001\"} 1");
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"0.0025\"} 1");
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"0.005\"} 2");
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"5.0\"} 2");
        assert_line(&text, "mercure_publish_duration_seconds_bucket{le=\"+Inf\"} 2");
    }

    #[test]
    fn drops_by_reason() {
        let metrics = Metrics::new();
        metrics.subscriber_dropped(DropReason::QueueFull);
        metrics.subscriber_dropped(DropReason::QueueFull);
        metrics.subscriber_dropped(DropReason::DispatchTimeout);
        let text = metrics.render();
        assert_line(&text, "mercure_subscribers_dropped_total{reason=\"queue_full\"} 2");
        assert_line(&text, "mercure_subscribers_dropped_total{reason=\"dispatch_timeout\"} 1");
    }

    #[test]
    fn history_size_is_a_gauge() {
        let metrics = Metrics::new();
        metrics.set_history_size(42);
        metrics.set_history_size(17);
        assert_line(&metrics.render(), "mercure_history_updates 17");
    }

    #[test]
    fn http_responses_by_status() {
        let metrics = Metrics::new();
        metrics.http_response(200);
        metrics.http_response(200);
        metrics.http_response(401);
        let text = metrics.render();
        assert_line(&text, "mercure_http_responses_total{status=\"200\"} 2");
        assert_line(&text, "mercure_http_responses_total{status=\"401\"} 1");
    }

    /// The value of the sample `name` (a family without labels).
    fn sample(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
    }

    #[test]
    fn outside_a_runtime_no_task_is_counted() {
        assert_eq!(sample(&Metrics::new().render(), "mercure_runtime_alive_tasks"), 0);
    }

    #[test]
    fn alive_tasks_are_summed_over_the_runtimes_that_called_in() {
        let current_thread = || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
        };
        let (main, worker) = (current_thread(), current_thread());
        let metrics = main.block_on(async { Metrics::new() });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let park = |runtime: &tokio::runtime::Runtime, tasks: usize| {
            for _ in 0..tasks {
                let mut stopped = stopped.clone();
                runtime.spawn(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                });
            }
        };
        park(&main, 3);
        park(&worker, 2);
        // The worker's runtime is unknown until it calls in, as an HTTP worker does when it
        // answers its first request.
        assert_eq!(
            sample(&main.block_on(async { metrics.render() }), "mercure_runtime_alive_tasks"),
            3
        );
        worker.block_on(async { metrics.http_response(200) });
        // Counted once each, from whichever runtime renders, and again after a repeated call.
        worker.block_on(async { metrics.subscriber_connected() });
        assert_eq!(sample(&metrics.render(), "mercure_runtime_alive_tasks"), 5);
        assert_eq!(
            sample(&worker.block_on(async { metrics.render() }), "mercure_runtime_alive_tasks"),
            5
        );
        // Tasks that end are no longer counted: nothing leaks into the gauge.
        stop.send_replace(true);
        main.block_on(tokio::task::yield_now());
        worker.block_on(tokio::task::yield_now());
        let settled = (0..100).find_map(|_| {
            main.block_on(tokio::task::yield_now());
            worker.block_on(tokio::task::yield_now());
            let alive = sample(&metrics.render(), "mercure_runtime_alive_tasks");
            (alive == 0).then_some(alive)
        });
        assert_eq!(settled, Some(0));
    }

    #[test]
    fn content_type_is_openmetrics() {
        assert!(Metrics::CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    }

    #[test]
    fn drop_reason_labels() {
        assert_eq!(DropReason::QueueFull.as_str(), "queue_full");
        assert_eq!(DropReason::DispatchTimeout.as_str(), "dispatch_timeout");
    }
}
