//! The subscriptions API: who is subscribed to what, on this node (and, in a cluster, on the
//! others).
//!
//! In draft-07's shape (`GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`, for
//! a token with a `mercure` claim) it lists the active subscriptions as JSON-LD. It needs a
//! subscriber token whose `mercure.subscribe` selectors match the request path: 401 without a
//! valid token, 403 when the token is valid but not allowed (the reference hub answers 401 for
//! both and matches the query string too).
//!
//! In Mercure 1.0's shape (`…/subscriptions[/{match_type}/{match}[/{subscriber}]]`, for an
//! access token whose `subscribe` details match the path) it answers plain JSON, with the cursor
//! quoted in `ETag` and in a `Link` to the hub.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use super::authorization::{
    claim_selectors, find_token, subscribe_selectors, token_missing, unauthorized,
    verify_access_token, TokenSource,
};
use super::resource;
use super::HUB_PATH;
use crate::access_token::{is_access_token, Role};
use crate::error::HubError;
use crate::form::{self, Form};
use crate::hub::presence::{
    Document, ModernDocument, CONTEXT, SUBSCRIPTIONS_PATH, URI_TEMPLATE_TYPE,
};
use crate::hub::Hub;
use crate::subscription::{presence_protocol, Protocol};
use crate::topic_selector::{matches_any, TopicSelector};
use crate::update::EARLIEST;

/// `Cache-Control` of every answer of the API: it says who is connected.
const NO_STORE: &str = "private, no-store";

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
        token_missing("the subscriptions API needs a subscriber token (Authorization: Bearer)")
    })?;
    let claims = hub
        .config
        .subscriber
        .verify(&token)
        .map_err(|e| unauthorized(format!("invalid token: {e}")))?;
    let allowed = claim_selectors(
        "mercure.subscribe",
        claims.subscribe.as_deref().unwrap_or_default(),
        &hub.config,
    )?;
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

/// The answer of [`api`], before its caching headers: in Mercure 1.0's shape for an access
/// token, in draft-07's for any other.
async fn respond(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let query = Form::parse(req.query_string().as_bytes(), hub.config.max_form_fields)
        .map_err(|e| HubError::BadRequest(format!("malformed query string: {e}")))?;
    if let Some((token, source)) = find_token(&req, &query, &hub.config.cookie_name)? {
        if is_access_token(&token) && source != TokenSource::Query && hub.config.protocols.v1 {
            return respond_v1(&req, &hub, &token).await;
        }
    }
    respond_draft_07(req, hub).await
}

/// The Mercure 1.0 collection.
#[derive(Debug, Serialize)]
struct ModernCollection<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    subscriptions: Vec<ModernDocument<'a>>,
}

/// What a Mercure 1.0 request path asks for:
/// `/subscriptions[/{match_type}/{match}[/{subscriber}]]`, segments percent-decoded.
#[derive(Debug, PartialEq, Eq)]
enum ModernTarget {
    All,
    Matcher(String, String),
    One(String, String, String),
}

fn modern_target(path: &str) -> Result<ModernTarget, HubError> {
    let rest = path.strip_prefix(SUBSCRIPTIONS_PATH).ok_or(HubError::NotFound)?;
    if rest.is_empty() {
        return Ok(ModernTarget::All);
    }
    let segments: Vec<&str> =
        rest.strip_prefix('/').ok_or(HubError::NotFound)?.split('/').collect();
    let decode = |segment: &str| {
        form::decode_path_segment(segment).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
            HubError::BadRequest(format!(
                "malformed percent-encoding in the path segment {segment:?}"
            ))
        })
    };
    let match_type = |segment: &str| {
        let name = decode(segment)?;
        if ["exact", "urlpattern", URI_TEMPLATE_TYPE].contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(HubError::BadRequest(format!(
                "unknown match type {name:?}: use exact, urlpattern or {URI_TEMPLATE_TYPE}"
            )))
        }
    };
    match segments.as_slice() {
        [kind, pattern] => Ok(ModernTarget::Matcher(match_type(kind)?, decode(pattern)?)),
        [kind, pattern, subscriber] => {
            Ok(ModernTarget::One(match_type(kind)?, decode(pattern)?, decode(subscriber)?))
        }
        _ => Err(HubError::NotFound),
    }
}

/// A quoted entity tag (or `Link` parameter) for `id`: `"`, `%`, space and control bytes are
/// percent-escaped, so that any event id makes a valid header.
fn quoted(id: &str) -> String {
    let mut out = String::with_capacity(id.len() + 2);
    out.push('"');
    for c in id.chars() {
        if c == '"' || c == '%' || c == ' ' || c.is_control() {
            let mut buffer = [0; 4];
            for byte in c.encode_utf8(&mut buffer).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
    out
}

/// The Mercure 1.0 API: authorized against the request path alone with the token's
/// `subscribe` details, plain JSON, the cursor in `ETag` (quoted) and in a `Link` to the hub.
async fn respond_v1(req: &HttpRequest, hub: &Hub, token: &str) -> Result<HttpResponse, HubError> {
    let target = modern_target(req.path())?;
    let resource = resource::hub_url(req, &hub.config)?;
    let grant = verify_access_token(hub, token, Role::Subscriber, &resource).await?;
    let allowed = subscribe_selectors(&grant, &resource);
    if !matches_any(&allowed, req.path()) {
        return Err(HubError::Forbidden(format!(
            "the token's subscribe details do not allow {}",
            req.path()
        )));
    }
    let snapshot = hub.router.snapshot().await?;
    // As in draft-07, the cursor is the last subscription event (here, of Mercure 1.0's format)
    // this caller may read.
    let last_event_id = snapshot
        .presence
        .iter()
        .rev()
        .filter(|event| presence_protocol(event) == Some(Protocol::V1))
        .find(|event| event.topics.iter().any(|topic| matches_any(&allowed, topic.as_str())))
        .map_or(EARLIEST, |event| event.id.as_str());
    let etag = quoted(last_event_id);
    let etag_value = HeaderValue::from_str(&etag)
        .map_err(|_| HubError::Internal("an event id that makes no header".into()))?;
    let not_modified = req.headers().get(header::IF_NONE_MATCH).is_some_and(|value| {
        value
            .to_str()
            .is_ok_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"))
    });
    if not_modified {
        return Ok(HttpResponse::NotModified().insert_header((header::ETAG, etag_value)).finish());
    }
    let elsewhere = hub.transport.announced_elsewhere();
    let here = snapshot.subscriptions.iter().flat_map(|subscription| {
        subscription
            .selectors
            .iter()
            .map(move |selector| ModernDocument::new(subscription, selector, true))
    });
    let elsewhere =
        elsewhere.iter().filter(|a| a.protocol == Protocol::V1).map(ModernDocument::announced);
    let mut all = here.chain(elsewhere);
    let body = match &target {
        ModernTarget::All | ModernTarget::Matcher(..) => {
            let wanted = |document: &ModernDocument<'_>| match &target {
                ModernTarget::Matcher(kind, pattern) => {
                    document.match_type == kind && document.pattern == pattern
                }
                _ => true,
            };
            serde_json::to_string(&ModernCollection {
                id: req.path(),
                kind: "subscriptions",
                subscriptions: all.filter(wanted).collect(),
            })
        }
        ModernTarget::One(kind, pattern, subscriber) => {
            let found = all.find(|document| {
                document.match_type == kind
                    && document.pattern == pattern
                    && document.subscriber() == subscriber
            });
            serde_json::to_string(&found.ok_or(HubError::NotFound)?)
        }
    }
    .map_err(|e| HubError::Internal(format!("cannot encode subscriptions: {e}")))?;
    let link = format!(
        "<{HUB_PATH}>; rel=\"mercure\"; last-event-id={}; type=\"mercure\"; \
         content-type=\"application/json\"",
        quoted(last_event_id)
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::ETAG, etag_value))
        .insert_header((header::LINK, link))
        .body(body))
}

/// The draft-07 API.
async fn respond_draft_07(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let Some(target) = target(req.uri().path()) else {
        return Err(HubError::NotFound);
    };
    let allowed = authorize(&req, &hub)?;
    let snapshot = hub.router.snapshot().await?;
    // The cursor (ETag and `lastEventID`) is the last subscription event this caller may read:
    // it changes exactly when the subscriptions it may see change, a subscription to presence
    // topics resumes from it without a gap, and it never reveals the id of an update the
    // caller may not see (an unrelated private update, say).
    let last_event_id = snapshot
        .presence
        .iter()
        .rev()
        .find(|event| event.topics.iter().any(|topic| matches_any(&allowed, topic.as_str())))
        .map_or(EARLIEST, |event| event.id.as_str());
    // The reference hub's entity tag is the raw last event id, unquoted; clients send it back.
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == last_event_id.as_bytes());
    if not_modified {
        return Ok(HttpResponse::NotModified().finish());
    }
    // This node's subscriptions, then those the other nodes of a cluster announced.
    let elsewhere = hub.transport.announced_elsewhere();
    let all = || {
        let here = snapshot.subscriptions.iter().flat_map(|subscription| {
            subscription.selectors.iter().map(move |selector| {
                (Document::new(subscription, selector, true), subscription.id.as_str())
            })
        });
        // Each subscription is announced once per protocol: these documents are draft-07's.
        let elsewhere = elsewhere.iter().filter(|a| a.protocol == Protocol::Draft07);
        here.chain(elsewhere.map(|a| (Document::announced(a), a.subscriber.as_str())))
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
                    .filter(|(document, _)| wanted.is_none_or(|t| document.topic == t))
                    .map(|(document, _)| document)
                    .collect(),
            };
            serde_json::to_string_pretty(&collection)
        }
        Target::One(topic, subscriber) => {
            let found = all().find(|(document, id)| *id == subscriber && document.topic == topic);
            let Some((mut document, _)) = found else {
                return Err(HubError::NotFound);
            };
            document.context = Some(CONTEXT);
            document.last_event_id = Some(last_event_id);
            serde_json::to_string_pretty(&document)
        }
    }
    .map_err(|e| HubError::Internal(format!("cannot encode subscriptions: {e}")))?;
    let etag = HeaderValue::from_bytes(last_event_id.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static(EARLIEST));
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
