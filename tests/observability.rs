//! End to end: Prometheus metrics on the hub's listener.

mod common;

use std::time::Duration;

use common::*;

async fn metrics(hub: &TestHub) -> String {
    let response = client().get(hub.at("/metrics")).send().await.expect("metrics request");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    response.text().await.expect("metrics body")
}

/// The value of the sample line that starts with `name` (with its labels) followed by a space.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?.strip_prefix(' ')?.split(' ').next()?.parse().ok()
    })
}

#[tokio::test]
async fn metrics_follow_subscribers_updates_and_responses() {
    let hub = TestHub::start(&[("MERCURE_HISTORY_SIZE", "2")]);
    let text = metrics(&hub).await;
    // OpenMetrics names counter families without their `_total` sample suffix.
    for name in [
        "mercure_subscribers_connected",
        "mercure_subscribers",
        "mercure_updates",
        "mercure_updates_failed",
        "mercure_updates_dispatched",
        "mercure_subscribers_dropped",
        "mercure_publish_duration_seconds",
        "mercure_history_updates",
    ] {
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
    }
    assert_eq!(sample(&text, "mercure_subscribers_connected"), Some(0.0));

    let first = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    let mut second = Events::open(&hub, "topic=*", Some(&subscriber())).await;
    for _ in 0..3 {
        assert_eq!(publish(&hub, &[("topic", "a")]).await.0, 200);
    }
    assert_eq!(publish(&hub, &[("data", "no topic")]).await.0, 400);
    for _ in 0..3 {
        second.next().await;
    }
    let text = metrics(&hub).await;
    assert_eq!(sample(&text, "mercure_subscribers_connected"), Some(2.0));
    assert_eq!(sample(&text, "mercure_subscribers_total"), Some(2.0));
    assert_eq!(sample(&text, "mercure_updates_total"), Some(3.0));
    assert_eq!(sample(&text, "mercure_updates_dispatched_total"), Some(6.0), "3 updates x 2");
    assert_eq!(sample(&text, "mercure_publish_duration_seconds_count"), Some(3.0));
    assert_eq!(sample(&text, "mercure_history_updates"), Some(2.0), "history_size = 2");
    assert_eq!(sample(&text, "mercure_http_responses_total{status=\"400\"}"), Some(1.0));
    assert!(sample(&text, "mercure_http_responses_total{status=\"200\"}") >= Some(5.0));
    assert_eq!(
        sample(&text, "mercure_subscribers_dropped_total{reason=\"queue_full\"}"),
        Some(0.0)
    );

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(&hub).await;
        if sample(&text, "mercure_subscribers_connected") == Some(1.0) {
            assert_eq!(sample(&text, "mercure_subscribers_total"), Some(2.0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the gauge follows disconnections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
