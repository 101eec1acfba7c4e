//! `topics`: N subscribers on N distinct topics (or URI templates, or URL Patterns), M updates to
//! random ones.
//!
//! Measures the hub's matching of updates to subscribers when every subscriber wants something
//! different, and checks each subscriber received exactly the updates sent to its topic. URI
//! templates (draft-07 `topic=`) and URL Patterns (Mercure 1.0 `match_urlpattern=`) match the
//! same topics, so the two runs measure the two matchers on the same work. See
//! [`crate::cli::Scenario::Topics`].

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::cli::TopicsArgs;
use crate::context::{Ctx, SubscriberAuth};
use crate::fleet::{Expected, SubSpec};
use crate::http::Selector;
use crate::publisher::PublishPlan;
use crate::report::{Report, Uses};

use super::pubsub::{self, Plan};

/// Topic (or template prefix) of subscriber `index`.
pub fn topic(index: u64) -> String {
    format!("https://example.com/t/{index}")
}

/// How subscriber `index` selects its updates.
fn selector(index: u64, args: &TopicsArgs) -> Selector {
    let base = topic(index);
    if args.templates {
        Selector::Topic(format!("{base}/{{x}}"))
    } else if args.urlpatterns {
        Selector::UrlPattern(format!("{base}/:x"))
    } else {
        Selector::Topic(base)
    }
}

/// For each update, the subscriber it goes to, drawn uniformly with `seed`.
pub fn targets(subscribers: u64, updates: u64, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..updates).map(|_| rng.random_range(0..subscribers)).collect()
}

/// Runs the scenario.
pub async fn run(ctx: &Arc<Ctx>, args: &TopicsArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.subscribers > 0, "topics needs at least one subscriber");
    // Found here rather than as N refused subscriptions (400 for mixing protocols).
    anyhow::ensure!(
        !(args.urlpatterns && matches!(ctx.subscriber_auth(), SubscriberAuth::Minted(_))),
        "--urlpatterns subscribes with Mercure 1.0, and the hub refuses the draft-07 token minted \
         from --key there: give --anonymous (the hub allowing anonymous subscribers, e.g. \
         MERCURE_ANONYMOUS=1) or a Mercure 1.0 --subscriber-token"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let report = Report::new(
        ctx,
        "topics",
        Uses::Both,
        json!({
            "subscribers": args.subscribers,
            "updates": args.updates,
            "templates": args.templates,
            "urlpatterns": args.urlpatterns,
            "anonymous": matches!(ctx.subscriber_auth(), SubscriberAuth::Anonymous),
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
        .map(|(index, seqs)| SubSpec {
            topics: vec![selector(index as u64, args)],
            last_event_id: None,
            expected: Expected::List(seqs),
        })
        .collect();
    // Templates and URL Patterns both take one more path segment.
    let deeper = args.templates || args.urlpatterns;
    let plan = Plan {
        subscribers: specs,
        publish: PublishPlan {
            total: args.updates,
            publishers: args.publishers,
            rate: args.rate,
            payload: args.payload,
            topic: Arc::new(move |seq| {
                let base = topic(targets[seq as usize]);
                if deeper {
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

    #[test]
    fn selectors_of_each_kind() {
        let args = |extra: &[&str]| {
            let cli = crate::cli::Cli::try_parse_checked([&["loadtest", "topics"], extra].concat())
                .expect("valid command line");
            match cli.scenario {
                crate::cli::Scenario::Topics(args) => args,
                other => panic!("parsed as {other:?}"),
            }
        };
        assert_eq!(selector(4, &args(&[])), Selector::Topic("https://example.com/t/4".into()));
        assert_eq!(
            selector(4, &args(&["--templates"])),
            Selector::Topic("https://example.com/t/4/{x}".into())
        );
        assert_eq!(
            selector(4, &args(&["--urlpatterns"])),
            Selector::UrlPattern("https://example.com/t/4/:x".into())
        );
        let both = ["loadtest", "topics", "--templates", "--urlpatterns"];
        let error = crate::cli::Cli::try_parse_checked(both).expect_err("refused");
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict, "{error}");
    }
}
