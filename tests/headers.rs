//! Response headers that keep data where it belongs (issue 7): the subscriptions API is never
//! cached (`Cache-Control: private, no-store`), the Content-Security-Policy allows nothing from
//! other origins, and the deprecated XSS filter is turned off.
//!
//! The security headers of every other kind of response are checked in tests/http.rs.

mod common;

use common::*;
use reqwest::header::HeaderMap;
use serde_json::json;

const API: &str = "/.well-known/mercure/subscriptions";
const CSP: &str = "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

async fn get(
    hub: &TestHub,
    path: &str,
    token: Option<&str>,
    etag: Option<&str>,
) -> (u16, HeaderMap) {
    let (status, _, headers) = get_with(hub, path, token, etag).await;
    (status, headers)
}

#[track_caller]
fn assert_not_cached(headers: &HeaderMap, what: &str) {
    let all: Vec<_> = headers.get_all("cache-control").iter().collect();
    assert_eq!(all, ["private, no-store"], "{what}: Cache-Control");
}

#[tokio::test]
async fn the_subscriptions_api_is_never_cached() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let api = token(json!({ "subscribe": [format!("{API}{{/topic}}{{/subscriber}}")] }));
    let _member = Events::open(&hub, "topic=https://e.com/1", Some(&subscriber())).await;

    let (status, headers) = get(&hub, API, Some(&api), None).await;
    assert_eq!(status, 200);
    assert_not_cached(&headers, "collection");
    let etag = headers.get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_owned();

    let (status, headers) = get(&hub, API, Some(&api), Some(&etag)).await;
    assert_eq!(status, 304);
    assert_not_cached(&headers, "304");

    let cases = [
        (format!("{API}/https%3A%2F%2Fe.com%2F1"), Some(api.as_str()), 200, "one topic"),
        (format!("{API}/t/urn%3Auuid%3Anope"), Some(api.as_str()), 404, "unknown subscription"),
        (format!("{API}/a/b/c"), Some(api.as_str()), 404, "not an API path"),
        (API.to_owned(), None, 401, "no token"),
        (API.to_owned(), Some("garbage"), 401, "bad token"),
        (format!("{API}/t"), Some(&*token(json!({ "subscribe": [API] }))), 403, "not allowed"),
    ];
    for (path, token, expected, what) in &cases {
        let (status, headers) = get(&hub, path, *token, None).await;
        assert_eq!(status, *expected, "{what}");
        assert_not_cached(&headers, what);
        // The API keeps the hub-wide security headers.
        assert_eq!(
            headers.get("content-security-policy").map(|v| v.as_bytes()),
            Some(CSP.as_bytes())
        );
    }
}

#[tokio::test]
async fn ui_pages_allow_nothing_from_other_origins() {
    let hub = TestHub::start(&[("MERCURE_UI", "1")]);
    for path in ["/.well-known/mercure/ui/", "/.well-known/mercure/ui/app.js", "/"] {
        let response = client().get(hub.at(path)).send().await.expect(path);
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-security-policy"], CSP, "{path}");
        assert_eq!(headers["x-xss-protection"], "0", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
}
