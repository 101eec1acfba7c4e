//! End to end: a subscriber that stops reading is cut off without slowing anyone else, and
//! shutdown drains streams.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_cut_off_and_nobody_else_waits() {
    let hub =
        TestHub::start(&[("MERCURE_DISPATCH_TIMEOUT", "500ms"), ("MERCURE_SUBSCRIPTIONS", "1")]);
    let topic = "https://e.com/firehose";
    let mut healthy = Events::open(&hub, &topics_query(&[topic]), Some(&subscriber())).await;
    // 64 KiB updates: a stalled reader's buffers fill after a few dozen.
    let data = "x".repeat(64 * 1024);
    let round_trip = |id: String| {
        let data = &data;
        let hub = &hub;
        async move {
            let sent = Instant::now();
            let (status, _) = publish(hub, &[("topic", topic), ("id", &id), ("data", data)]).await;
            (status, sent)
        }
    };
    // Baseline, for the figures printed below (timing is reported, not asserted: this machine
    // is shared).
    let mut baseline = Vec::new();
    for i in 0..50 {
        let (status, sent) = round_trip(format!("b{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(healthy.next().await.id, format!("b{i}"));
        baseline.push(sent.elapsed());
    }
    let query = format!("topic={}", urlencode(topic));
    let mut stalled = stalled_reader(hub.addr, &query, Some(&subscriber()), &[]).await;
    let api = token(serde_json::json!({ "subscribe": ["*"] }));
    let listed = || async {
        let response = client()
            .get(hub.at("/.well-known/mercure/subscriptions"))
            .bearer_auth(&api)
            .send()
            .await
            .expect("api");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("json");
        body["subscriptions"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(listed().await, 2);

    let mut latencies = Vec::new();
    for i in 0..300 {
        let (status, sent) = round_trip(format!("u{i}")).await;
        assert_eq!(status, 200, "publishing never fails or blocks because of a stalled reader");
        let event = healthy.next().await;
        assert_eq!(event.id, format!("u{i}"), "the healthy subscriber gets everything, in order");
        latencies.push(sent.elapsed());
    }
    baseline.sort();
    latencies.sort();
    eprintln!(
        "healthy subscriber, publish-to-receive of 64 KiB updates: alone p50 {:?} max {:?}; \
         next to a stalled reader p50 {:?} max {:?}",
        baseline[baseline.len() / 2],
        baseline[baseline.len() - 1],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );

    // The stalled subscriber was cut off: only the healthy one is listed. Its connection ends
    // `dispatch_timeout` after its socket last accepted data, whatever the speed of this build,
    // so wait generously rather than for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(60);
    while listed().await != 1 {
        assert!(Instant::now() < deadline, "the stalled subscriber is still registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let metrics = client().get(hub.at("/metrics")).send().await.expect("metrics");
    let metrics = metrics.text().await.expect("metrics body");
    assert!(
        metrics.contains("mercure_subscribers_dropped_total{reason=\"dispatch_timeout\"} 1"),
        "{metrics}"
    );

    // And the hub reset its connection, discarding what it could not send: reading now ends in
    // a reset, not in the clean end of a stream that was merely closed.
    let mut buffer = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) => return "eof",
                Ok(_) => continue,
                Err(_) => return "reset",
            }
        }
    })
    .await
    .expect("the stalled connection ends");
    assert_eq!(ended, "reset");
}

#[tokio::test]
async fn a_subscriber_that_reads_slowly_but_steadily_is_kept() {
    let hub = TestHub::start(&[("MERCURE_DISPATCH_TIMEOUT", "300ms")]);
    let mut slow = Events::open(&hub, "topic=t", Some(&subscriber())).await;
    for i in 0..20 {
        publish(&hub, &[("topic", "t"), ("id", &format!("s{i}"))]).await;
    }
    for i in 0..20 {
        assert_eq!(slow.next().await.id, format!("s{i}"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Still connected: a new update arrives.
    publish(&hub, &[("topic", "t"), ("id", "last")]).await;
    assert_eq!(slow.next().await.id, "last");
}
