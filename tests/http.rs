//! End-to-end tests of the HTTP surface: security headers, routing, CORS, robustness against
//! malformed input, and the status codes of protocol.md 1.12.
//!
//! Every test starts its own hub (`common::TestHub`) on an ephemeral port and talks to it over
//! real HTTP.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::json;

const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const ALLOWED_ORIGIN: &str = "https://app.example.com";
const OTHER_ORIGIN: &str = "https://evil.example.org";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Asserts the four security headers, with the given CSP.
#[track_caller]
fn assert_security_headers(headers: &HeaderMap, csp: &str, what: &str) {
    let expected = [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("x-xss-protection", "0"),
        ("content-security-policy", csp),
    ];
    for (name, value) in expected {
        let all: Vec<_> = headers.get_all(name).iter().collect();
        assert_eq!(all.len(), 1, "{what}: exactly one {name} header, got {all:?}");
        assert_eq!(all[0], value, "{what}: {name}");
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().expect("ASCII header value"))
}

/// Every value of a (possibly repeated, comma-separated) header, trimmed and lowercased.
fn header_items(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().expect("ASCII header value").split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .filter(|item| !item.is_empty())
        .collect()
}

fn hub_with_query(hub: &TestHub, query: &str) -> String {
    format!("{}?{query}", hub.url)
}

/// A plain GET subscribe request, answered with its status only (the stream is dropped).
async fn subscribe_status(hub: &TestHub, query: &str, token: Option<&str>) -> StatusCode {
    let mut request = client().get(hub_with_query(hub, query));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("subscribe request").status()
}

/// POSTs raw bytes with an optional content type and the all-topics publisher token.
async fn publish_raw(
    hub: &TestHub,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut request = client().post(&hub.url).bearer_auth(publisher()).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("publish request");
    let status = response.status();
    (status, response.text().await.expect("publish body"))
}

const FORM: &str = "application/x-www-form-urlencoded";

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// Unpadded base64url, for hand-made tokens.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Claims allowing everything, publish and subscribe.
fn all_rights() -> serde_json::Value {
    json!({ "mercure": { "publish": ["*"], "subscribe": ["*"] } })
}

/// An unsigned `alg: none` token with full rights.
fn alg_none_token() -> String {
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = base64url(all_rights().to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// A full-rights token signed with a key the hub does not know.
fn foreign_token() -> String {
    token_with("some-other-key-entirely", all_rights())
}

/// A full-rights token that expired a minute ago.
fn expired_token() -> String {
    let mut claims = all_rights();
    claims["exp"] = json!(now() - 60);
    token_with(KEY, claims)
}

/// Garbage `Authorization` header values (raw bytes, so non-ASCII ones can be sent too).
fn garbage_authorization_headers() -> Vec<(String, HeaderValue)> {
    let text = |s: String| HeaderValue::from_str(&s).expect("valid header value");
    let mut cases = vec![
        ("Bearer".to_owned(), text("Bearer".into())),
        ("Bearer + space".to_owned(), text("Bearer ".into())),
        ("Bearer + spaces".to_owned(), text("Bearer    ".into())),
        ("Basic abc".to_owned(), text("Basic abc".into())),
        ("Basic credentials".to_owned(), text("Basic dXNlcjpwYXNz".into())),
        ("Token scheme".to_owned(), text(format!("Token {}", publisher()))),
        ("Bearer a.b.c".to_owned(), text("Bearer a.b.c".into())),
        ("Bearer ...".to_owned(), text("Bearer ...".into())),
        ("Bearer two words".to_owned(), text("Bearer abc def".into())),
        ("Bearer 10 KB".to_owned(), text(format!("Bearer {}", "x".repeat(10 * 1024)))),
        ("alg none".to_owned(), text(format!("Bearer {}", alg_none_token()))),
        ("foreign key".to_owned(), text(format!("Bearer {}", foreign_token()))),
        ("expired".to_owned(), text(format!("Bearer {}", expired_token()))),
        ("token without signature".to_owned(), {
            let token = publisher();
            let (head, _) = token.rsplit_once('.').expect("three parts");
            text(format!("Bearer {head}."))
        }),
    ];
    cases.push((
        "non-ASCII bytes".to_owned(),
        HeaderValue::from_bytes(b"Bearer \xc3\xa9\xff\xfe").expect("obs-text is a valid value"),
    ));
    cases
}

/// Garbage `Cookie` header values.
fn garbage_cookies() -> Vec<(&'static str, HeaderValue)> {
    vec![
        ("empty cookie", HeaderValue::from_static("mercureAuthorization=")),
        ("percent garbage", HeaderValue::from_static("mercureAuthorization=%%%")),
        ("no value", HeaderValue::from_static("mercureAuthorization")),
        ("semicolons", HeaderValue::from_static(";;;=;mercureAuthorization=a.b.c;;")),
        (
            "random bytes",
            HeaderValue::from_bytes(b"\x8f\xa3 =;=\xff\"\\%x\xc3(\xe2\x82 zz=\x80")
                .expect("obs-text is a valid value"),
        ),
    ]
}

/// A fresh topic per call, so that checks never see each other's updates.
fn unique_topic(label: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("https://example.com/{label}/{n}")
}

/// The hub still works: a subscriber receives a normal publication.
async fn assert_hub_works(hub: &TestHub) {
    let topic = unique_topic("still-works");
    let mut events = Events::open(hub, &topics_query(&[&topic]), Some(&subscriber())).await;
    let (status, id) = publish(hub, &[("topic", &topic), ("data", "still alive")]).await;
    assert_eq!(status, 200, "publish after the garbage: {id}");
    let event = events.next().await;
    assert_eq!((event.id.as_str(), event.data.as_str()), (id.as_str(), "still alive"));
}

// ---------------------------------------------------------------------------------------------
// Security headers
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn security_headers_are_on_every_kind_of_response() {
    let hub = TestHub::start(&[]);
    let http = client();

    // Subscribe stream first, so that it is open while the other requests are made.
    let events = Events::open(&hub, "topic=https://example.com/sec", Some(&subscriber())).await;
    assert_security_headers(&events.response_headers, CSP, "subscribe stream");

    let responses = [
        (
            "publish 200",
            http.post(&hub.url)
                .bearer_auth(publisher())
                .header("content-type", FORM)
                .body("topic=https://example.com/sec&data=x"),
            200,
        ),
        (
            "publish 401",
            http.post(&hub.url).header("content-type", FORM).body("topic=https://example.com/sec"),
            401,
        ),
        (
            "publish 403",
            http.post(&hub.url)
                .bearer_auth(token(json!({ "publish": ["https://example.com/other"] })))
                .header("content-type", FORM)
                .body("topic=https://example.com/sec"),
            403,
        ),
        ("publish 400", http.post(&hub.url).bearer_auth(publisher()).body("x"), 400),
        ("subscribe 401", http.get(hub_with_query(&hub, "topic=a")), 401),
        ("subscribe 400", http.get(hub.url.clone()).bearer_auth(subscriber()), 400),
        (
            "HEAD subscribe",
            http.head(hub_with_query(&hub, "topic=a")).bearer_auth(subscriber()),
            200,
        ),
        ("404", http.get(hub.at("/nope")), 404),
        ("404 under the hub", http.get(hub.at("/.well-known/mercure/")), 404),
        ("405", http.put(&hub.url), 405),
        ("405 OPTIONS", http.request(Method::OPTIONS, &hub.url), 405),
        ("healthz", http.get(hub.at("/healthz")), 200),
        ("readyz", http.get(hub.at("/readyz")), 200),
        ("welcome", http.get(hub.at("/")), 200),
    ];
    for (what, request, status) in responses {
        let response = request.send().await.expect(what);
        assert_eq!(response.status(), status, "{what}");
        assert_security_headers(response.headers(), CSP, what);
    }
    drop(events);
}

#[tokio::test]
async fn the_ui_keeps_the_same_content_security_policy() {
    // The UI loads only its own files: turning it on widens nothing.
    let hub = TestHub::start(&[("MERCURE_UI", "1")]);
    let events = Events::open(&hub, "topic=a", Some(&subscriber())).await;
    assert_security_headers(&events.response_headers, CSP, "subscribe stream with the UI");
    for path in ["/", "/healthz", "/nope", "/.well-known/mercure", "/.well-known/mercure/ui/"] {
        let response = client().get(hub.at(path)).send().await.expect(path);
        assert_security_headers(response.headers(), CSP, path);
    }
    let (status, _) = publish(&hub, &[("topic", "a")]).await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn other_methods_on_the_hub_url_are_405() {
    let hub = TestHub::start(&[]);
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS, Method::TRACE] {
        let response = client()
            .request(method.clone(), &hub.url)
            .bearer_auth(publisher())
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 405, "{method} /.well-known/mercure");
        let body = response.text().await.expect("body");
        assert!(body.len() < 200, "{method}: short body, got {body:?}");
    }
    // A preflight-looking OPTIONS is still 405 when CORS is off, and gets no CORS header.
    let response = client()
        .request(Method::OPTIONS, &hub.url)
        .header("origin", ALLOWED_ORIGIN)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(response.status(), 405);
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn paths_other_than_the_hub_are_404_with_a_short_text_body() {
    let hub = TestHub::start(&[]);
    for path in [
        "/.well-known/mercure/",
        "/.well-known//mercure",
        "/.well-known/mercure/x",
        "/.well-known/Mercure",
        "/nope",
        "/healthz/",
    ] {
        for method in [Method::GET, Method::POST] {
            let response = client()
                .request(method.clone(), hub.at(path))
                .bearer_auth(publisher())
                .header("content-type", FORM)
                .body("topic=a")
                .send()
                .await
                .expect(path);
            assert_eq!(response.status(), 404, "{method} {path}");
            assert!(
                header(response.headers(), "content-type")
                    .is_some_and(|t| t.starts_with("text/plain")),
                "{method} {path}: text body"
            );
            let body = response.text().await.expect("body");
            assert!(body.contains("Not Found") && body.len() < 100, "{method} {path}: {body:?}");
        }
    }
}

#[tokio::test]
async fn the_welcome_page_names_the_hub_url() {
    let hub = TestHub::start(&[]);
    let response = client().get(hub.at("/")).send().await.expect("GET /");
    assert_eq!(response.status(), 200);
    let content_type = header(response.headers(), "content-type").expect("content type").to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = response.text().await.expect("body");
    assert!(body.contains(&hub.url), "the page should name {} in {body}", hub.url);
}

#[tokio::test]
async fn the_welcome_page_escapes_the_host_header() {
    let hub = TestHub::start(&[]);
    let response = client()
        .get(hub.at("/"))
        .header("host", "a\"><script>alert(1)</script>")
        .send()
        .await
        .expect("GET /");
    assert_eq!(response.status(), 200);
    let body = response.text().await.expect("body");
    assert!(!body.contains("<script>"), "unescaped host in {body}");
    assert!(
        body.contains("a&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "escaped host in {body}"
    );
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let hub = TestHub::start(&[]);
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let response = client().request(method.clone(), &hub.url).send().await.expect("request");
        assert_eq!(response.status(), 405, "{method}");
        let allow = header_items(response.headers(), "allow");
        for expected in ["get", "head", "post"] {
            assert!(
                allow.contains(&expected.to_owned()),
                "{method}: Allow {allow:?} lacks {expected}"
            );
        }
    }
}

#[tokio::test]
async fn health_and_readiness_with_the_memory_transport() {
    let hub = TestHub::start(&[]);
    for path in ["/healthz", "/readyz"] {
        let response = client().get(hub.at(path)).send().await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn health_and_readiness_with_the_embedded_transport() {
    let (_dir, path) = history_file();
    let hub = TestHub::start_embedded(&path, &[]);
    for route in ["/healthz", "/readyz"] {
        let response = client().get(hub.at(route)).send().await.expect(route);
        assert_eq!(response.status(), 200, "{route}");
    }
    let (status, _) = publish(&hub, &[("topic", "a")]).await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

fn cors_hub() -> TestHub {
    TestHub::start(&[("MERCURE_CORS_ORIGINS", ALLOWED_ORIGIN)])
}

async fn preflight(hub: &TestHub, origin: &str, method: &str, headers: &str) -> reqwest::Response {
    client()
        .request(Method::OPTIONS, &hub.url)
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn cors_preflight_from_an_allowed_origin() {
    let hub = cors_hub();
    for method in ["GET", "POST", "HEAD"] {
        let response = preflight(&hub, ALLOWED_ORIGIN, method, "authorization,last-event-id").await;
        assert_eq!(response.status(), 204, "{method}");
        let headers = response.headers();
        assert_eq!(header(headers, "access-control-allow-origin"), Some(ALLOWED_ORIGIN));
        assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"));
        assert_eq!(header(headers, "access-control-allow-methods"), Some(method));
        assert_eq!(
            header_items(headers, "access-control-allow-headers"),
            ["authorization", "last-event-id"],
            "{method}"
        );
        let vary = header_items(headers, "vary");
        for expected in
            ["origin", "access-control-request-method", "access-control-request-headers"]
        {
            assert!(
                vary.contains(&expected.to_owned()),
                "{method}: Vary {vary:?} lacks {expected}"
            );
        }
        assert_security_headers(headers, CSP, "preflight");
    }
    // Header names and the origin compare case-insensitively.
    let response =
        preflight(&hub, "HTTPS://APP.example.com", "GET", "Authorization, Cache-Control").await;
    assert_eq!(response.status(), 204);
    assert!(response.headers().get("access-control-allow-origin").is_some());
}

#[tokio::test]
async fn cors_preflight_from_another_origin_gets_no_allow_origin() {
    let hub = cors_hub();
    for origin in
        [OTHER_ORIGIN, "http://app.example.com", "https://app.example.com.evil.org", "null"]
    {
        let response = preflight(&hub, origin, "GET", "authorization").await;
        assert_eq!(response.status(), 204, "{origin}");
        for name in ["access-control-allow-origin", "access-control-allow-credentials"] {
            assert!(response.headers().get(name).is_none(), "{origin}: unexpected {name}");
        }
        assert!(header_items(response.headers(), "vary").contains(&"origin".to_owned()));
    }
}

#[tokio::test]
async fn cors_preflight_asking_for_a_disallowed_header_gets_no_allow_origin() {
    let hub = cors_hub();
    let response = preflight(&hub, ALLOWED_ORIGIN, "GET", "authorization,x-custom").await;
    assert_eq!(response.status(), 204);
    let headers = response.headers();
    for name in [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-headers",
        "access-control-allow-methods",
    ] {
        assert!(headers.get(name).is_none(), "unexpected {name}: {:?}", headers.get(name));
    }
}

#[tokio::test]
async fn cors_preflight_asking_for_a_disallowed_method_gets_no_allow_origin() {
    let hub = cors_hub();
    let mut leaks = Vec::new();
    for method in ["PUT", "DELETE", "get", ""] {
        let mut request =
            client().request(Method::OPTIONS, &hub.url).header("origin", ALLOWED_ORIGIN);
        if !method.is_empty() {
            request = request.header("access-control-request-method", method);
        }
        let response = request.send().await.expect("preflight");
        assert_eq!(response.status(), 204, "{method:?}");
        for name in ["access-control-allow-origin", "access-control-allow-credentials"] {
            if let Some(value) = response.headers().get(name) {
                leaks.push(format!("method {method:?}: {name}: {value:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "refused preflights carry CORS grants: {leaks:#?}");
}

/// The headers of an actual cross-origin request from an allowed origin.
#[track_caller]
fn assert_actual_cors(headers: &HeaderMap, origin: &str, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{what}: ACAO");
    assert_eq!(header(headers, "access-control-allow-credentials"), Some("true"), "{what}: ACAC");
    assert!(
        header_items(headers, "access-control-expose-headers")
            .contains(&"last-event-id".to_owned()),
        "{what}: Access-Control-Expose-Headers should list Last-Event-ID"
    );
    assert!(header_items(headers, "vary").contains(&"origin".to_owned()), "{what}: Vary: Origin");
}

#[tokio::test]
async fn cors_actual_requests_from_the_allowed_origin() {
    let hub = cors_hub();
    let topic = "https://example.com/cors";
    let mut events = Events::open_with(
        &hub,
        &topics_query(&[topic]),
        Some(&subscriber()),
        &[("origin", ALLOWED_ORIGIN)],
    )
    .await;
    assert_actual_cors(&events.response_headers, ALLOWED_ORIGIN, "subscribe");

    let response = client()
        .post(&hub.url)
        .bearer_auth(publisher())
        .header("origin", ALLOWED_ORIGIN)
        .header("content-type", FORM)
        .body(encode_form(&[("topic", topic), ("data", "cross-origin")]))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    assert_actual_cors(response.headers(), ALLOWED_ORIGIN, "publish");
    assert_eq!(events.next().await.data, "cross-origin");

    // Errors carry the CORS headers too, so that the page can read them.
    let response = client()
        .post(&hub.url)
        .header("origin", ALLOWED_ORIGIN)
        .header("content-type", FORM)
        .body("topic=a")
        .send()
        .await
        .expect("unauthenticated publish");
    assert_eq!(response.status(), 401);
    assert_actual_cors(response.headers(), ALLOWED_ORIGIN, "publish 401");
}

#[tokio::test]
async fn cors_actual_requests_from_another_origin_are_served_without_cors_headers() {
    let hub = cors_hub();
    let topic = "https://example.com/cors-other";
    let mut events = Events::open_with(
        &hub,
        &topics_query(&[topic]),
        Some(&subscriber()),
        &[("origin", OTHER_ORIGIN)],
    )
    .await;
    assert!(events.response_headers.get("access-control-allow-origin").is_none());
    assert!(events.response_headers.get("access-control-allow-credentials").is_none());

    let response = client()
        .post(&hub.url)
        .bearer_auth(publisher())
        .header("origin", OTHER_ORIGIN)
        .header("content-type", FORM)
        .body(encode_form(&[("topic", topic), ("data", "served anyway")]))
        .send()
        .await
        .expect("publish");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("access-control-allow-origin").is_none());
    assert_eq!(events.next().await.data, "served anyway");

    // Without any Origin: no CORS headers either.
    let response = client().get(hub.at("/healthz")).send().await.expect("healthz");
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_wildcard_answers_a_literal_star_without_credentials() {
    // With `*`, any origin may read, but never with the visitor's cookies: echoing the origin with
    // credentials would let every site read private updates (tests/cors.rs performs that attack).
    let hub = TestHub::start(&[("MERCURE_CORS_ORIGINS", "*")]);
    for origin in [ALLOWED_ORIGIN, OTHER_ORIGIN, "http://localhost:3000", "null"] {
        let response = preflight(&hub, origin, "GET", "authorization").await;
        assert_eq!(response.status(), 204);
        assert_eq!(header(response.headers(), "access-control-allow-origin"), Some("*"));
        assert!(response.headers().get("access-control-allow-credentials").is_none(), "{origin}");

        let events =
            Events::open_with(&hub, "topic=a", Some(&subscriber()), &[("origin", origin)]).await;
        assert_anonymous_cors(&events.response_headers, "subscribe with *");

        let response = client()
            .post(&hub.url)
            .bearer_auth(publisher())
            .header("origin", origin)
            .header("content-type", FORM)
            .body("topic=a")
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 200);
        assert_anonymous_cors(response.headers(), "publish with *");
    }
}

/// The headers of an actual cross-origin request allowed through `*`: no credentials.
#[track_caller]
fn assert_anonymous_cors(headers: &HeaderMap, what: &str) {
    assert_eq!(header(headers, "access-control-allow-origin"), Some("*"), "{what}: ACAO");
    assert!(headers.get("access-control-allow-credentials").is_none(), "{what}: ACAC");
    assert!(
        header_items(headers, "access-control-expose-headers")
            .contains(&"last-event-id".to_owned()),
        "{what}: Access-Control-Expose-Headers should list Last-Event-ID"
    );
}

// ---------------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_subscribe_query_strings_get_4xx() {
    let hub = TestHub::start(&[]);
    let long_topic = format!("topic={}", "a".repeat(40_000));
    let long_garbage = format!("topic=a&x={}", "%".repeat(30_000));
    let long_pairs = "&=".repeat(10_000);
    let sub = subscriber();
    // (query, send the valid subscriber token in the header, expected status)
    let cases: Vec<(&str, bool, u16)> = vec![
        ("topic=%", true, 400),
        ("topic=%zz", true, 400),
        ("topic=%4", true, 400),
        ("topic=%FF", true, 400),
        ("topic=%C3%28", true, 400),
        ("topic=a&lastEventID=%", true, 400),
        ("topic=a&lastEventID=%FF", true, 400),
        ("=", true, 400),
        ("&&&", true, 400),
        ("", true, 400),
        ("topics=a", true, 400),
        ("Topic=a", true, 400),
        (&long_garbage, true, 400),
        (&long_pairs, true, 400),
        // A topic selector with an empty value is a selector (as in the reference hub).
        ("topic", true, 200),
        // Longer than `max_selector_length` (4096 bytes by default).
        (&long_topic, true, 400),
        ("topic=a&topic=a&topic=a", true, 200),
        ("topic=a&lastEventID=", true, 200),
        ("topic=a&lastEventID=unknown%00id", true, 200),
        // Query tokens (no header).
        ("topic=a&authorization=garbage", false, 401),
        ("topic=a&authorization=", false, 401),
        // Two tokens: RFC 6750's invalid_request.
        ("topic=a&authorization=a&authorization=b", false, 400),
        ("authorization=garbage", false, 401),
        ("topic=a", false, 401),
    ];
    for (query, with_token, expected) in &cases {
        let token = with_token.then_some(sub.as_str());
        let status = subscribe_status(&hub, query, token).await;
        let shown: String = query.chars().take(60).collect();
        assert_eq!(status.as_u16(), *expected, "subscribe ?{shown} (token: {with_token})");
    }
    // Two valid query tokens are refused too: the hub never picks one.
    let query = format!("topic=a&authorization={sub}&authorization={sub}");
    assert_eq!(subscribe_status(&hub, &query, None).await, 400);
    // A valid query token works.
    assert_eq!(subscribe_status(&hub, &format!("topic=a&authorization={sub}"), None).await, 200);
    // URI-template-looking garbage is either taken literally or refused, never a 5xx.
    for query in ["topic=%7B", "topic=%7Bx", "topic=%7D%7B", "topic=https://e.com/%7Bid%7D%7B%7D"] {
        let status = subscribe_status(&hub, query, Some(&sub)).await;
        assert!(status == 200 || status == 400, "?{query}: {status}");
    }
    assert_hub_works(&hub).await;
}

#[tokio::test]
async fn garbage_authorization_headers_get_400_or_401() {
    let hub = TestHub::start(&[]);
    let anonymous = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    for (what, value) in garbage_authorization_headers() {
        // RFC 6750: a header that is not `Bearer <token>` is a malformed request (400,
        // invalid_request); a token that does not verify is 401 (invalid_token).
        let malformed = !value
            .to_str()
            .is_ok_and(|v| v.strip_prefix("Bearer ").is_some_and(|token| !token.trim().is_empty()));
        let expected = if malformed { 400 } else { 401 };
        for (which, hub) in [("hub", &hub), ("anonymous hub", &anonymous)] {
            let response = client()
                .get(hub_with_query(hub, "topic=a"))
                .header("authorization", value.clone())
                .send()
                .await
                .expect("subscribe");
            assert_eq!(response.status(), expected, "subscribe with {what} on the {which}");
            let challenge = header(response.headers(), "www-authenticate").unwrap_or_default();
            let error = if malformed { "invalid_request" } else { "invalid_token" };
            assert!(
                challenge.starts_with(&format!("Bearer error=\"{error}\"")),
                "{what}: WWW-Authenticate {challenge:?}"
            );

            let response = client()
                .post(&hub.url)
                .header("authorization", value.clone())
                .header("content-type", FORM)
                .body("topic=a&data=x")
                .send()
                .await
                .expect("publish");
            assert_eq!(response.status(), expected, "publish with {what} on the {which}");
        }
    }
    // Two Authorization headers, even if one is valid.
    for hub in [&hub, &anonymous] {
        let response = client()
            .get(hub_with_query(hub, "topic=a"))
            .header("authorization", format!("Bearer {}", subscriber()))
            .header("authorization", "Bearer a.b.c")
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 400, "two Authorization headers");
    }
    // A malformed header is never overridden by a valid query token.
    let response = client()
        .get(hub_with_query(&hub, &format!("topic=a&authorization={}", subscriber())))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 400);
    assert_hub_works(&hub).await;
    assert_hub_works(&anonymous).await;
}

#[tokio::test]
async fn garbage_cookies_get_401() {
    let hub = TestHub::start(&[("MERCURE_PUBLISH_ORIGINS", "*")]);
    for (what, value) in garbage_cookies() {
        let response = client()
            .get(hub_with_query(&hub, "topic=a"))
            .header("cookie", value.clone())
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 401, "subscribe with cookie: {what}");

        let response = client()
            .post(&hub.url)
            .header("cookie", value.clone())
            .header("origin", ALLOWED_ORIGIN)
            .header("content-type", FORM)
            .body("topic=a")
            .send()
            .await
            .expect("publish");
        assert_eq!(response.status(), 401, "publish with cookie: {what}");

        // With a valid bearer token, a garbage cookie is irrelevant.
        let response = client()
            .get(hub_with_query(&hub, "topic=a"))
            .bearer_auth(subscriber())
            .header("cookie", value)
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 200, "subscribe with a token and cookie: {what}");
    }
    // A valid cookie works (sanity check of the cookie path itself).
    let response = client()
        .get(hub_with_query(&hub, "topic=a"))
        .header("cookie", format!("mercureAuthorization={}", subscriber()))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(response.status(), 200);

    // On an anonymous hub, a present but invalid cookie is refused, never downgraded.
    let anonymous = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);
    for cookie in ["mercureAuthorization=a.b.c", "mercureAuthorization=%%%"] {
        let response = client()
            .get(hub_with_query(&anonymous, "topic=a"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 401, "anonymous hub, cookie {cookie}");
    }
    assert_hub_works(&hub).await;
}

#[tokio::test]
async fn garbage_publish_bodies_get_400() {
    let hub = TestHub::start(&[]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("lone %", b"topic=%".to_vec()),
        ("bad escape", b"topic=%zz".to_vec()),
        ("short escape", b"topic=a&data=%4".to_vec()),
        ("bad escape in a key", b"topic=a&%zz=1".to_vec()),
        ("bad escape in an unused field", b"topic=a&whatever=%".to_vec()),
        ("invalid UTF-8 topic", b"topic=%FF".to_vec()),
        ("invalid UTF-8 data", b"topic=a&data=%C3%28".to_vec()),
        ("overlong UTF-8", b"topic=a&data=%C0%AF".to_vec()),
        ("UTF-16 surrogate", b"topic=a&data=%ED%A0%80".to_vec()),
        ("raw invalid UTF-8", b"topic=a&data=\xff\xfe".to_vec()),
        ("topic with NUL", b"topic=a%00b".to_vec()),
        ("topic with CR", b"topic=a%0Db".to_vec()),
        ("topic with LF", b"topic=a%0Ab".to_vec()),
        ("alternate topic with LF", b"topic=a&topic=b%0A".to_vec()),
        ("id with LF", b"topic=a&id=x%0Aevent%3A%20evil".to_vec()),
        ("id with CR", b"topic=a&id=x%0D".to_vec()),
        ("id with NUL", b"topic=a&id=x%00".to_vec()),
        ("type with LF", b"topic=a&type=x%0Adata%3A%20evil".to_vec()),
        ("huge retry", b"topic=a&retry=99999999999999999999999".to_vec()),
        ("negative retry", b"topic=a&retry=-1".to_vec()),
        ("signed retry", b"topic=a&retry=%2B5".to_vec()),
        ("hex retry", b"topic=a&retry=0x10".to_vec()),
        ("fractional retry", b"topic=a&retry=1.5".to_vec()),
        ("retry with space", b"topic=a&retry=+5".to_vec()),
        ("id #x", b"topic=a&id=%23x".to_vec()),
        ("id earliest", b"topic=a&id=earliest".to_vec()),
        ("empty body", Vec::new()),
        ("no topic", b"data=x&id=y".to_vec()),
        ("only separators", b"&&&===&".to_vec()),
        ("binary", (0u8..=255).rev().cycle().take(700).collect()),
    ];
    for (what, body) in cases {
        let (status, text) = publish_raw(&hub, Some(FORM), body).await;
        assert_eq!(status, 400, "{what}: {text}");
        assert!(text.len() < 300 && text.ends_with('\n'), "{what}: short text body, got {text:?}");
    }
    // Edge values that are fine.
    for (what, body) in [
        ("empty retry", "topic=a&retry="),
        ("zero retry", "topic=a&retry=0"),
        ("max u64 retry", "topic=a&retry=18446744073709551615"),
        ("empty id", "topic=a&id="),
        ("id with # later", "topic=a&id=a%23b"),
        ("Earliest is not earliest", "topic=a&id=Earliest"),
        ("empty topic", "topic="),
        ("tab in data", "topic=a&data=%09"),
        ("newlines in data", "topic=a&data=a%0D%0Ab%0Ac%0Dd"),
    ] {
        let (status, text) = publish_raw(&hub, Some(FORM), body.as_bytes().to_vec()).await;
        assert_eq!(status, 200, "{what}: {text}");
    }
    assert_hub_works(&hub).await;
}

#[tokio::test]
async fn publish_content_types() {
    let hub = TestHub::start(&[]);
    let body = || b"topic=https://example.com/ct&data=x".to_vec();
    for (content_type, expected) in [
        (None, 400),
        (Some("text/plain"), 400),
        (Some("application/json"), 400),
        (Some("application/octet-stream"), 400),
        (Some("multipart/form-data"), 400),
        (Some("multipart/form-data; boundary=xyz"), 400),
        (Some("text/plain; boundary="), 400),
        (Some(";;;"), 400),
        (Some("application/"), 400),
        (Some("/"), 400),
        (Some(""), 400),
        (Some("application/x-www-form-urlencoded-not"), 400),
        (Some("application/x-www-form-urlencoded"), 200),
        (Some("application/x-www-form-urlencoded; charset=utf-8"), 200),
        (Some("application/x-www-form-urlencoded;charset=UTF-8"), 200),
        (Some("Application/X-WWW-Form-Urlencoded"), 200),
    ] {
        let (status, text) = publish_raw(&hub, content_type, body()).await;
        assert_eq!(status, expected, "Content-Type {content_type:?}: {text}");
    }
    assert_hub_works(&hub).await;
}

#[tokio::test]
async fn publish_refuses_a_malformed_form_media_type() {
    let hub = TestHub::start(&[]);
    let mut accepted = Vec::new();
    for content_type in [
        "application/x-www-form-urlencoded; boundary=",
        "application/x-www-form-urlencoded; charset=",
        "application/x-www-form-urlencoded; =utf-8",
    ] {
        let (status, _) = publish_raw(&hub, Some(content_type), b"topic=a".to_vec()).await;
        if status != 400 {
            accepted.push(format!("{content_type:?} -> {status}"));
        }
    }
    assert!(accepted.is_empty(), "malformed media types accepted: {accepted:?}");
}

/// A publish body of exactly `size` bytes: `topic=a&data=xxx…`.
fn body_of(size: usize) -> Vec<u8> {
    let mut body = b"topic=a&data=".to_vec();
    body.resize(size, b'x');
    body
}

#[tokio::test]
async fn publish_body_limit_with_content_length() {
    let hub = TestHub::start(&[("MERCURE_MAX_REQUEST_BODY_SIZE", "1KB")]);
    let (status, text) = publish_raw(&hub, Some(FORM), body_of(1000)).await;
    assert_eq!(status, 200, "exactly the limit: {text}");
    for size in [1001, 2000, 100_000] {
        let (status, text) = publish_raw(&hub, Some(FORM), body_of(size)).await;
        assert_eq!(status, 413, "{size} bytes: {text}");
        assert!(text.contains("1000"), "the message names the limit: {text}");
    }
    // A lying, oversized Content-Length on an empty body is refused without waiting for it.
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client()
            .post(&hub.url)
            .bearer_auth(publisher())
            .header("content-type", FORM)
            .header("content-length", "999999999")
            .body(Vec::new())
            .send(),
    )
    .await
    .expect("answered at once, without waiting for the body");
    assert_eq!(response.expect("a hub answer").status(), 413);
    assert_hub_works(&hub).await;
}

fn chunked(body: Vec<u8>, chunk: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn publish_body_limit_without_content_length() {
    let hub = TestHub::start(&[("MERCURE_MAX_REQUEST_BODY_SIZE", "1KB")]);
    for (size, chunk, expected) in
        [(1000, 100, 200), (1000, 1000, 200), (1001, 100, 413), (2000, 300, 413), (3000, 3000, 413)]
    {
        let request = client()
            .post(&hub.url)
            .bearer_auth(publisher())
            .header("content-type", FORM)
            .body(chunked(body_of(size), chunk))
            .build()
            .expect("request");
        assert!(request.headers().get("content-length").is_none(), "streamed without a length");
        let response = client().execute(request).await.expect("chunked publish");
        assert_eq!(response.status(), expected, "{size} bytes in chunks of {chunk}");
    }
    assert_hub_works(&hub).await;
}

#[tokio::test]
async fn odd_last_event_id_headers_do_not_crash_the_hub() {
    let hub = TestHub::start(&[]);
    let topic = "https://example.com/odd-cursor";
    let (status, id) = publish(&hub, &[("topic", topic), ("data", "stored")]).await;
    assert_eq!(status, 200);
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_bytes(b"\xff\xfe\xfd").expect("obs-text"),
        HeaderValue::from_bytes(b"\xc3\x28 invalid utf-8").expect("obs-text"),
        HeaderValue::from_bytes(b"a\tb").expect("tab is allowed"),
        HeaderValue::from_static("#1"),
        HeaderValue::from_static("earliest "),
        HeaderValue::from_str(&"z".repeat(8000)).expect("long"),
    ];
    for value in values {
        let response = client()
            .get(hub_with_query(&hub, &topics_query(&[topic])))
            .bearer_auth(subscriber())
            .header("last-event-id", value.clone())
            .send()
            .await
            .expect("subscribe");
        assert_eq!(response.status(), 200, "Last-Event-ID {value:?}");
        // Unknown ids replay all the history, and say so.
        assert_eq!(header(response.headers(), "last-event-id"), Some("earliest"), "{value:?}");
    }
    // The replay of such a request really happens.
    let mut events = Events::open_with(
        &hub,
        &topics_query(&[topic]),
        Some(&subscriber()),
        &[("last-event-id", "no-such-id")],
    )
    .await;
    assert_eq!(events.next().await.id, id);
    assert_hub_works(&hub).await;
}

// ---------------------------------------------------------------------------------------------
// Status codes (protocol.md 1.12)
// ---------------------------------------------------------------------------------------------

async fn publish_as(hub: &TestHub, token: Option<&str>, body: &str) -> reqwest::Response {
    let mut request = client().post(&hub.url).header("content-type", FORM).body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("publish")
}

/// The Bearer challenge of `hub` (RFC 6750) with its metadata URL (RFC 9728).
fn metadata_challenge(hub: &TestHub, error: Option<&str>) -> String {
    let metadata =
        format!("http://{}/.well-known/oauth-protected-resource/.well-known/mercure", hub.addr);
    match error {
        None => format!("Bearer resource_metadata=\"{metadata}\""),
        Some(error) => format!("Bearer error=\"{error}\", resource_metadata=\"{metadata}\""),
    }
}

#[tokio::test]
async fn publish_status_codes() {
    let hub = TestHub::start(&[]);
    let a = "https://example.com/a";
    let b = "https://example.com/b";
    let body = |topics: &[&str]| {
        topics.iter().map(|t| format!("topic={}", urlencode(t))).collect::<Vec<_>>().join("&")
    };

    let response = publish_as(&hub, None, &body(&[a])).await;
    assert_eq!(response.status(), 401, "no token");
    // RFC 6750: no error code without a token, and where to find out how to get one.
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some(metadata_challenge(&hub, None).as_str())
    );

    let subscribe_only = token(json!({ "subscribe": ["*"] }));
    assert_eq!(publish_as(&hub, Some(&subscribe_only), &body(&[a])).await.status(), 401);
    let no_mercure = token_with(KEY, json!({ "sub": "someone" }));
    assert_eq!(publish_as(&hub, Some(&no_mercure), &body(&[a])).await.status(), 401);

    let only_a = token(json!({ "publish": [a] }));
    let response = publish_as(&hub, Some(&only_a), &body(&[b])).await;
    assert_eq!(response.status(), 403, "topic not allowed");
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some(metadata_challenge(&hub, Some("insufficient_scope")).as_str())
    );
    assert_eq!(publish_as(&hub, Some(&only_a), &body(&[a, b])).await.status(), 403, "alternate");
    assert_eq!(
        publish_as(&hub, Some(&only_a), &format!("{}&private=", body(&[b]))).await.status(),
        403,
        "private"
    );
    assert_eq!(publish_as(&hub, Some(&only_a), &body(&[a])).await.status(), 200, "allowed");
    let nothing = token(json!({ "publish": [] }));
    assert_eq!(publish_as(&hub, Some(&nothing), &body(&[a])).await.status(), 403, "publish: []");

    // Authorization is checked before the body.
    assert_eq!(publish_as(&hub, Some(&foreign_token()), "").await.status(), 401);
    assert_eq!(publish_as(&hub, None, "topic=%zz").await.status(), 401);
    assert_eq!(publish_as(&hub, Some(&publisher()), "").await.status(), 400);
}

#[tokio::test]
async fn subscribe_status_codes() {
    let hub = TestHub::start(&[]);
    let anonymous = TestHub::start(&[("MERCURE_ANONYMOUS", "1")]);

    let response = client().get(hub_with_query(&hub, "topic=a")).send().await.expect("subscribe");
    assert_eq!(response.status(), 401, "no token on a non-anonymous hub");
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some(metadata_challenge(&hub, None).as_str())
    );
    let response = client()
        .get(hub_with_query(&hub, "topic=a"))
        .bearer_auth(expired_token())
        .send()
        .await
        .expect("subscribe");
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        Some(metadata_challenge(&hub, Some("invalid_token")).as_str())
    );
    assert_eq!(subscribe_status(&anonymous, "topic=a", None).await, 200, "anonymous");

    for bad in [foreign_token(), expired_token(), alg_none_token()] {
        assert_eq!(
            subscribe_status(&anonymous, "topic=a", Some(&bad)).await,
            401,
            "never downgraded"
        );
        assert_eq!(subscribe_status(&hub, "topic=a", Some(&bad)).await, 401);
    }

    assert_eq!(subscribe_status(&hub, "", Some(&subscriber())).await, 400, "missing topic");
    assert_eq!(subscribe_status(&anonymous, "", None).await, 400, "missing topic, anonymous");
    // Authorization first: an invalid token with no topic is 401, not 400.
    assert_eq!(subscribe_status(&hub, "", Some(&foreign_token())).await, 401);
    assert_eq!(subscribe_status(&anonymous, "", Some(&foreign_token())).await, 401);
    assert_eq!(subscribe_status(&hub, "", None).await, 401, "no token, no topic");
    // A token that allows no private topic is still a valid subscriber token.
    let no_claim = token_with(KEY, json!({ "sub": "someone" }));
    assert_eq!(subscribe_status(&hub, "topic=a", Some(&no_claim)).await, 200);
}

#[tokio::test]
async fn the_welcome_page_links_the_ui_only_when_it_is_on() {
    for (ui, linked) in [("1", true), ("0", false)] {
        let hub = TestHub::start(&[("MERCURE_UI", ui)]);
        let page = client().get(hub.at("/")).send().await.expect("welcome page");
        let page = page.text().await.expect("body");
        assert_eq!(page.contains("href=\"/.well-known/mercure/ui/\""), linked, "{page}");
        let ui_page = client().get(hub.at("/.well-known/mercure/ui/")).send().await.expect("ui");
        assert_eq!(ui_page.status(), if linked { 200 } else { 404 });
    }
}
