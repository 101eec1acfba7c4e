//! Publish hardening (Mercure 1.0, "Publication"), each case against a real hub: what only the
//! hub may send is refused with 400 and a message saying why, in every spelling a publisher could
//! try; the rights check (403) comes first; ordinary topics and the hub's own subscription events
//! still work.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The hub's subscription events, as a draft-07 subscriber asks for them.
const WATCH: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

/// Posts a raw form body with the all-topics publisher token; returns status and body.
async fn post(hub: &TestHub, body: &str) -> (u16, String) {
    post_with(hub, &publisher(), body).await
}

/// Posts a raw form body with `token`; returns status and body.
async fn post_with(hub: &TestHub, token: &str, body: &str) -> (u16, String) {
    let response = client()
        .post(&hub.url)
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .expect("publish request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("publish body"))
}

/// Asserts a 400 for each `(what, body)` whose text contains `expected`, and that a subscriber
/// to everything received none of them.
async fn assert_refused(hub: &TestHub, cases: &[(&str, &str)], expected: &str) {
    let mut events = Events::open(hub, "topic=*", Some(&subscriber())).await;
    for (what, body) in cases {
        let (status, text) = post(hub, body).await;
        assert_eq!(status, 400, "{what} ({body}): {text}");
        assert!(text.contains(expected), "{what} ({body}): {text:?} should say {expected:?}");
    }
    events.assert_silent(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn reserved_namespace_topics_are_refused_in_every_spelling() {
    let hub = TestHub::start(&[]);
    let cases = [
        ("the subscriptions path", "topic=/.well-known/mercure/subscriptions/x"),
        ("the hub's path", "topic=/.well-known/mercure"),
        ("escaped letter, upper-case hex", "topic=/.well-known/%256Dercure/x"),
        ("escaped letter, lower-case hex", "topic=/.well-known/%256dercure/x"),
        ("escaped dot", "topic=/%252Ewell-known/mercure/x"),
        ("another host", "topic=https://evil.example/.well-known/mercure"),
        ("another host and port", "topic=http://evil.example:8080/.well-known/mercure/x?q"),
        ("dot-dot segment", "topic=/a/../.well-known/mercure/x"),
        ("dot segment", "topic=/./.well-known/mercure"),
        ("escaped dot-dot", "topic=/a/%252e%252e/.well-known/mercure/x"),
        ("half-escaped dot-dot", "topic=/a/.%252E/.well-known/mercure"),
        ("relative to the hub's path", "topic=.well-known/mercure/x"),
        ("relative to the hub's directory", "topic=mercure/subscriptions/x"),
        ("backslashes", "topic=%5C.well-known%5Cmercure"),
        ("backslashes after a host", "topic=https://evil.example%5C.well-known%5Cmercure%5Cx"),
        ("a scheme-relative URL", "topic=//evil.example/.well-known/mercure"),
        ("an alternate topic", "topic=https://example.com/a&topic=/.well-known/mercure/x"),
    ];
    assert_refused(&hub, &cases, "reserved namespace").await;
}

#[tokio::test]
async fn ordinary_topics_still_publish() {
    let hub = TestHub::start(&[]);
    let mut events = Events::open(&hub, "topic=*", Some(&subscriber())).await;
    for topic in [
        "https://example.com/.well-known/mercure-not/x",
        "https://example.com/books/1",
        "/.well-known/mercurex",
        "/.well-known/mercure%2Fx",
        "foo bar",
        "",
    ] {
        let (status, id) = publish(&hub, &[("topic", topic), ("data", topic)]).await;
        assert_eq!(status, 200, "{topic:?}: {id}");
        let event = events.next().await;
        assert_eq!(event.id_and_data(), (id.as_str(), topic));
    }
}

#[tokio::test]
async fn the_hub_event_type_is_refused() {
    let hub = TestHub::start(&[]);
    assert_refused(&hub, &[("type mercure", "topic=a&type=mercure")], "reserved for the hub").await;
    // Only that exact value.
    for event_type in ["Mercure", "mercure-ish", "message"] {
        let (status, text) = publish(&hub, &[("topic", "a"), ("type", event_type)]).await;
        assert_eq!(status, 200, "{event_type}: {text}");
    }
}

#[tokio::test]
async fn invisible_and_control_characters_are_refused() {
    let hub = TestHub::start(&[]);
    let format = [
        ("type with U+202E", "topic=a&type=x%E2%80%AEy"),
        ("type with U+200B", "topic=a&type=%E2%80%8B"),
        ("id with U+FEFF", "topic=a&id=%EF%BB%BFx"),
        ("id with U+2066", "topic=a&id=x%E2%81%A6"),
        ("topic with U+200D", "topic=https://example.com/a%E2%80%8Db"),
        ("alternate topic with U+00AD", "topic=a&topic=b%C2%AD"),
        ("topic with a tag character", "topic=a%F3%A0%81%81"),
    ];
    assert_refused(&hub, &format, "invisible Unicode format characters").await;
    let control = [
        ("type with DEL", "topic=a&type=x%7F"),
        ("type with a C1 control", "topic=a&type=x%C2%85"),
        ("id with a tab", "topic=a&id=x%09"),
        ("topic with ESC", "topic=a%1B"),
        ("topic with a C1 control", "topic=a%C2%9B"),
    ];
    assert_refused(&hub, &control, "control characters").await;
}

#[tokio::test]
async fn ids_that_would_confuse_cursors_are_refused() {
    let hub = TestHub::start(&[]);
    assert_refused(&hub, &[("id #x", "topic=a&id=%23x")], "reserved for the hub").await;
    assert_refused(&hub, &[("id earliest", "topic=a&id=earliest")], "start of history").await;
}

#[tokio::test]
async fn retry_is_digits_only() {
    let hub = TestHub::start(&[]);
    let cases = [
        ("a plus sign", "topic=a&retry=%2B5"),
        ("a space (a form's +)", "topic=a&retry=+5"),
        ("a leading space", "topic=a&retry=%205"),
        ("a trailing space", "topic=a&retry=5%20"),
        ("a decimal point", "topic=a&retry=5.0"),
        ("a minus sign", "topic=a&retry=-1"),
        ("an exponent", "topic=a&retry=5e3"),
        ("non-ASCII digits", "topic=a&retry=%D9%A5"),
        ("above u64", "topic=a&retry=18446744073709551616"),
    ];
    assert_refused(&hub, &cases, "ASCII digits only").await;

    // Valid values behave as before, an empty one meaning none (as in the reference hub).
    let mut events = Events::open(&hub, "topic=*", Some(&subscriber())).await;
    for (retry, expected) in [("2500", Some("2500")), ("007", Some("7")), ("0", None), ("", None)] {
        let (status, id) = publish(&hub, &[("topic", "a"), ("retry", retry)]).await;
        assert_eq!(status, 200, "{retry:?}: {id}");
        let event = events.next().await;
        assert_eq!((event.id.as_str(), event.retry.as_deref()), (id.as_str(), expected));
    }
}

#[tokio::test]
async fn data_must_be_utf8() {
    let hub = TestHub::start(&[]);
    let cases = [
        ("a lone 0xFF", "topic=a&data=%FF"),
        ("a truncated sequence", "topic=a&data=%E2%82"),
        ("an encoded surrogate", "topic=a&data=%ED%A0%80"),
    ];
    assert_refused(&hub, &cases, "UTF-8").await;
    let (status, text) = publish(&hub, &[("topic", "a"), ("data", "€ ✓")]).await;
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn the_rights_check_comes_first() {
    let hub = TestHub::start(&[]);
    let books = token(json!({ "publish": ["https://example.com/books/{id}"] }));
    for body in [
        "topic=/.well-known/mercure/subscriptions/x",
        "topic=https://example.com/authors/1&id=%23x",
        "topic=https://example.com/authors/1&type=mercure",
        "topic=https://example.com/authors/1&retry=5.0",
        "topic=https://example.com/books/1&topic=/.well-known/mercure/x",
    ] {
        let (status, text) = post_with(&hub, &books, body).await;
        assert_eq!(status, 403, "{body}: {text}");
    }
    // With the right, the same fields are judged.
    let (status, text) = post_with(&hub, &books, "topic=https://example.com/books/1&id=%23x").await;
    assert_eq!(status, 400, "{text}");
}

#[tokio::test]
async fn the_hub_still_publishes_its_own_subscription_events() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let watcher = token(json!({ "subscribe": [WATCH] }));
    let mut events = Events::open(&hub, &topics_query(&[WATCH]), Some(&watcher)).await;
    let parse = |event: &Event| -> Value {
        serde_json::from_str(&event.data).expect("subscription events are JSON")
    };
    // Its own arrival, on a topic in the reserved namespace.
    let own = parse(&events.next().await);
    assert_eq!((own["topic"].as_str(), own["active"].as_bool()), (Some(WATCH), Some(true)));
    assert!(own["id"].as_str().is_some_and(|id| id.starts_with("/.well-known/mercure/")));

    let book = Events::open(&hub, "topic=https://example.com/books/1", Some(&subscriber())).await;
    let arrival = parse(&events.next().await);
    assert_eq!(arrival["topic"], "https://example.com/books/1");
    assert_eq!(arrival["active"], true);
    drop(book);
    let departure = parse(&events.next().await);
    assert_eq!(departure["active"], false);

    // What the hub sends, a publisher cannot.
    let forged =
        format!("topic={}&private=&data=%7B%7D", urlencode(own["id"].as_str().unwrap_or("")));
    let (status, text) = post(&hub, &forged).await;
    assert_eq!(status, 400, "{text}");
    events.assert_silent(Duration::from_millis(200)).await;
}
