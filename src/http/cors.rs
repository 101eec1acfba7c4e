//! Cross-origin resource sharing, active when `cors_origins` is set.
//!
//! Two kinds of grant, as the current specification asks:
//!
//! - an origin listed explicitly (`https://app.example.com`, or the subdomains of a named domain,
//!   `https://*.example.com`) is echoed with `Access-Control-Allow-Credentials: true`, so its pages
//!   may subscribe with the authorization cookie (`EventSource` with `withCredentials`);
//! - any other allowed origin (through `*`, or a pattern as wide as `https://*`) gets a literal
//!   `Access-Control-Allow-Origin: *` and never credentials. Browsers then refuse to expose a
//!   response to a request that carried cookies, so a page on an arbitrary site cannot read
//!   private updates with its visitor's cookie (the reference hub v0.21.4 sent `*` with
//!   credentials; echoing the origin instead would make that leak real). Such pages can still
//!   send a token in the `Authorization` header.
//!
//! The `null` origin (sandboxed frames, `file:` and `data:` pages) can be taken by any site, so it
//! is treated like `*` even when listed. `Last-Event-ID` is exposed so that cross-origin JavaScript
//! can read the cursor header.

use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use super::authorization::origin_allowed;
use crate::error::HubError;
use crate::hub::Hub;

const ALLOWED_METHODS: &[&str] = &["GET", "HEAD", "POST", "QUERY"];
const ALLOWED_HEADERS: &[&str] =
    &["authorization", "cache-control", "last-event-id", "content-type"];
/// The entry of `cors_origins` that allows every origin, without credentials.
const ANY: &str = "*";
/// The opaque origin, which any page can obtain with a sandboxed frame.
const OPAQUE: &str = "null";

/// What a request's `Origin` is allowed.
#[derive(Debug, PartialEq, Eq)]
enum Grant {
    /// Listed explicitly: the origin is echoed, with credentials.
    Credentialed(HeaderValue),
    /// Allowed through `*` (or `null`): `Access-Control-Allow-Origin: *`, no credentials.
    Anonymous,
}

/// The grant of a request's `Origin`; `None` when CORS is off, there is no `Origin`, or it is not
/// allowed.
fn grant(headers: &HeaderMap, origins: &[String]) -> Option<Grant> {
    let value = headers.get(header::ORIGIN)?;
    let origin = value.to_str().ok()?;
    let opaque = origin.eq_ignore_ascii_case(OPAQUE);
    let mut allowed = false;
    for entry in origins.iter().filter(|entry| origin_allowed(std::slice::from_ref(entry), origin))
    {
        if !opaque && grants_credentials(entry) {
            return Some(Grant::Credentialed(value.clone()));
        }
        allowed = true;
    }
    allowed.then_some(Grant::Anonymous)
}

/// Whether an entry of `cors_origins` names its origins precisely enough to be given credentials:
/// an origin without wildcard, or a wildcard for the subdomains of a named domain
/// (`https://*.example.com`). `*`, `null` and wider patterns (`https://*`, `https://*.com`,
/// `https://*example.com`) could match a page of anyone's, so they allow origins without
/// credentials only.
fn grants_credentials(entry: &str) -> bool {
    if entry == OPAQUE {
        return false;
    }
    match entry.split_once('*') {
        None => true,
        Some((_, after)) => {
            let host = after.split(':').next().unwrap_or_default();
            host.strip_prefix('.').is_some_and(|domain| domain.contains('.'))
        }
    }
}

/// `Access-Control-Allow-Origin` and, for explicit origins, `Access-Control-Allow-Credentials`.
fn insert_grant(headers: &mut HeaderMap, grant: Grant) {
    match grant {
        Grant::Credentialed(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers
                .insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        Grant::Anonymous => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static(ANY));
        }
    }
}

/// `OPTIONS` on the hub URL: a CORS preflight. A preflight that is not allowed gets 204 without
/// CORS headers (the browser then refuses the real request); without CORS, `OPTIONS` is 405.
pub async fn preflight(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let origins = &hub.config.cors_origins;
    if origins.is_empty() {
        return Err(HubError::MethodNotAllowed(super::HUB_METHODS));
    }
    let headers = req.headers();
    let method = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .filter(|m| ALLOWED_METHODS.iter().any(|a| m.as_bytes() == a.as_bytes()));
    let requested = headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let headers_ok = requested
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .all(|h| h.is_empty() || ALLOWED_HEADERS.contains(&h.as_str()));
    let mut response = HttpResponse::NoContent().finish();
    let out = response.headers_mut();
    out.insert(
        header::VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    if let (Some(grant), Some(method), true) = (grant(headers, origins), method, headers_ok) {
        insert_grant(out, grant);
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method.clone());
        out.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        if !requested.is_empty() {
            if let Ok(requested) = HeaderValue::from_str(requested) {
                out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, requested);
            }
        }
    }
    Ok(response)
}

/// Adds the CORS headers of an actual (non-preflight) request from an allowed origin.
/// Preflights (`OPTIONS`) are left alone: [`preflight`] decided their headers, and a refused
/// preflight must carry none.
pub fn add_headers<B>(origins: &[String], mut response: ServiceResponse<B>) -> ServiceResponse<B> {
    if origins.is_empty() || response.request().method() == Method::OPTIONS {
        return response;
    }
    let grant = grant(response.request().headers(), origins);
    let headers = response.headers_mut();
    // The answer depends on `Origin` whenever CORS is on, even when it carries no grant: a cache
    // must not hand one origin's answer to another.
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(grant) = grant {
        insert_grant(headers, grant);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            // The cursor headers of both protocols, and the subscriptions API's `Link`.
            HeaderValue::from_static("Last-Event-ID, Mercure-Last-Event-ID, Link"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant_for(origin: &str, origins: &[&str]) -> Option<Grant> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).expect("valid origin"));
        let origins: Vec<String> = origins.iter().map(|o| o.to_string()).collect();
        grant(&headers, &origins)
    }

    fn credentialed(origin: &str) -> Option<Grant> {
        Some(Grant::Credentialed(HeaderValue::from_str(origin).expect("valid origin")))
    }

    #[test]
    fn star_never_grants_credentials() {
        assert_eq!(grant_for("https://evil.example", &["*"]), Some(Grant::Anonymous));
        assert_eq!(grant_for("null", &["*"]), Some(Grant::Anonymous));
    }

    #[test]
    fn explicit_origins_get_credentials_even_beside_star() {
        let origins = ["*", "https://app.example.com", "https://*.example.org"];
        assert_eq!(
            grant_for("https://app.example.com", &origins),
            credentialed("https://app.example.com")
        );
        assert_eq!(
            grant_for("https://a.example.org", &origins),
            credentialed("https://a.example.org")
        );
        assert_eq!(grant_for("https://evil.example", &origins), Some(Grant::Anonymous));
        assert_eq!(grant_for("https://evil.example", &origins[1..]), None);
    }

    #[test]
    fn only_patterns_under_a_named_domain_get_credentials() {
        for (pattern, origin) in [
            ("https://*", "https://evil.example"),
            ("https://*.com", "https://evil.com"),
            ("https://*example.com", "https://evilexample.com"),
        ] {
            assert_eq!(grant_for(origin, &[pattern]), Some(Grant::Anonymous), "{pattern}");
        }
        assert_eq!(
            grant_for("https://a.example.com:8443", &["https://*.example.com:8443"]),
            credentialed("https://a.example.com:8443")
        );
    }

    #[test]
    fn the_null_origin_never_gets_credentials() {
        assert_eq!(grant_for("null", &["null"]), Some(Grant::Anonymous));
        assert_eq!(grant_for("null", &["https://app.example.com"]), None);
    }
}
