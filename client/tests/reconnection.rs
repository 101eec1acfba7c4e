//! The event stream's connection logic against a scripted server: each connection gets the next
//! prepared answer, byte for byte, and the test sees each request's head and when it came. What a
//! real hub cannot easily be made to do is done here: replay an event already delivered, go
//! silent, never answer, answer something that is not an event stream, send an id no header can
//! carry, a proxy's keep-alive, `Retry-After: 0`, an event without end.
//!
//! Every wait is for an event, bounded by `PATIENCE`; timings are checked as lower bounds only.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use quicksilver_client::{Event, EventStream, SubscribeError, Subscriber};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(30);

/// The head of an event stream answer; the body follows, delimited by the connection's end.
const STREAM_HEAD: &str = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n";

/// What the server answers one connection.
struct Answer {
    bytes: Vec<u8>,
    /// Keep the connection open (and silent) after the bytes, rather than close it.
    keep_open: bool,
}

fn stream_then_close(body: &str) -> Answer {
    Answer { bytes: format!("{STREAM_HEAD}{body}").into_bytes(), keep_open: false }
}

fn stream_then_silence(body: &str) -> Answer {
    Answer { bytes: format!("{STREAM_HEAD}{body}").into_bytes(), keep_open: true }
}

/// Accepts the connection and the request, and never answers.
fn no_answer() -> Answer {
    Answer { bytes: Vec::new(), keep_open: true }
}

/// 503 with `Retry-After: 0`, as a hub or a proxy that wants the client back at once.
fn unavailable_retry_now() -> Answer {
    let head = "HTTP/1.1 503 Service Unavailable\r\nretry-after: 0\r\ncontent-length: 0\r\n\
                connection: close\r\n\r\n";
    Answer { bytes: head.as_bytes().to_vec(), keep_open: false }
}

/// A request as the server read it.
struct Request {
    /// When its head was in: the client sent it no earlier.
    at: Instant,
    /// The head, lower-cased (header names are case-insensitive).
    head: String,
}

/// A server answering its connections with `answers` in turn (connections beyond them are
/// closed at once); the hub URL and the requests, in order.
async fn scripted_hub(answers: Vec<Answer>) -> (String, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("an ephemeral port");
    let addr = listener.local_addr().expect("its address");
    let (heads, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut open = Vec::new();
        for answer in answers {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            let head = read_head(&mut socket).await;
            let _ = heads.send(Request { at: Instant::now(), head });
            let _ = socket.write_all(&answer.bytes).await;
            if answer.keep_open {
                open.push(socket);
            }
        }
        // Kept until the test ends, with the runtime.
        std::future::pending::<()>().await;
        drop(open);
    });
    (format!("http://{addr}/.well-known/mercure"), received)
}

/// The request head, lower-cased (header names are case-insensitive).
async fn read_head(socket: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match socket.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).to_ascii_lowercase()
}

async fn next(stream: &mut EventStream) -> Option<Result<Event, SubscribeError>> {
    tokio::time::timeout(PATIENCE, stream.next()).await.expect("an item within the patience")
}

async fn next_event(stream: &mut EventStream) -> Event {
    match next(stream).await {
        Some(Ok(event)) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

async fn request(requests: &mut mpsc::UnboundedReceiver<Request>) -> Request {
    tokio::time::timeout(PATIENCE, requests.recv()).await.expect("a request").expect("a head")
}

async fn head(requests: &mut mpsc::UnboundedReceiver<Request>) -> String {
    request(requests).await.head
}

fn stream(url: &str) -> EventStream {
    Subscriber::builder(url)
        .topic("https://example.com/a")
        .retry(Duration::from_millis(10))
        .build()
        .expect("a valid subscriber")
        .stream()
}

#[tokio::test]
async fn reconnects_with_the_last_event_id_and_skips_what_it_had() {
    let (url, mut heads) = scripted_hub(vec![
        stream_then_close(":\nid: a\ndata: 1\n\nid: b\ndata: 2\n\n"),
        // The replay overlaps: `b` again, then `c`.
        stream_then_close("id: b\ndata: 2\n\nid: c\nevent: t\ndata: 3\n\n"),
        stream_then_silence("id: d\ndata: 4\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    // The stream works when polled: reading `d` is what makes it open the third connection.
    let mut ids = Vec::new();
    while ids.len() < 4 {
        ids.push(next_event(&mut stream).await.id);
    }
    assert_eq!(ids, ["a", "b", "c", "d"], "b once");
    let first = head(&mut heads).await;
    assert!(first.starts_with("get /.well-known/mercure?topic=https%3a%2f%2fexample.com%2fa "));
    assert!(first.contains("accept: text/event-stream"), "{first}");
    assert!(!first.contains("last-event-id"), "{first}");
    assert!(head(&mut heads).await.contains("last-event-id: b\r\n"));
    assert!(head(&mut heads).await.contains("last-event-id: c\r\n"));
    assert_eq!(stream.last_event_id().as_deref(), Some("d"));
    assert_eq!(stream.reconnections(), 2);
}

#[tokio::test]
async fn waits_the_retry_the_hub_sent() {
    let (url, _heads) = scripted_hub(vec![
        stream_then_close("retry: 400\nid: a\ndata: 1\n\n"),
        stream_then_silence("id: b\ndata: 2\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    assert_eq!(next_event(&mut stream).await.id, "a");
    let received = Instant::now();
    assert_eq!(stream.retry_delay(), Duration::from_millis(400));
    assert_eq!(next_event(&mut stream).await.id, "b");
    assert!(received.elapsed() >= Duration::from_millis(400), "{:?}", received.elapsed());
}

#[tokio::test]
async fn an_incomplete_event_is_dropped_when_the_connection_ends() {
    let (url, mut heads) = scripted_hub(vec![
        stream_then_close("id: a\ndata: 1\n\nid: b\ndata: cut"),
        stream_then_silence("id: c\ndata: 3\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    assert_eq!(next_event(&mut stream).await.id, "a");
    assert_eq!(next_event(&mut stream).await.id, "c", "b was never completed");
    head(&mut heads).await;
    assert!(head(&mut heads).await.contains("last-event-id: a\r\n"), "resumes after a");
}

#[tokio::test]
async fn a_silent_connection_is_dropped_after_the_idle_timeout() {
    let (url, mut heads) =
        scripted_hub(vec![stream_then_silence(":\n"), stream_then_silence("id: a\ndata: 1\n\n")])
            .await;
    let mut stream = Subscriber::builder(&url)
        .topic("t")
        .retry(Duration::from_millis(10))
        .idle_timeout(Duration::from_millis(200))
        .build()
        .expect("a valid subscriber")
        .stream();
    assert_eq!(next_event(&mut stream).await.id, "a", "from the second connection");
    head(&mut heads).await;
    head(&mut heads).await;
}

#[tokio::test]
async fn an_id_no_header_can_carry_goes_in_the_query_string() {
    let (url, mut heads) = scripted_hub(vec![
        stream_then_close("id: a\u{1}b\ndata: 1\n\n"),
        stream_then_silence("id: c\ndata: 2\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    assert_eq!(next_event(&mut stream).await.id, "a\u{1}b");
    assert_eq!(next_event(&mut stream).await.id, "c");
    head(&mut heads).await;
    let second = head(&mut heads).await;
    assert!(second.contains("&lasteventid=a%01b "), "{second}");
    assert!(!second.contains("last-event-id"), "{second}");
}

#[tokio::test]
async fn answers_that_are_not_event_streams_end_the_stream() {
    let not_a_stream = Answer {
        bytes: b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 2\r\n\r\nhi"
            .to_vec(),
        keep_open: false,
    };
    let no_content =
        Answer { bytes: b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(), keep_open: false };
    let (url, _heads) = scripted_hub(vec![not_a_stream, no_content]).await;
    let mut html = stream(&url);
    match next(&mut html).await {
        Some(Err(SubscribeError::NotAnEventStream { content_type })) => {
            assert_eq!(content_type.as_deref(), Some("text/html"))
        }
        other => panic!("an HTML page: {other:?}"),
    }
    assert!(next(&mut html).await.is_none());
    assert!(next(&mut html).await.is_none(), "fused: the end again");

    let mut empty = stream(&url);
    match next(&mut empty).await {
        Some(Err(SubscribeError::Rejected { status, .. })) => assert_eq!(status, 204),
        other => panic!("204 means stop: {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_that_keeps_ending_empty_backs_off() {
    // Three connections that end at once without an event: the waits grow (10 ms, then 100 ms,
    // then 200 ms: doubled from the 50 ms floor) rather than hammer the server.
    let (url, _heads) = scripted_hub(vec![
        stream_then_close(":\n"),
        stream_then_close(":\n"),
        stream_then_close(":\n"),
        stream_then_silence("id: a\ndata: 1\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    let started = Instant::now();
    assert_eq!(next_event(&mut stream).await.id, "a");
    assert!(started.elapsed() >= Duration::from_millis(310), "{:?}", started.elapsed());
    assert_eq!(stream.consecutive_failures(), 0, "an event resets the backoff");
}

#[tokio::test]
async fn retry_after_0_cannot_make_the_stream_hammer_the_hub() {
    let (url, mut requests) = scripted_hub(vec![
        unavailable_retry_now(),
        unavailable_retry_now(),
        unavailable_retry_now(),
        unavailable_retry_now(),
        stream_then_silence("id: a\ndata: 1\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    assert_eq!(next_event(&mut stream).await.id, "a");
    let mut arrivals = Vec::new();
    for _ in 0..5 {
        arrivals.push(request(&mut requests).await.at);
    }
    let gaps: Vec<Duration> = arrivals.windows(2).map(|pair| pair[1] - pair[0]).collect();
    // Retry-After: 0 lengthens nothing and shortens nothing: the retry (10 ms), then the
    // doubling from the 50 ms floor.
    for (gap, at_least) in gaps.iter().zip([10, 100, 200, 400]) {
        assert!(*gap >= Duration::from_millis(at_least), "{gaps:?}");
    }
}

#[tokio::test]
async fn a_keep_alive_on_a_new_connection_keeps_the_last_event_id() {
    let (url, mut heads) = scripted_hub(vec![
        stream_then_close("id: a\ndata: 1\n\n"),
        // A proxy's keep-alive before any event of the connection: a comment and a blank line.
        stream_then_close(":\n\n"),
        stream_then_close("\n\n"),
        // An event without an id carries the stream's last one; it is no duplicate of `a`.
        stream_then_close("data: 2\n\n"),
        stream_then_silence("id: b\ndata: 3\n\n"),
    ])
    .await;
    let mut stream = stream(&url);
    assert_eq!(next_event(&mut stream).await.id, "a");
    let inherited = next_event(&mut stream).await;
    assert_eq!((inherited.id.as_str(), inherited.data.as_str()), ("a", "2"));
    assert_eq!(next_event(&mut stream).await.id, "b");
    assert!(!head(&mut heads).await.contains("last-event-id"));
    for connection in 2..=5 {
        let head = head(&mut heads).await;
        assert!(head.contains("last-event-id: a\r\n"), "connection {connection}: {head}");
    }
    assert_eq!(stream.last_event_id().as_deref(), Some("b"));
}

#[tokio::test]
async fn only_an_empty_id_field_clears_the_last_event_id() {
    let (url, mut heads) = scripted_hub(vec![
        stream_then_close(":\n\n"),
        stream_then_close("id\n\n"),
        stream_then_silence("id: a\ndata: 1\n\n"),
    ])
    .await;
    let mut stream = Subscriber::builder(&url)
        .topic("t")
        .last_event_id("x")
        .retry(Duration::from_millis(10))
        .build()
        .expect("a valid subscriber")
        .stream();
    assert_eq!(next_event(&mut stream).await.id, "a");
    assert!(head(&mut heads).await.contains("last-event-id: x\r\n"));
    let second = head(&mut heads).await;
    assert!(second.contains("last-event-id: x\r\n"), "a keep-alive keeps the id given: {second}");
    let third = head(&mut heads).await;
    assert!(!third.contains("last-event-id"), "`id` with no value clears it: {third}");
}

#[tokio::test]
async fn a_hub_that_never_answers_is_retried_after_the_head_timeout() {
    let (url, mut heads) =
        scripted_hub(vec![no_answer(), stream_then_silence("id: a\ndata: 1\n\n")]).await;
    let subscriber = |url: &str| {
        Subscriber::builder(url)
            .topic("t")
            .retry(Duration::from_millis(10))
            .head_timeout(Duration::from_millis(200))
    };
    let mut stream = subscriber(&url).build().expect("a valid subscriber").stream();
    let started = Instant::now();
    assert_eq!(next_event(&mut stream).await.id, "a", "from the second connection");
    assert!(started.elapsed() >= Duration::from_millis(200), "{:?}", started.elapsed());
    head(&mut heads).await;
    head(&mut heads).await;
    assert_eq!(stream.reconnections(), 0, "the first attempt never had an answer");

    let (url, _heads) = scripted_hub(vec![no_answer()]).await;
    let mut stream =
        subscriber(&url).give_up_after(1).build().expect("a valid subscriber").stream();
    match next(&mut stream).await {
        Some(Err(SubscribeError::Timeout { after })) => {
            assert_eq!(after, Duration::from_millis(200))
        }
        other => panic!("no answer: {other:?}"),
    }
    assert!(next(&mut stream).await.is_none());
}

#[tokio::test]
async fn an_event_over_the_size_limit_drops_the_connection() {
    // The first connection stays open: only the client can end it.
    let huge = format!("id: a\ndata: 1\n\nid: b\ndata: {}\n\n", "x".repeat(2000));
    let (url, mut heads) =
        scripted_hub(vec![stream_then_silence(&huge), stream_then_silence("id: c\ndata: 3\n\n")])
            .await;
    let mut stream = Subscriber::builder(&url)
        .topic("t")
        .retry(Duration::from_millis(10))
        .max_event_size(1024)
        .build()
        .expect("a valid subscriber")
        .stream();
    assert_eq!(next_event(&mut stream).await.id, "a", "the event before the limit");
    assert_eq!(next_event(&mut stream).await.id, "c", "b was dropped with its connection");
    head(&mut heads).await;
    assert!(head(&mut heads).await.contains("last-event-id: a\r\n"), "resumes after a");
    assert_eq!(stream.reconnections(), 1);
}
