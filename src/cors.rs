//! Cross-origin resource sharing, active when `cors_origins` is set.
//!
//! Unlike the reference hub v0.21.4, an allowed origin is always echoed (never a literal `*`,
//! which browsers refuse together with credentials), and `Last-Event-ID` is exposed so that
//! cross-origin JavaScript can read the cursor header.

use actix_web::dev::ServiceResponse;
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::authorization::origin_allowed;
use crate::error::HubError;
use crate::Hub;

const ALLOWED_METHODS: &[&str] = &["GET", "HEAD", "POST"];
const ALLOWED_HEADERS: &[&str] =
    &["authorization", "cache-control", "last-event-id", "content-type"];

/// The request's `Origin` when CORS is on and it is allowed.
fn allowed_origin(headers: &HeaderMap, origins: &[String]) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    (!origins.is_empty() && origin_allowed(origins, origin.to_str().ok()?)).then(|| origin.clone())
}

/// `OPTIONS` on the hub URL: a CORS preflight. A preflight that is not allowed gets 204 without
/// CORS headers (the browser then refuses the real request); without CORS, `OPTIONS` is 405.
pub async fn preflight(req: HttpRequest, hub: web::Data<Hub>) -> Result<HttpResponse, HubError> {
    let origins = &hub.config.cors_origins;
    if origins.is_empty() {
        return Err(HubError::MethodNotAllowed);
    }
    let headers = req.headers();
    let mut response = HttpResponse::NoContent();
    response.insert_header((
        header::VARY,
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    ));
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
    if let (Some(origin), Some(method), true) =
        (allowed_origin(headers, origins), method, headers_ok)
    {
        response
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
            .insert_header((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, method.clone()))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        if !requested.is_empty() {
            response.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, requested));
        }
    }
    Ok(response.finish())
}

/// Adds the CORS headers of an actual (non-preflight) request from an allowed origin.
/// Preflights (`OPTIONS`) are left alone: [`preflight`] decided their headers, and a refused
/// preflight must carry none.
pub fn add_headers<B>(origins: &[String], mut response: ServiceResponse<B>) -> ServiceResponse<B> {
    if response.request().method() == Method::OPTIONS {
        return response;
    }
    let Some(origin) = allowed_origin(response.request().headers(), origins) else {
        return response;
    };
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    headers
        .insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Last-Event-ID"));
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
    response
}
