//! End to end: Mercure 1.0 (draft-08) requests on the same hub as draft-07 ones: `match`
//! subscriptions (exact and URL Pattern), the `QUERY` method, `last_event_id` and
//! `Mercure-Last-Event-ID`, telling the protocols apart, `protocols`, `public_urls`, the
//! protected resource metadata and the Bearer challenges.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::json;

const QUIET: Duration = Duration::from_millis(300);

fn anonymous_hub(extra: &[(&str, &str)]) -> TestHub {
    let mut settings = vec![("MERCURE_ANONYMOUS", "1")];
    settings.extend_from_slice(extra);
    TestHub::start(&settings)
}

/// The status and body of a GET subscription that the hub refuses (or the first headers of
/// one it accepts, whose body is never read).
async fn subscribe_status(hub: &TestHub, query: &str) -> (u16, String) {
    let response = client().get(format!("{}?{query}", hub.url)).send().await.expect("subscribe");
    let status = response.status().as_u16();
    if status == 200 {
        return (status, String::new());
    }
    (status, response.text().await.expect("body"))
}

/// An RFC 9068 access token granting everything, signed with `key`.
fn access_token_signed_with(key: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    let claims = json!({
        "iss": "https://localhost",
        "aud": "https://localhost/.well-known/mercure",
        "exp": 4102444800u64,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["publish", "subscribe"],
            "topics": [{ "match": "*" }],
        }],
    });
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()))
        .expect("encode token")
}

fn query_method() -> Method {
    Method::from_bytes(b"QUERY").expect("QUERY is a method token")
}

#[tokio::test]
async fn a_draft_07_and_a_mercure_1_subscriber_both_receive_one_update() {
    let hub = anonymous_hub(&[]);
    let topic = "https://example.com/books/1";
    let mut legacy =
        Events::open(&hub, "topic=https://example.com/books/{id}", Some(&subscriber())).await;
    let mut exact = Events::open(&hub, &format!("match={}", urlencode(topic)), None).await;
    let mut pattern = Events::open(
        &hub,
        &format!("match_urlpattern={}", urlencode("https://example.com/books/:id")),
        None,
    )
    .await;
    let (status, id) = publish(&hub, &[("topic", topic), ("data", "hello"), ("id", "b-1")]).await;
    assert_eq!((status, id.as_str()), (200, "b-1"));
    for (which, events) in
        [("draft-07", &mut legacy), ("exact", &mut exact), ("urlpattern", &mut pattern)]
    {
        assert_eq!(events.next().await.id_and_data(), ("b-1", "hello"), "{which}");
    }
}

#[tokio::test]
async fn exact_matchers_compare_bytes_and_url_patterns_follow_the_standard() {
    let hub = anonymous_hub(&[]);
    // `{` means nothing to an exact matcher: it is not a URI template.
    let mut braces =
        Events::open(&hub, &format!("match_exact={}", urlencode("https://e.com/{id}")), None).await;
    let mut pattern = Events::open(
        &hub,
        &format!("match_urlpattern={}", urlencode("https://example.net/foo/:random")),
        None,
    )
    .await;
    let mut relative =
        Events::open(&hub, &format!("match_urlpattern={}", urlencode("/books/:id")), None).await;
    for (topic, id) in [
        ("https://e.com/1", "t1"),
        ("https://e.com/{id}", "t2"),
        ("https://example.net/foo/abc", "t3"),
        ("https://example.net/foo/abc/def", "t4"),
        ("https://EXAMPLE.net/foo/xyz", "t5"),
        ("https://example.net/FOO/abc", "t6"),
        ("/books/7", "t7"),
        (&format!("http://{}/books/8", hub.addr), "t8"),
        ("not a url", "t9"),
    ] {
        assert_eq!(publish(&hub, &[("topic", topic), ("data", "x"), ("id", id)]).await.0, 200);
    }
    assert_eq!(braces.next().await.id, "t2");
    // The host is case-insensitive in URLs, the path is not.
    assert_eq!(pattern.next().await.id, "t3");
    assert_eq!(pattern.next().await.id, "t5");
    // A relative pattern and relative topics resolve against the hub's URL.
    assert_eq!(relative.next().await.id, "t7");
    assert_eq!(relative.next().await.id, "t8");
    for events in [&mut braces, &mut pattern, &mut relative] {
        events.assert_silent(QUIET).await;
    }
}

#[tokio::test]
async fn a_wildcard_matcher_and_private_updates() {
    let hub = anonymous_hub(&[]);
    let mut any = Events::open(&hub, "match=*", None).await;
    let mut any_pattern = Events::open(&hub, "match_urlpattern=*", None).await;
    assert_eq!(
        publish(&hub, &[("topic", "a"), ("data", "p"), ("private", "on"), ("id", "p")]).await.0,
        200
    );
    assert_eq!(publish(&hub, &[("topic", "b"), ("data", "x"), ("id", "x")]).await.0, 200);
    // Anonymous subscribers never receive private updates.
    assert_eq!(any.next().await.id, "x");
    assert_eq!(any_pattern.next().await.id, "x");
}

#[tokio::test]
async fn requests_that_mix_the_protocols_are_refused() {
    let hub = anonymous_hub(&[]);
    for (query, token) in [
        ("topic=a&match=a", None),
        ("match=a", Some(subscriber())),
        ("match=a&authorization=x", None),
    ] {
        let mut request = client().get(format!("{}?{query}", hub.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("subscribe");
        assert_eq!(response.status(), 400, "{query}");
        let body = response.text().await.expect("body");
        assert!(body.contains("mixes Mercure 1.0"), "{query}: {body}");
    }
    let response = client()
        .request(query_method(), &hub.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("topic=a")
        .send()
        .await
        .expect("QUERY");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn unknown_matcher_parameters_and_missing_matchers_are_refused() {
    let hub = anonymous_hub(&[("MERCURE_PROTOCOLS", "1.0")]);
    for query in ["Match=a", "match_regex=a", "MATCH_EXACT=a", "matchExact=a", "MATCHé=a"] {
        let (status, body) = subscribe_status(&hub, query).await;
        assert_eq!(status, 400, "{query}");
        assert!(body.contains("unsupported matcher parameter"), "{query}: {body}");
    }
    // A name whose fifth byte is inside a character is just another parameter.
    assert_eq!(subscribe_status(&hub, "matc%C3%A9=a&match=a").await.0, 200);
    let (status, body) = subscribe_status(&hub, "last_event_id=x").await;
    assert_eq!(status, 400);
    assert!(body.contains("missing \"match\""), "{body}");
    let (status, body) = subscribe_status(&hub, "topic=a").await;
    assert_eq!(status, 400, "draft-07 is off");
    assert!(body.contains("protocols"), "{body}");

    // Publishing with a draft-07 token is refused too.
    assert_eq!(publish(&hub, &[("topic", "a")]).await.0, 401, "a draft-07 publisher token");

    let legacy_only =
        anonymous_hub(&[("MERCURE_PROTOCOLS", "draft-07"), ("MERCURE_TRUSTED_ISSUERS", ISSUER)]);
    let audience = format!("http://{}/.well-known/mercure", legacy_only.addr);
    let access = access_token(&audience, json!([detail(&["publish"], &[("*", "exact")])]));
    assert_eq!(
        publish_with(&legacy_only, &access, &[("topic", "a")]).await.0,
        401,
        "an access token"
    );
    let (status, body) = subscribe_status(&legacy_only, "match=a").await;
    assert_eq!(status, 400, "1.0 is off");
    assert!(body.contains("protocols"), "{body}");
    assert_eq!(subscribe_status(&legacy_only, "topic=a").await.0, 200);
    // Without Mercure 1.0, no metadata document.
    let response = client()
        .get(legacy_only.at("/.well-known/oauth-protected-resource/.well-known/mercure"))
        .send()
        .await
        .expect("metadata");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn matchers_are_limited_before_anything_is_compiled() {
    let hub = anonymous_hub(&[]);
    let many: Vec<String> = (0..101).map(|i| format!("match=t{i}")).collect();
    let (status, body) = subscribe_status(&hub, &many.join("&")).await;
    assert_eq!(status, 400);
    assert!(body.contains("too many matchers"), "{body}");
    let long = "a".repeat(4097);
    let (status, body) = subscribe_status(&hub, &format!("match={long}")).await;
    assert_eq!(status, 400);
    assert!(body.contains("4096"), "{body}");
    assert_eq!(subscribe_status(&hub, &format!("match={}", "a".repeat(4096))).await.0, 200);
    for bad in ["a%00b", "a%7Fb", "a%C2%85b", "a%E2%80%8Bb", "a%E2%80%AEb", "a%EF%BB%BFb"] {
        let (status, body) = subscribe_status(&hub, &format!("match={bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body.contains("control or invisible formatting character"), "{bad}: {body}");
    }
    for invalid in ["https://e.com/(", "https://e.com/:id(\\d", "https://e.com/(?<x>a)"] {
        let (status, body) =
            subscribe_status(&hub, &format!("match_urlpattern={}", urlencode(invalid))).await;
        assert_eq!(status, 400, "{invalid}");
        assert!(body.contains("URL pattern"), "{invalid}: {body}");
        assert!(
            !body.contains("regex parse error") && !body.contains("error:"),
            "no compiler text: {body}"
        );
    }
}

#[tokio::test]
async fn query_subscriptions_merge_the_body_with_the_query_string() {
    let hub = anonymous_hub(&[("MERCURE_MAX_REQUEST_BODY_SIZE", "4KiB")]);
    let response = client()
        .request(query_method(), format!("{}?match=a", hub.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("match=b&match_urlpattern=https%3A%2F%2Fe.com%2F%3Aid")
        .send()
        .await
        .expect("QUERY");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt as _;
    let opening = stream.next().await.expect("a first chunk").expect("bytes");
    assert_eq!(&opening[..], b":\n");
    for (topic, id) in [("a", "1"), ("b", "2"), ("c", "3"), ("https://e.com/x", "4")] {
        assert_eq!(publish(&hub, &[("topic", topic), ("data", "x"), ("id", id)]).await.0, 200);
    }
    let mut received = String::new();
    while !received.contains("id: 4") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("updates within 5 s")
            .expect("open stream")
            .expect("bytes");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("id: 1") && received.contains("id: 2"), "{received}");
    assert!(!received.contains("id: 3"), "{received}");

    let response = client()
        .request(query_method(), &hub.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("match={}", "a".repeat(5000)))
        .send()
        .await
        .expect("QUERY");
    assert_eq!(response.status(), 413, "over max_request_body_size");
}

#[tokio::test]
async fn the_cursor_is_read_from_the_header_then_the_query_then_the_body() {
    let hub = anonymous_hub(&[]);
    for id in ["c-1", "c-2", "c-3"] {
        assert_eq!(publish(&hub, &[("topic", "c"), ("data", id), ("id", id)]).await.0, 200);
    }
    // `last_event_id` in the query string.
    let mut events = Events::open(&hub, "match=c&last_event_id=c-1", None).await;
    assert_eq!(events.response_headers["mercure-last-event-id"], "c-1");
    assert!(events.response_headers.get("last-event-id").is_none(), "the draft-07 header");
    assert_eq!(events.next().await.id, "c-2");
    // The header beats the query string.
    let mut events =
        Events::open_with(&hub, "match=c&last_event_id=c-1", None, &[("last-event-id", "c-2")])
            .await;
    assert_eq!(events.response_headers["mercure-last-event-id"], "c-2");
    assert_eq!(events.next().await.id, "c-3");
    // Unknown: everything, and `earliest`.
    let mut events = Events::open(&hub, "match=c&last_event_id=nope", None).await;
    assert_eq!(events.response_headers["mercure-last-event-id"], "earliest");
    assert_eq!(events.next().await.id, "c-1");
    // Present but empty: answered, nothing replayed.
    let mut events = Events::open(&hub, "match=c&last_event_id=", None).await;
    assert_eq!(events.response_headers["mercure-last-event-id"], "");
    events.assert_silent(QUIET).await;
    // The draft-07 `lastEventID` is not a Mercure 1.0 parameter.
    let mut events = Events::open(&hub, "match=c&lastEventID=c-1", None).await;
    assert!(events.response_headers.get("mercure-last-event-id").is_none());
    events.assert_silent(QUIET).await;

    // QUERY: the query string beats the body.
    let response = client()
        .request(query_method(), format!("{}?last_event_id=c-2", hub.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("match=c&last_event_id=c-1")
        .send()
        .await
        .expect("QUERY");
    assert_eq!(response.headers()["mercure-last-event-id"], "c-2");
    let response = client()
        .request(query_method(), &hub.url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("match=c&last_event_id=c-1")
        .send()
        .await
        .expect("QUERY");
    assert_eq!(response.headers()["mercure-last-event-id"], "c-1");
}

#[tokio::test]
async fn challenges_point_to_the_protected_resource_metadata() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let metadata_url =
        format!("http://{}/.well-known/oauth-protected-resource/.well-known/mercure", hub.addr);
    let response = client().get(format!("{}?match=a", hub.url)).send().await.expect("subscribe");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer resource_metadata=\"{metadata_url}\"").as_str(),
        "no token: no error code"
    );
    let response = client()
        .get(format!("{}?match=a", hub.url))
        .bearer_auth(access_token_signed_with("not the hub's key"))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata_url}\"").as_str()
    );

    let response = client().get(&metadata_url).send().await.expect("metadata");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(
        document,
        json!({
            "resource": format!("http://{}/.well-known/mercure", hub.addr),
            "bearer_methods_supported": ["header"],
            "authorization_details_types_supported": ["https://mercure.rocks/authorization-detail"],
            "mercure_cookie": "mercureAuthorization",
            "mercure_subscriptions": true,
        })
    );
}

#[tokio::test]
async fn public_urls_answer_421_for_other_hosts() {
    let hub = anonymous_hub(&[
        ("MERCURE_PUBLIC_URLS", "https://hub.example.com"),
        ("MERCURE_USE_FORWARDED_HEADERS", "1"),
        ("MERCURE_TRUSTED_PROXIES", "127.0.0.1"),
    ]);
    let response = client().get(format!("{}?match=a", hub.url)).send().await.expect("subscribe");
    assert_eq!(response.status(), 421, "the hub's own address is not a public URL");
    let response = client()
        .get(format!("{}?match=a", hub.url))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "HUB.example.com")
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 200, "through the proxy, as the public URL");
    let response = client().get(hub.at("/healthz")).send().await.expect("health");
    assert_eq!(response.status(), 200, "probes use addresses");
}

/// The issuer `trusted_issuers` names in these tests.
const ISSUER: &str = "https://localhost";

/// A Mercure detail granting `actions` on `topics` (`(match, match_type)`).
fn detail(actions: &[&str], topics: &[(&str, &str)]) -> serde_json::Value {
    json!({
        "type": "https://mercure.rocks/authorization-detail",
        "actions": actions,
        "topics": topics
            .iter()
            .map(|(pattern, kind)| json!({ "match": pattern, "match_type": kind }))
            .collect::<Vec<_>>(),
    })
}

/// An access token signed with the test key, from `ISSUER`, for `audience`, with `details`.
fn access_token(audience: &str, details: serde_json::Value) -> String {
    access_token_with(json!({
        "iss": ISSUER,
        "aud": audience,
        "exp": 4102444800u64,
        "authorization_details": details,
    }))
}

fn access_token_with(claims: serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()))
        .expect("encode token")
}

async fn subscribe_with(hub: &TestHub, query: &str, token: &str) -> reqwest::Response {
    client().get(format!("{}?{query}", hub.url)).bearer_auth(token).send().await.expect("subscribe")
}

#[tokio::test]
async fn access_tokens_publish_and_receive_private_updates_next_to_draft_07_tokens() {
    let hub = anonymous_hub(&[("MERCURE_TRUSTED_ISSUERS", ISSUER)]);
    // No resource_identifier: the audience is the hub's URL as this client reaches it.
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let books = ("https://example.com/books/:id", "urlpattern");
    let publisher = access_token(&audience, json!([detail(&["publish"], &[books])]));
    let subscriber = access_token(
        &audience,
        json!([detail(&["subscribe"], &[books, ("https://example.com/notes/1", "exact")])]),
    );
    let mut modern =
        Events::open(&hub, &format!("match={}", urlencode("*")), Some(&subscriber)).await;
    let mut legacy = Events::open(&hub, "topic=*", Some(&token(json!({"subscribe": ["*"]})))).await;
    let mut anonymous = Events::open(&hub, "match=*", None).await;

    let form = [
        ("topic", "https://example.com/books/1"),
        ("data", "secret"),
        ("private", "on"),
        ("id", "p1"),
    ];
    assert_eq!(publish_with(&hub, &publisher, &form).await, (200, "p1".to_owned()));
    let public = [("topic", "https://example.com/books/2"), ("data", "hello"), ("id", "p2")];
    assert_eq!(publish_with(&hub, &publisher, &public).await.0, 200);
    // Both protocols, one router: the private update reaches both authorized subscribers.
    assert_eq!(modern.next().await.id_and_data(), ("p1", "secret"));
    assert_eq!(legacy.next().await.id_and_data(), ("p1", "secret"));
    assert_eq!(anonymous.next().await.id, "p2", "anonymous: the public update only");

    // Outside the grant: 403 with the challenge of RFC 6750.
    let response = publish_request(&hub.url, &publisher, &[("topic", "https://example.com/x")])
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 403);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer error=\"insufficient_scope\", resource_metadata="),
        "{:?}",
        response.headers()["www-authenticate"]
    );
    // A subscriber token may not publish, and a publisher token grants no private update.
    assert_eq!(publish_with(&hub, &subscriber, &public).await.0, 403);
    let mut publisher_events = Events::open(&hub, "match=*", Some(&publisher)).await;
    assert_eq!(publish_with(&hub, &publisher, &form).await.0, 200);
    assert_eq!(
        publish_with(&hub, &publisher, &[("topic", "https://example.com/books/3"), ("id", "p3")])
            .await
            .0,
        200
    );
    assert_eq!(publisher_events.next().await.id, "p3");
}

#[tokio::test]
async fn access_tokens_are_refused_whole_for_any_bad_claim() {
    let hub = anonymous_hub(&[("MERCURE_TRUSTED_ISSUERS", ISSUER)]);
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let all = json!([detail(&["publish", "subscribe"], &[("*", "exact")])]);
    assert_eq!(
        subscribe_with(&hub, "match=a", &access_token(&audience, all.clone())).await.status(),
        200
    );
    let invalid_detail = json!([
        detail(&["subscribe"], &[("*", "exact")]),
        { "type": "https://mercure.rocks/authorization-detail", "actions": ["subscribe"], "topics": ["bare"] },
    ]);
    for (what, token) in [
        ("an invalid detail", access_token(&audience, invalid_detail)),
        (
            "an unsupported match type",
            access_token(&audience, json!([detail(&["subscribe"], &[("*", "regex")])])),
        ),
        ("another audience", access_token("https://localhost/.well-known/mercure", all.clone())),
        (
            "another issuer",
            access_token_with(
                json!({"iss": "https://evil", "aud": audience, "exp": 4102444800u64, "authorization_details": all}),
            ),
        ),
        (
            "no exp",
            access_token_with(
                json!({"iss": ISSUER, "aud": audience, "authorization_details": all}),
            ),
        ),
        (
            "expired",
            access_token_with(
                json!({"iss": ISSUER, "aud": audience, "exp": 1, "authorization_details": all}),
            ),
        ),
    ] {
        let response = subscribe_with(&hub, "match=a", &token).await;
        assert_eq!(response.status(), 401, "{what}");
        let challenge = response.headers()["www-authenticate"].to_str().expect("ascii").to_owned();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{what}: {challenge}");
        let response =
            publish_request(&hub.url, &token, &[("topic", "a")]).send().await.expect("publish");
        assert_eq!(response.status(), 401, "{what}: publishing");
    }
    // Access tokens never come from the URL.
    let token = access_token(&audience, all);
    let response = client()
        .get(format!("{}?match=a&authorization={token}", hub.url))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 400, "the authorization parameter is draft-07");
}

#[tokio::test]
async fn access_tokens_granting_more_topics_than_max_selectors_per_token_are_refused() {
    let hub = anonymous_hub(&[
        ("MERCURE_TRUSTED_ISSUERS", ISSUER),
        ("MERCURE_MAX_SELECTORS_PER_TOKEN", "2"),
    ]);
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let topics = [("/a", "exact"), ("/b", "exact"), ("/c", "exact")];
    // Counted over every detail of an action: two details of two topics make four.
    let split = json!([detail(&["subscribe"], &topics[..2]), detail(&["subscribe"], &topics[1..])]);
    let within = access_token(&audience, json!([detail(&["subscribe", "publish"], &topics[..2])]));
    assert_eq!(subscribe_with(&hub, "match=/a", &within).await.status(), 200);
    assert_eq!(publish_with(&hub, &within, &[("topic", "/a")]).await.0, 200);

    for (what, token) in [
        ("subscribe", access_token(&audience, split)),
        ("publish", access_token(&audience, json!([detail(&["publish"], &topics)]))),
    ] {
        let response = subscribe_with(&hub, "match=/a", &token).await;
        let publishing = publish_with(&hub, &token, &[("topic", "/a")]).await;
        assert_eq!((response.status().as_u16(), publishing.0), (401, 401), "{what}");
        let challenge = response.headers()["www-authenticate"].to_str().expect("ascii").to_owned();
        assert!(challenge.starts_with("Bearer error=\"invalid_token\""), "{what}: {challenge}");
        assert!(publishing.1.contains("max_selectors_per_token"), "{what}: {}", publishing.1);
    }
}

/// `deploy/conformance.toml` as `MERCURE_*` variables (memory transport, any address).
fn conformance_settings() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/conformance.toml"))
            .expect("deploy/conformance.toml");
    // A flat file of `key = value` lines: strings in double quotes, booleans bare.
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("key = value");
            let value = value.trim();
            let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
            (format!("MERCURE_{}", key.trim().to_ascii_uppercase()), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_conformance_configuration_accepts_both_official_tokens() {
    let settings = conformance_settings();
    let settings: Vec<(&str, &str)> =
        settings.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let hub = TestHub::start(&settings);
    // Verbatim from the suites (shared/docs/protocol.md, section 5).
    let draft_07 = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7InB1Ymxpc2giOlsiKiJdLCJzdWJzY3JpYmUiOlsiKiJdfX0.bVXdlWXwfw9ySx7-iV5OpUSHo34RkjUdVzDLBcc6l_g";
    let v1 = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJhdWQiOiJodHRwczovL2xvY2FsaG9zdC8ud2VsbC1rbm93bi9tZXJjdXJlIiwiaXNzIjoiaHR0cHM6Ly9sb2NhbGhvc3QiLCJhdXRob3JpemF0aW9uX2RldGFpbHMiOlt7InR5cGUiOiJodHRwczovL21lcmN1cmUucm9ja3MvYXV0aG9yaXphdGlvbi1kZXRhaWwiLCJhY3Rpb25zIjpbInB1Ymxpc2giXSwidG9waWNzIjpbeyJtYXRjaCI6IioifV19LHsidHlwZSI6Imh0dHBzOi8vbWVyY3VyZS5yb2Nrcy9hdXRob3JpemF0aW9uLWRldGFpbCIsImFjdGlvbnMiOlsic3Vic2NyaWJlIl0sInRvcGljcyI6W3sibWF0Y2giOiIqIn1dfV0sImV4cCI6NDEwMjQ0NDgwMH0.z_S8IP5WZsCK8h3pcq0PB5zvJE0OdTrGA70khAYJQy4";
    let mut legacy = Events::open(&hub, "topic=https://example.net/foo/{random}", None).await;
    let mut modern = Events::open(
        &hub,
        &format!("match_urlpattern={}", urlencode("https://example.net/foo/:random")),
        None,
    )
    .await;
    let data = "data for\n\n        multi-line";
    for (token, id) in [(draft_07, "id-draft-07"), (v1, "id-1.0")] {
        let form = [("topic", "https://example.net/foo/abc"), ("data", data), ("id", id)];
        assert_eq!(publish_with(&hub, token, &form).await, (200, id.to_owned()));
    }
    for events in [&mut legacy, &mut modern] {
        assert_eq!(events.next().await.id_and_data(), ("id-draft-07", data));
        assert_eq!(events.next().await.id_and_data(), ("id-1.0", data));
    }
}

#[tokio::test]
async fn subscription_events_reach_each_protocol_in_its_own_format() {
    let hub = anonymous_hub(&[("MERCURE_TRUSTED_ISSUERS", ISSUER), ("MERCURE_SUBSCRIPTIONS", "1")]);
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let presence = ("/.well-known/mercure/subscriptions/*", "urlpattern");
    let watcher_token = access_token(&audience, json!([detail(&["subscribe"], &[presence])]));
    let query = format!("match_urlpattern={}", urlencode(presence.0));
    let mut modern = Events::open(&hub, &query, Some(&watcher_token)).await;
    // Its own arrival first: it is announced once registered.
    let own = modern.next().await;
    assert_eq!(own.event_type.as_deref(), Some("mercure"));
    let own: serde_json::Value = serde_json::from_str(&own.data).expect("JSON");
    assert_eq!((&own["match"], &own["match_type"]), (&json!(presence.0), &json!("urlpattern")));

    // (`*`: a space, escaped `+` in draft-07 topics, is outside the `{/topic}` of a template.)
    let mut legacy = Events::open(&hub, "topic=*", Some(&subscriber())).await;

    // The draft-07 watcher's arrival: `*` is an exact matcher in Mercure 1.0 terms.
    let arrival: serde_json::Value = serde_json::from_str(&modern.next().await.data).expect("JSON");
    assert_eq!((&arrival["match"], &arrival["match_type"]), (&json!("*"), &json!("exact")));
    let own: serde_json::Value = serde_json::from_str(&legacy.next().await.data).expect("JSON");
    assert_eq!(own["@context"], "https://mercure.rocks/", "its own arrival, as JSON-LD");

    let subscriber =
        Events::open(&hub, &format!("match={}", urlencode("https://e.com/a b")), None).await;
    let event = modern.next().await;
    assert_eq!(event.event_type.as_deref(), Some("mercure"), "event: mercure");
    let document: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
    let id = document["subscriber"].as_str().expect("a subscriber id").to_owned();
    let topic = format!(
        "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fe.com%2Fa%20b/{}",
        id.replace(':', "%3A")
    );
    assert_eq!(
        document,
        json!({
            "id": topic,
            "type": "subscription",
            "subscriber": id,
            "match": "https://e.com/a b",
            "match_type": "exact",
            "active": true,
        }),
        "no @context, the match and its type"
    );
    let event = legacy.next().await;
    assert_eq!(event.event_type, None);
    let document: serde_json::Value = serde_json::from_str(&event.data).expect("JSON");
    assert_eq!(document["@context"], "https://mercure.rocks/");
    assert_eq!(document["topic"], "https://e.com/a b");
    assert_eq!(document["subscriber"].as_str(), Some(id.as_str()));

    drop(subscriber);
    let departure: serde_json::Value =
        serde_json::from_str(&modern.next().await.data).expect("JSON");
    assert_eq!((&departure["subscriber"], &departure["active"]), (&json!(id), &json!(false)));
    let departure: serde_json::Value =
        serde_json::from_str(&legacy.next().await.data).expect("JSON");
    assert_eq!(departure["active"], false);
}

#[tokio::test]
async fn the_subscriptions_api_answers_mercure_1_tokens_in_the_new_shape() {
    let hub = anonymous_hub(&[("MERCURE_TRUSTED_ISSUERS", ISSUER), ("MERCURE_SUBSCRIPTIONS", "1")]);
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let presence = ("/.well-known/mercure/subscriptions/*", "urlpattern");
    let reader = access_token(
        &audience,
        json!([detail(
            &["subscribe"],
            &[presence, ("/.well-known/mercure/subscriptions", "exact")]
        )]),
    );
    let _subscriber =
        Events::open(&hub, &format!("match={}", urlencode("https://e.com/a")), None).await;
    let get =
        |path: &str, token: &str| client().get(hub.at(path)).bearer_auth(token.to_owned()).send();

    let response = get("/.well-known/mercure/subscriptions?x=1", &reader).await.expect("API");
    assert_eq!(response.status(), 200, "authorized on the path alone");
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/json");
    let etag = headers["etag"].to_str().expect("ascii").to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let link = headers["link"].to_str().expect("ascii");
    assert_eq!(
        link,
        format!(
            "</.well-known/mercure>; rel=\"mercure\"; last-event-id={etag}; type=\"mercure\"; \
             content-type=\"application/json\""
        )
    );
    let body: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(body["type"], "subscriptions");
    assert!(body.get("lastEventID").is_none() && body.get("@context").is_none());
    let subscriptions = body["subscriptions"].as_array().expect("a list");
    assert_eq!(subscriptions.len(), 1, "{body}");
    let document = &subscriptions[0];
    assert_eq!(
        (&document["match"], &document["match_type"]),
        (&json!("https://e.com/a"), &json!("exact"))
    );
    let id = document["subscriber"].as_str().expect("an id").to_owned();

    // Nothing changed: 304, with the tag.
    let response = client()
        .get(hub.at("/.well-known/mercure/subscriptions"))
        .bearer_auth(&reader)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("API");
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag.as_str());

    let by_matcher = "/.well-known/mercure/subscriptions/exact/https%3A%2F%2Fe.com%2Fa";
    let body: serde_json::Value = serde_json::from_str(
        &get(by_matcher, &reader).await.expect("API").text().await.expect("body"),
    )
    .expect("JSON");
    assert_eq!(body["subscriptions"].as_array().map(Vec::len), Some(1));
    let one = format!("{by_matcher}/{}", id.replace(':', "%3A"));
    let response = get(&one, &reader).await.expect("API");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!((&body["type"], &body["subscriber"]), (&json!("subscription"), &json!(id)));
    assert_eq!(
        get(&format!("{by_matcher}/urn%3Anobody"), &reader).await.expect("API").status(),
        404
    );

    for bad in [
        "/.well-known/mercure/subscriptions/regex/a",
        "/.well-known/mercure/subscriptions/exact/%zz",
    ] {
        assert_eq!(get(bad, &reader).await.expect("API").status(), 400, "{bad}");
    }
    let outsider =
        access_token(&audience, json!([detail(&["subscribe"], &[("https://e.com/a", "exact")])]));
    let response = get("/.well-known/mercure/subscriptions", &outsider).await.expect("API");
    assert_eq!(response.status(), 403);
    // Draft-07 tokens still get the draft-07 shape.
    let legacy = token(
        json!({"subscribe": ["/.well-known/mercure/subscriptions{/topic}{/subscriber}", "/.well-known/mercure/subscriptions"]}),
    );
    let response = get("/.well-known/mercure/subscriptions", &legacy).await.expect("API");
    assert_eq!(response.headers()["content-type"], "application/ld+json");
}

/// A public JWK with `kid` for a PEM public key of the test fixtures.
fn jwk(public_pem: &str, alg: jsonwebtoken::Algorithm, kid: &str) -> serde_json::Value {
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => {
            jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes())
        }
        _ => jsonwebtoken::DecodingKey::from_ec_pem(public_pem.as_bytes()),
    }
    .expect("a public key");
    let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&key, Some(alg)).expect("a JWK");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).expect("serialisable")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("a fixture key")
}

/// Publishes with `token` until the hub accepts it (its JWK Set is fetched in the background),
/// for at most 30 s; returns the last status.
async fn publish_until_accepted(hub: &TestHub, token: &str) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = publish_with(hub, token, &[("topic", "https://e.com/k")]).await;
        if status == 200 || tokio::time::Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_jwk_set_key_rotation_needs_no_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("jwks.json");
    let write = |keys: Vec<serde_json::Value>| {
        std::fs::write(&path, json!({ "keys": keys }).to_string()).expect("write the set");
    };
    write(vec![jwk(&fixture("rsa_public.pem"), jsonwebtoken::Algorithm::RS256, "one")]);
    let issuer = "https://idp.example";
    let issuers = json!({ issuer: { "publisher_jwks_uri": format!("file://{}", path.display()) } });
    let hub = anonymous_hub(&[("MERCURE_ISSUERS", &issuers.to_string())]);
    let audience = format!("http://{}/.well-known/mercure", hub.addr);
    let signed = |alg, private: &str, kid: &str| {
        let mut header = jsonwebtoken::Header::new(alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(kid.to_owned());
        let key = match alg {
            jsonwebtoken::Algorithm::RS256 => {
                jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes())
            }
            _ => jsonwebtoken::EncodingKey::from_ec_pem(private.as_bytes()),
        }
        .expect("a private key");
        let claims = json!({
            "iss": issuer, "aud": audience, "exp": 4102444800u64,
            "authorization_details": [detail(&["publish"], &[("*", "exact")])],
        });
        jsonwebtoken::encode(&header, &claims, &key).expect("encode token")
    };
    let one = signed(jsonwebtoken::Algorithm::RS256, &fixture("rsa_private.pem"), "one");
    assert_eq!(publish_until_accepted(&hub, &one).await, 200, "the set is fetched at start");

    // The issuer rotates: a new key with a new kid, the old one withdrawn.
    write(vec![jwk(&fixture("es256_public.pem"), jsonwebtoken::Algorithm::ES256, "two")]);
    let two = signed(jsonwebtoken::Algorithm::ES256, &fixture("es256_private.pem"), "two");
    assert_eq!(publish_until_accepted(&hub, &two).await, 200, "the unknown kid refreshes the set");
    let (status, _) = publish_with(&hub, &one, &[("topic", "https://e.com/k")]).await;
    assert_eq!(status, 401, "the withdrawn key no longer verifies");
}
