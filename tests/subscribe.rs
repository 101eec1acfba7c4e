//! End to end: subscribing, matching, private updates, credentials, framing on the wire.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn stream_headers_and_first_bytes() {
    let hub = TestHub::start(&[]);
    let events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    let h = &events.response_headers;
    assert_eq!(h["content-type"], "text/event-stream");
    assert_eq!(h["cache-control"], "private, no-cache, no-store, must-revalidate, max-age=0");
    assert_eq!(h["pragma"], "no-cache");
    assert_eq!(h["expire"], "0");
    assert_eq!(h["x-accel-buffering"], "no");
    assert!(h.get("last-event-id").is_none(), "no cursor asked, no cursor header");
    assert_eq!(&events.raw[..2], b":\n");
}

#[tokio::test]
async fn head_answers_headers_only() {
    let hub = TestHub::start(&[]);
    let response = client()
        .head(format!("{}?topic=a", hub.url))
        .bearer_auth(subscriber())
        .send()
        .await
        .expect("head");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
}

#[tokio::test]
async fn exact_template_wildcard_and_alternate_topics() {
    let hub = TestHub::start(&[]);
    let token = subscriber();
    let mut exact =
        Events::open(&hub, &topics_query(&["https://e.com/books/1"]), Some(&token)).await;
    let mut template =
        Events::open(&hub, &topics_query(&["https://e.com/books/{id}"]), Some(&token)).await;
    let mut any = Events::open(&hub, "topic=*", Some(&token)).await;
    let mut other =
        Events::open(&hub, &topics_query(&["https://e.com/users/1"]), Some(&token)).await;

    let (status, id) = publish(&hub, &[("topic", "https://e.com/books/1"), ("data", "one")]).await;
    assert_eq!(status, 200);
    for events in [&mut exact, &mut template, &mut any] {
        let event = events.next().await;
        assert_eq!((event.id.as_str(), event.data.as_str()), (id.as_str(), "one"));
    }
    other.assert_silent(QUIET).await;

    // The canonical topic does not match, the alternate one does.
    publish(&hub, &[("topic", "urn:x"), ("topic", "https://e.com/users/1"), ("data", "alt")]).await;
    assert_eq!(other.next().await.data, "alt");
    assert_eq!(any.next().await.data, "alt");
    exact.assert_silent(QUIET).await;
}

#[tokio::test]
async fn several_selectors_deliver_an_update_once() {
    let hub = TestHub::start(&[]);
    let query = topics_query(&["https://e.com/a", "https://e.com/{x}", "*", "https://e.com/a"]);
    let mut events = Events::open(&hub, &query, Some(&subscriber())).await;
    publish(&hub, &[("topic", "https://e.com/a"), ("topic", "https://e.com/b"), ("data", "1")])
        .await;
    publish(&hub, &[("topic", "https://e.com/a"), ("data", "2")]).await;
    assert_eq!(events.next().await.data, "1");
    assert_eq!(events.next().await.data, "2");
    events.assert_silent(QUIET).await;
}

#[tokio::test]
async fn private_updates_reach_only_authorized_subscribers() {
    let hub = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    let mut anonymous = Events::open(&hub, "topic=*", None).await;
    let mut no_claim = Events::open(&hub, "topic=*", Some(&token(json!({})))).await;
    let mut books = Events::open(
        &hub,
        "topic=*",
        Some(&token(json!({ "subscribe": ["https://e.com/books/{id}"] }))),
    )
    .await;
    let mut all = Events::open(&hub, "topic=*", Some(&subscriber())).await;

    publish(&hub, &[("topic", "https://e.com/books/1"), ("data", "secret"), ("private", "")]).await;
    publish(&hub, &[("topic", "https://e.com/users/1"), ("data", "other"), ("private", "on")])
        .await;
    publish(&hub, &[("topic", "https://e.com/users/1"), ("data", "public")]).await;

    assert_eq!(books.next().await.data, "secret");
    assert_eq!(books.next().await.data, "public");
    assert_eq!(all.next().await.data, "secret");
    assert_eq!(all.next().await.data, "other");
    assert_eq!(all.next().await.data, "public");
    for events in [&mut anonymous, &mut no_claim] {
        assert_eq!(events.next().await.data, "public", "private updates skipped");
    }
}

#[tokio::test]
async fn private_update_selected_by_one_topic_authorized_by_another() {
    // The specification's example: subscribe to a book, be authorized through a user topic.
    let hub = TestHub::start(&[]);
    let grant = token(json!({ "subscribe": ["https://e.com/users/foo/{?topic}"] }));
    let mut events =
        Events::open(&hub, &topics_query(&["https://e.com/books/{id}"]), Some(&grant)).await;
    let user_topic = "https://e.com/users/foo/?topic=https%3A%2F%2Fe.com%2Fbooks%2F1";
    publish(&hub, &[("topic", "https://e.com/books/1"), ("topic", user_topic), ("private", "")])
        .await;
    publish(&hub, &[("topic", "https://e.com/books/2"), ("data", "not for foo"), ("private", "")])
        .await;
    publish(&hub, &[("topic", "https://e.com/books/3"), ("data", "public")]).await;
    assert_eq!(events.next().await.data, "");
    assert_eq!(events.next().await.data, "public");
}

#[tokio::test]
async fn credentials_from_header_query_and_cookie() {
    let hub = TestHub::start(&[]);
    let token = subscriber();
    let mut by_query = Events::open(&hub, &format!("topic=a&authorization={token}"), None).await;
    let cookie = format!("mercureAuthorization={token}");
    let mut by_cookie = Events::open_with(&hub, "topic=a", None, &[("cookie", &cookie)]).await;
    publish(&hub, &[("topic", "a"), ("data", "x"), ("private", "")]).await;
    assert_eq!(by_query.next().await.data, "x");
    assert_eq!(by_cookie.next().await.data, "x");

    // A higher-precedence credential that is invalid fails, without falling back to the cookie.
    let response = client()
        .get(format!("{}?topic=a", hub.url))
        .header("authorization", "Bearer not-a-token")
        .header("cookie", cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn cookie_name_is_configurable() {
    let hub = TestHub::start(&[("MERCURE_COOKIE_NAME", "hubAuth")]);
    let cookie = format!("hubAuth={}", subscriber());
    let _events = Events::open_with(&hub, "topic=a", None, &[("cookie", &cookie)]).await;
    let response = client()
        .get(format!("{}?topic=a", hub.url))
        .header("cookie", format!("mercureAuthorization={}", subscriber()))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401, "the default name is not read any more");
}

#[tokio::test]
async fn mercure_rocks_claim_replaces_mercure() {
    let hub = TestHub::start(&[]);
    let grant = token_with(
        KEY,
        json!({ "https://mercure.rocks/": { "subscribe": ["a"] }, "mercure": { "subscribe": [] } }),
    );
    let mut events = Events::open(&hub, "topic=a", Some(&grant)).await;
    publish(&hub, &[("topic", "a"), ("data", "x"), ("private", "")]).await;
    assert_eq!(events.next().await.data, "x");
}

#[tokio::test]
async fn framing_on_the_wire_is_byte_exact() {
    let hub = TestHub::start(&[]);
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    publish(&hub, &[("topic", "a"), ("id", "i1"), ("data", "a\r\nb\rc\n")]).await;
    publish(&hub, &[("topic", "a"), ("id", "i2"), ("type", "ping"), ("retry", "2500")]).await;
    publish(&hub, &[("topic", "a"), ("id", "i3"), ("retry", "0"), ("data", "")]).await;
    events.next().await;
    events.next().await;
    let last = events.next().await;
    assert_eq!(last.id, "i3");
    let wire = String::from_utf8(events.raw.clone()).expect("utf-8 stream");
    assert_eq!(
        wire,
        ":\nid: i1\ndata: a\ndata: b\ndata: c\ndata: \n\n\
         event: ping\nretry: 2500\nid: i2\ndata: \n\n\
         id: i3\ndata: \n\n"
    );
}

#[tokio::test]
async fn heartbeat_comments_fill_silence() {
    let hub = TestHub::start(&[("MERCURE_HEARTBEAT", "100ms")]);
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    events.assert_silent(Duration::from_millis(450)).await;
    let comments = events.raw.windows(2).filter(|w| w == b":\n").count();
    assert!(comments >= 3, "expected heartbeats, got {:?}", String::from_utf8_lossy(&events.raw));
}

#[tokio::test]
async fn write_timeout_and_token_expiry_end_the_stream() {
    let hub = TestHub::start(&[("MERCURE_WRITE_TIMEOUT", "300ms")]);
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    assert!(events.closed_within(Duration::from_secs(3)).await, "write_timeout closes the stream");

    let hub = TestHub::start(&[("MERCURE_WRITE_TIMEOUT", "0s")]);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 2;
    let short = token_with(KEY, json!({ "exp": exp, "mercure": { "subscribe": ["*"] } }));
    let mut events = Events::open(&hub, "topic=a", Some(&short)).await;
    assert!(events.closed_within(Duration::from_secs(5)).await, "token expiry closes the stream");
}

#[tokio::test]
async fn publish_answers_the_id_as_plain_text() {
    let hub = TestHub::start(&[]);
    let response = client()
        .post(&hub.url)
        .bearer_auth(publisher())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a&id=%3Chtml%3E")
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(response.text().await.expect("body"), "<html>");

    let (status, id) = publish(&hub, &[("topic", "a")]).await;
    assert_eq!(status, 200);
    let uuid = id.strip_prefix("urn:uuid:").expect("hub ids are urn:uuid");
    assert_eq!(uuid.len(), 36);
}

#[tokio::test]
async fn cookie_publishing_checks_the_origin() {
    let hub = TestHub::start(&[("MERCURE_PUBLISH_ORIGINS", "https://app.example.com")]);
    let cookie = format!("mercureAuthorization={}", publisher());
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let mut request = client()
            .post(&hub.url)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("topic=a");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { request.send().await.expect("publish").status().as_u16() }
    };
    assert_eq!(post(vec![("origin", "https://app.example.com")]).await, 200);
    assert_eq!(post(vec![("referer", "https://app.example.com/page?x=1")]).await, 200);
    assert_eq!(
        post(vec![("origin", "https://evil.example.com")]).await,
        400,
        "RFC 6750 invalid_request"
    );
    assert_eq!(post(vec![]).await, 400, "no Origin nor Referer");
}

#[tokio::test]
async fn publishing_succeeds_without_subscribers_and_in_order() {
    let hub = TestHub::start(&[]);
    let mut events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    for i in 0..50 {
        let (status, _) = publish(&hub, &[("topic", "a"), ("data", &i.to_string())]).await;
        assert_eq!(status, 200);
    }
    for i in 0..50 {
        assert_eq!(events.next().await.data, i.to_string());
    }
}
