//! `compress`: the UI, the subscriptions API and the welcome page are compressed with what the
//! client accepts (gzip, brotli); event streams never are, so no event waits in an encoder.

mod common;

use std::io::Read;

use common::*;

const API: &str = "/.well-known/mercure/subscriptions";

/// `path` of `hub`, asking for `encoding`: the answer's `Content-Encoding` and its body decoded.
async fn fetch(hub: &TestHub, path: &str, encoding: &str) -> (Option<String>, String) {
    let token =
        token(serde_json::json!({ "subscribe": [API, format!("{API}{{/topic}}{{/subscriber}}")] }));
    let response = client()
        .get(hub.at(path))
        .header("accept-encoding", encoding)
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200, "{path}");
    let content_encoding = response
        .headers()
        .get("content-encoding")
        .map(|value| value.to_str().expect("ASCII").to_owned());
    let body = response.bytes().await.expect("a body").to_vec();
    let mut text = String::new();
    match content_encoding.as_deref() {
        Some("gzip") => {
            flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).expect("gzip");
        }
        Some("br") => {
            brotli::Decompressor::new(&body[..], 4096).read_to_string(&mut text).expect("brotli");
        }
        _ => text = String::from_utf8(body).expect("UTF-8"),
    }
    (content_encoding, text)
}

#[tokio::test]
async fn the_ui_the_api_and_the_welcome_page_are_compressed_as_the_client_accepts() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1"), ("MERCURE_UI", "1")]);
    for (encoding, expected) in [("gzip", "gzip"), ("br", "br"), ("br, gzip;q=0.5", "br")] {
        let (used, body) = fetch(&hub, API, encoding).await;
        assert_eq!(used.as_deref(), Some(expected), "the API for {encoding}");
        let document: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(document["type"], "Subscriptions");
        let (used, body) = fetch(&hub, "/.well-known/mercure/ui/", encoding).await;
        assert_eq!(used.as_deref(), Some(expected), "the UI for {encoding}");
        assert!(body.contains("<html"), "{body}");
        let (used, body) = fetch(&hub, "/", encoding).await;
        assert_eq!(used.as_deref(), Some(expected), "the welcome page for {encoding}");
        assert!(body.contains("Quicksilver"), "{body}");
    }
    let (used, _) = fetch(&hub, API, "identity").await;
    assert_eq!(used, None);
}

#[tokio::test]
async fn event_streams_are_never_compressed_and_compress_off_turns_it_all_off() {
    let hub = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1")]);
    let topic = "https://example.com/plain";
    let headers = [("accept-encoding", "gzip, br")];
    let mut events =
        Events::open_with(&hub, &topics_query(&[topic]), Some(&subscriber()), &headers).await;
    assert!(!events.response_headers.contains_key("content-encoding"));
    assert_eq!(publish(&hub, &[("topic", topic), ("id", "plain")]).await.0, 200);
    assert_eq!(events.next().await.id, "plain");

    let off = TestHub::start(&[("MERCURE_SUBSCRIPTIONS", "1"), ("MERCURE_COMPRESS", "false")]);
    assert_eq!(fetch(&off, API, "gzip, br").await.0, None);
}
