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

use super::authorization::{find_token, SubscriberGrant, TokenSource};
use super::resource;
use crate::access_token::is_access_token;
use crate::error::HubError;
use crate::form::Form;
use crate::hub::client_streams::TooManyStreams;
use crate::hub::presence;
use crate::hub::subscriber::{CutOff, StreamStart, SubscriberStream, QUEUE_CAPACITY};
use crate::hub::Hub;
use crate::subscription::{Protocol, Subscription};
use crate::topic_selector::{
    parse_matchers, parse_subscription, MatchType, SelectorLimits, TopicSelector,
};
use crate::update::EARLIEST;

/// `Retry-After` of a stream refused for `max_streams_per_client`: streams usually last minutes,
/// and a client that retries at once only gets the same answer.
const STREAMS_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The subscribe handler, for `GET` and `HEAD`.
pub async fn subscribe(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let span = subscribe_span(&req);
    open_stream(req, None, hub).instrument(span).await
}

/// The subscribe handler for `QUERY` (Mercure 1.0): the matchers and `last_event_id` may also
/// come in a form-encoded body, merged with the query string (for long lists of matchers that
/// do not fit in a URL).
pub async fn subscribe_query(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, HubError> {
    let span = subscribe_span(&req);
    async move {
        let form = super::publish::read_form(&req, body, &hub.config).await?;
        open_stream(req, Some(form), hub).await
    }
    .instrument(span)
    .await
}

fn subscribe_span(req: &HttpRequest) -> tracing::Span {
    let client = super::forwarded::client_address(req);
    tracing::info_span!(
        "mercure.subscribe",
        client.address = client.map(tracing::field::display),
        mercure.topics = tracing::field::Empty,
        mercure.subscriber.id = tracing::field::Empty,
        mercure.last_event_id = tracing::field::Empty,
        mercure.anonymous = tracing::field::Empty,
        mercure.protocol = tracing::field::Empty,
    )
}

/// What a subscribe request asked for, once its protocol is known.
struct Request {
    protocol: Protocol,
    selectors: Vec<TopicSelector>,
    /// The cursor the client sent, `Some("")` when it sent an empty one.
    last_event_id: Option<String>,
    grant: SubscriberGrant,
}

/// Reads a subscribe request: its protocol (from what it carries), its selectors or matchers,
/// its cursor and its credentials.
async fn read_request(
    req: &HttpRequest,
    query: &Form,
    body: Option<&Form>,
    hub: &Hub,
) -> Result<Request, HubError> {
    let config = &hub.config;
    let mut matchers = Vec::new();
    for (name, value) in query.pairs().chain(body.into_iter().flat_map(Form::pairs)) {
        // Names are case-sensitive, but any other name that looks like a matcher is refused
        // rather than ignored: a typo must not turn into a subscription to nothing.
        if name.get(..5).is_some_and(|start| start.eq_ignore_ascii_case("match")) {
            let kind = match name {
                "match" | "match_exact" => MatchType::Exact,
                "match_urlpattern" => MatchType::UrlPattern,
                other => {
                    return Err(HubError::BadRequest(format!(
                        "unsupported matcher parameter {other:?}: use match (or match_exact) \
                         or match_urlpattern; parameter names are case-sensitive"
                    )))
                }
            };
            matchers.push((kind, value));
        }
    }
    let topics: Vec<&str> = query.all("topic").collect();
    if body.is_some_and(|body| body.contains("topic")) {
        return Err(HubError::BadRequest(
            "QUERY subscriptions are Mercure 1.0: send match parameters, not topic".into(),
        ));
    }
    let token = find_token(req, query, &config.cookie_name)?;
    // A token says which protocol it is for when its header can be read; a garbage token says
    // nothing and is refused by whichever verifier the rest of the request picks.
    let token_protocol = token.as_ref().and_then(|(token, _)| token_protocol(token));
    let v1 = !matchers.is_empty() || token_protocol == Some(Protocol::V1) || body.is_some();
    let draft_07 = !topics.is_empty()
        || token.as_ref().is_some_and(|(_, source)| *source == TokenSource::Query)
        || token_protocol == Some(Protocol::Draft07);
    let protocol = match (v1, draft_07) {
        (true, true) => {
            return Err(HubError::BadRequest(
                "this request mixes Mercure 1.0 (match parameters, an RFC 9068 access token \
                 with typ at+jwt, the QUERY method) and draft-07 (topic parameters, a token \
                 with a mercure claim, the authorization query parameter): use one protocol \
                 per request"
                    .into(),
            ))
        }
        (true, false) => Protocol::V1,
        (false, true) => Protocol::Draft07,
        // Nothing tells: the answer is about what is missing.
        (false, false) if config.protocols.draft_07 => Protocol::Draft07,
        (false, false) => Protocol::V1,
    };
    match protocol {
        Protocol::Draft07 if !config.protocols.draft_07 => Err(HubError::BadRequest(
            "this hub serves Mercure 1.0 only (protocols): subscribe with match parameters and \
             an RFC 9068 access token"
                .into(),
        )),
        Protocol::V1 if !config.protocols.v1 => Err(HubError::BadRequest(
            "this hub serves Mercure draft-07 only (protocols): subscribe with topic parameters"
                .into(),
        )),
        Protocol::Draft07 => {
            let grant = SubscriberGrant::authenticate(req, query, config)?;
            // Anyone may send these: limited before anything is compiled (see `SelectorLimits`).
            let selectors = parse_subscription(&topics, &SelectorLimits::from(&**config))
                .map_err(|e| HubError::BadRequest(e.to_string()))?;
            if selectors.is_empty() {
                return Err(HubError::BadRequest("Missing \"topic\" parameter.".into()));
            }
            let last_event_id = header_cursor(req).filter(|id| !id.is_empty()).or_else(|| {
                query.first("lastEventID").filter(|id| !id.is_empty()).map(str::to_owned)
            });
            Ok(Request { protocol, selectors, last_event_id, grant })
        }
        Protocol::V1 => {
            let resource = resource::hub_url(req, config)?;
            let first = matchers.first().map_or("", |(_, pattern)| *pattern);
            let grant =
                SubscriberGrant::authenticate_v1(token.as_ref(), &resource, first, hub).await?;
            let selectors = parse_matchers(&matchers, &SelectorLimits::from(&**config), &resource)
                .map_err(|e| HubError::BadRequest(e.to_string()))?;
            if selectors.is_empty() {
                return Err(HubError::BadRequest(
                    "missing \"match\" subscription parameter".into(),
                ));
            }
            // The header beats the query string, which beats the body.
            let last_event_id = header_cursor(req)
                .or_else(|| query.first("last_event_id").map(str::to_owned))
                .or_else(|| body.and_then(|b| b.first("last_event_id")).map(str::to_owned));
            Ok(Request { protocol, selectors, last_event_id, grant })
        }
    }
}

/// The `Last-Event-ID` header, as sent (empty included).
fn header_cursor(req: &HttpRequest) -> Option<String> {
    req.headers().get("last-event-id").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The protocol a token is for: Mercure 1.0 for an RFC 9068 access token (`typ: at+jwt`),
/// draft-07 for any other JWT; `None` when its header cannot be read.
fn token_protocol(token: &str) -> Option<Protocol> {
    jsonwebtoken::decode_header(token).ok()?;
    Some(if is_access_token(token) { Protocol::V1 } else { Protocol::Draft07 })
}

async fn open_stream(
    req: HttpRequest,
    body: Option<Form>,
    hub: web::Data<Hub>,
) -> Result<HttpResponse, HubError> {
    let query = Form::parse(req.query_string().as_bytes(), hub.config.max_form_fields)
        .map_err(|e| HubError::BadRequest(format!("malformed query string: {e}")))?;
    let Request { protocol, selectors, last_event_id, grant } =
        read_request(&req, &query, body.as_ref(), &hub).await?;

    if req.method() == Method::HEAD {
        // Headers only: a HEAD response has no body, so there is no stream to keep open.
        return Ok(stream_headers().finish());
    }

    // Counted before anything is registered: a client over its limit costs the hub nothing more.
    let client_slot = match &hub.client_streams {
        Some(streams) => streams.acquire(super::forwarded::client_address(&req)).map_err(
            |TooManyStreams { limit }| {
                HubError::TooManyRequests(
                    format!(
                        "this client address already holds {limit} event streams \
                         (max_streams_per_client): close one before opening another"
                    ),
                    STREAMS_RETRY_AFTER,
                )
            },
        )?,
        None => None,
    };
    let subscription = Arc::new(
        Subscription::new(selectors, grant.authorized, grant.payload).with_protocol(protocol),
    );
    let registered = hub.router.register(subscription.clone(), QUEUE_CAPACITY).await?;

    let (replay_after, cursor) = match last_event_id.as_deref() {
        None => (None, None),
        // Mercure 1.0 answers an empty cursor too (draft-07 ignores it above): no replay.
        Some("") => (None, Some(String::new())),
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
        Some(
            presence::arrive(hub.transport.clone(), subscription.clone(), hub.config.protocols)
                .await?,
        )
    } else {
        None
    };
    let start = StreamStart {
        replay_after,
        heartbeat: hub.config.heartbeat,
        deadline: deadline(hub.config.write_timeout, grant.expires_at),
        departure,
        cut_off: req.conn_data::<CutOff>().cloned(),
        client_slot,
    };
    let span = tracing::Span::current();
    let topics: Vec<&str> = subscription.selectors.iter().map(TopicSelector::as_str).collect();
    span.record("mercure.topics", tracing::field::debug(&topics));
    span.record("mercure.subscriber.id", subscription.id.as_str());
    span.record("mercure.anonymous", subscription.authorized.is_none());
    span.record("mercure.protocol", if protocol == Protocol::V1 { "1.0" } else { "draft-07" });
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
            let name = match protocol {
                Protocol::Draft07 => "last-event-id",
                Protocol::V1 => "mercure-last-event-id",
            };
            response.insert_header((HeaderName::from_static(name), value));
        }
    }
    Ok(response.streaming(stream))
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
