//! Active subscriptions: the events announcing them and the API listing them.
//!
//! With `subscriptions` on, every subscription (one per `topic` selector of a connection) is
//! announced by a private update when the subscriber is registered and when it leaves. The update's
//! topic is `/.well-known/mercure/subscriptions/{selector}/{subscriber}` (both form-escaped), so a
//! client watches presence by subscribing to a template such as
//! `/.well-known/mercure/subscriptions{/topic}{/subscriber}` with a token that allows it.
//!
//! The API (`GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`) lists this node's
//! active subscriptions as JSON-LD. It needs a subscriber token whose `mercure.subscribe`
//! selectors match the request path: 401 without a valid token, 403 when the token is valid but
//! not allowed (the reference hub answers 401 for both and matches the query string too).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::Value;

use crate::authorization::{find_token, unauthorized};
use crate::error::HubError;
use crate::form::{self, Form};
use crate::subscriber::Subscription;
use crate::topic_selector::{matches_any, TopicSelector};
use crate::update::{EventId, Topic, Update};
use crate::Hub;

/// JSON-LD context of subscription documents.
const CONTEXT: &str = "https://mercure.rocks/";
/// `Cache-Control` of every answer of the API: it says who is connected.
const NO_STORE: &str = "private, no-store";
/// Path of the subscriptions API and prefix of subscription event topics.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// One subscription as JSON-LD; field order is the reference hub's.
#[derive(Debug, Serialize)]
struct Document<'a> {
    #[serde(rename = "@context", skip_serializing_if = "Option::is_none")]
    context: Option<&'static str>,
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    subscriber: &'a str,
    topic: &'a str,
    active: bool,
    #[serde(rename = "lastEventID", skip_serializing_if = "Option::is_none")]
    last_event_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a Value>,
}

impl<'a> Document<'a> {
    fn new(subscription: &'a Subscription, selector: &'a TopicSelector, active: bool) -> Self {
        Self {
            context: None,
            id: topic_of(selector.as_str(), &subscription.id),
            kind: "Subscription",
            subscriber: &subscription.id,
            topic: selector.as_str(),
            active,
            last_event_id: None,
            payload: subscription.payload.as_ref().filter(|p| !p.is_null()),
        }
    }
}

/// The collection returned by the list endpoints.
#[derive(Debug, Serialize)]
struct Collection<'a> {
    #[serde(rename = "@context")]
    context: &'static str,
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "lastEventID")]
    last_event_id: &'a str,
    subscriptions: Vec<Document<'a>>,
}

/// Form-style escaping, as Go's `url.QueryEscape`: unreserved characters stay, a space becomes
/// `+`, every other byte `%XX` (upper case).
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Whether `topic` is one of the hub's subscription event topics.
pub fn is_subscription_topic(topic: &str) -> bool {
    topic.strip_prefix(SUBSCRIPTIONS_PATH).is_some_and(|rest| rest.starts_with('/'))
}

/// The topic (and document id) of the subscription of `subscriber` to `selector`.
pub fn topic_of(selector: &str, subscriber: &str) -> String {
    format!("{SUBSCRIPTIONS_PATH}/{}/{}", query_escape(selector), query_escape(subscriber))
}

/// The private updates announcing that `subscription` became active or inactive: one per
/// selector, with the JSON-LD document (indented by two spaces, as the reference hub) as data.
pub fn presence_updates(subscription: &Subscription, active: bool) -> Vec<Update> {
    subscription
        .selectors
        .iter()
        .map(|selector| {
            let mut document = Document::new(subscription, selector, active);
            document.context = Some(CONTEXT);
            Update {
                id: EventId::generate(),
                topics: vec![Topic::new(document.id.clone())
                    .expect("query_escape leaves no control characters in the topic")],
                data: serde_json::to_string_pretty(&document).unwrap_or_default(),
                private: true,
                event_type: None,
                retry: None,
            }
        })
        .collect()
}

/// Which document the request path asks for.
enum Target {
    /// The list, of every subscription or only those to one selector.
    Collection(Option<String>),
    /// One subscription: (selector, subscriber id).
    One(String, String),
}

fn target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix(SUBSCRIPTIONS_PATH)?;
    if rest.is_empty() {
        return Some(Target::Collection(None));
    }
    let segments: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
    // Segments are form-decoded, so `+` is a space, as the reference hub does.
    let decode = |segment: &str| form::decode_component(segment).ok().filter(|s| !s.is_empty());
    match segments.as_slice() {
        [topic] => Some(Target::Collection(Some(decode(topic)?))),
        [topic, subscriber] => Some(Target::One(decode(topic)?, decode(subscriber)?)),
        _ => None,
    }
}

/// Checks the subscriber token against the request path (not the query string), and returns
/// the token's `mercure.subscribe` selectors.
fn authorize(req: &HttpRequest, hub: &Hub) -> Result<Vec<TopicSelector>, HubError> {
    let query = Form::parse(req.query_string().as_bytes(), hub.config.max_form_fields)
        .map_err(|e| HubError::BadRequest(format!("malformed query string: {e}")))?;
    let (token, _) = find_token(req, &query, &hub.config.cookie_name)?.ok_or_else(|| {
        unauthorized("the subscriptions API needs a subscriber token (Authorization: Bearer)")
    })?;
    let claims = hub
        .config
        .subscriber
        .verify(&token)
        .map_err(|e| unauthorized(format!("invalid token: {e}")))?;
    let allowed: Vec<TopicSelector> =
        claims.subscribe.unwrap_or_default().iter().map(|s| TopicSelector::parse(s)).collect();
    if matches_any(&allowed, req.uri().path()) {
        Ok(allowed)
    } else {
        Err(HubError::Forbidden(format!(
            "the token's mercure.subscribe claim does not allow {}",
            req.uri().path()
        )))
    }
}

/// `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`. Every answer, errors and
/// 304 included, is `Cache-Control: private, no-store`: it describes who is connected, which no
/// shared cache may keep and no browser should write to disk.
pub async fn api(req: HttpRequest, hub: web::Data<Hub>) -> HttpResponse {
    not_stored(respond(req, hub).await.unwrap_or_else(|error| error.error_response()))
}

/// Marks an answer of the API as never to be cached.
fn not_stored(mut response: HttpResponse) -> HttpResponse {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    response
}

/// The answer of [`api`], before its caching headers.
async fn respond(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let Some(target) = target(req.uri().path()) else {
        return Err(HubError::NotFound);
    };
    let allowed = authorize(&req, &hub)?;
    let snapshot = hub
        .router
        .snapshot()
        .await
        .map_err(|_| HubError::Unavailable("the hub is shutting down".into()))?;
    // The cursor (ETag and `lastEventID`) is the last subscription event this caller may read:
    // it changes exactly when the subscriptions it may see change, a subscription to presence
    // topics resumes from it without a gap, and it never reveals the id of an update the
    // caller may not see (an unrelated private update, say).
    let last_event_id = snapshot
        .presence
        .iter()
        .rev()
        .find(|event| event.topics.iter().any(|topic| matches_any(&allowed, topic.as_str())))
        .map_or("earliest", |event| event.id.as_str());
    // The reference hub's entity tag is the raw last event id, unquoted; clients send it back.
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == last_event_id.as_bytes());
    if not_modified {
        return Ok(HttpResponse::NotModified().finish());
    }
    let all = || {
        snapshot.subscriptions.iter().flat_map(|subscription| {
            subscription.selectors.iter().map(move |selector| (subscription, selector))
        })
    };
    let body = match target {
        Target::Collection(wanted) => {
            let wanted = wanted.as_deref();
            let request_uri =
                req.uri().path_and_query().map_or(req.uri().path(), |uri| uri.as_str());
            let collection = Collection {
                context: CONTEXT,
                id: request_uri,
                kind: "Subscriptions",
                last_event_id,
                subscriptions: all()
                    .filter(|(_, selector)| wanted.is_none_or(|t| selector.as_str() == t))
                    .map(|(subscription, selector)| Document::new(subscription, selector, true))
                    .collect(),
            };
            serde_json::to_string_pretty(&collection)
        }
        Target::One(topic, subscriber) => {
            let found = all().find(|(subscription, selector)| {
                subscription.id == subscriber && selector.as_str() == topic
            });
            let Some((subscription, selector)) = found else {
                return Err(HubError::NotFound);
            };
            let mut document = Document::new(subscription, selector, true);
            document.context = Some(CONTEXT);
            document.last_event_id = Some(last_event_id);
            serde_json::to_string_pretty(&document)
        }
    }
    .map_err(|e| HubError::Internal(format!("cannot encode subscriptions: {e}")))?;
    let etag = HeaderValue::from_bytes(last_event_id.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("earliest"));
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/ld+json"))
        .insert_header((header::ETAG, etag))
        .body(body))
}

/// Any method but `GET` on the API: 405, `Allow: GET`.
pub async fn method_not_allowed() -> HttpResponse {
    not_stored(HubError::MethodNotAllowed("GET").error_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go_query_escape() {
        assert_eq!(
            query_escape("https://e.com/a b?c=d&e"),
            "https%3A%2F%2Fe.com%2Fa+b%3Fc%3Dd%26e"
        );
        assert_eq!(query_escape("urn:uuid:1-2"), "urn%3Auuid%3A1-2");
        assert_eq!(query_escape("é~_.-"), "%C3%A9~_.-");
    }

    #[test]
    fn parses_api_paths() {
        assert!(matches!(target(SUBSCRIPTIONS_PATH), Some(Target::Collection(None))));
        match target(&format!("{SUBSCRIPTIONS_PATH}/a+b%2Fc")) {
            Some(Target::Collection(Some(topic))) => assert_eq!(topic, "a b/c"),
            _ => panic!("a topic path"),
        }
        match target(&format!("{SUBSCRIPTIONS_PATH}/t/urn%3Auuid%3Ax")) {
            Some(Target::One(topic, subscriber)) => {
                assert_eq!((topic.as_str(), subscriber.as_str()), ("t", "urn:uuid:x"))
            }
            _ => panic!("a subscription path"),
        }
        for bad in ["/", "//", "/a/b/c", "/%zz", "/a/"] {
            assert!(target(&format!("{SUBSCRIPTIONS_PATH}{bad}")).is_none(), "{bad}");
        }
    }
}
