//! The publish form: `POST /.well-known/mercure` with an arbitrary body, through the hub's own
//! handler, and the form decoder it uses.
//!
//! Input: one byte of options (token, `Content-Type`), then the body as sent.
//!
//! Checked:
//! - `Form::parse` either decodes pairs that an independent encoder turns back into a form
//!   decoding to the same pairs, or fails for the reason it gives (the byte it names is a bad
//!   `%`, the pair count really is over the limit);
//! - the handler answers exactly what the hub's validated types (`Topic`, `EventId`,
//!   `EventType`) and the token's selectors say it should: 200 with the publisher's id (or a
//!   generated one), 400, 401, 403 or 413, and never a 5xx.

#![no_main]

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use libfuzzer_sys::fuzz_target;
use quicksilver::form::{Form, FormError};
use quicksilver::topic_selector::{matches_any, TopicSelector};
use quicksilver::update::{EventId, EventType, Topic};
use quicksilver_fuzz::harness::Harness;
use quicksilver_fuzz::{encode_form, keys};

/// Kept small so that the fuzzer reaches both limits easily.
const MAX_TOPICS: usize = 4;
const MAX_FIELDS: usize = 16;
/// The selectors of the limited publisher token.
const LIMITED: [&str; 2] = ["https://example.com/books/{id}", "a"];

struct Tokens {
    all: String,
    limited: String,
}

static TOKENS: LazyLock<Tokens> = LazyLock::new(|| Tokens {
    all: keys::hs256(&serde_json::json!({"mercure": {"publish": ["*"]}})),
    limited: keys::hs256(&serde_json::json!({"mercure": {"publish": LIMITED}})),
});

thread_local! {
    static HUB: &'static Harness = Harness::start(&[
        ("transport", "memory"),
        // History bounded, so that millions of publications do not grow memory.
        ("history_size", "8"),
        ("jwt_key", keys::SECRET),
        ("max_topics_per_update", "4"),
        ("max_form_fields", "16"),
    ]);
}

fuzz_target!(|data: &[u8]| {
    let Some((&options, body)) = data.split_first() else {
        return;
    };
    check_decoder(body);

    let token = options & 0b11;
    let content_type = match (options >> 2) & 0b11 {
        0 => Some("application/x-www-form-urlencoded"),
        1 => Some("application/x-www-form-urlencoded; charset=utf-8"),
        2 => None,
        _ => Some("text/plain"),
    };
    let mut req = TestRequest::post().uri("/.well-known/mercure").set_payload(body.to_vec());
    if let Some(content_type) = content_type {
        req = req.insert_header((header::CONTENT_TYPE, content_type));
    }
    let bearer = |token: &str| (header::AUTHORIZATION, format!("Bearer {token}"));
    req = match token {
        0 => req.insert_header(bearer(&TOKENS.all)),
        1 => req.insert_header(bearer(&TOKENS.limited)),
        2 => req,
        _ => req.uri(&format!("/.well-known/mercure?authorization={}", TOKENS.all)),
    };
    let answer = HUB.with(|hub| hub.call(req, true));

    let expected = if token == 2 {
        Expected::Status(StatusCode::UNAUTHORIZED)
    } else if content_type.is_none_or(|t| t == "text/plain") {
        Expected::Status(StatusCode::BAD_REQUEST)
    } else {
        expected(body, token == 1)
    };
    let text = answer.body.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
    match expected {
        Expected::Status(status) => {
            assert_eq!(answer.status, status, "answer {text:?} to {:?}", lossy(body))
        }
        Expected::Published(id) => {
            assert_eq!(answer.status, StatusCode::OK, "answer {text:?} to {:?}", lossy(body));
            match id {
                Some(id) => assert_eq!(text, id, "the publisher's id is the update's"),
                None => assert!(text.starts_with("urn:uuid:"), "a generated id: {text:?}"),
            }
        }
    }
});

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The hub's decoder against an independent encoder, and its errors against the input.
fn check_decoder(body: &[u8]) {
    let pairs = body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()).count();
    match Form::parse(body, MAX_FIELDS) {
        Ok(form) => {
            assert!(pairs <= MAX_FIELDS);
            let encoded = encode_form(form.pairs());
            let again = Form::parse(encoded.as_bytes(), usize::MAX).expect("re-encoded form");
            assert_eq!(again, form, "decode(encode(form)) == form, through {encoded:?}");
        }
        Err(FormError::TooManyFields(max)) => assert!(max == MAX_FIELDS && pairs > max),
        Err(FormError::BadEscape(at)) => {
            assert_eq!(body.get(at), Some(&b'%'), "the offset names a `%`");
            let hex = body.get(at + 1..at + 3);
            assert!(hex.is_none_or(|hex| !hex.iter().all(u8::is_ascii_hexdigit)));
        }
        Err(FormError::NotUtf8) => {}
    }
    // A key or value on its own decodes the same way, `&` and `=` included.
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(decoded) = quicksilver::form::decode_component(text) {
            let encoded = quicksilver_fuzz::encode_component(&decoded);
            assert_eq!(quicksilver::form::decode_component(&encoded).as_ref(), Ok(&decoded));
        }
    }
}

/// What the handler must answer.
enum Expected {
    /// An error status.
    Status(StatusCode),
    /// 200, with this id (`None`: a generated one).
    Published(Option<String>),
}

/// What a body of the right type must get, from the hub's validated types and the order of
/// checks of Mercure 1.0: field limits (413), topics (400), rights (403), other fields (400).
fn expected(body: &[u8], limited: bool) -> Expected {
    let form = match Form::parse(body, MAX_FIELDS) {
        Ok(form) => form,
        Err(FormError::TooManyFields(_)) => return Expected::Status(StatusCode::PAYLOAD_TOO_LARGE),
        Err(_) => return Expected::Status(StatusCode::BAD_REQUEST),
    };
    let bad = Expected::Status(StatusCode::BAD_REQUEST);
    if form.all("topic").count() > MAX_TOPICS {
        return Expected::Status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let Ok(topics) = form.all("topic").map(Topic::new).collect::<Result<Vec<_>, _>>() else {
        return bad;
    };
    if topics.is_empty() {
        return bad;
    }
    if limited {
        let allowed: Vec<TopicSelector> = LIMITED.iter().map(|s| TopicSelector::parse(s)).collect();
        if !topics.iter().all(|topic| matches_any(&allowed, topic.as_str())) {
            return Expected::Status(StatusCode::FORBIDDEN);
        }
    }
    if topics.iter().any(|topic| topic.check_published().is_err()) {
        return bad;
    }
    if let Some(retry) = form.first("retry").filter(|r| !r.is_empty()) {
        if !retry.bytes().all(|b| b.is_ascii_digit()) || retry.parse::<u64>().is_err() {
            return bad;
        }
    }
    let id = form.first("id").filter(|id| !id.is_empty());
    if id.is_some_and(|id| EventId::new(id).is_err()) {
        return bad;
    }
    if let Some(event_type) = form.first("type") {
        match EventType::new(event_type) {
            Ok(event_type) if event_type.check_published().is_ok() => {}
            _ => return bad,
        }
    }
    Expected::Published(id.map(str::to_owned))
}
