//! Who may publish and subscribe: finding the credential of a request, checking it, and turning
//! its claims into the topic selectors that decide what its holder may do.
//!
//! Authentication failures are produced by three functions, one per RFC 6750 answer:
//! [`token_missing`] (401, no error code), [`unauthorized`] (401 `invalid_token`) and
//! [`invalid_request`] (400). Token verification itself (keys, pinned algorithms, expiry) lives
//! in [`crate::jwt`] for draft-07 tokens and in [`crate::access_token`] for Mercure 1.0 ones,
//! verified for the hub's URL ([`super::resource`]).

use actix_web::http::header;
use actix_web::HttpRequest;

use super::resource;
use crate::access_token::{is_access_token, AccessGrant, Role, TopicGrant};
use crate::config::Config;
use crate::error::HubError;
use crate::form::Form;
use crate::hub::Hub;
use crate::jwt::{JwtVerifier, MercureClaims};
use crate::topic_selector::{matches_any, TopicSelector};
use crate::update::Topic;

/// Where a request's token came from, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// The `authorization` query parameter (for clients that cannot set headers, like
    /// `EventSource`). Tokens there end up in access logs: prefer the cookie.
    Query,
    /// The authorization cookie.
    Cookie,
}

/// The one way to answer "not authenticated" for a credential that is present but unusable.
pub fn unauthorized(reason: impl Into<String>) -> HubError {
    HubError::Unauthorized(reason.into())
}

/// The one way to answer "the credential was sent in a way the hub does not accept" (RFC 6750
/// `invalid_request`): a malformed `Authorization` header, two tokens, a cookie from a page the
/// hub does not trust to publish.
pub fn invalid_request(reason: impl Into<String>) -> HubError {
    HubError::InvalidRequest(reason.into())
}

/// The one way to answer "a credential is needed and none was sent".
pub fn token_missing(reason: impl Into<String>) -> HubError {
    HubError::TokenMissing(reason.into())
}

/// Finds the request's token. A higher-precedence source that is present but malformed fails the
/// request: the hub never falls back to the next source.
pub fn find_token(
    req: &HttpRequest,
    query: &Form,
    cookie_name: &str,
) -> Result<Option<(String, TokenSource)>, HubError> {
    let mut headers = req.headers().get_all(header::AUTHORIZATION);
    if let Some(value) = headers.next() {
        if headers.next().is_some() {
            return Err(invalid_request("more than one Authorization header"));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| invalid_request("the Authorization header must be `Bearer <JWT>`"))?;
        return Ok(Some((token.to_owned(), TokenSource::Header)));
    }
    let mut values = query.all("authorization");
    if let Some(token) = values.next() {
        if values.next().is_some() {
            return Err(invalid_request("more than one authorization query parameter"));
        }
        return Ok(Some((token.to_owned(), TokenSource::Query)));
    }
    Ok(req.cookie(cookie_name).map(|c| (c.value().to_owned(), TokenSource::Cookie)))
}

fn verify(verifier: &JwtVerifier, token: &str) -> Result<MercureClaims, HubError> {
    verifier.verify(token).map_err(|e| unauthorized(format!("invalid token: {e}")))
}

/// The selectors of a draft-07 token's `claim` (`mercure.publish` or `mercure.subscribe`),
/// refused when it lists more than `max_selectors_per_token`: counted before any is parsed, so
/// that an oversized token costs the hub nothing more.
pub(super) fn claim_selectors(
    claim: &str,
    list: &[String],
    config: &Config,
) -> Result<Vec<TopicSelector>, HubError> {
    check_selector_count(claim, list.len(), config.max_selectors_per_token)?;
    Ok(list.iter().map(|s| TopicSelector::parse(s)).collect())
}

/// Refuses a token whose `claim` lists `count` topic selectors, more than `max`.
fn check_selector_count(claim: &str, count: usize, max: usize) -> Result<(), HubError> {
    if count > max {
        return Err(unauthorized(format!(
            "invalid token: its {claim} claim lists {count} topic selectors, more than this hub \
             accepts ({max}, max_selectors_per_token)"
        )));
    }
    Ok(())
}

/// A request allowed to publish, with the selectors of the topics it may publish to.
#[derive(Debug)]
pub struct Publisher {
    allowed: Vec<TopicSelector>,
}

impl Publisher {
    /// Authenticates a publish request: a valid publisher token with a `mercure.publish` claim,
    /// and, for a cookie, an `Origin` (or `Referer`) listed in `publish_origins`, which keeps
    /// other sites from publishing with a visitor's cookie (CSRF).
    ///
    /// A Mercure 1.0 access token (`typ: at+jwt`, never from the URL) is verified by the
    /// trusted issuers for this hub's URL, and its `publish` details give the topics; any other
    /// token is a draft-07 one with a `mercure.publish` claim.
    pub async fn authenticate(
        req: &HttpRequest,
        query: &Form,
        hub: &Hub,
    ) -> Result<Self, HubError> {
        let config = &hub.config;
        let (token, source) = find_token(req, query, &config.cookie_name)?.ok_or_else(|| {
            token_missing(format!(
                "publishing needs a token: send `Authorization: Bearer <JWT>` or the {} cookie",
                config.cookie_name
            ))
        })?;
        let allowed = if is_access_token(&token) && source != TokenSource::Query {
            if !config.protocols.v1 {
                return Err(unauthorized(
                    "this hub serves Mercure draft-07 only (protocols): access tokens are refused",
                ));
            }
            let resource = resource::hub_url(req, config)?;
            let grant = verify_access_token(hub, &token, Role::Publisher, &resource).await?;
            grant.publish.iter().filter_map(|topic| granted_selector(topic, &resource)).collect()
        } else {
            if !config.protocols.draft_07 {
                return Err(unauthorized(
                    "this hub serves Mercure 1.0 only (protocols): publish with an RFC 9068 \
                     access token (typ at+jwt)",
                ));
            }
            let claims = verify(&config.publisher, &token)?;
            let allowed = claims
                .publish
                .ok_or_else(|| unauthorized("the token has no mercure.publish claim"))?;
            claim_selectors("mercure.publish", &allowed, config)?
        };
        if source == TokenSource::Cookie {
            check_cookie_origin(req, &config.publish_origins)?;
        }
        Ok(Self { allowed })
    }

    /// Every topic, canonical and alternate, must match one of the token's publish selectors.
    pub fn check_topics(&self, topics: &[Topic]) -> Result<(), HubError> {
        match topics.iter().find(|t| !matches_any(&self.allowed, t.as_str())) {
            None => Ok(()),
            Some(topic) => Err(HubError::Forbidden(format!(
                "the token's mercure.publish claim does not allow the topic {:?}",
                topic.as_str()
            ))),
        }
    }
}

fn check_cookie_origin(req: &HttpRequest, allowed: &[String]) -> Result<(), HubError> {
    let headers = req.headers();
    let origin = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => origin.to_owned(),
        None => headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .and_then(origin_of_url)
            .ok_or_else(|| {
                invalid_request("publishing with a cookie needs an Origin or Referer header")
            })?,
    };
    if origin_allowed(allowed, &origin) {
        Ok(())
    } else {
        Err(invalid_request(format!(
            "the origin {origin:?} may not publish with a cookie (see publish_origins)"
        )))
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    (!scheme.is_empty() && !authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

/// Whether `origin` is in `allowed` (lowercase entries: `*`, an origin, or an origin with one `*`
/// wildcard such as `https://*.example.com`). Origins compare case-insensitively.
pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    let origin = origin.to_ascii_lowercase();
    allowed.iter().any(|entry| match entry.split_once('*') {
        None => *entry == origin,
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin.starts_with(prefix)
                && origin.ends_with(suffix)
        }
    })
}

/// What a subscribe request's credentials allow.
#[derive(Debug, Default)]
pub struct SubscriberGrant {
    /// Selectors of the private updates it may receive; `None` when anonymous.
    pub authorized: Option<Vec<TopicSelector>>,
    /// `mercure.payload`, shared with subscription events.
    pub payload: Option<serde_json::Value>,
    /// Token expiry (seconds since the Unix epoch): the stream ends by then.
    pub expires_at: Option<u64>,
}

impl SubscriberGrant {
    /// Authenticates a subscribe request. Without a token, the request is anonymous if the hub
    /// allows it; a token that is present but invalid is always refused, never downgraded.
    pub fn authenticate(
        req: &HttpRequest,
        query: &Form,
        config: &Config,
    ) -> Result<Self, HubError> {
        match find_token(req, query, &config.cookie_name)? {
            None if config.anonymous => Ok(Self::default()),
            None => Err(token_missing(format!(
                "subscribing needs a token: send `Authorization: Bearer <JWT>`, the \
                 `authorization` query parameter or the {} cookie",
                config.cookie_name
            ))),
            Some((token, _)) => {
                let claims = verify(&config.subscriber, &token)?;
                Ok(Self {
                    authorized: Some(claim_selectors(
                        "mercure.subscribe",
                        claims.subscribe.as_deref().unwrap_or_default(),
                        config,
                    )?),
                    payload: claims.payload,
                    expires_at: claims.expires_at,
                })
            }
        }
    }
}

impl SubscriberGrant {
    /// Authenticates a Mercure 1.0 subscribe request for the hub at `resource`, given the
    /// request's token (from the header or the cookie: never the URL). Private updates are
    /// allowed by the token's `subscribe` details; `payload` is that of the detail serving
    /// `first_matcher` (rule 23 of the protocol notes).
    pub async fn authenticate_v1(
        token: Option<&(String, TokenSource)>,
        resource: &url::Url,
        first_matcher: &str,
        hub: &Hub,
    ) -> Result<Self, HubError> {
        let Some((token, _)) = token else {
            if hub.config.anonymous {
                return Ok(Self::default());
            }
            return Err(token_missing(format!(
                "subscribing needs an access token: send `Authorization: Bearer <token>` or the \
                 {} cookie",
                hub.config.cookie_name
            )));
        };
        let grant = verify_access_token(hub, token, Role::Subscriber, resource).await?;
        Ok(Self {
            payload: grant.subscribe_payload(first_matcher).cloned(),
            authorized: Some(subscribe_selectors(&grant, resource)),
            expires_at: Some(grant.expires_at),
        })
    }
}

/// Verifies a Mercure 1.0 access token for `role` at the hub `resource` (its `aud`). Every
/// failure of the token itself is the same 401 `invalid_token` for the client; the cause goes to
/// the log, where the operator who configured the issuers can read it. A valid token granting
/// more topics than `max_selectors_per_token` (in its `publish` details, or in its `subscribe`
/// ones) is refused with a message naming the setting: its holder cannot fix that alone.
pub(super) async fn verify_access_token(
    hub: &Hub,
    token: &str,
    role: Role,
    resource: &url::Url,
) -> Result<AccessGrant, HubError> {
    let grant = hub.issuers.verify(token, role, resource.as_str()).await.map_err(|error| {
        tracing::info!(%error, audience = %resource, "access token refused");
        unauthorized("invalid access token")
    })?;
    let max = hub.config.max_selectors_per_token;
    check_selector_count("publish", grant.publish.len(), max)?;
    let subscribe = grant.subscribe.iter().map(|detail| detail.topics.len()).sum();
    check_selector_count("subscribe", subscribe, max)?;
    Ok(grant)
}

/// The selector of a topic a token grants, resolved against the hub's URL. A URL Pattern that
/// does not compile grants nothing (it can match no topic).
fn granted_selector(topic: &TopicGrant, resource: &url::Url) -> Option<TopicSelector> {
    TopicSelector::parse_matcher(&topic.pattern, topic.match_type, resource).ok()
}

/// The selectors of every topic the `subscribe` details of `grant` allow, for the hub at
/// `resource`: private updates, subscription events and the subscriptions API.
pub(super) fn subscribe_selectors(grant: &AccessGrant, resource: &url::Url) -> Vec<TopicSelector> {
    grant
        .subscribe
        .iter()
        .flat_map(|detail| &detail.topics)
        .filter_map(|topic| granted_selector(topic, resource))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let allowed = vec!["https://a.example.com".to_owned(), "https://*.test.org".to_owned()];
        assert!(origin_allowed(&allowed, "https://a.example.com"));
        assert!(origin_allowed(&allowed, "HTTPS://A.Example.com"));
        assert!(origin_allowed(&allowed, "https://x.test.org"));
        assert!(!origin_allowed(&allowed, "https://test.org.evil.com"));
        assert!(!origin_allowed(&allowed, "http://a.example.com"));
        assert!(origin_allowed(&["*".to_owned()], "https://anything"));
        assert!(!origin_allowed(&[], "https://a.example.com"));
    }

    #[test]
    fn origin_of_referer() {
        assert_eq!(
            origin_of_url("https://a.com:8443/x?y#z").as_deref(),
            Some("https://a.com:8443")
        );
        assert_eq!(origin_of_url("not a url"), None);
    }
}
