//! `reconnect`: every subscriber reconnects at once with `Last-Event-ID` and replays history.
//!
//! Phases: publish K updates to a topic of this run (keeping the ids the hub answered); open N
//! subscribers (they see nothing, having no `Last-Event-ID`) and drop them all, as a network cut
//! would; then all N reconnect at the same moment, without any connection limit, each resuming
//! after update K/2 - 1, so each must replay exactly updates K/2 .. K-1. The history goes to the
//! publish URL; with several subscribe URLs each subscriber reconnects to the URL after the one it
//! first used, so every resume happens on another node than the first connection. See
//! [`crate::cli::Scenario::Reconnect`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use serde_json::json;

use crate::cli::ReconnectArgs;
use crate::context::{Ctx, ProcessWatch};
use crate::fleet::{Expected, Fleet, SubSpec};
use crate::http::Selector;
use crate::progress::Progress;
use crate::publisher::{PublishPlan, Publishers};
use crate::report::{Figure, Report, Uses};
use crate::stats;

use super::{abandoned, wait_connected, POLL};

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &ReconnectArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let topic = format!("https://example.com/loadtest/reconnect/{:08x}", ctx.run_id);
    let mut report = Report::new(
        ctx,
        "reconnect",
        Uses::Both,
        json!({
            "subscribers": args.subscribers,
            "history": args.history,
            "payload": args.payload,
            "topic": topic,
            "drain_seconds": args.drain.as_secs_f64(),
        }),
    );
    let watch = ProcessWatch::start(ctx);
    // Checked before publishing anything, so that a missing token fails fast.
    ctx.subscriber_token()?;

    // 1. History.
    let history_topic = topic.clone();
    let publishers = Publishers::spawn(
        ctx,
        PublishPlan {
            total: args.history,
            publishers: 1,
            rate: None,
            payload: args.payload,
            topic: Arc::new(move |_| history_topic.clone()),
            keep_ids: true,
        },
    )?;
    let bar = Progress::new(ctx.progress, "history", args.history);
    while !publishers.finished() && !ctx.stopped() {
        bar.set(publishers.answered(), String::new());
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    let published = publishers.join().await;
    report.add(
        "history_published",
        "history published (200)",
        Figure::OutOf { got: published.ok, of: args.history },
    );
    let resume_from = args.history / 2;
    let resume_id = published.ids.get(resume_from as usize - 1).cloned().flatten();
    let Some(resume_id) = resume_id.filter(|_| !ctx.stopped()) else {
        let reason = format!("update {} (the resume point) was not acknowledged", resume_from - 1);
        abandoned(&mut report, reason);
        report.finish(ctx, started.elapsed().as_secs_f64(), watch.finish(ctx));
        return Ok(report);
    };

    // 2. First connections, then the cut.
    let first = ctx.stop.child_token();
    let spec = SubSpec {
        topics: vec![Selector::Topic(topic.clone())],
        last_event_id: None,
        expected: Expected::NONE,
    };
    let fleet = Fleet::spawn(ctx, vec![spec; args.subscribers as usize], &first, true, 0)?;
    wait_connected(ctx, &fleet, "connecting").await;
    first.cancel();
    let first_shared = Arc::clone(&fleet.shared);
    fleet.join().await;
    let first_connect = first_shared.connect.lock().unwrap_or_else(PoisonError::into_inner).clone();

    // 3. The storm: everyone back at once, resuming in the middle of the history; with several
    // subscribe URLs, each on the URL after the one it first used (a resume on another node).
    let storm = ctx.stop.child_token();
    let spec = SubSpec {
        topics: vec![Selector::Topic(topic)],
        last_event_id: Some(resume_id.clone()),
        expected: Expected::Range { start: resume_from, end: args.history },
    };
    let fleet = Fleet::spawn(ctx, vec![spec; args.subscribers as usize], &storm, false, 1)?;
    let shared = Arc::clone(&fleet.shared);
    let missed = args.history - resume_from;
    let bar = Progress::new(
        ctx.progress,
        "replaying",
        u64::from(args.subscribers).saturating_mul(missed),
    );
    let give_up_at = Instant::now() + ctx.timeout + args.drain;
    while !ctx.stopped() && Instant::now() < give_up_at {
        let settled = fleet.settled() >= fleet.size();
        let connected = shared.connected.load(Ordering::Relaxed);
        if settled && fleet.done() >= connected {
            break;
        }
        let reconnected = format!("{connected}/{} reconnected", fleet.size());
        bar.set(shared.received.load(Ordering::Relaxed), reconnected);
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    let storm_seconds = fleet.started.elapsed().as_secs_f64();
    let storm_start_ns = ctx.now_offset_ns().saturating_sub((storm_seconds * 1e9) as u64);
    let usage = watch.finish(ctx);
    storm.cancel();
    let outcomes = fleet.join().await;

    let acked = |seq: u64| published.acked.get(seq as usize).copied().unwrap_or(false);
    let (mut unique, mut lost, mut duplicates, mut unexpected) = (0, 0, 0, 0);
    for outcome in &outcomes {
        let (received, missing) = outcome.tracker.tally(acked);
        unique += received;
        lost += missing;
        duplicates += outcome.tracker.duplicates;
        unexpected += outcome.tracker.unexpected;
    }
    let connected = shared.connected.load(Ordering::Relaxed);
    let complete = shared.complete.load(Ordering::Relaxed);
    let completion = shared.completion.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let all_done = (complete == u64::from(args.subscribers) && !completion.is_empty())
        .then(|| completion.max() as f64 / 1e6);
    let last_delivery = shared.last_delivery_ns.load(Ordering::Relaxed);
    let replay_seconds =
        (last_delivery > storm_start_ns).then(|| (last_delivery - storm_start_ns) as f64 / 1e9);

    report.add("missed_per_subscriber", "updates missed per subscriber", Figure::Count(missed));
    report.add("resume_id", "resumed after id", Figure::Text(resume_id));
    report.add_latency("initial_connect_time", "first connect time", first_connect);
    report.add(
        "reconnected",
        "reconnected",
        Figure::OutOf { got: connected, of: u64::from(args.subscribers) },
    );
    report.add(
        "complete",
        "got every missed update",
        Figure::OutOf { got: complete, of: u64::from(args.subscribers) },
    );
    report.add(
        "all_reconnected_and_complete_seconds",
        "all reconnected and complete after",
        Figure::Seconds(all_done),
    );
    let connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner).clone();
    report.add_latency("reconnect_latency", "reconnect latency", connect);
    report.add_latency("replay_time", "replay complete after", completion);
    report.add(
        "replayed",
        "replayed deliveries (unique)",
        Figure::OutOf { got: unique, of: unique + lost },
    );
    report.add(
        "replay_deliveries_per_second",
        "replayed deliveries/s",
        Figure::Rate(replay_seconds.map_or(0.0, |seconds| stats::per_second(unique, seconds))),
    );
    report.add("lost", "lost updates", Figure::Count(lost));
    report.add("duplicates", "duplicate updates", Figure::Count(duplicates));
    report.add("unexpected", "updates outside the missed range", Figure::Count(unexpected));
    report.add(
        "last_event_id_mismatch",
        "Last-Event-ID header differs",
        Figure::Count(shared.last_event_id_mismatch.load(Ordering::Relaxed)),
    );
    report.add(
        "streams_closed_early",
        "streams closed early",
        Figure::Count(shared.closed_early.load(Ordering::Relaxed)),
    );
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}
