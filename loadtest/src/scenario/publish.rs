//! `publish`: P concurrent keep-alive publishers, M publications, nobody subscribed.
//!
//! Measures the hub's publish path alone: authorization, storage and (empty) dispatch. See
//! [`crate::cli::Scenario::Publish`].

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::cli::PublishArgs;
use crate::context::{Ctx, ProcessWatch};
use crate::progress::Progress;
use crate::publisher::{PublishPlan, Publishers};
use crate::report::{Figure, Report, Uses};
use crate::stats;

use super::POLL;

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &PublishArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        ctx,
        "publish",
        Uses::Publish,
        json!({
            "publishers": args.publishers,
            "requests": args.requests,
            "payload": args.payload,
            "topic": args.topic,
        }),
    );
    let watch = ProcessWatch::start(ctx);
    let topic = args.topic.clone();
    let publishers = Publishers::spawn(
        ctx,
        PublishPlan {
            total: args.requests,
            publishers: args.publishers,
            rate: None,
            payload: args.payload,
            topic: Arc::new(move |_| topic.clone()),
            keep_ids: false,
        },
    )?;
    let bar = Progress::new(ctx.progress, "publishing", args.requests);
    while !publishers.finished() && !ctx.stopped() {
        bar.set(publishers.answered(), String::new());
        tokio::time::sleep(POLL).await;
    }
    bar.finish();
    let usage = watch.finish(ctx);
    let published = publishers.join().await;

    report.add(
        "requests_ok",
        "requests answered 200",
        Figure::OutOf { got: published.ok, of: args.requests },
    );
    report.add("requests_failed", "requests failed", Figure::Count(published.failed));
    report.add(
        "requests_per_second",
        "req/s",
        Figure::Rate(stats::per_second(published.ok, published.seconds)),
    );
    report.add(
        "first_request_to_last_answer_seconds",
        "first request to last answer",
        Figure::Seconds(Some(published.seconds)),
    );
    report.add_latency("publish_latency", "publish latency", published.latency);
    report.finish(ctx, started.elapsed().as_secs_f64(), usage);
    Ok(report)
}
