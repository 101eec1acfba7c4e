//! `fanout`: N subscribers on one topic, M updates to it.
//!
//! Measures how fast and how faithfully the hub copies one stream of updates to many
//! subscribers. See [`crate::cli::Scenario::Fanout`].

use std::sync::Arc;

use serde_json::json;

use crate::cli::FanoutArgs;
use crate::context::Ctx;
use crate::fleet::{Expected, SubSpec};
use crate::http::Selector;
use crate::publisher::PublishPlan;
use crate::report::{Report, Uses};

use super::pubsub::{self, Plan};

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &FanoutArgs) -> anyhow::Result<Report> {
    let report = Report::new(
        ctx,
        "fanout",
        Uses::Both,
        json!({
            "subscribers": args.subscribers,
            "updates": args.updates,
            "rate": pubsub::rate_json(args.rate),
            "payload": args.payload,
            "topic": args.topic,
            "publishers": args.publishers,
            "drain_seconds": args.drain.as_secs_f64(),
        }),
    );
    let spec = SubSpec {
        topics: vec![Selector::Topic(args.topic.clone())],
        last_event_id: None,
        expected: Expected::Range { start: 0, end: args.updates },
    };
    let topic = args.topic.clone();
    let plan = Plan {
        subscribers: vec![spec; args.subscribers as usize],
        publish: PublishPlan {
            total: args.updates,
            publishers: args.publishers,
            rate: args.rate,
            payload: args.payload,
            topic: Arc::new(move |_| topic.clone()),
            keep_ids: false,
        },
        drain: args.drain,
    };
    pubsub::run(ctx, plan, report).await
}
