//! `idle`: N subscriptions held open with nothing published.
//!
//! Measures what a quiet connection costs the hub (memory per connection of the process named
//! `hub`, given by `--hub-pid`) and how fast it accepts many of them. See
//! [`crate::cli::Scenario::Idle`].

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cli::IdleArgs;
use crate::context::{Ctx, ProcessWatch};
use crate::fleet::{Expected, Fleet, SubSpec};
use crate::http::Selector;
use crate::procstat::{self, Pid};
use crate::progress::Progress;
use crate::report::{Figure, Report, Uses};
use crate::stats;

use super::{pause, wait_connected};

/// How long the hub gets to release closed connections before its memory is read again.
const SETTLE_AFTER_CLOSE: Duration = Duration::from_secs(1);

/// How often the hold phase looks at its counters: nothing happens there, so rarely.
const HOLD_POLL: Duration = Duration::from_millis(100);

/// Topic of connection `index`.
fn topic(index: u32) -> String {
    format!("https://example.com/idle/{index}")
}

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &IdleArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        ctx,
        "idle",
        Uses::Subscribe,
        json!({ "connections": args.connections, "hold_seconds": args.hold.as_secs_f64() }),
    );
    let watch = ProcessWatch::start(ctx);
    let hub_before = ctx.sample_hub();
    let client_before = procstat::sample(Pid::Current).ok();

    let specs = (0..args.connections)
        .map(|index| SubSpec {
            topics: vec![Selector::Topic(topic(index))],
            last_event_id: None,
            expected: Expected::NONE,
        })
        .collect();
    let phase = ctx.stop.child_token();
    let fleet = Fleet::spawn(ctx, specs, &phase, true, 0)?;
    let opening = wait_connected(ctx, &fleet, "connecting").await;
    let shared = Arc::clone(&fleet.shared);
    let connected = shared.connected.load(Ordering::Relaxed);

    let hold_until = Instant::now() + args.hold;
    let bar = Progress::new(ctx.progress, "holding", args.hold.as_secs().max(1));
    while Instant::now() < hold_until && !ctx.stopped() {
        let open = connected - shared.closed_early.load(Ordering::Relaxed);
        let held = args.hold.saturating_sub(hold_until.saturating_duration_since(Instant::now()));
        bar.set(held.as_secs(), format!("{open} open"));
        tokio::time::sleep(HOLD_POLL).await;
    }
    bar.finish();
    let closed_during_hold = shared.closed_early.load(Ordering::Relaxed);
    let hub_holding = ctx.sample_hub();
    let client_holding = procstat::sample(Pid::Current).ok();
    let usage = watch.finish(ctx);

    phase.cancel();
    fleet.join().await;
    pause(ctx, SETTLE_AFTER_CLOSE).await;
    let hub_closed = ctx.sample_hub();

    report.add(
        "connections_opened",
        "connections opened",
        Figure::OutOf { got: connected, of: u64::from(args.connections) },
    );
    report.add(
        "connections_failed",
        "connections failed",
        Figure::Count(shared.failed.load(Ordering::Relaxed)),
    );
    report.add("opening_seconds", "time to open all", Figure::Seconds(Some(opening.as_secs_f64())));
    report.add(
        "connections_per_second",
        "connections/s while opening",
        Figure::Rate(stats::per_second(connected, opening.as_secs_f64())),
    );
    let connect = shared.connect.lock().unwrap_or_else(PoisonError::into_inner).clone();
    report.add_latency("connect_time", "connect time", connect);
    report.add(
        "closed_during_hold",
        "closed by the hub during hold",
        Figure::Count(closed_during_hold),
    );
    report.add(
        "open_at_end_of_hold",
        "open at the end of the hold",
        Figure::Count(connected - closed_during_hold),
    );
    let per_connection = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if connected > 0 => {
            Some((after as f64 - before as f64) / connected as f64)
        }
        _ => None,
    };
    if ctx.hub().is_some() {
        let rss = |sample: Option<procstat::Sample>| sample.map(|sample| sample.rss_kib);
        let kib = |value: Option<u64>| {
            value.map_or(Figure::Text("-".into()), |kib| Figure::Kib(kib as f64))
        };
        report.add("hub_rss_before_kib", "hub RSS before", kib(rss(hub_before)));
        report.add("hub_rss_holding_kib", "hub RSS holding", kib(rss(hub_holding)));
        report.add("hub_rss_after_close_kib", "hub RSS after closing", kib(rss(hub_closed)));
        report.add(
            "hub_rss_per_connection_kib",
            "hub RSS per connection",
            per_connection(rss(hub_before), rss(hub_holding))
                .map_or(Figure::Text("-".into()), Figure::Kib),
        );
    }
    let client_rss = |sample: Option<procstat::Sample>| sample.map(|sample| sample.rss_kib);
    report.add(
        "loadtest_rss_per_connection_kib",
        "loadtest RSS per connection",
        per_connection(client_rss(client_before), client_rss(client_holding))
            .map_or(Figure::Text("-".into()), Figure::Kib),
    );
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}
