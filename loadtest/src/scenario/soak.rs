//! `soak`: subscribers connect and disconnect continuously while updates are published, for a set
//! time, and the hub's resources are read all along. See [`crate::cli::Scenario::Soak`].
//!
//! What it looks for is what churn leaks: memory that grows with the number of connections ever
//! made rather than with those open (RSS at the end against RSS after the first minute), file
//! descriptors or tokio tasks that outlive their connection (counts after everything closed
//! against those before anything opened). Deliveries are checked too, so that a hub that stays
//! flat by dropping work is not mistaken for a sound one: witnesses connected throughout must
//! receive every acknowledged update, and each churning subscriber every update of its topic
//! acknowledged while it was connected.
//!
//! One publisher sends the updates in sequence, so sequence numbers, send times and
//! acknowledgement times all grow together: a churning subscriber's window is a range of the
//! publication log, found by binary search.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::SoakArgs;
use crate::context::{Ctx, ProcessWatch};
use crate::fleet::{Expected, Fleet, SubSpec};
use crate::http::{self, KeepAlive, Selector};
use crate::hubmetrics::{self, Scraper};
use crate::payload::{self, Stamp};
use crate::procstat::{self, Pid};
use crate::progress::Progress;
use crate::report::{Figure, Report, Series, Uses};
use crate::stats::{self, ShardedHistogram};
use crate::subscriber::SseStream;

use super::{event_or_close, pause, wait_connected, POLL};

/// Time the run needs besides `--duration`, `--drain` and `--settle`: opening the witnesses,
/// closing everything, reporting.
const OVERHEAD: Duration = Duration::from_secs(30);
/// How often the hub is read while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(500);
/// Wait before a churning slot tries again after a failed opening, so that a hub refusing
/// connections is not hammered in a tight loop.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Latency shards of the churning subscribers.
const LATENCY_SHARDS: usize = 32;

/// Topic `k` of the run.
fn topic(k: u64) -> String {
    format!("https://example.com/soak/{k}")
}

/// The URI template every witness subscribes to: all the topics of [`topic`].
const ALL_TOPICS: &str = "https://example.com/soak/{k}";

/// One reading of the hub.
#[derive(Debug, Clone, Copy, Default)]
struct HubSample {
    /// Seconds since the churn started (negative before it).
    at: f64,
    rss_kib: Option<u64>,
    fds: Option<u64>,
    tasks: Option<u64>,
    connected: Option<u64>,
    /// Updates in the hub's history: memory that grows by design unless `history_size` bounds
    /// it, to be told apart from a leak.
    history: Option<u64>,
}

/// Reads the hub's RSS and open files from `/proc` (with `--hub-pid`) and its tasks and connected
/// subscribers from its metrics page.
struct Sampler {
    scraper: Scraper,
    origin: Instant,
}

impl Sampler {
    async fn sample(&mut self, ctx: &Ctx) -> HubSample {
        let at = self.origin.elapsed().as_secs_f64();
        let rss_kib = ctx.sample_hub().map(|sample| sample.rss_kib);
        let fds = ctx.hub().and_then(|hub| procstat::open_fds(Pid::Other(hub.pid)).ok());
        let names = [
            hubmetrics::ALIVE_TASKS,
            hubmetrics::SUBSCRIBERS_CONNECTED,
            hubmetrics::HISTORY_UPDATES,
        ];
        let values = match self.scraper.scrape(&names).await {
            Ok(values) => values,
            Err(error) => {
                ctx.errors.add(format!("metrics: {}", error.kind()));
                vec![None; names.len()]
            }
        };
        let value = |index: usize| values.get(index).copied().flatten().map(|value| value as u64);
        HubSample { at, rss_kib, fds, tasks: value(0), connected: value(1), history: value(2) }
    }
}

/// One publication: when it was sent and when the hub acknowledged it, in
/// [`Ctx::now_offset_ns`] time (0: not acknowledged).
#[derive(Debug, Clone, Copy)]
struct Sent {
    sent_ns: u64,
    acked_ns: u64,
}

/// Every publication of the run, indexed by sequence number.
#[derive(Debug, Default)]
struct PublishLog {
    entries: Mutex<Vec<Sent>>,
}

impl PublishLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Sent>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Of the updates sent from `from_ns` on and acknowledged by `until_ns` whose sequence number
    /// passes `mine`: how many there are, and how many of them are in `received` (sorted).
    fn window(
        &self,
        from_ns: u64,
        until_ns: u64,
        mine: impl Fn(u64) -> bool,
        received: &[u64],
    ) -> (u64, u64) {
        let entries = self.lock();
        let first = entries.partition_point(|sent| sent.sent_ns < from_ns);
        let (mut expected, mut got) = (0, 0);
        for (offset, sent) in entries[first..].iter().enumerate() {
            if sent.sent_ns > until_ns {
                break;
            }
            let seq = (first + offset) as u64;
            if sent.acked_ns == 0 || sent.acked_ns > until_ns || !mine(seq) {
                continue;
            }
            expected += 1;
            if received.binary_search(&seq).is_ok() {
                got += 1;
            }
        }
        (expected, got)
    }

    /// Which updates were acknowledged, by sequence number.
    fn acked(&self) -> Vec<bool> {
        self.lock().iter().map(|sent| sent.acked_ns != 0).collect()
    }
}

/// What the publisher did.
struct PublishTally {
    sent: u64,
    ok: u64,
    failed: u64,
    latency: Histogram<u64>,
}

/// Publishes up to `planned` updates at `rate`, round-robin over the topics, until `churn` ends.
async fn publish(
    ctx: Arc<Ctx>,
    log: Arc<PublishLog>,
    args: PublishParams,
    churn: CancellationToken,
) -> PublishTally {
    let mut tally = PublishTally { sent: 0, ok: 0, failed: 0, latency: stats::histogram() };
    let token = match ctx.publisher_token() {
        Ok(token) => token.to_owned(),
        Err(error) => {
            ctx.errors.add(format!("publish: {error}"));
            return tally;
        }
    };
    let mut client = KeepAlive::new(ctx.timeout);
    // Connect before the clock starts; a failure here is retried by the first send.
    let _ = client.connect(&ctx.publish.connector).await;
    let start = tokio::time::Instant::now();
    for seq in 0..args.planned {
        let due = start + Duration::from_secs_f64(seq as f64 / args.rate);
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = churn.cancelled() => break,
        }
        let stamp = Stamp { run: ctx.run_id, seq, sent_ns: payload::now_ns() };
        let data = payload::encode(stamp, args.payload);
        let request =
            http::publish_request(&ctx.publish.target, &token, &topic(seq % args.topics), &data);
        log.lock().push(Sent { sent_ns: ctx.now_offset_ns(), acked_ns: 0 });
        tally.sent += 1;
        let sent = Instant::now();
        let answer = tokio::select! {
            () = ctx.stop.cancelled() => break,
            answer = client.send(&ctx.publish.connector, &request) => answer,
        };
        stats::record(&mut tally.latency, sent.elapsed());
        match answer {
            Ok(response) if response.status == 200 => {
                tally.ok += 1;
                let now = ctx.now_offset_ns().max(1);
                if let Some(entry) = log.lock().get_mut(seq as usize) {
                    entry.acked_ns = now;
                }
            }
            Ok(response) => {
                tally.failed += 1;
                ctx.errors.add(format!("publish: HTTP {}", response.status));
            }
            Err(error) => {
                tally.failed += 1;
                ctx.errors.add(format!("publish: {}", error.kind()));
            }
        }
    }
    tally
}

/// What the publisher needs from the arguments.
#[derive(Debug, Clone, Copy)]
struct PublishParams {
    planned: u64,
    rate: f64,
    topics: u64,
    payload: usize,
}

/// Counters of the churning subscribers.
#[derive(Debug)]
struct ChurnShared {
    /// Subscriptions opened.
    sessions: AtomicU64,
    /// Openings that failed.
    failed: AtomicU64,
    /// Subscriptions open now.
    live: AtomicU64,
    /// Updates of this run received, duplicates included.
    received: AtomicU64,
    /// Updates that had to arrive (acknowledged while connected, before the grace).
    expected: AtomicU64,
    /// Of those, the ones that arrived.
    in_window: AtomicU64,
    duplicates: AtomicU64,
    /// Updates of another topic than the subscriber's.
    unexpected: AtomicU64,
    /// Streams the hub ended before the subscriber closed them.
    closed_early: AtomicU64,
    latency: ShardedHistogram,
    connect: Mutex<Histogram<u64>>,
}

/// What one churning slot needs.
struct Slot {
    ctx: Arc<Ctx>,
    shared: Arc<ChurnShared>,
    log: Arc<PublishLog>,
    token: Option<Arc<str>>,
    churn: CancellationToken,
    index: usize,
    hold: (Duration, Duration),
    topics: u64,
    grace_ns: u64,
    seed: u64,
}

impl Slot {
    /// Connects, holds, closes and again, until the churn ends.
    async fn run(self) {
        let ctx = &self.ctx;
        let shared = &self.shared;
        let mut rng = StdRng::seed_from_u64(self.seed ^ self.index as u64);
        let endpoint = &ctx.subscribe[self.index % ctx.subscribe.len()];
        while !self.churn.is_cancelled() {
            let k = rng.random_range(0..self.topics);
            let hold = rng.random_range(self.hold.0..=self.hold.1);
            let selectors = [Selector::Topic(topic(k))];
            let permit = tokio::select! {
                () = self.churn.cancelled() => break,
                permit = ctx.connect_slots.acquire() => permit,
            };
            let opening = SseStream::open(
                &endpoint.connector,
                &endpoint.target,
                self.token.as_deref(),
                &selectors,
                None,
                ctx.timeout,
            );
            let opened = tokio::select! {
                () = self.churn.cancelled() => break,
                opened = opening => opened,
            };
            drop(permit);
            let mut stream = match opened {
                Ok(opened) => {
                    let mut connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner);
                    stats::record(&mut connect, opened.connect_time);
                    opened.stream
                }
                Err(error) => {
                    ctx.errors.add(format!("subscribe: {}", error.kind()));
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    pause_or(&self.churn, RETRY_PAUSE).await;
                    continue;
                }
            };
            let open_ns = ctx.now_offset_ns();
            shared.sessions.fetch_add(1, Ordering::Relaxed);
            shared.live.fetch_add(1, Ordering::Relaxed);
            let until = tokio::time::Instant::now() + hold;
            let mut seqs = Vec::new();
            loop {
                let event = tokio::select! {
                    biased;
                    () = self.churn.cancelled() => break,
                    () = tokio::time::sleep_until(until) => break,
                    event = stream.next_event() => event,
                };
                let Some(event) = event_or_close(ctx, &shared.closed_early, event) else {
                    break;
                };
                let received_ns = payload::now_ns();
                let Some(stamp) = payload::decode(&event.data).filter(|s| s.run == ctx.run_id)
                else {
                    continue;
                };
                shared.received.fetch_add(1, Ordering::Relaxed);
                let micros = received_ns.saturating_sub(stamp.sent_ns) / 1000;
                shared.latency.record_micros(self.index, micros);
                seqs.push(stamp.seq);
            }
            let close_ns = ctx.now_offset_ns();
            drop(stream);
            shared.live.fetch_sub(1, Ordering::Relaxed);
            self.tally(k, seqs, open_ns, close_ns);
        }
    }

    /// Counts what one subscription received against what it had to.
    fn tally(&self, k: u64, mut seqs: Vec<u64>, open_ns: u64, close_ns: u64) {
        let shared = &self.shared;
        let topics = self.topics;
        let unexpected = seqs.iter().filter(|&&seq| seq % topics != k).count() as u64;
        let count = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        let (expected, got) = self.log.window(
            open_ns,
            close_ns.saturating_sub(self.grace_ns),
            |seq| seq % topics == k,
            &seqs,
        );
        shared.unexpected.fetch_add(unexpected, Ordering::Relaxed);
        shared.duplicates.fetch_add((count - seqs.len()) as u64, Ordering::Relaxed);
        shared.expected.fetch_add(expected, Ordering::Relaxed);
        shared.in_window.fetch_add(got, Ordering::Relaxed);
    }
}

/// Sleeps for `duration`, or less if `token` is cancelled.
async fn pause_or(token: &CancellationToken, duration: Duration) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        () = token.cancelled() => {}
    }
}

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &SoakArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.hold_min <= args.hold_max, "--hold-min must not exceed --hold-max");
    let needed = args.duration + args.drain + args.settle + OVERHEAD;
    let left = ctx.deadline.saturating_duration_since(Instant::now());
    anyhow::ensure!(
        left >= needed,
        "--time-limit is too short for this soak: give at least --time-limit {}s \
         (--duration + --drain + --settle + {} s)",
        needed.as_secs(),
        OVERHEAD.as_secs()
    );
    let started = Instant::now();
    let mut report = Report::new(
        ctx,
        "soak",
        Uses::Both,
        json!({
            "duration_seconds": args.duration.as_secs_f64(),
            "subscribers": args.subscribers,
            "hold_min_seconds": args.hold_min.as_secs_f64(),
            "hold_max_seconds": args.hold_max.as_secs_f64(),
            "witnesses": args.witnesses,
            "topics": args.topics,
            "rate": args.rate,
            "payload": args.payload,
            "sample_every_seconds": args.sample_every.as_secs_f64(),
            "reference_seconds": args.reference.as_secs_f64(),
            "rss_tolerance_percent": args.rss_tolerance,
            "settle_seconds": args.settle.as_secs_f64(),
            "grace_seconds": args.grace.as_secs_f64(),
        }),
    );
    let metrics_url = match &args.metrics_url {
        Some(url) => url.clone(),
        None => hubmetrics::default_url(ctx.publish.target.url.as_str())?,
    };
    let scraper = Scraper::new(&metrics_url, ctx.timeout, ctx.tls.as_ref()).await?;
    let watch = ProcessWatch::start(ctx);
    let mut sampler = Sampler { scraper, origin: Instant::now() };
    let baseline = sampler.sample(ctx).await;
    let mut samples = vec![baseline];

    // The witnesses, connected before the first update and until the last.
    let planned = (args.rate * args.duration.as_secs_f64()).ceil() as u64 + 1;
    let witness_spec = SubSpec {
        topics: vec![Selector::Topic(ALL_TOPICS.into())],
        last_event_id: None,
        expected: Expected::Range { start: 0, end: planned },
    };
    let witness_phase = ctx.stop.child_token();
    let fleet =
        Fleet::spawn(ctx, vec![witness_spec; args.witnesses as usize], &witness_phase, true, 0)?;
    wait_connected(ctx, &fleet, "witnesses").await;
    let witnesses = fleet.shared.connected.load(Ordering::Relaxed);

    // The churn. Its start is time 0 of the samples; the baseline was read before it.
    samples[0].at = -sampler.origin.elapsed().as_secs_f64();
    sampler.origin = Instant::now();
    let churn = ctx.stop.child_token();
    let log = Arc::new(PublishLog::default());
    let params =
        PublishParams { planned, rate: args.rate, topics: args.topics, payload: args.payload };
    let publisher = tokio::spawn(publish(Arc::clone(ctx), Arc::clone(&log), params, churn.clone()));
    let shared = Arc::new(ChurnShared {
        sessions: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        live: AtomicU64::new(0),
        received: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        in_window: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        unexpected: AtomicU64::new(0),
        closed_early: AtomicU64::new(0),
        latency: ShardedHistogram::new(LATENCY_SHARDS),
        connect: Mutex::new(stats::histogram()),
    });
    let token: Option<Arc<str>> = ctx.subscriber_token()?.map(Arc::from);
    let seed: u64 = rand::random();
    let slots: Vec<_> = (0..args.subscribers as usize)
        .map(|index| {
            let slot = Slot {
                ctx: Arc::clone(ctx),
                shared: Arc::clone(&shared),
                log: Arc::clone(&log),
                token: token.clone(),
                churn: churn.clone(),
                index,
                hold: (args.hold_min, args.hold_max),
                topics: args.topics,
                grace_ns: u64::try_from(args.grace.as_nanos()).unwrap_or(u64::MAX),
                seed,
            };
            tokio::spawn(slot.run())
        })
        .collect();
    samples.push(sampler.sample(ctx).await);

    let churn_end = sampler.origin + args.duration;
    let mut next_sample = sampler.origin + args.sample_every;
    let bar = Progress::new(ctx.progress, "soaking", args.duration.as_secs().max(1));
    while !ctx.stopped() && Instant::now() < churn_end {
        let wake = next_sample.min(churn_end);
        pause(ctx, wake.saturating_duration_since(Instant::now()).min(POLL * 50)).await;
        if Instant::now() >= next_sample && Instant::now() < churn_end {
            samples.push(sampler.sample(ctx).await);
            next_sample += args.sample_every;
        }
        let rss = samples.last().and_then(|sample| sample.rss_kib);
        bar.set(
            sampler.origin.elapsed().as_secs(),
            format!(
                "{} sessions, RSS {}",
                shared.sessions.load(Ordering::Relaxed),
                rss.map_or("-".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
            ),
        );
    }
    bar.finish();
    // The end of the churn, with everything still connected.
    let end = sampler.sample(ctx).await;
    samples.push(end);
    let churn_seconds = sampler.origin.elapsed().as_secs_f64();

    churn.cancel();
    for slot in slots {
        // A slot cannot panic by design; should one, its last session is simply not counted.
        let _ = slot.await;
    }
    let published = match publisher.await {
        Ok(tally) => tally,
        Err(_) => PublishTally { sent: 0, ok: 0, failed: 0, latency: stats::histogram() },
    };

    // The witnesses get `--drain` to receive what is still on its way.
    let drain_until = Instant::now() + args.drain;
    while !ctx.stopped() && fleet.done() < witnesses && Instant::now() < drain_until {
        tokio::time::sleep(POLL).await;
    }
    witness_phase.cancel();
    let witness_shared = Arc::clone(&fleet.shared);
    let outcomes = fleet.join().await;

    // Settling: everything is closed; the hub should come back to its baseline.
    let settle_started = Instant::now();
    let settle_until = settle_started + args.settle;
    let mut after = sampler.sample(ctx).await;
    samples.push(after);
    while !ctx.stopped() && Instant::now() < settle_until && !settled(&baseline, &after) {
        pause(ctx, SETTLE_POLL).await;
        after = sampler.sample(ctx).await;
        samples.push(after);
    }
    let settle_seconds = settle_started.elapsed().as_secs_f64();
    let usage = watch.finish(ctx);

    // Witnesses: every acknowledged update.
    let acked = log.acked();
    let is_acked = |seq: u64| acked.get(seq as usize).copied().unwrap_or(false);
    let (mut unique, mut lost, mut duplicates, mut unexpected) = (0, 0, 0, 0);
    for outcome in &outcomes {
        let (received, missing) = outcome.tracker.tally(is_acked);
        unique += received;
        lost += missing;
        duplicates += outcome.tracker.duplicates;
        unexpected += outcome.tracker.unexpected;
    }

    report.add("churn_seconds", "churn duration", Figure::Seconds(Some(churn_seconds)));
    report.add(
        "sessions_opened",
        "churning subscriptions opened",
        Figure::Count(shared.sessions.load(Ordering::Relaxed)),
    );
    report.add(
        "sessions_failed",
        "churning subscriptions failed to open",
        Figure::Count(shared.failed.load(Ordering::Relaxed)),
    );
    report.add(
        "witnesses_connected",
        "witnesses connected",
        Figure::OutOf { got: witnesses, of: u64::from(args.witnesses) },
    );
    report.add(
        "updates_published",
        "updates published (200)",
        Figure::OutOf { got: published.ok, of: published.sent },
    );
    report.add("publish_failures", "publish failures", Figure::Count(published.failed));
    report.add_latency("publish_latency", "publish latency", published.latency);
    report.add(
        "witness_deliveries",
        "witness deliveries (unique)",
        Figure::OutOf { got: unique, of: unique + lost },
    );
    report.add("witness_lost", "witness lost deliveries", Figure::Count(lost));
    report.add("witness_duplicates", "witness duplicate deliveries", Figure::Count(duplicates));
    report.add("witness_unexpected", "witness unexpected deliveries", Figure::Count(unexpected));
    let expected = shared.expected.load(Ordering::Relaxed);
    let in_window = shared.in_window.load(Ordering::Relaxed);
    report.add(
        "churn_deliveries",
        "churning deliveries due (unique)",
        Figure::OutOf { got: in_window, of: expected },
    );
    report.add("churn_lost", "churning lost deliveries", Figure::Count(expected - in_window));
    report.add(
        "churn_received",
        "churning deliveries, all",
        Figure::Count(shared.received.load(Ordering::Relaxed)),
    );
    report.add(
        "churn_duplicates",
        "churning duplicate deliveries",
        Figure::Count(shared.duplicates.load(Ordering::Relaxed)),
    );
    report.add(
        "churn_unexpected",
        "churning unexpected deliveries",
        Figure::Count(shared.unexpected.load(Ordering::Relaxed)),
    );
    report.add(
        "streams_closed_early",
        "streams closed by the hub",
        Figure::Count(
            shared.closed_early.load(Ordering::Relaxed)
                + witness_shared.closed_early.load(Ordering::Relaxed),
        ),
    );
    report.add_latency("delivery_latency", "witness delivery latency", witness_shared.latency());
    report.add_latency(
        "churn_delivery_latency",
        "churning delivery latency",
        shared.latency.merged(),
    );
    let connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner).clone();
    report.add_latency("connect_time", "connect time", connect);

    let count = |value: Option<u64>| value.map_or(Figure::Text("-".into()), Figure::Count);
    // Memory: the end of the churn against the reference.
    let reference = samples
        .iter()
        .find(|sample| sample.at >= args.reference.as_secs_f64() && sample.at <= churn_seconds)
        .copied();
    let kib =
        |value: Option<u64>| value.map_or(Figure::Text("-".into()), |kib| Figure::Kib(kib as f64));
    report.add("hub_rss_baseline_kib", "hub RSS before", kib(baseline.rss_kib));
    report.add(
        "hub_rss_reference_kib",
        &format!("hub RSS at {}", humantime::format_duration(args.reference)),
        kib(reference.and_then(|sample| sample.rss_kib)),
    );
    report.add("hub_rss_end_kib", "hub RSS at the end of the churn", kib(end.rss_kib));
    report.add("hub_rss_after_settle_kib", "hub RSS after settling", kib(after.rss_kib));
    let ratio = match (reference.and_then(|sample| sample.rss_kib), end.rss_kib) {
        (Some(reference), Some(end)) if reference > 0 => Some(end as f64 / reference as f64),
        _ => None,
    };
    report.add(
        "hub_rss_ratio",
        "hub RSS end / reference",
        ratio.map_or(Figure::Text("-".into()), Figure::Ratio),
    );
    let verdict = match ratio {
        Some(ratio) if (ratio - 1.0).abs() * 100.0 <= args.rss_tolerance => {
            format!("pass (within {} %)", args.rss_tolerance)
        }
        Some(_) => format!("FAIL (more than {} % from the reference)", args.rss_tolerance),
        None if reference.is_none() => "unknown: the churn ended before the reference".into(),
        None => "unknown: no RSS (give --hub-pid)".into(),
    };
    report.add("hub_rss_flat", "hub RSS flat", Figure::Text(verdict));
    // History is memory the hub keeps on purpose: a growing one explains a growing RSS.
    report.add(
        "hub_history_reference",
        "hub history (updates) at the reference",
        count(reference.and_then(|sample| sample.history)),
    );
    report.add(
        "hub_history_end",
        "hub history (updates) at the end of the churn",
        count(end.history),
    );

    // Open files and tasks: after settling against before anything opened.
    let leaked = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) => Figure::Count(after.saturating_sub(before)),
        _ => Figure::Text("-".into()),
    };
    report.add("hub_fds_baseline", "hub open files before", count(baseline.fds));
    report.add("hub_fds_end", "hub open files at the end of the churn", count(end.fds));
    report.add("hub_fds_after_settle", "hub open files after settling", count(after.fds));
    report.add("hub_fds_leaked", "hub open files leaked", leaked(baseline.fds, after.fds));
    report.add("hub_tasks_baseline", "hub tasks before", count(baseline.tasks));
    report.add("hub_tasks_end", "hub tasks at the end of the churn", count(end.tasks));
    report.add("hub_tasks_after_settle", "hub tasks after settling", count(after.tasks));
    report.add("hub_tasks_leaked", "hub tasks leaked", leaked(baseline.tasks, after.tasks));
    report.add(
        "hub_subscribers_after_settle",
        "hub subscribers connected after settling",
        count(after.connected),
    );
    report.add("settle_seconds", "settling took", Figure::Seconds(Some(settle_seconds)));
    report.add("samples", "hub samples", Figure::Count(samples.len() as u64));

    report.series = series(&samples);
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}

/// Whether the hub is back to its baseline of open files and tasks (what is unknown counts as
/// back: there is nothing to wait for).
fn settled(baseline: &HubSample, now: &HubSample) -> bool {
    let back = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) => after <= before,
        _ => true,
    };
    back(baseline.fds, now.fds) && back(baseline.tasks, now.tasks)
}

/// The samples as plot series: RSS in MiB, and the counts on a panel of their own.
fn series(samples: &[HubSample]) -> Vec<Series> {
    let make = |name: &str, unit: &str, value: &dyn Fn(&HubSample) -> Option<f64>| Series {
        name: name.into(),
        unit: unit.into(),
        points: samples
            .iter()
            .filter_map(|sample| value(sample).map(|value| (sample.at, value)))
            .collect(),
    };
    let all = [
        make("hub RSS", "MiB", &|sample| sample.rss_kib.map(|kib| kib as f64 / 1024.0)),
        make("hub open files", "count", &|sample| sample.fds.map(|fds| fds as f64)),
        make("hub tasks", "count", &|sample| sample.tasks.map(|tasks| tasks as f64)),
        make("hub subscribers connected", "count", &|sample| {
            sample.connected.map(|connected| connected as f64)
        }),
    ];
    all.into_iter().filter(|series| !series.points.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_what_was_acknowledged_while_connected() {
        let log = PublishLog::default();
        // Update i sent at 10 i, acknowledged at 10 i + 5, except 3 (never acknowledged).
        for seq in 0..10u64 {
            let acked_ns = if seq == 3 { 0 } else { seq * 10 + 5 };
            log.lock().push(Sent { sent_ns: seq * 10, acked_ns });
        }
        // Connected from 15 to 75: updates 2..=7 are sent and acknowledged in the window, 3
        // never acknowledged, 7 acknowledged at 75 (still in).
        let all = |_: u64| true;
        assert_eq!(log.window(15, 75, all, &[2, 4, 5, 6, 7]), (5, 5));
        assert_eq!(log.window(15, 75, all, &[2, 7]), (5, 2));
        // Acknowledged at 75, after a window ending at 74: not due.
        assert_eq!(log.window(15, 74, all, &[]), (4, 0));
        // Only the even topic of two.
        assert_eq!(log.window(15, 75, |seq| seq % 2 == 0, &[2, 4, 6]), (3, 3));
        assert_eq!(log.window(200, 300, all, &[]), (0, 0));
        assert_eq!(log.acked().iter().filter(|acked| **acked).count(), 9);
    }

    #[test]
    fn settled_when_back_to_the_baseline_or_unknown() {
        let baseline = HubSample { fds: Some(20), tasks: Some(10), ..HubSample::default() };
        let back = HubSample { fds: Some(20), tasks: Some(9), ..HubSample::default() };
        let busy = HubSample { fds: Some(25), tasks: Some(10), ..HubSample::default() };
        assert!(settled(&baseline, &back));
        assert!(!settled(&baseline, &busy));
        assert!(settled(&baseline, &HubSample::default()));
    }

    #[test]
    fn series_leave_out_what_was_never_read() {
        let samples = [
            HubSample { at: 0.0, rss_kib: Some(2048), fds: Some(12), ..HubSample::default() },
            HubSample { at: 5.0, rss_kib: Some(3072), fds: Some(40), ..HubSample::default() },
        ];
        let series = series(&samples);
        let names: Vec<&str> = series.iter().map(|series| series.name.as_str()).collect();
        assert_eq!(names, ["hub RSS", "hub open files"]);
        assert_eq!(series[0].points, [(0.0, 2.0), (5.0, 3.0)]);
        assert_eq!(series[0].unit, "MiB");
    }
}
