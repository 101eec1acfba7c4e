//! The hub's HTTP errors: one enum, mapped to a status code in exactly one place, with the
//! conversions from the errors of the layers below (the transport's kinds, a stopped router).
//!
//! Bodies are short `text/plain` sentences that tell the client what to fix. They never contain a
//! token or key material.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use thiserror::Error;

use crate::transport::feed::RouterStopped;
use crate::transport::{TransportError, RETRY_AFTER_CLOSED};

/// An error answered to an HTTP client.
#[derive(Debug, Error)]
pub enum HubError {
    /// No credential where one is required (401, a challenge without an error code).
    #[error("Unauthorized: {0}")]
    TokenMissing(String),
    /// An unusable credential: malformed, expired, badly signed, for another audience (401).
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// A valid credential that does not allow this (403).
    #[error("Forbidden: {0}")]
    Forbidden(String),
    /// A malformed or invalid request (400).
    #[error("{0}")]
    BadRequest(String),
    /// A credential sent in a way the hub does not accept (400, RFC 6750 `invalid_request`).
    #[error("Bad Request: {0}")]
    InvalidRequest(String),
    /// A publish body above `max_request_body_size` (413).
    #[error("Payload Too Large: the body exceeds the {0}-byte limit (max_request_body_size)")]
    PayloadTooLarge(usize),
    /// A publish body within the byte limit but over another content limit, such as
    /// `max_topics_per_update` or `max_form_fields` (413); the message names the setting.
    #[error("Payload Too Large: {0}")]
    ContentTooLarge(String),
    /// The body did not arrive within `body_read_timeout` (408); the connection is closed.
    #[error(
        "Request Timeout: the body was not received within {0:?} (body_read_timeout); send it \
         without pauses"
    )]
    RequestTimeout(std::time::Duration),
    /// The request's headers are larger than `max_header_size` (431).
    #[error(
        "Request Header Fields Too Large: {size} bytes of headers, over the {limit}-byte limit \
         (max_header_size); a large cookie is the usual cause"
    )]
    HeadersTooLarge {
        /// Bytes of header names and values received.
        size: usize,
        /// `max_header_size`.
        limit: usize,
    },
    /// The path exists but not for this method (405); the methods it accepts, for `Allow`.
    #[error("Method Not Allowed")]
    MethodNotAllowed(&'static str),
    /// Nothing at this path (404).
    #[error("Not Found")]
    NotFound,
    /// A request for a host the hub does not answer as (`public_urls`) (421).
    #[error("Misdirected Request: {0}")]
    Misdirected(String),
    /// One client holds more event streams than `max_streams_per_client` allows (429);
    /// `Retry-After` says when to try again, in whole seconds (at least one).
    #[error("Too Many Requests: {0}")]
    TooManyRequests(String, std::time::Duration),
    /// The hub cannot serve the request right now but expects to soon (503); `Retry-After`
    /// says when, in whole seconds (at least one).
    #[error("Service Unavailable: {0}; retry later")]
    Unavailable(String, std::time::Duration),
    /// The hub failed: a store failure, a bug (500).
    #[error("Internal Server Error: {0}")]
    Internal(String),
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::TokenMissing(_) | Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge(_) | Self::ContentTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::TooManyRequests(..) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(..) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"));
        match self {
            // RFC 6750: a request without a token gets a challenge without an error code...
            Self::TokenMissing(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            // ... and one with a token says which kind of failure this is.
            Self::Unauthorized(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                ));
            }
            // RFC 9110: a 405 lists the methods the resource accepts.
            Self::MethodNotAllowed(allowed) => {
                response.insert_header((header::ALLOW, *allowed));
            }
            Self::InvalidRequest(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_request\""),
                ));
            }
            Self::Forbidden(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
                ));
            }
            Self::Unavailable(_, retry_after) | Self::TooManyRequests(_, retry_after) => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0);
                response.insert_header((header::RETRY_AFTER, format!("{seconds}")));
            }
            // The rest of the body may still be on its way: the connection cannot be reused.
            Self::RequestTimeout(_) => {
                response.force_close();
            }
            _ => {}
        }
        response.body(format!("{self}\n"))
    }
}

impl From<TransportError> for HubError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::Unavailable { reason, retry_after } => {
                Self::Unavailable(reason, retry_after)
            }
            error @ TransportError::TooLarge { .. } => Self::ContentTooLarge(format!(
                "{error}; publish a smaller update (max_request_body_size)"
            )),
            error @ TransportError::Store(_) => Self::Internal(error.to_string()),
        }
    }
}

impl From<RouterStopped> for HubError {
    fn from(_: RouterStopped) -> Self {
        Self::Unavailable("the hub is shutting down".into(), RETRY_AFTER_CLOSED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transport_errors_map_to_their_status_codes() {
        let unavailable = HubError::from(TransportError::Unavailable {
            reason: "the cluster is out of reach".into(),
            retry_after: Duration::from_millis(2500),
        });
        let response = unavailable.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).expect("Retry-After"),
            "3",
            "rounded up"
        );
        let too_large = HubError::from(TransportError::TooLarge { size: 2, limit: 1 });
        assert_eq!(too_large.status_code(), StatusCode::PAYLOAD_TOO_LARGE);
        let store = HubError::from(TransportError::Store("disk full".into()));
        assert_eq!(store.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(store.to_string().contains("disk full"), "{store}");
    }
}
