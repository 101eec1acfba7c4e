//! `topics`: N subscribers on N distinct topics (or URI templates), M updates to random ones.
//!
//! Measures the hub's matching of updates to subscribers when every subscriber wants something
//! different, and checks each subscriber received exactly the updates sent to its topic. See
//! [`crate::cli::Scenario::Topics`].

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cli::TopicsArgs;
use crate::context::Ctx;
use crate::fleet::{Expected, SubSpec};
use crate::publisher::PublishPlan;
use crate::report::{Report, Uses};

use super::pubsub::{self, Plan};

/// Topic (or template prefix) of subscriber `index`.
pub fn topic(index: u64) -> String {
    format!("https://example.com/t/{index}")
}

/// For each update, the subscriber it goes to, drawn uniformly with `seed`.
pub fn targets(subscribers: u64, updates: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..updates).map(|_| rng.random_range(0..subscribers)).collect()
}

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &TopicsArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.subscribers > 0, "topics needs at least one subscriber");
    let seed = args.seed.unwrap_or_else(rand::random);
    let report = Report::new(
        ctx,
        "topics",
        Uses::Both,
        json!({
            "subscribers": args.subscribers,
            "updates": args.updates,
            "templates": args.templates,
            "rate": pubsub::rate_json(args.rate),
            "payload": args.payload,
            "publishers": args.publishers,
            "seed": seed,
            "drain_seconds": args.drain.as_secs_f64(),
        }),
    );
    let subscribers = u64::from(args.subscribers);
    let targets = Arc::new(targets(subscribers, args.updates, seed));
    let mut expected = vec![Vec::new(); subscribers as usize];
    for (seq, &target) in targets.iter().enumerate() {
        expected[target as usize].push(seq as u64);
    }
    let specs = expected
        .into_iter()
        .enumerate()
        .map(|(index, seqs)| {
            let base = topic(index as u64);
            SubSpec {
                topics: vec![if args.templates { format!("{base}/{{x}}") } else { base }],
                last_event_id: None,
                expected: Expected::List(seqs),
            }
        })
        .collect();
    let templates = args.templates;
    let plan = Plan {
        subscribers: specs,
        publish: PublishPlan {
            total: args.updates,
            publishers: args.publishers,
            rate: args.rate,
            payload: args.payload,
            topic: Arc::new(move |seq| {
                let base = topic(targets[seq as usize]);
                if templates {
                    format!("{base}/{seq}")
                } else {
                    base
                }
            }),
            keep_ids: false,
        },
        drain: args.drain,
    };
    pubsub::run(ctx, plan, report).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_reproducible_and_in_range() {
        let first = targets(10, 1000, 7);
        assert_eq!(first, targets(10, 1000, 7));
        assert_ne!(first, targets(10, 1000, 8));
        assert!(first.iter().all(|&target| target < 10));
        // Every subscriber is hit with 1000 draws over 10.
        assert!((0..10).all(|index| first.contains(&index)));
    }
}
