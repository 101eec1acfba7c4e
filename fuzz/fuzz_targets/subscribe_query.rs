//! The subscribe request: `GET`, `HEAD` or `QUERY /.well-known/mercure` with an arbitrary query
//! string (topic selectors, Mercure 1.0 matchers, `lastEventID`) and `Last-Event-ID` header,
//! through the hub's own handler, against a history of known updates.
//!
//! Input: one byte of options (token, method), the query string, then optionally a line feed
//! and the `Last-Event-ID` header's bytes.
//!
//! Checked:
//! - the hub answers 200, 400, 401 or 413 (a `QUERY` body over the field limit), never a 5xx;
//! - a draft-07 stream is only opened for selectors `parse_subscription` accepts, each matching
//!   itself;
//! - the cursor the hub answers (`Last-Event-ID`, or `Mercure-Last-Event-ID` in 1.0) is the one
//!   the client sent when it names an update of the history that this subscriber may read, and
//!   `earliest` otherwise: an unknown id, or the id of a private update the subscriber may not
//!   read, is answered the same way, so the answer never reveals that such an update exists.

#![no_main]

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::test::TestRequest;
use libfuzzer_sys::fuzz_target;
use quicksilver::form::Form;
use quicksilver::topic_selector::{parse_subscription, SelectorLimits};
use quicksilver_fuzz::harness::Harness;
use quicksilver_fuzz::{encode_form, keys, split_once};

/// The history every request runs against: (id, topic, private).
const HISTORY: [(&str, &str, bool); 3] = [
    ("book-1", "https://example.com/books/1", false),
    ("secret-1", "https://example.com/secret/1", true),
    ("urn:uuid:0193d6a0-0000-7000-8000-000000000000", "https://example.com/books/2", false),
];

/// The limits the harness's hub is configured with, small so that the fuzzer reaches them.
const LIMITS: SelectorLimits = SelectorLimits { max_topics: 8, max_length: 256, max_variables: 8 };

static SUBSCRIBER: LazyLock<String> =
    LazyLock::new(|| keys::hs256(&serde_json::json!({"mercure": {"subscribe": ["*"]}})));

thread_local! {
    static HUB: &'static Harness = {
        let hub = Harness::start(&[
            ("transport", "memory"),
            ("history_size", "16"),
            ("jwt_key", keys::SECRET),
            ("anonymous", "true"),
            ("max_topics_per_subscription", "8"),
            ("max_selector_length", "256"),
            ("max_template_variables", "8"),
        ]);
        let publisher = keys::hs256(&serde_json::json!({"mercure": {"publish": ["*"]}}));
        for (id, topic, private) in HISTORY {
            let mut form = vec![("topic", topic), ("id", id), ("data", "x")];
            if private {
                form.push(("private", "on"));
            }
            let answer = hub.call(
                TestRequest::post()
                    .uri("/.well-known/mercure")
                    .insert_header((header::AUTHORIZATION, format!("Bearer {publisher}")))
                    .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
                    .set_payload(encode_form(form)),
                true,
            );
            assert_eq!(answer.status, StatusCode::OK, "the history is published");
        }
        hub
    };
}

fuzz_target!(|data: &[u8]| {
    // Mercure 1.0 matchers are URL patterns.
    quicksilver_fuzz::let_urlpattern_panics_unwind();
    let Some((&options, rest)) = data.split_first() else {
        return;
    };
    let (query, last_event_id) = split_once(rest, b'\n');
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let method = match (options >> 2) & 0b11 {
        0 | 3 => Method::GET,
        1 => Method::HEAD,
        _ => Method::from_bytes(b"QUERY").expect("a valid method name"),
    };
    let is_query_method = method.as_str() == "QUERY";
    // In a `QUERY` request the same text goes in the body instead.
    let uri = if is_query_method {
        "/.well-known/mercure".to_owned()
    } else {
        format!("/.well-known/mercure?{query}")
    };
    // What an HTTP client cannot send never reaches the hub, and what follows a `#` is a
    // fragment, which it never sends either.
    let Ok(parsed_uri) = uri.parse::<Uri>() else {
        return;
    };
    let sent = if is_query_method { query } else { parsed_uri.query().unwrap_or_default() };
    let mut req = TestRequest::default().method(method.clone()).uri(&uri);
    if is_query_method {
        req = req
            .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
            .set_payload(query.to_owned());
    }
    let header_cursor = match last_event_id.map(HeaderValue::from_bytes) {
        Some(Ok(value)) => {
            let cursor = String::from_utf8_lossy(value.as_bytes()).into_owned();
            req = req.insert_header(("last-event-id", value));
            Some(cursor)
        }
        _ => None,
    };
    let authorized = match options & 0b11 {
        0 => false,
        1 => {
            req = req.insert_header((header::AUTHORIZATION, format!("Bearer {}", *SUBSCRIBER)));
            true
        }
        2 => {
            req = req.insert_header((header::AUTHORIZATION, "Bearer not.a.token"));
            false
        }
        _ => {
            req = req
                .insert_header((header::COOKIE, format!("mercureAuthorization={}", *SUBSCRIBER)));
            true
        }
    };
    let answer = HUB.with(|hub| hub.call(req, false));

    let status = answer.status;
    assert!(
        [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::UNAUTHORIZED].contains(&status)
            || (is_query_method && status == StatusCode::PAYLOAD_TOO_LARGE),
        "unexpected {status} for {query:?}"
    );
    if status != StatusCode::OK || method == Method::HEAD {
        return;
    }
    let content_type = answer.headers.get(header::CONTENT_TYPE);
    assert_eq!(content_type.map(HeaderValue::as_bytes), Some(&b"text/event-stream"[..]));

    let form = Form::parse(sent.as_bytes(), usize::MAX).expect("the hub parsed this query");
    let draft_07 = answer.headers.contains_key("last-event-id")
        || (!answer.headers.contains_key("mercure-last-event-id") && form.contains("topic"));
    if draft_07 && !is_query_method {
        let topics: Vec<&str> = form.all("topic").collect();
        let selectors = parse_subscription(&topics, &LIMITS).expect("accepted selectors parse");
        assert!(!selectors.is_empty());
        for selector in &selectors {
            assert!(selector.matches(selector.as_str()), "{selector} matches itself");
        }
    }

    // The cursor the client sent, by the protocol's order of precedence.
    let (name, sent) = if draft_07 {
        let sent = header_cursor
            .filter(|cursor| !cursor.is_empty())
            .or_else(|| form.first("lastEventID").filter(|id| !id.is_empty()).map(str::to_owned));
        ("last-event-id", sent)
    } else {
        let sent = header_cursor.or_else(|| form.first("last_event_id").map(str::to_owned));
        ("mercure-last-event-id", sent)
    };
    let answered = answer.headers.get(name).map(|value| value.as_bytes());
    let expected = sent.map(|sent| {
        let readable =
            HISTORY.iter().any(|(id, _, private)| *id == sent && (!private || authorized));
        if sent.is_empty() || readable {
            sent
        } else {
            "earliest".to_owned()
        }
    });
    assert_eq!(answered, expected.as_deref().map(str::as_bytes), "cursor sent in {query:?}");
});
