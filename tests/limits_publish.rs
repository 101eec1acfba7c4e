//! Request limits of issue 7, each attack performed against a real hub: topics per update
//! (`max_topics_per_update`), form fields per body or query string (`max_form_fields`) and the
//! time a publisher may take to send its body (`body_read_timeout`).
//!
//! Each limit answers a 4xx whose body names the setting, and the defaults let the largest
//! request a client of the reference hub may send (1,000 topics) through.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound for anything that should take well under a second.
const PATIENCE: Duration = Duration::from_secs(20);

/// A form body of `count` topics `t0`, `t1`, …
fn topics_body(count: usize) -> String {
    (0..count).map(|i| format!("topic=t{i}")).collect::<Vec<_>>().join("&")
}

/// Posts a raw body with the all-topics publisher token; returns status and body.
async fn post(hub: &TestHub, query: &str, body: String) -> (u16, String) {
    let url = if query.is_empty() { hub.url.clone() } else { format!("{}?{query}", hub.url) };
    let response = client()
        .post(url)
        .bearer_auth(publisher())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("publish request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("publish body"))
}

#[tokio::test]
async fn too_many_topics_get_413_naming_the_setting() {
    let hub = TestHub::start(&[]);
    let mut events = Events::open(&hub, "topic=*", Some(&subscriber())).await;

    // The review's attack: 80,000 topics in one update of under 1 MiB. It stops at the field
    // limit, before any topic is even decoded.
    let body = topics_body(80_000);
    assert!(body.len() < 1 << 20, "the attack fits the body limit: {} bytes", body.len());
    let (status, text) = post(&hub, "", body).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("max_form_fields"), "{text}");

    // Just over the topic limit, well under the field limit.
    for count in [1_001, 2_000] {
        let (status, text) = post(&hub, "", topics_body(count)).await;
        assert_eq!(status, 413, "{count} topics: {text}");
        assert!(text.contains("max_topics_per_update"), "{count} topics: {text}");
    }
    events.assert_silent(Duration::from_millis(200)).await;

    // Exactly at the limit: the largest update a client of the reference hub may send works.
    let (status, id) = post(&hub, "", format!("{}&data=last", topics_body(1_000))).await;
    assert_eq!(status, 200, "{id}");
    let event = events.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (id.as_str(), "last"));
}

#[tokio::test]
async fn the_topic_limit_is_a_setting() {
    let hub =
        TestHub::start(&[("MERCURE_MAX_TOPICS_PER_UPDATE", "2"), ("MERCURE_MAX_FORM_FIELDS", "8")]);
    assert_eq!(post(&hub, "", topics_body(2)).await.0, 200);
    let (status, text) = post(&hub, "", topics_body(3)).await;
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("more than 2 topics") && text.contains("max_topics_per_update"),
        "{text}"
    );
}

#[tokio::test]
async fn too_many_form_fields_are_refused_naming_the_setting() {
    let hub = TestHub::start(&[]);
    // A publish body of one topic and 4,095 unknown fields is exactly at the limit.
    let fields = |count: usize| {
        std::iter::once("topic=a".to_owned())
            .chain((1..count).map(|i| format!("x{i}=1")))
            .collect::<Vec<_>>()
            .join("&")
    };
    assert_eq!(post(&hub, "", fields(4_096)).await.0, 200);
    // One more, or half a million (a 1 MiB body of `a&a&…`), is 413.
    for body in [fields(4_097), "a&".repeat(500_000)] {
        let (status, text) = post(&hub, "", body).await;
        assert_eq!(status, 413, "{text}");
        assert!(text.contains("max_form_fields"), "{text}");
    }

    // Query strings: the subscribe query and the publish query (which may carry the token).
    let query = format!("topic=a&{}", "x=1&".repeat(5_000));
    let response = client()
        .get(format!("{}?{query}", hub.url))
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 400);
    let text = response.text().await.expect("body");
    assert!(text.contains("max_form_fields"), "{text}");
    let (status, text) = post(&hub, &query, "topic=a".into()).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("max_form_fields"), "{text}");

    // The hub still serves ordinary requests.
    assert_eq!(publish(&hub, &[("topic", "a"), ("data", "fine")]).await.0, 200);
}

/// Opens a raw connection and sends the headers of a publish announcing a 100-byte body, then
/// only its first bytes: a slowloris publisher.
async fn stalled_publish(hub: &TestHub) -> TcpStream {
    let mut stream = TcpStream::connect(hub.addr).await.expect("connect");
    let head = format!(
        "POST {HUB} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ntopic=a&da",
        hub.addr,
        publisher()
    );
    stream.write_all(head.as_bytes()).await.expect("send the headers and a few bytes");
    stream
}

/// Everything the hub sends until it closes the connection, or `None` after `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    matches!(read, Ok(Ok(_))).then(|| String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_publisher_sending_its_body_too_slowly_gets_408_and_is_disconnected() {
    // One worker, as every test hub: stalled publishers must not hold it.
    let hub = TestHub::start(&[("MERCURE_BODY_READ_TIMEOUT", "2s")]);
    let started = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(stalled_publish(&hub).await);
    }

    // Meanwhile, the hub serves everyone else.
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    let (status, _) = publish(&hub, &[("topic", "a"), ("data", "not held up")]).await;
    assert_eq!(status, 200);
    assert_eq!(events.next().await.data, "not held up");
    let health = client().get(hub.at("/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);

    for stream in &mut stalled {
        let answer = read_until_closed(stream, PATIENCE)
            .await
            .expect("the hub answers and closes the connection within the bound");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_read_timeout"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    }
    // A timer never fires early: the 408 is the timeout, not another failure.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    // Nothing of the stalled publications was published.
    events.assert_silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_body_sent_in_pieces_within_the_time_is_accepted() {
    let hub = TestHub::start(&[("MERCURE_BODY_READ_TIMEOUT", "20s")]);
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    let body = "topic=a&data=in+pieces";
    let mut stream = TcpStream::connect(hub.addr).await.expect("connect");
    let head = format!(
        "POST {HUB} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        hub.addr,
        publisher(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("send the headers");
    for piece in body.as_bytes().chunks(8) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.write_all(piece).await.expect("send a piece");
    }
    let answer = read_until_closed(&mut stream, PATIENCE).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(events.next().await.data, "in pieces");
}
