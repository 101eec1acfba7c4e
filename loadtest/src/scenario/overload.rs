//! `overload`: publishers offer more than the hub can take while subscribers stay connected. See
//! [`crate::cli::Scenario::Overload`].
//!
//! Four phases share one sequence of updates and one set of subscribers: calibration (as fast as
//! the hub answers, which is the sustainable rate), baseline (a low probe rate), overload (a
//! multiple of the sustainable rate) and recovery (the probe rate again). A hub that applies
//! backpressure answers more slowly or refuses (503, 429) during the overload, keeps delivering to
//! its subscribers, and is back to its baseline latencies soon after.
//!
//! Publishing is open-loop at a rate: request `i` of a phase is due at `start + i / rate`, taken
//! by whichever of the phase's connections is free, and its latency is counted from when it was
//! due, so that time spent waiting for a free connection (the hub not answering fast enough)
//! shows, as a user would see it. The latency from the moment it was written is reported too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::OverloadArgs;
use crate::context::{Ctx, ProcessWatch};
use crate::http::{self, HttpError, KeepAlive, Selector};
use crate::hubmetrics::{self, Scraper};
use crate::payload::{self, Stamp};
use crate::progress::Progress;
use crate::report::{Figure, Report, Series, Uses};
use crate::stats::{self, ShardedHistogram, Summary};
use crate::subscriber::SseStream;

use super::{abandoned, event_or_close, pause, POLL};

/// The phases, in order.
const PHASES: [&str; 4] = ["calibration", "baseline", "overload", "recovery"];
const CALIBRATION: usize = 0;
const BASELINE: usize = 1;
const OVERLOAD: usize = 2;
const RECOVERY: usize = 3;
/// Connections of the probe phases (baseline, recovery): a few, so that a slow answer does not
/// hold back the next probe.
const PROBE_CONNECTIONS: u32 = 4;
/// Latency shards of the subscribers.
const LATENCY_SHARDS: usize = 32;
/// How often the hub's RSS is read during the overload.
const RSS_EVERY: Duration = Duration::from_secs(1);
/// A recovery latency this much above the baseline's is recovered whatever the multiple says:
/// at sub-millisecond baselines, a multiple alone would call scheduling noise a failure.
const RECOVERY_SLACK_MS: f64 = 5.0;

/// How one phase publishes.
#[derive(Debug, Clone, Copy)]
struct PhasePlan {
    index: usize,
    /// Requests per second, or as fast as answered.
    rate: Option<f64>,
    duration: Duration,
    connections: u32,
    /// Whether to keep per-second latencies (recovery).
    per_second: bool,
}

/// What the publishers of one phase did.
#[derive(Debug)]
struct PhaseTally {
    /// Requests due by the end of the phase (with a rate).
    due: u64,
    /// Requests written.
    sent: u64,
    /// Answers and failures by kind: `200`, `503`, `429`, `HTTP 500`, `timeout while ...`.
    outcomes: BTreeMap<String, u64>,
    /// From when each request was due (or written, without a rate) to its answer.
    latency: Histogram<u64>,
    /// From when each request was written to its answer.
    service: Histogram<u64>,
    /// Latency from due time, by second of the phase (only with `per_second`).
    by_second: Vec<Histogram<u64>>,
    /// Wall time from the phase's start to its last answer.
    seconds: f64,
}

impl PhaseTally {
    fn new() -> Self {
        PhaseTally {
            due: 0,
            sent: 0,
            outcomes: BTreeMap::new(),
            latency: stats::histogram(),
            service: stats::histogram(),
            by_second: Vec::new(),
            seconds: 0.0,
        }
    }

    fn ok(&self) -> u64 {
        self.outcomes.get("200").copied().unwrap_or(0)
    }

    fn count(&self, key: &str) -> u64 {
        self.outcomes.get(key).copied().unwrap_or(0)
    }

    /// Adds what one connection did.
    fn merge(&mut self, other: PhaseTally) {
        self.sent += other.sent;
        for (kind, count) in other.outcomes {
            *self.outcomes.entry(kind).or_default() += count;
        }
        // Same bounds on both sides, so adding cannot fail.
        self.latency.add(&other.latency).expect("histograms with the same bounds");
        self.service.add(&other.service).expect("histograms with the same bounds");
        if self.by_second.len() < other.by_second.len() {
            self.by_second.resize_with(other.by_second.len(), stats::histogram);
        }
        for (mine, theirs) in self.by_second.iter_mut().zip(&other.by_second) {
            mine.add(theirs).expect("histograms with the same bounds");
        }
    }
}

/// Counters the subscribers share.
#[derive(Debug)]
struct SubShared {
    connected: AtomicU64,
    failed: AtomicU64,
    closed_early: AtomicU64,
    /// First sequence number of each phase (`u64::MAX`: not started).
    phase_starts: [AtomicU64; 4],
    /// Unique deliveries by phase.
    delivered: [AtomicU64; 4],
    duplicates: AtomicU64,
    /// Delivery latency by phase.
    latency: [ShardedHistogram; 4],
    /// Send time (Unix ns) of the recovery's start, and its delivery latency by second.
    recovery_start_ns: AtomicU64,
    recovery_by_second: Mutex<Vec<Histogram<u64>>>,
}

impl SubShared {
    /// Nothing counted yet, no phase started, latency histograms of `latency_shards` shards,
    /// and `recovery_seconds` one-second histograms for the recovery.
    fn new(latency_shards: usize, recovery_seconds: usize) -> Self {
        Self {
            connected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
            phase_starts: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            delivered: std::array::from_fn(|_| AtomicU64::new(0)),
            duplicates: AtomicU64::new(0),
            latency: std::array::from_fn(|_| ShardedHistogram::new(latency_shards)),
            recovery_start_ns: AtomicU64::new(u64::MAX),
            recovery_by_second: Mutex::new(vec![stats::histogram(); recovery_seconds]),
        }
    }

    /// The phase that published `seq`.
    fn phase_of(&self, seq: u64) -> usize {
        (0..PHASES.len())
            .rev()
            .find(|&phase| self.phase_starts[phase].load(Ordering::Acquire) <= seq)
            .unwrap_or(CALIBRATION)
    }
}

/// One subscriber: reads until `stop`, counting per phase.
async fn subscribe(
    ctx: Arc<Ctx>,
    shared: Arc<SubShared>,
    token: Option<Arc<str>>,
    topic: String,
    index: usize,
    stop: CancellationToken,
) {
    let endpoint = &ctx.subscribe[index % ctx.subscribe.len()];
    let selectors = [Selector::Topic(topic)];
    let permit = tokio::select! {
        () = stop.cancelled() => None,
        permit = ctx.connect_slots.acquire() => permit.ok(),
    };
    let opening = SseStream::open(
        &endpoint.connector,
        &endpoint.target,
        token.as_deref(),
        &selectors,
        None,
        ctx.timeout,
    );
    let opened = tokio::select! {
        () = stop.cancelled() => None,
        opened = opening => Some(opened),
    };
    drop(permit);
    let mut stream = match opened {
        Some(Ok(opened)) => opened.stream,
        Some(Err(error)) => {
            ctx.errors.add(format!("subscribe: {}", error.kind()));
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        None => {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    // Seen sequence numbers, as bits: grows with the run, one bit per update.
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let event = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = stream.next_event() => event,
        };
        let Some(event) = event_or_close(&ctx, &shared.closed_early, event) else { break };
        let received_ns = payload::now_ns();
        let Some(stamp) = payload::decode(&event.data).filter(|stamp| stamp.run == ctx.run_id)
        else {
            continue;
        };
        let (word, bit) = ((stamp.seq / 64) as usize, 1u64 << (stamp.seq % 64));
        if seen.len() <= word {
            seen.resize(word + 1, 0);
        }
        if seen[word] & bit != 0 {
            shared.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        seen[word] |= bit;
        let phase = shared.phase_of(stamp.seq);
        shared.delivered[phase].fetch_add(1, Ordering::Relaxed);
        let micros = received_ns.saturating_sub(stamp.sent_ns) / 1000;
        shared.latency[phase].record_micros(index, micros);
        if phase == RECOVERY {
            let start = shared.recovery_start_ns.load(Ordering::Relaxed);
            let second = (stamp.sent_ns.saturating_sub(start) / 1_000_000_000) as usize;
            let mut windows =
                shared.recovery_by_second.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(window) = windows.get_mut(second) {
                stats::record_micros(window, micros);
            }
        }
    }
}

/// Runs one publishing phase to its end (and the answers of its last requests).
async fn publish_phase(
    ctx: &Arc<Ctx>,
    plan: PhasePlan,
    next_seq: &Arc<AtomicU64>,
    shared: &Arc<SubShared>,
    args: &OverloadArgs,
    on_tick: impl Fn(u64),
) -> PhaseTally {
    let token: Arc<str> = match ctx.publisher_token() {
        Ok(token) => Arc::from(token),
        Err(error) => {
            ctx.errors.add(format!("publish: {error}"));
            return PhaseTally::new();
        }
    };
    shared.phase_starts[plan.index].store(next_seq.load(Ordering::Acquire), Ordering::Release);
    if plan.index == RECOVERY {
        shared.recovery_start_ns.store(payload::now_ns(), Ordering::Relaxed);
    }
    let start = tokio::time::Instant::now();
    let end = start + plan.duration;
    let taken = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..plan.connections)
        .map(|_| {
            let ctx = Arc::clone(ctx);
            let token = Arc::clone(&token);
            let taken = Arc::clone(&taken);
            let next_seq = Arc::clone(next_seq);
            let topic = args.topic.clone();
            let payload_size = args.payload;
            tokio::spawn(async move {
                let mut tally = PhaseTally::new();
                let mut client = KeepAlive::new(ctx.timeout);
                let _ = client.connect(&ctx.publish.connector).await;
                loop {
                    if ctx.stopped() || tokio::time::Instant::now() >= end {
                        break;
                    }
                    let index = taken.fetch_add(1, Ordering::Relaxed);
                    let due = match plan.rate {
                        Some(rate) => start + Duration::from_secs_f64(index as f64 / rate),
                        None => tokio::time::Instant::now(),
                    };
                    if due >= end {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = ctx.stop.cancelled() => break,
                    }
                    let seq = next_seq.fetch_add(1, Ordering::AcqRel);
                    let stamp = Stamp { run: ctx.run_id, seq, sent_ns: payload::now_ns() };
                    let data = payload::encode(stamp, payload_size);
                    let request = http::publish_request(&ctx.publish.target, &token, &topic, &data);
                    let written = tokio::time::Instant::now();
                    tally.sent += 1;
                    let answer = tokio::select! {
                        () = ctx.stop.cancelled() => break,
                        answer = client.send(&ctx.publish.connector, &request) => answer,
                    };
                    let answered = tokio::time::Instant::now();
                    stats::record(&mut tally.latency, answered - due);
                    stats::record(&mut tally.service, answered - written);
                    if plan.per_second {
                        let second = (due - start).as_secs() as usize;
                        if tally.by_second.len() <= second {
                            tally.by_second.resize_with(second + 1, stats::histogram);
                        }
                        stats::record(&mut tally.by_second[second], answered - due);
                    }
                    let kind = match answer {
                        Ok(response) => response.status.to_string(),
                        Err(HttpError::Status(status)) => status.to_string(),
                        Err(error) => error.kind(),
                    };
                    if kind != "200" {
                        ctx.errors.add(format!("publish ({}): {kind}", PHASES[plan.index]));
                    }
                    *tally.outcomes.entry(kind).or_default() += 1;
                }
                tally
            })
        })
        .collect();
    // Progress while the phase runs.
    while tokio::time::Instant::now() < end && !ctx.stopped() {
        on_tick(taken.load(Ordering::Relaxed));
        tokio::time::sleep(POLL * 5).await;
    }
    let mut tally = PhaseTally::new();
    for handle in handles {
        // A task cannot panic by design; should one, its requests are simply not counted.
        if let Ok(one) = handle.await {
            tally.merge(one);
        }
    }
    tally.seconds = start.elapsed().as_secs_f64();
    tally.due = match plan.rate {
        Some(rate) => (rate * plan.duration.as_secs_f64()).ceil() as u64,
        None => tally.sent,
    };
    tally
}

/// Why Quicksilver drops a subscriber, as `mercure_subscribers_dropped_total` labels them.
const DROP_REASONS: [&str; 2] = ["queue_full", "dispatch_timeout"];

/// The hub's own count of the subscribers it dropped, by reason, from its metrics page at the
/// --hub URL's host and port (`None` where the page or the sample is missing).
async fn hub_drops(ctx: &Ctx) -> [Option<f64>; 2] {
    let Ok(url) = hubmetrics::default_url(ctx.publish.target.url.as_str()) else {
        return [None, None];
    };
    let names = DROP_REASONS
        .map(|reason| format!("mercure_subscribers_dropped_total{{reason=\"{reason}\"}}"));
    let names = [names[0].as_str(), names[1].as_str()];
    match Scraper::new(&url, ctx.timeout, ctx.tls.as_ref()).await {
        Ok(mut scraper) => match scraper.scrape(&names).await {
            Ok(values) => [values[0], values[1]],
            Err(_) => [None, None],
        },
        Err(_) => [None, None],
    }
}

/// The p99 of a histogram in milliseconds, if it has values.
fn p99_ms(histogram: &Histogram<u64>) -> Option<f64> {
    (!histogram.is_empty()).then(|| Summary::of(histogram).p99_ms)
}

/// The first second from which every later window is within its bound: publish latency p99 at
/// most `publish_bound` and delivery latency p99 at most `delivery_bound` (ms). A window with no
/// delivery passes only when no subscriber is expected to receive anything.
fn recovered_after(
    publish: &[Option<f64>],
    delivery: &[Option<f64>],
    publish_bound: f64,
    delivery_bound: Option<f64>,
) -> Option<usize> {
    let windows = publish.len();
    let good = |second: usize| {
        let publish_ok = publish[second].is_some_and(|p99| p99 <= publish_bound);
        let delivery_ok = match delivery_bound {
            None => true,
            Some(bound) => delivery.get(second).copied().flatten().is_some_and(|p99| p99 <= bound),
        };
        publish_ok && delivery_ok
    };
    (0..windows).rev().take_while(|&second| good(second)).last()
}

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &OverloadArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        ctx,
        "overload",
        Uses::Both,
        json!({
            "subscribers": args.subscribers,
            "sustainable_rate": args.sustainable_rate,
            "calibrate_seconds": args.calibrate.as_secs_f64(),
            "publishers": args.publishers,
            "factor": args.factor,
            "duration_seconds": args.duration.as_secs_f64(),
            "max_in_flight": args.max_in_flight,
            "probe_rate": args.probe_rate,
            "baseline_seconds": args.baseline.as_secs_f64(),
            "recovery_seconds": args.recovery.as_secs_f64(),
            "recovered_within": args.recovered_within,
            "drain_seconds": args.drain.as_secs_f64(),
            "payload": args.payload,
            "topic": args.topic,
        }),
    );
    let watch = ProcessWatch::start(ctx);
    let recovery_seconds = args.recovery.as_secs().max(1) as usize;
    let shared = Arc::new(SubShared::new(LATENCY_SHARDS, recovery_seconds));
    shared.phase_starts[CALIBRATION].store(0, Ordering::Release);

    // Subscribers, connected before anything is published and until the end.
    let token: Option<Arc<str>> = ctx.subscriber_token()?.map(Arc::from);
    let stop_subscribers = ctx.stop.child_token();
    let subscribers: Vec<_> = (0..args.subscribers as usize)
        .map(|index| {
            tokio::spawn(subscribe(
                Arc::clone(ctx),
                Arc::clone(&shared),
                token.clone(),
                args.topic.clone(),
                index,
                stop_subscribers.clone(),
            ))
        })
        .collect();
    let bar = Progress::new(ctx.progress, "connecting", u64::from(args.subscribers));
    while !ctx.stopped() {
        let settled =
            shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed);
        bar.set(settled, String::new());
        if settled >= u64::from(args.subscribers) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    let connected = shared.connected.load(Ordering::Relaxed);

    let next_seq = Arc::new(AtomicU64::new(0));
    let mut tallies: Vec<PhaseTally> = Vec::new();
    let phase_bar = |title: &str, total: u64| Progress::new(ctx.progress, title, total);

    // Calibration: the sustainable rate, unless given.
    let sustainable = match args.sustainable_rate {
        Some(rate) => {
            tallies.push(PhaseTally::new());
            rate
        }
        None => {
            let plan = PhasePlan {
                index: CALIBRATION,
                rate: None,
                duration: args.calibrate,
                connections: args.publishers,
                per_second: false,
            };
            let bar = phase_bar("calibrating", args.calibrate.as_millis() as u64);
            let since = Instant::now();
            let tally = publish_phase(ctx, plan, &next_seq, &shared, args, |_| {
                bar.set(since.elapsed().as_millis() as u64, String::new());
            })
            .await;
            bar.finish();
            let rate = stats::per_second(tally.ok(), tally.seconds);
            tallies.push(tally);
            rate
        }
    };
    if sustainable <= 0.0 || ctx.stopped() {
        abandoned(&mut report, "no publication succeeded: no sustainable rate to exceed".into());
        stop_subscribers.cancel();
        for handle in subscribers {
            let _ = handle.await;
        }
        report.finish(ctx, started.elapsed().as_secs_f64(), watch.finish(ctx));
        return Ok(report);
    }

    // Baseline, overload, recovery.
    let offered = sustainable * args.factor;
    let phases = [
        (BASELINE, args.probe_rate, args.baseline, PROBE_CONNECTIONS, false),
        (OVERLOAD, offered, args.duration, args.max_in_flight, false),
        (RECOVERY, args.probe_rate, args.recovery, PROBE_CONNECTIONS, true),
    ];
    let mut rss_peak_kib = None;
    for (index, rate, duration, connections, per_second) in phases {
        if ctx.stopped() {
            break;
        }
        let plan = PhasePlan { index, rate: Some(rate), duration, connections, per_second };
        let total = (rate * duration.as_secs_f64()).ceil() as u64;
        let bar = phase_bar(PHASES[index], total);
        let last_rss = Mutex::new(Instant::now());
        let peak = Mutex::new(rss_peak_kib);
        let tally = publish_phase(ctx, plan, &next_seq, &shared, args, |taken| {
            bar.set(taken.min(total), String::new());
            let mut last = last_rss.lock().unwrap_or_else(PoisonError::into_inner);
            if last.elapsed() >= RSS_EVERY {
                *last = Instant::now();
                if let Some(sample) = ctx.sample_hub() {
                    let mut peak = peak.lock().unwrap_or_else(PoisonError::into_inner);
                    *peak = Some(peak.unwrap_or(0).max(sample.rss_kib));
                }
            }
        })
        .await;
        bar.finish();
        rss_peak_kib = peak.into_inner().unwrap_or_else(PoisonError::into_inner);
        tallies.push(tally);
    }
    // Deliveries still on their way.
    let published: u64 = tallies.iter().map(PhaseTally::ok).sum();
    let drain_until = Instant::now() + args.drain;
    while !ctx.stopped() && Instant::now() < drain_until {
        let delivered: u64 =
            shared.delivered.iter().map(|count| count.load(Ordering::Relaxed)).sum();
        let open = connected.saturating_sub(shared.closed_early.load(Ordering::Relaxed));
        if delivered >= published * open {
            break;
        }
        pause(ctx, POLL).await;
    }
    let rss_end = ctx.sample_hub().map(|sample| sample.rss_kib);
    let usage = watch.finish(ctx);
    let dropped = hub_drops(ctx).await;
    stop_subscribers.cancel();
    for handle in subscribers {
        // A task cannot panic by design.
        let _ = handle.await;
    }

    report.add(
        "subscribers_connected",
        "subscribers connected",
        Figure::OutOf { got: connected, of: u64::from(args.subscribers) },
    );
    report.add(
        "sustainable_rate",
        if args.sustainable_rate.is_some() {
            "sustainable rate (given)"
        } else {
            "sustainable rate (measured)"
        },
        Figure::Rate(sustainable),
    );
    report.add("offered_rate", "overload offered rate", Figure::Rate(offered));
    let open = connected.saturating_sub(shared.closed_early.load(Ordering::Relaxed));
    report.add(
        "subscribers_open_at_end",
        "subscribers still connected at the end",
        Figure::OutOf { got: open, of: connected },
    );
    for (index, tally) in tallies.iter().enumerate() {
        let name = PHASES[index];
        if index == CALIBRATION && args.sustainable_rate.is_some() {
            continue;
        }
        let key = |what: &str| format!("{name}_{what}");
        let ok = tally.ok();
        report.add(
            &key("requests_sent"),
            &format!("{name}: requests sent"),
            Figure::Count(tally.sent),
        );
        if index != CALIBRATION {
            report.add(
                &key("requests_not_sent"),
                &format!("{name}: requests due but not sent (all connections busy)"),
                Figure::Count(tally.due.saturating_sub(tally.sent)),
            );
        }
        report.add(&key("answered_200"), &format!("{name}: answered 200"), Figure::Count(ok));
        report.add(
            &key("answered_503"),
            &format!("{name}: answered 503"),
            Figure::Count(tally.count("503")),
        );
        report.add(
            &key("answered_429"),
            &format!("{name}: answered 429"),
            Figure::Count(tally.count("429")),
        );
        let other_status = tally
            .outcomes
            .iter()
            .filter(|(kind, _)| {
                kind.len() == 3
                    && kind.bytes().all(|byte| byte.is_ascii_digit())
                    && !["200", "503", "429"].contains(&kind.as_str())
            })
            .map(|(_, count)| count)
            .sum();
        report.add(
            &key("answered_other"),
            &format!("{name}: answered another status"),
            Figure::Count(other_status),
        );
        let failed: u64 = tally
            .outcomes
            .iter()
            .filter(|(kind, _)| !kind.bytes().all(|byte| byte.is_ascii_digit()))
            .map(|(_, count)| count)
            .sum();
        report.add(&key("errors"), &format!("{name}: errors and timeouts"), Figure::Count(failed));
        report.add(
            &key("ok_per_second"),
            &format!("{name}: answered 200 per second"),
            Figure::Rate(stats::per_second(ok, tally.seconds)),
        );
        report.add_latency(
            &key("publish_latency"),
            &format!("{name}: publish latency (from due)"),
            tally.latency.clone(),
        );
        report.add_latency(
            &key("publish_service"),
            &format!("{name}: publish latency (from sent)"),
            tally.service.clone(),
        );
        let delivered = shared.delivered[index].load(Ordering::Relaxed);
        report.add(
            &key("deliveries"),
            &format!("{name}: deliveries (unique)"),
            // Against every subscriber that connected: one the hub cut loses the rest.
            Figure::OutOf { got: delivered, of: ok * connected },
        );
        report.add_latency(
            &key("delivery_latency"),
            &format!("{name}: delivery latency"),
            shared.latency[index].merged(),
        );
    }
    report.add(
        "duplicates",
        "duplicate deliveries",
        Figure::Count(shared.duplicates.load(Ordering::Relaxed)),
    );
    report.add(
        "streams_closed_early",
        "streams closed by the hub",
        Figure::Count(shared.closed_early.load(Ordering::Relaxed)),
    );
    for (reason, count) in DROP_REASONS.iter().zip(dropped) {
        report.add(
            &format!("hub_dropped_{reason}"),
            &format!("subscribers the hub dropped ({reason})"),
            count.map_or(Figure::Text("-".into()), |count| Figure::Count(count as u64)),
        );
    }
    let kib =
        |value: Option<u64>| value.map_or(Figure::Text("-".into()), |kib| Figure::Kib(kib as f64));
    report.add("hub_rss_peak_kib", "hub RSS peak (sampled each second)", kib(rss_peak_kib));
    report.add("hub_rss_end_kib", "hub RSS at the end", kib(rss_end));

    // Recovery: per second, against the baseline.
    let baseline_publish = tallies.get(BASELINE).and_then(|tally| p99_ms(&tally.latency));
    let baseline_delivery = {
        let merged = shared.latency[BASELINE].merged();
        p99_ms(&merged)
    };
    let bound =
        |baseline: f64| (baseline * args.recovered_within).max(baseline + RECOVERY_SLACK_MS);
    let publish_windows: Vec<Option<f64>> = tallies
        .get(RECOVERY)
        .map(|tally| tally.by_second.iter().map(p99_ms).collect())
        .unwrap_or_default();
    let delivery_windows: Vec<Option<f64>> = shared
        .recovery_by_second
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(p99_ms)
        .collect();
    let recovered = match baseline_publish {
        Some(baseline) if !publish_windows.is_empty() => {
            // With subscribers but none left, delivery never comes back: no bound passes.
            let delivery_bound = match (connected, open) {
                (0, _) => None,
                (_, 0) => Some(-1.0),
                _ => baseline_delivery.map(bound),
            };
            recovered_after(&publish_windows, &delivery_windows, bound(baseline), delivery_bound)
        }
        _ => None,
    };
    report.add(
        "recovered_after_seconds",
        "recovered after (publish and delivery p99 back near the baseline)",
        match recovered {
            Some(second) => Figure::Seconds(Some(second as f64)),
            None => {
                Figure::Text(format!("not within {}", humantime::format_duration(args.recovery)))
            }
        },
    );
    let points = |windows: &[Option<f64>]| {
        windows
            .iter()
            .enumerate()
            .filter_map(|(second, p99)| p99.map(|p99| (second as f64, p99)))
            .collect::<Vec<_>>()
    };
    report.series = vec![
        Series {
            name: "recovery: publish latency p99 by second".into(),
            unit: "ms".into(),
            points: points(&publish_windows),
        },
        Series {
            name: "recovery: delivery latency p99 by second".into(),
            unit: "ms".into(),
            points: points(&delivery_windows),
        },
    ];
    report.series.retain(|series| !series.points.is_empty());
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_the_start_of_the_last_good_stretch() {
        let some = |values: &[f64]| values.iter().map(|value| Some(*value)).collect::<Vec<_>>();
        let publish = some(&[50.0, 20.0, 1.0, 30.0, 1.0, 1.0]);
        let delivery = some(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        assert_eq!(recovered_after(&publish, &delivery, 5.0, Some(5.0)), Some(4));
        // Delivery still slow in second 4.
        let delivery = some(&[1.0, 1.0, 1.0, 1.0, 9.0, 1.0]);
        assert_eq!(recovered_after(&publish, &delivery, 5.0, Some(5.0)), Some(5));
        // Never back.
        assert_eq!(recovered_after(&publish, &delivery, 0.5, Some(5.0)), None);
        // No delivery expected: only publishing counts; an empty window never passes.
        assert_eq!(recovered_after(&publish, &[], 5.0, None), Some(4));
        assert_eq!(recovered_after(&[Some(1.0), None], &[], 5.0, None), None);
    }

    #[test]
    fn deliveries_are_counted_in_the_phase_that_published_them() {
        let shared = SubShared::new(1, 0);
        shared.phase_starts[CALIBRATION].store(0, Ordering::Release);
        shared.phase_starts[BASELINE].store(100, Ordering::Release);
        assert_eq!(shared.phase_of(0), CALIBRATION);
        assert_eq!(shared.phase_of(99), CALIBRATION);
        assert_eq!(shared.phase_of(100), BASELINE);
        // Later phases not started yet: everything after belongs to the baseline.
        assert_eq!(shared.phase_of(5000), BASELINE);
        shared.phase_starts[OVERLOAD].store(150, Ordering::Release);
        shared.phase_starts[RECOVERY].store(900, Ordering::Release);
        assert_eq!(shared.phase_of(150), OVERLOAD);
        assert_eq!(shared.phase_of(5000), RECOVERY);
    }
}
