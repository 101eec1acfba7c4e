//! Subscribers receive what publishers send: the engine of `fanout` and `topics`.
//!
//! Phases: open every subscription (bounded by `--connect-concurrency`); publish the M updates;
//! wait until every subscriber has everything it expects, or `--drain` after the last answer;
//! then close everything and count, per subscriber, what was lost, duplicated or unexpected,
//! against the updates the hub acknowledged.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crate::context::{Ctx, ProcessWatch};
use crate::fleet::{Fleet, SubSpec};
use crate::progress::Progress;
use crate::publisher::{PublishPlan, Publishers};
use crate::report::{Figure, Report};
use crate::stats;

use super::{pause, wait_connected, POLL};

/// Time left for duplicates to show up once every subscriber is complete.
const LINGER: Duration = Duration::from_millis(100);

/// Who subscribes to what, and what is published.
pub struct Plan {
    /// One spec per subscriber.
    pub subscribers: Vec<SubSpec>,
    /// The updates.
    pub publish: PublishPlan,
    /// How long to wait for missing deliveries after the last answer.
    pub drain: Duration,
}

/// Runs the plan and fills `report` with the figures common to `fanout` and `topics`.
pub async fn run(ctx: &Arc<Ctx>, plan: Plan, mut report: Report) -> anyhow::Result<Report> {
    let started = Instant::now();
    let watch = ProcessWatch::start(ctx);
    let requested = plan.subscribers.len() as u64;
    let updates = plan.publish.total;
    let expected_total: u64 = plan.subscribers.iter().map(|spec| spec.expected.len() as u64).sum();

    let phase = ctx.stop.child_token();
    let fleet = Fleet::spawn(ctx, plan.subscribers, &phase, true, 0)?;
    wait_connected(ctx, &fleet, "connecting").await;
    let connected = fleet.shared.connected.load(Ordering::Relaxed);

    let publishers = Publishers::spawn(ctx, plan.publish)?;
    let bar = Progress::new(ctx.progress, "delivering", expected_total);
    let mut drain_until = None;
    while !ctx.stopped() {
        let received = fleet.shared.received.load(Ordering::Relaxed);
        bar.set(received, format!("published {}/{updates}", publishers.answered()));
        if publishers.finished() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + plan.drain);
            if fleet.done() >= connected || Instant::now() >= until {
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    pause(ctx, LINGER).await;
    let usage = watch.finish(ctx);
    phase.cancel();
    let shared = Arc::clone(&fleet.shared);
    let outcomes = fleet.join().await;
    let published = publishers.join().await;

    // Per subscriber, against what the hub acknowledged.
    let acked = |seq: u64| published.acked.get(seq as usize).copied().unwrap_or(false);
    let (mut unique, mut lost, mut duplicates, mut unexpected, mut out_of_order, mut unacked) =
        (0, 0, 0, 0, 0, 0);
    for outcome in &outcomes {
        let (received, missing) = outcome.tracker.tally(acked);
        unique += received;
        lost += missing;
        duplicates += outcome.tracker.duplicates;
        unexpected += outcome.tracker.unexpected;
        out_of_order += outcome.tracker.out_of_order;
        unacked += outcome.tracker.received_unacked(acked);
    }
    let delivery_seconds = published.first_send_ns.and_then(|first| {
        let last = shared.last_delivery_ns.load(Ordering::Relaxed);
        (last > first).then(|| (last - first) as f64 / 1e9)
    });

    report.add(
        "subscribers_connected",
        "subscribers connected",
        Figure::OutOf { got: connected, of: requested },
    );
    report.add(
        "updates_published",
        "updates published (200)",
        Figure::OutOf { got: published.ok, of: updates },
    );
    report.add("publish_failures", "publish failures", Figure::Count(published.failed));
    report.add(
        "publish_requests_per_second",
        "publish req/s",
        Figure::Rate(stats::per_second(published.ok, published.seconds)),
    );
    report.add_latency("publish_latency", "publish latency", published.latency);
    report.add(
        "deliveries",
        "deliveries (unique)",
        Figure::OutOf { got: unique, of: unique + lost },
    );
    report.add(
        "deliveries_per_second",
        "deliveries/s",
        Figure::Rate(delivery_seconds.map_or(0.0, |seconds| stats::per_second(unique, seconds))),
    );
    report.add(
        "first_publish_to_last_delivery_seconds",
        "first publish to last delivery",
        Figure::Seconds(delivery_seconds),
    );
    report.add("lost", "lost deliveries", Figure::Count(lost));
    report.add("duplicates", "duplicate deliveries", Figure::Count(duplicates));
    report.add("unexpected", "unexpected deliveries", Figure::Count(unexpected));
    report.add("out_of_order", "out-of-order deliveries", Figure::Count(out_of_order));
    report.add(
        "delivered_unacknowledged",
        "delivered, publish not acknowledged",
        Figure::Count(unacked),
    );
    report.add(
        "foreign_events",
        "foreign events",
        Figure::Count(shared.foreign.load(Ordering::Relaxed)),
    );
    report.add(
        "streams_closed_early",
        "streams closed early",
        Figure::Count(shared.closed_early.load(Ordering::Relaxed)),
    );
    report.add_latency("delivery_latency", "delivery latency", shared.latency());
    // With several subscribe URLs, each one's share: e.g. the node publications go to beside the
    // others, to compare local and cross-node delivery in the same run.
    if ctx.subscribe.len() > 1 {
        for (hub, endpoint) in ctx.subscribe.iter().enumerate() {
            report.add_latency(
                &format!("delivery_latency_via_{}", hub + 1),
                &format!("delivery latency via {}", endpoint.name()),
                shared.latency_via(hub),
            );
        }
    }
    let connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner).clone();
    report.add_latency("connect_time", "connect time", connect);
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}

/// The rate limit, if any, as JSON.
pub fn rate_json(rate: Option<f64>) -> serde_json::Value {
    rate.map_or(serde_json::Value::Null, serde_json::Value::from)
}
