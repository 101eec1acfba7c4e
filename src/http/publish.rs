//! `POST /.well-known/mercure`: a publisher sends an update.
//!
//! Checks run in the order of Mercure 1.0: authentication, body, topics, topic rights (403), then
//! the other fields (400), so that a token learns nothing about how a request it may not make
//! would have been judged. The status codes are the specification's where the reference hub
//! v0.21.4 differs: 403 for a topic the token may not publish to, 413 for a body over the limit,
//! 400 for an id or type that could corrupt streams.
//!
//! Every publisher, whatever its token's format, is also kept from what only the hub may send
//! (see `parse_update`): topics in `/.well-known/mercure`, however spelled, and the event type
//! `mercure` would let it forge the hub's subscription events; ids starting with `#`, `earliest`
//! and ids or types with invisible characters would confuse reconnecting clients' cursors.
//!
//! Every publish is bounded before it costs anything: its body by `max_request_body_size` bytes,
//! `max_form_fields` pairs and `body_read_timeout` (408, so a trickling publisher cannot hold its
//! connection open), its topics by `max_topics_per_update` (413, as draft-08 of the specification
//! says for too many topics; the reference hub's current version answers 400 there).

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tracing::Instrument;

use super::authorization::Publisher;
use crate::config::Config;
use crate::error::HubError;
use crate::form::{Form, FormError};
use crate::hub::Hub;
use crate::update::{EventId, EventType, InvalidField, Topic, Update};

/// The publish handler, traced as `mercure.publish`.
pub async fn publish(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, HubError> {
    let client = super::forwarded::client_address(&req);
    let span = tracing::info_span!(
        "mercure.publish",
        client.address = client.map(tracing::field::display),
        mercure.topic = tracing::field::Empty,
        mercure.topics = tracing::field::Empty,
        mercure.update.id = tracing::field::Empty,
        mercure.update.private = tracing::field::Empty,
    );
    publish_update(req, body, hub).instrument(span).await
}

async fn publish_update(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, HubError> {
    let started = Instant::now();
    let config = &hub.config;
    // Only the token may come from the query string; topics there are ignored, as in the
    // reference hub. An unparsable query string simply holds no token, but one over the field
    // limit is refused so that the client learns which limit it hit.
    let query = match Form::parse(req.query_string().as_bytes(), config.max_form_fields) {
        Err(error @ FormError::TooManyFields(_)) => {
            return Err(HubError::BadRequest(format!("query string: {error}")))
        }
        parsed => parsed.unwrap_or_default(),
    };
    let publisher = Publisher::authenticate(&req, &query, &hub).await?;
    let form = read_form(&req, body, config).await?;
    let topics = parse_topics(&form, config.max_topics_per_update)?;
    let span = tracing::Span::current();
    span.record("mercure.topic", topics.first().map_or("", Topic::as_str));
    span.record("mercure.topics", topics.len());
    // Before any other field is judged (Mercure 1.0): a publisher without the right to a topic
    // gets 403 whatever else its request holds.
    publisher.check_topics(&topics)?;
    let update = parse_update(&form, topics)?;
    span.record("mercure.update.id", update.id.as_str());
    span.record("mercure.update.private", update.private);

    let id = hub.store(update, started).await?;
    Ok(HttpResponse::Ok()
        // Explicit, so that an id looking like HTML is never sniffed as HTML.
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(id.to_string()))
}

/// Reads and decodes a form body within the configured limits: bytes, fields and read time.
pub(super) async fn read_form(
    req: &HttpRequest,
    body: web::Payload,
    config: &Config,
) -> Result<Form, HubError> {
    let malformed = || HubError::BadRequest("malformed Content-Type header".into());
    let mime = req.mime_type().map_err(|_| malformed())?;
    // The `mime` parser accepts `type; name=` with an empty value, which RFC 9110 does not.
    if let Some(raw) = req.headers().get(header::CONTENT_TYPE) {
        let raw = raw.to_str().map_err(|_| malformed())?;
        let valid_parameter = |p: &str| {
            p.split_once('=')
                .is_some_and(|(name, value)| !name.trim().is_empty() && !value.trim().is_empty())
        };
        if !raw.split(';').skip(1).filter(|p| !p.trim().is_empty()).all(valid_parameter) {
            return Err(malformed());
        }
    }
    if mime.as_ref().map(|m| m.essence_str()) != Some("application/x-www-form-urlencoded") {
        return Err(HubError::BadRequest(format!(
            "Missing \"topic\" parameter: the body must be application/x-www-form-urlencoded, not {}",
            mime.map_or_else(|| "untyped".to_owned(), |m| m.essence_str().to_owned())
        )));
    }
    let limit = config.max_request_body_size;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(HubError::PayloadTooLarge(limit));
    }
    let bytes = match config.body_read_timeout {
        None => read_body(body, limit).await?,
        Some(timeout) => read_body_within(body, limit, timeout).await?,
    };
    Form::parse(&bytes, config.max_form_fields).map_err(|error| match error {
        FormError::TooManyFields(limit) => HubError::ContentTooLarge(format!(
            "the form has more than {limit} fields (max_form_fields); send fewer fields or \
             raise the setting"
        )),
        error => HubError::BadRequest(format!("malformed form body: {error}")),
    })
}

/// [`read_body`], abandoned with 408 after `timeout`. The clock starts when the handler does,
/// once the headers are in, and covers the whole body rather than each chunk: a publisher
/// sending one byte every few seconds must not keep its connection forever.
async fn read_body_within(
    body: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::BytesMut, HubError> {
    tokio::time::timeout(timeout, read_body(body, limit))
        .await
        .map_err(|_| HubError::RequestTimeout(timeout))?
}

/// Reads a body of at most `limit` bytes.
async fn read_body(mut body: web::Payload, limit: usize) -> Result<bytes::BytesMut, HubError> {
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| HubError::BadRequest(format!("cannot read the body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(HubError::PayloadTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The topics of the form, canonical first: at most `max_topics`, at least one, none with a
/// control character (a [`Topic`] cannot hold one, so this comes before the rights check).
fn parse_topics(form: &Form, max_topics: usize) -> Result<Vec<Topic>, HubError> {
    // Counted before any topic is validated or copied.
    if form.all("topic").nth(max_topics).is_some() {
        return Err(HubError::ContentTooLarge(format!(
            "more than {max_topics} topics in one update (max_topics_per_update); publish the \
             update in several parts or raise the setting"
        )));
    }
    let topics = form.all("topic").map(Topic::new).collect::<Result<Vec<_>, _>>().map_err(bad)?;
    if topics.is_empty() {
        return Err(HubError::BadRequest("Missing \"topic\" parameter".into()));
    }
    Ok(topics)
}

/// A refused field as a 400 whose text says which and why.
fn bad(error: InvalidField) -> HubError {
    HubError::BadRequest(error.to_string())
}

/// Builds the update from `topics` (already allowed by the token) and the other form fields,
/// refusing what only the hub may send. `data` needs no check: the form decoder refuses bytes
/// that are not UTF-8.
fn parse_update(form: &Form, topics: Vec<Topic>) -> Result<Update, HubError> {
    // Canonical and alternate topics alike: a subscriber may match either.
    for topic in &topics {
        topic.check_published().map_err(bad)?;
    }
    // An empty `retry=` means none, as in the reference hub (a blank form input sends it); any
    // other value is digits only, so `+5`, ` 5` and `5.0`, which integer parsers in other
    // languages may accept, never reach the frame.
    let retry = match form.first("retry").filter(|r| !r.is_empty()) {
        None => None,
        Some(text) => Some(
            text.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| {
                    HubError::BadRequest(format!(
                        "Invalid \"retry\" parameter {text:?}: expected milliseconds as ASCII \
                         digits only (no sign, space or decimal point), at most {}",
                        u64::MAX
                    ))
                })?,
        ),
    };
    let id = match form.first("id").filter(|id| !id.is_empty()) {
        Some(id) => EventId::new(id).map_err(bad)?,
        None => EventId::generate(),
    };
    let event_type = form.first("type").map(EventType::new).transpose().map_err(bad)?;
    if let Some(event_type) = &event_type {
        event_type.check_published().map_err(bad)?;
    }
    Ok(Update {
        id,
        topics,
        data: form.first("data").unwrap_or_default().to_owned(),
        private: form.contains("private"),
        event_type,
        retry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Update, HubError> {
        let form = Form::parse(body.as_bytes(), 100).expect("valid form");
        parse_update(&form, parse_topics(&form, 3)?)
    }

    #[test]
    fn reads_every_field() {
        let update = parse("topic=a&topic=b&data=x&id=i&type=t&retry=10&private=").expect("valid");
        assert_eq!(update.topics.iter().map(Topic::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(update.id.as_str(), "i");
        assert_eq!(update.event_type.as_ref().map(EventType::as_str), Some("t"));
        assert_eq!(update.retry, Some(10));
        assert!(update.private);
    }

    #[test]
    fn first_value_wins_and_defaults_apply() {
        let update = parse("topic=a&data=1&data=2").expect("valid");
        assert_eq!(update.data, "1");
        assert!(!update.private);
        assert!(update.id.as_str().starts_with("urn:uuid:"));
    }

    #[test]
    fn refuses_bad_fields() {
        for body in [
            "data=x",
            "topic=a&retry=-1",
            "topic=a&retry=0x10",
            "topic=a&retry=99999999999999999999999",
            "topic=a&id=%23x",
            "topic=a&id=a%0Aevent:x",
            "topic=a&type=a%0D",
            "topic=a%00",
            "topic=a&retry=%2B5",
            "topic=a&retry=+5",
            "topic=a&retry=5.0",
            "topic=a&id=earliest",
            "topic=a&id=x%E2%80%8B",
            "topic=a&type=mercure",
            "topic=a&type=x%E2%80%AE",
            "topic=a%EF%BB%BF",
            "topic=a&topic=/.well-known/mercure/x",
            "topic=%2F.well-known%2F%256Dercure",
        ] {
            assert!(matches!(parse(body), Err(HubError::BadRequest(_))), "{body}");
        }
    }

    #[test]
    fn counts_topics_against_the_limit() {
        assert_eq!(parse("topic=a&topic=b&topic=c").expect("three topics").topics.len(), 3);
        match parse("topic=a&topic=b&topic=c&topic=d") {
            Err(HubError::ContentTooLarge(message)) => {
                assert!(message.contains("max_topics_per_update"), "{message}")
            }
            other => panic!("expected 413, got {other:?}"),
        }
    }
}
