//! The hub's identity in Mercure 1.0: its URL (the resource identifier that tokens name in
//! `aud`, and the base of relative URL Patterns), the public URLs it answers as, and the
//! protected resource metadata document (RFC 9728) that tells a client how to get a token.
//!
//! Without `resource_identifier`, the hub's URL is derived from each request as
//! `scheme://host/.well-known/mercure` (scheme and host as the client used them, through trusted
//! proxies: see [`forwarded`](super::forwarded)), so one hub serves several names. `public_urls`
//! restricts those names: a request for another host is answered 421, so that a token issued for
//! one name cannot be replayed through another that reaches the same hub.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use url::Url;

use super::forwarded::client_info;
use super::HUB_PATH;
use crate::access_token::MERCURE_DETAIL_TYPE;
use crate::config::Config;
use crate::error::HubError;
use crate::hub::Hub;

/// Path prefix of protected resource metadata (RFC 9728, section 3.1): the metadata of
/// `https://host/.well-known/mercure` is at `https://host/.well-known/oauth-protected-resource/.well-known/mercure`.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";
/// Where the hub serves its own metadata document (its path is always [`HUB_PATH`]).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The hub's URL for `req`: `resource_identifier` when set, else derived from the request. A
/// request for a host outside `public_urls` is refused (421).
pub fn hub_url(req: &HttpRequest, config: &Config) -> Result<Url, HubError> {
    let client = client_info(req);
    let origin = format!("{}://{}", client.scheme, client.host);
    if !config.public_urls.is_empty() {
        // Compared as the configuration stored them: through the URL parser (lower-case host,
        // default port left out).
        let normalized = Url::parse(&origin).map(|url| url.origin().ascii_serialization());
        if !normalized.is_ok_and(|origin| config.public_urls.contains(&origin)) {
            return Err(HubError::Misdirected(format!(
                "this hub answers as {} (public_urls), not as {origin}",
                config.public_urls.join(", ")
            )));
        }
    }
    if let Some(resource) = &config.resource_identifier {
        return Ok(resource.clone());
    }
    Url::parse(&format!("{origin}{HUB_PATH}"))
        .map_err(|_| HubError::BadRequest("the request's Host header is not a valid host".into()))
}

/// The URL of the metadata document of the hub at `resource` (RFC 9728: the well-known prefix
/// goes between the host and the resource's path).
pub fn metadata_url(resource: &Url) -> String {
    let origin = resource.origin().ascii_serialization();
    format!("{origin}{METADATA_PREFIX}{}", resource.path())
}

/// Whether the metadata document is served and advertised in challenges: with Mercure 1.0 on.
pub fn serves_metadata(config: &Config) -> bool {
    config.protocols.v1
}

/// Adds `resource_metadata` to the Bearer challenge of an error response (RFC 9728, section
/// 5.1), so that a client can find out where to get a token. Called for every response of the
/// hub; those without a challenge are left alone.
pub fn add_challenge_metadata(req: &HttpRequest, config: &Config, headers: &mut header::HeaderMap) {
    let Some(challenge) = headers.get(header::WWW_AUTHENTICATE) else { return };
    let Ok(challenge) = challenge.to_str() else { return };
    if !serves_metadata(config) || !challenge.starts_with("Bearer") {
        return;
    }
    let Ok(resource) = hub_url(req, config) else { return };
    let metadata = metadata_url(&resource);
    let value = if challenge == "Bearer" {
        format!("Bearer resource_metadata=\"{metadata}\"")
    } else {
        format!("{challenge}, resource_metadata=\"{metadata}\"")
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
}

/// The metadata document (RFC 9728, section 2, with Mercure's members).
#[derive(Debug, Serialize)]
struct Metadata<'a> {
    resource: &'a str,
    bearer_methods_supported: [&'static str; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<&'a str>,
    authorization_details_types_supported: [&'static str; 1],
    mercure_cookie: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    mercure_subscriptions: bool,
}

/// `GET|HEAD /.well-known/oauth-protected-resource/.well-known/mercure`.
pub async fn metadata(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let config = &hub.config;
    let resource = hub_url(&req, config)?;
    let document = Metadata {
        resource: resource.as_str(),
        bearer_methods_supported: ["header"],
        authorization_servers: hub.issuers.authorization_servers(),
        authorization_details_types_supported: [MERCURE_DETAIL_TYPE],
        mercure_cookie: &config.cookie_name,
        mercure_subscriptions: config.subscriptions,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .json(document))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_sits_between_the_host_and_the_path() {
        let resource = Url::parse("https://example.com:8443/.well-known/mercure").expect("a URL");
        assert_eq!(
            metadata_url(&resource),
            "https://example.com:8443/.well-known/oauth-protected-resource/.well-known/mercure"
        );
    }
}
