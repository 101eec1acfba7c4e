//! End to end: a subscriber that stops reading is cut off without slowing anyone else, and
//! shutdown drains streams.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opens a raw subscription, reads the response head, and then stops reading. Its receive
/// buffer is made small so that the hub's side fills quickly.
async fn stalled_reader(hub: &TestHub, topic: &str) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    socket.connect(&hub.addr.into()).expect("connect");
    socket.set_nonblocking(true).expect("non-blocking");
    let mut stream = TcpStream::from_std(socket.into()).expect("tokio stream");
    let request = format!(
        "GET /.well-known/mercure?topic={} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        urlencode(topic),
        hub.addr,
        subscriber()
    );
    stream.write_all(request.as_bytes()).await.expect("send request");
    let mut head = Vec::new();
    while !head.ends_with(b":\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    stream
}

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
    let mut stalled = stalled_reader(&hub, topic).await;
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
