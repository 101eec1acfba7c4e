//! The CORS credential leak of issue 7, performed against a real hub.
//!
//! A page on any site opens `EventSource(hub, { withCredentials: true })`: the browser sends the
//! visitor's authorization cookie with `Origin: <that site>`, and lets the page read the stream
//! only if the answer carries `Access-Control-Allow-Credentials: true` with that exact origin.
//! With `cors_origins = *` the hub used to send exactly that, so any site could read the visitor's
//! private updates. Now `*` answers `Access-Control-Allow-Origin: *` without credentials (which
//! browsers refuse to expose to a credentialed request), and credentials go only to origins
//! listed explicitly.

mod common;

use std::time::Duration;

use common::*;
use reqwest::header::HeaderMap;
use reqwest::Method;

const EVIL: &str = "https://evil.example";
const APP: &str = "https://app.example.com";
const TOPIC: &str = "https://example.com/private/1";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header value"))
}

/// Publishes a private update, then replays it as the victim's browser would from a page at
/// `origin`: cookie and `Origin`, no `Authorization` header. Returns the stream's headers once the
/// private update has arrived (so the hub did send private data on this request).
async fn victim_reads_private_update(hub: &TestHub, origin: &str) -> HeaderMap {
    let cookie = format!("mercureAuthorization={}", subscriber());
    let mut events = Events::open_with(
        hub,
        &topics_query(&[TOPIC]),
        None,
        &[("origin", origin), ("cookie", &cookie), ("last-event-id", "earliest")],
    )
    .await;
    let event = events.next_within(Duration::from_secs(5)).await.expect("the private update");
    assert_eq!(event.data, "secret balance");
    events.response_headers
}

async fn publish_private(hub: &TestHub) {
    let (status, _) =
        publish(hub, &[("topic", TOPIC), ("data", "secret balance"), ("private", "")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn star_never_lets_another_site_read_with_the_visitors_cookie() {
    let hub = TestHub::start(&[("MERCURE_CORS_ORIGINS", "*")]);
    publish_private(&hub).await;

    let headers = victim_reads_private_update(&hub, EVIL).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);

    // The preflight of a credentialed request from that site gets no credentials either.
    let response = client()
        .request(Method::OPTIONS, &hub.url)
        .header("origin", EVIL)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "last-event-id")
        .send()
        .await
        .expect("preflight");
    assert_eq!(response.status(), 204);
    assert_eq!(header(response.headers(), "access-control-allow-origin"), Some("*"));
    assert_eq!(header(response.headers(), "access-control-allow-credentials"), None);
}

#[tokio::test]
async fn an_origin_listed_explicitly_gets_credentials_even_beside_star() {
    let hub = TestHub::start(&[("MERCURE_CORS_ORIGINS", &format!("* {APP}"))]);
    publish_private(&hub).await;

    let headers = victim_reads_private_update(&hub, APP).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"));
    let vary: Vec<_> = headers.get_all("vary").iter().filter_map(|v| v.to_str().ok()).collect();
    assert!(vary.iter().any(|v| v.to_ascii_lowercase().contains("origin")), "Vary: {vary:?}");
    // The hub's middleware runs once per answer (the binary mounts the same routes an
    // embedding application does, under one layer).
    assert_eq!(headers.get_all("access-control-allow-origin").iter().count(), 1);
    assert_eq!(headers.get_all("x-content-type-options").iter().count(), 1);

    let headers = victim_reads_private_update(&hub, EVIL).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);
}

#[tokio::test]
async fn an_origin_listed_alone_gets_credentials_and_others_get_nothing() {
    let hub = TestHub::start(&[("MERCURE_CORS_ORIGINS", APP)]);
    publish_private(&hub).await;

    let headers = victim_reads_private_update(&hub, APP).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&headers, "access-control-allow-credentials"), Some("true"));

    let headers = victim_reads_private_update(&hub, EVIL).await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);
    assert_eq!(header(&headers, "access-control-allow-credentials"), None);
}
