//! `GET /.well-known/mercure`: a subscriber opens its event stream.
//!
//! The handler authenticates, reads the topic selectors and the last event id, registers the
//! subscriber with the router *before* looking at history (so nothing published meanwhile is
//! missed), then answers with a [`SubscriberStream`] that replays history up to the registration
//! bound and continues live, without gap or duplicate.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use rand::Rng;
use tokio::time::Instant;
use tracing::Instrument;

use super::authorization::SubscriberGrant;
use crate::error::HubError;
use crate::form::Form;
use crate::hub::presence;
use crate::hub::subscriber::{CutOff, StreamStart, SubscriberStream, QUEUE_CAPACITY};
use crate::hub::Hub;
use crate::subscription::Subscription;
use crate::topic_selector::{parse_subscription, SelectorLimits, TopicSelector};

/// The `Last-Event-ID` value meaning "from the beginning of history".
const EARLIEST: &str = "earliest";

/// The subscribe handler, for `GET` and `HEAD`.
pub async fn subscribe(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let client = super::forwarded::client_address(&req);
    let span = tracing::info_span!(
        "mercure.subscribe",
        client.address = client.map(tracing::field::display),
        mercure.topics = tracing::field::Empty,
        mercure.subscriber.id = tracing::field::Empty,
        mercure.last_event_id = tracing::field::Empty,
        mercure.anonymous = tracing::field::Empty,
    );
    open_stream(req, hub).instrument(span).await
}

async fn open_stream(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let query = Form::parse(req.query_string().as_bytes(), hub.config.max_form_fields)
        .map_err(|e| HubError::BadRequest(format!("malformed query string: {e}")))?;
    let grant = SubscriberGrant::authenticate(&req, &query, &hub.config)?;
    // Anyone may send these: limited before anything is compiled (see `SelectorLimits`).
    let topics: Vec<&str> = query.all("topic").collect();
    let selectors = parse_subscription(&topics, &SelectorLimits::from(&*hub.config))
        .map_err(|e| HubError::BadRequest(e.to_string()))?;
    if selectors.is_empty() {
        return Err(HubError::BadRequest("Missing \"topic\" parameter.".into()));
    }
    let last_event_id = last_event_id(&req, &query);

    if req.method() == Method::HEAD {
        // Headers only: a HEAD response has no body, so there is no stream to keep open.
        return Ok(stream_headers().finish());
    }

    let subscription = Arc::new(Subscription::new(selectors, grant.authorized, grant.payload));
    let registered = hub.router.register(subscription.clone(), QUEUE_CAPACITY).await?;

    let (replay_after, cursor) = match last_event_id.as_deref() {
        None => (None, None),
        Some(EARLIEST) => (Some(0), Some(EARLIEST.to_owned())),
        Some(id) => match hub.transport.find(id).await {
            Ok(Some(found)) if subscription.may_receive(&found) => {
                (Some(found.seq), Some(id.to_owned()))
            }
            // Unknown (or trimmed) id: replay all the history we have, and say so, as the
            // specification asks (the reference hub v0.21.4 wrongly answered its newest id).
            // The id of an update this subscriber may not read is answered the same way, so
            // that the answer does not reveal that such an update exists.
            Ok(_) => (Some(0), Some(EARLIEST.to_owned())),
            Err(error) => return Err(error.into()),
        },
    };

    // Announced once registered (so the subscriber can see its own arrival) and once every
    // fallible step is behind us, so that an arrival is always followed by a departure.
    let departure = if hub.config.subscriptions {
        Some(presence::arrive(hub.transport.clone(), subscription.clone()).await?)
    } else {
        None
    };
    let start = StreamStart {
        replay_after,
        heartbeat: hub.config.heartbeat,
        deadline: deadline(hub.config.write_timeout, grant.expires_at),
        departure,
        cut_off: req.conn_data::<CutOff>().cloned(),
    };
    let span = tracing::Span::current();
    let topics: Vec<&str> = subscription.selectors.iter().map(TopicSelector::as_str).collect();
    span.record("mercure.topics", tracing::field::debug(&topics));
    span.record("mercure.subscriber.id", subscription.id.as_str());
    span.record("mercure.anonymous", subscription.authorized.is_none());
    if let Some(cursor) = &cursor {
        span.record("mercure.last_event_id", cursor.as_str());
    }
    let stream = SubscriberStream::new(
        subscription,
        hub.transport.clone(),
        registered,
        start,
        hub.metrics.clone(),
    );
    let mut response = stream_headers();
    if let Some(cursor) = cursor {
        // Ids hold no control characters (validated at publish), so this cannot fail for them;
        // a client-sent unknown id with odd bytes is answered as `earliest` above.
        if let Ok(value) = HeaderValue::from_bytes(cursor.as_bytes()) {
            response.insert_header((HeaderName::from_static("last-event-id"), value));
        }
    }
    Ok(response.streaming(stream))
}

/// A non-empty `Last-Event-ID` header, else a non-empty `lastEventID` query parameter.
fn last_event_id(req: &HttpRequest, query: &Form) -> Option<String> {
    req.headers()
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|id| !id.is_empty())
        .or_else(|| query.first("lastEventID").filter(|id| !id.is_empty()).map(str::to_owned))
}

/// The headers of an event stream, byte for byte those of the reference hub.
///
/// `Connection: keep-alive` is left to the HTTP layer: it is the default of HTTP/1.1 (actix omits
/// the header there), HTTP/1.0 clients get it, and it is illegal in HTTP/2.
fn stream_headers() -> HttpResponseBuilder {
    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((
            header::CACHE_CONTROL,
            "private, no-cache, no-store, must-revalidate, max-age=0",
        ))
        .insert_header((header::PRAGMA, "no-cache"))
        .insert_header((HeaderName::from_static("expire"), "0"))
        // Tells NGINX not to buffer the stream.
        .insert_header((HeaderName::from_static("x-accel-buffering"), "no"));
    response
}

/// When the stream must end: at a random 80–100 % of `write_timeout` (so that connections opened
/// together do not all reconnect together), and no later than the token's expiry.
fn deadline(write_timeout: Option<Duration>, expires_at: Option<u64>) -> Option<Instant> {
    let now = Instant::now();
    let lifetime = write_timeout.map(|t| t.mul_f64(rand::rng().random_range(0.8..=1.0)));
    let expiry = expires_at.map(|exp| {
        let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Duration::from_secs(exp).saturating_sub(unix_now)
    });
    let remaining = match (lifetime, expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // A far-future `exp` would overflow `Instant`: such a token simply sets no deadline.
    remaining.and_then(|r| now.checked_add(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
    }

    #[test]
    fn write_timeout_deadlines_spread_over_80_to_100_percent() {
        let lifetime = Duration::from_secs(100);
        let mut seen = Vec::new();
        for _ in 0..200 {
            let before = Instant::now();
            let at = deadline(Some(lifetime), None).expect("a deadline");
            let left = at.duration_since(before);
            assert!(left >= Duration::from_secs(80) && left <= lifetime, "{left:?}");
            seen.push(left);
        }
        seen.sort();
        assert!(seen[199] - seen[0] > Duration::from_secs(5), "deadlines are spread out");
    }

    #[test]
    fn token_expiry_caps_the_deadline_even_without_write_timeout() {
        let exp = unix_now() + 10;
        for write_timeout in [None, Some(Duration::from_secs(600))] {
            let at = deadline(write_timeout, Some(exp)).expect("a deadline");
            assert!(at.duration_since(Instant::now()) <= Duration::from_secs(10));
        }
        assert!(deadline(None, None).is_none(), "no write timeout, no expiry: no deadline");
        assert!(deadline(None, Some(u64::MAX)).is_none(), "far-future exp cannot overflow");
    }
}
