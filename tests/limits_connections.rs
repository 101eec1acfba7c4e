//! End-to-end tests of the limits that keep one client, or too many, from holding the hub
//! hostage: `max_connections`, `max_streams_per_client` and `max_selectors_per_token`.
//!
//! Over each limit the hub answers at once, with a status a client understands (503 or 429 with
//! `Retry-After`, 401 for a token), and everything within the limits keeps working. Nothing here
//! depends on timing: where the hub must notice a closed connection first, the test retries until
//! a generous deadline, and the assertions are on statuses, headers and updates.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Long enough for a loaded CI machine to notice a closed connection.
const DEADLINE: Duration = Duration::from_secs(30);

/// Sends a raw HTTP/1.1 `GET` of `path` over `stream` and reads the whole answer (the hub closes
/// the connection after it); returns the status and the lowercase header lines.
async fn get_until_closed(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
        .await
        .expect("the hub closes the connection after its answer")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    let head = answer.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    (status, head)
}

/// The `Retry-After` seconds in a lowercase header block.
fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|line| line.strip_prefix("retry-after: "))
        .and_then(|seconds| seconds.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {head:?}"))
}

#[tokio::test]
async fn connections_over_max_connections_get_503_and_those_within_keep_working() {
    let hub = TestHub::start(&[("MERCURE_MAX_CONNECTIONS", "3")]);
    let mut first = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    let mut second = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    // The third connection, within the limit, idle.
    let idle = TcpStream::connect(hub.addr).await.expect("connect");

    // The fourth is read and answered: 503, when to come back, and the connection closes.
    let mut over = TcpStream::connect(hub.addr).await.expect("connect");
    let (status, head) =
        get_until_closed(&mut over, hub.addr, "/.well-known/mercure?topic=a").await;
    assert_eq!(status, 503, "{head}");
    assert!((6..=15).contains(&retry_after(&head)), "{head}");
    assert!(head.contains("connection: close"), "{head}");

    // Once a connection within the limit closes, its place is free again: a publisher gets it,
    // and the streams that stayed open receive the update.
    drop(idle);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let form = [("topic", "a"), ("data", "still served"), ("id", "u1")];
        match publish_request(&hub.url, &publisher(), &form).send().await {
            Ok(response) if response.status() == 200 => break,
            Ok(response) => assert_eq!(response.status(), 503, "only the limit may refuse"),
            Err(_) => {} // Refused before the closed connection was counted out.
        }
        assert!(tokio::time::Instant::now() < deadline, "the closed connection's place came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first.next().await.id_and_data(), ("u1", "still served"));
    assert_eq!(second.next().await.id_and_data(), ("u1", "still served"));
}

/// A client whose connections come from `source` (any address of 127.0.0.0/8 is local).
fn client_from(source: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(source)).build().expect("http client")
}

/// Opens an anonymous stream on `topic=a` from `client`; returns the response (kept open while
/// held) or the refusal's status, `Retry-After` and body.
async fn open_from(
    client: &reqwest::Client,
    hub: &TestHub,
) -> Result<reqwest::Response, (u16, Option<String>, String)> {
    let response = client.get(format!("{}?topic=a", hub.url)).send().await.expect("subscribe");
    if response.status() == 200 {
        return Ok(response);
    }
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ascii").to_owned());
    Err((status, retry_after, response.text().await.expect("body")))
}

#[tokio::test]
async fn one_client_address_holds_at_most_max_streams_per_client() {
    let hub =
        TestHub::start(&[("MERCURE_ANONYMOUS", "1"), ("MERCURE_MAX_STREAMS_PER_CLIENT", "2")]);
    let local = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let first = open_from(&local, &hub).await.expect("first stream");
    let _second = open_from(&local, &hub).await.expect("second stream");

    let (status, retry_after, body) = open_from(&local, &hub).await.expect_err("a third");
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("10"));
    assert!(body.contains("max_streams_per_client"), "the body names the setting: {body}");

    // Another address is not affected, and the limit is on streams, not on publishing.
    let other = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let _elsewhere = open_from(&other, &hub).await.expect("another client's stream");
    assert_eq!(publish(&hub, &[("topic", "a"), ("data", "x")]).await.0, 200);

    // A stream that ends gives its place back.
    drop(first);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let _third = loop {
        match open_from(&local, &hub).await {
            Ok(stream) => break stream,
            Err((status, _, body)) => assert_eq!(status, 429, "{body}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the ended stream's place came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
}

/// A draft-07 token whose `claim` lists `n` selectors.
fn token_listing(claim: &str, n: usize) -> String {
    let selectors: Vec<String> =
        (0..n).map(|i| format!("https://example.com/{i}/{{id}}")).collect();
    token(json!({ claim: selectors }))
}

#[tokio::test]
async fn tokens_with_more_selectors_than_max_selectors_per_token_are_refused() {
    let hub =
        TestHub::start(&[("MERCURE_MAX_SELECTORS_PER_TOKEN", "3"), ("MERCURE_SUBSCRIPTIONS", "1")]);
    let client = client();

    let subscribe =
        |token: String| client.get(format!("{}?topic=a", hub.url)).bearer_auth(token).send();
    assert_eq!(subscribe(token_listing("subscribe", 3)).await.expect("subscribe").status(), 200);
    let refused = subscribe(token_listing("subscribe", 4)).await.expect("subscribe");
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"].to_str().expect("ascii").to_owned();
    assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{challenge}");
    let body = refused.text().await.expect("body");
    assert!(body.contains("max_selectors_per_token"), "the body names the setting: {body}");

    let form = [("topic", "https://example.com/0/1"), ("data", "x")];
    assert_eq!(publish_with(&hub, &token_listing("publish", 3), &form).await.0, 200);
    let (status, body) = publish_with(&hub, &token_listing("publish", 4), &form).await;
    assert_eq!(status, 401);
    assert!(body.contains("max_selectors_per_token"), "{body}");

    // The subscriptions API reads the same claim.
    let subscriptions = format!("{}/subscriptions", hub.url);
    let api = |token: String| client.get(&subscriptions).bearer_auth(token).send();
    let mut all: Vec<String> = vec!["*".into()];
    assert_eq!(api(token(json!({"subscribe": all.clone()}))).await.expect("api").status(), 200);
    all.extend((0..3).map(|i| format!("/{i}")));
    let refused = api(token(json!({"subscribe": all}))).await.expect("api");
    assert_eq!(refused.status(), 401);
}
