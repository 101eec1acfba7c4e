//! [`Publisher`]: sends [`Update`]s to a hub (`POST`, `application/x-www-form-urlencoded`,
//! `Authorization: Bearer`), and tells what went wrong with a [`PublishError`] whose variant
//! names the check that failed.
//!
//! # Retries
//!
//! A publication is retried by itself in two cases only:
//!
//! - the hub answered 503: the hub reports that it stored nothing (its transport is out of
//!   reach, it is shutting down). It is retried with the same id, after the policy's wait or
//!   the `Retry-After` if that is longer (capped at [`RetryPolicy::max_delay`]). A 503 is the hub's word, not a proof: a
//!   proxy in front of the hub may answer 503 after it forwarded the request. What makes the
//!   retry safe with Quicksilver's NATS transport is that JetStream stores an update retried
//!   with the same id and the same content once, within its duplicate window; elsewhere, a
//!   retry after such a 503 can store the update twice;
//! - the connection could not be opened, so the request never left.
//!
//! Every other failure is returned at once. In particular a timeout, or a connection reset once
//! the request was sent, says nothing about whether the hub stored the update: a hub with an
//! embedded store may have written it and died before answering, and a second attempt would
//! store it twice, under two positions of the history that replays deliver twice. The caller
//! decides ([`NetworkError::may_have_reached_hub`] tells the two cases apart); publishing the
//! same [`Update`] again sends the same id, and a subscriber of this crate skips an event whose
//! id is among the last ids it received (1,024 by default), so a second copy that arrives within
//! that window is not delivered twice.

use std::fmt;
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;

use crate::credentials::{Credentials, TokenSetting};
use crate::error::{hub_url, BuildError};
use crate::http;
use crate::token::{MintError, SigningKey, TokenRequest};
use crate::update::{InvalidUpdate, Update};

/// How long a publication may take, connection to answer, with the default HTTP client.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// When and how often a publication is tried again after a 503 or a connection that could not
/// be opened (see the [module documentation](self)).
///
/// The wait before the second attempt is `initial_delay`, doubled for each further attempt and
/// capped at `max_delay`, plus up to a tenth at random; after a 503 it is the hub's
/// `Retry-After` when that is longer, capped the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, 250 ms then 500 ms apart, at most 10 s when the hub asks for more.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// One attempt only: every failure is returned as it happens.
    pub fn never() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// Sets the number of attempts, the first included (0 counts as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the wait before the second attempt.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest wait between two attempts, `Retry-After` included.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// The wait after `failed` failed attempts (1 for the first), before jitter.
    fn delay(&self, failed: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = || {
            let factor = 1u32 << failed.saturating_sub(1).min(30);
            self.initial_delay.saturating_mul(factor)
        };
        // `Retry-After` lengthens the wait, never shortens it: `Retry-After: 0` must not turn
        // the retries into a burst.
        retry_after.map_or_else(doubled, |after| after.max(doubled())).min(self.max_delay)
    }
}

/// A failure to connect to the hub or to read its answer.
#[derive(Debug)]
pub struct NetworkError {
    source: reqwest::Error,
}

impl NetworkError {
    /// Whether the request may have reached the hub, and the update been stored: `false` only
    /// when the connection could not even be opened. When `true`, publishing again may store
    /// the update twice (with the same id, which subscribers of this crate skip while it is
    /// among the last ids they received).
    pub fn may_have_reached_hub(&self) -> bool {
        !(self.source.is_connect() || self.source.is_builder())
    }

    /// Whether the hub was too slow: to accept the connection, or to answer.
    pub fn is_timeout(&self) -> bool {
        self.source.is_timeout()
    }

    /// The HTTP client's error.
    pub fn get_ref(&self) -> &reqwest::Error {
        &self.source
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.may_have_reached_hub() {
            "no answer from the hub (the update may have been published)"
        } else {
            "cannot connect to the hub (nothing was sent)"
        };
        write!(f, "{what}: {}", http::describe(&self.source))
    }
}

impl std::error::Error for NetworkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Why a publication failed: the variant names the check, the message is the hub's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The update was refused before anything was sent: [`UpdateBuilder::build`] failed
    /// (the variant lets `?` carry that error in functions that publish).
    ///
    /// [`UpdateBuilder::build`]: crate::UpdateBuilder::build
    #[error("invalid update: {0}")]
    InvalidUpdate(#[from] InvalidUpdate),
    /// The publisher's token could not be minted again (nothing was sent).
    #[error("cannot mint the publisher's token: {0}")]
    Token(#[from] MintError),
    /// 401: no token, or one the hub does not accept (malformed, expired, badly signed, for
    /// another hub).
    #[error("the hub refused the token (401): {message}")]
    Unauthorized {
        /// The hub's explanation.
        message: String,
        /// The `WWW-Authenticate` challenge (`Bearer error="invalid_token"`, ...).
        challenge: Option<String>,
    },
    /// 403: a valid token that does not allow one of the update's topics.
    #[error("the token may not publish this update (403): {message}")]
    Forbidden {
        /// The hub's explanation.
        message: String,
    },
    /// 413: the body is over the hub's `max_request_body_size`, or the update has more topics
    /// than its `max_topics_per_update`.
    #[error("the update is too large for the hub (413): {message}")]
    PayloadTooLarge {
        /// The hub's explanation, naming the limit.
        message: String,
    },
    /// 503: the hub could not take the update now (still so after the retries), and reports
    /// that it stored nothing. A proxy's 503 may also come after it forwarded the request;
    /// Quicksilver's NATS transport stores an update retried with the same id and content once
    /// within its duplicate window, which makes publishing it again safe there.
    #[error("the hub is unavailable (503){}: {message}", retry_after_text(*.retry_after))]
    Unavailable {
        /// When the hub suggested to try again (`Retry-After`).
        retry_after: Option<Duration>,
        /// The hub's explanation.
        message: String,
    },
    /// Another refusal (400 for a field the hub refuses, 404 for a URL that is no hub, ...):
    /// publishing the same update again would be refused again.
    #[error("the hub refused the update ({status}): {message}")]
    Rejected {
        /// The status.
        status: StatusCode,
        /// The hub's explanation.
        message: String,
    },
    /// 5xx other than 503: the hub failed (a store failure). The update may or may not have
    /// been stored.
    #[error("the hub failed ({status}): {message}")]
    Server {
        /// The status.
        status: StatusCode,
        /// The hub's explanation.
        message: String,
    },
    /// The hub could not be reached, or its answer not read.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

fn retry_after_text(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |after| format!(", retry after {after:?}"))
}

impl PublishError {
    /// The status the hub answered, for the variants that have one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Unauthorized { .. } => Some(StatusCode::UNAUTHORIZED),
            Self::Forbidden { .. } => Some(StatusCode::FORBIDDEN),
            Self::PayloadTooLarge { .. } => Some(StatusCode::PAYLOAD_TOO_LARGE),
            Self::Unavailable { .. } => Some(StatusCode::SERVICE_UNAVAILABLE),
            Self::Rejected { status, .. } | Self::Server { status, .. } => Some(*status),
            Self::InvalidUpdate(_) | Self::Token(_) | Self::Network(_) => None,
        }
    }

    /// The wait before trying again, when the failure is one this client retries by itself
    /// (`None`: do not retry).
    fn retry_after(&self, policy: &RetryPolicy, failed: u32) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => Some(policy.delay(failed, *retry_after)),
            Self::Network(error) if !error.may_have_reached_hub() => {
                Some(policy.delay(failed, None))
            }
            _ => None,
        }
    }
}

/// Settings of a [`Publisher`], from [`Publisher::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until built"]
pub struct PublisherBuilder {
    hub: String,
    token: Option<TokenSetting>,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
}

impl PublisherBuilder {
    /// Publishes with `token` (a JWT whose claims allow the topics).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSetting::Given(token.into()));
        self
    }

    /// Publishes with tokens minted from `key` and `request`, minted again shortly before
    /// each expires.
    pub fn mint_token(mut self, key: SigningKey, request: TokenRequest) -> Self {
        self.token = Some(TokenSetting::Minted(Box::new((key, request))));
        self
    }

    /// Sends with `client` rather than a client of the publisher's own (which follows no
    /// redirect and gives up after [`DEFAULT_TIMEOUT`]).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Sets when failed publications are tried again (default: [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Checks the settings (a token request is minted once) and makes the publisher.
    pub fn build(self) -> Result<Publisher, BuildError> {
        let hub = hub_url(&self.hub)?;
        let credentials = self.token.map(TokenSetting::check).transpose()?;
        let http = match self.http {
            Some(client) => client,
            None => reqwest::Client::builder()
                // A redirected POST would turn into a GET: a publication is never redirected.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(http::CONNECT_TIMEOUT)
                .timeout(DEFAULT_TIMEOUT)
                .build()
                .map_err(BuildError::HttpClient)?,
        };
        Ok(Publisher { hub, http, credentials, retry: self.retry })
    }
}

/// A publisher: sends updates to one hub with one set of credentials. Cheap to clone (the
/// clones share the HTTP client's connections and the minted token).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use quicksilver_client::{PublishError, Publisher, Update};
///
/// let publisher = Publisher::builder("https://hub.example.com/.well-known/mercure")
///     .token("eyJhbGciOiJIUzI1NiJ9...")
///     .build()?;
/// let update = Update::builder("https://example.com/books/1").data("{}").build()?;
/// match publisher.publish(&update).await {
///     Ok(id) => println!("published as {id}"),
///     Err(PublishError::Forbidden { message }) => eprintln!("not allowed: {message}"),
///     Err(error) => return Err(error.into()),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Publisher {
    hub: url::Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
    retry: RetryPolicy,
}

impl Publisher {
    /// Starts the settings of a publisher to the hub at `hub`
    /// (`https://example.com/.well-known/mercure`).
    ///
    /// Without [`token`](PublisherBuilder::token) or
    /// [`mint_token`](PublisherBuilder::mint_token), requests carry no `Authorization` header
    /// (a hub answers 401, unless something in between adds credentials).
    pub fn builder(hub: impl Into<String>) -> PublisherBuilder {
        PublisherBuilder { hub: hub.into(), token: None, http: None, retry: RetryPolicy::default() }
    }

    /// The hub's URL.
    pub fn hub_url(&self) -> &url::Url {
        &self.hub
    }

    /// Publishes `update`; returns the id the hub answered (the update's own id, for hubs that
    /// keep the ids they are given).
    ///
    /// Retries as the [`RetryPolicy`] says after a 503 (the hub reports that it stored
    /// nothing) or a connection that could not be opened, and only then (see the
    /// [module documentation](self)).
    pub async fn publish(&self, update: &Update) -> Result<String, PublishError> {
        let body = update.form();
        let mut failed = 0;
        loop {
            let error = match self.attempt(&body).await {
                Ok(id) => return Ok(id),
                Err(error) => error,
            };
            failed += 1;
            match error.retry_after(&self.retry, failed) {
                Some(delay) if failed < self.retry.max_attempts => {
                    tokio::time::sleep(http::with_jitter(delay)).await;
                }
                _ => return Err(error),
            }
        }
    }

    /// One attempt.
    async fn attempt(&self, body: &str) -> Result<String, PublishError> {
        let mut request = self
            .http
            .post(self.hub.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(credentials) = &self.credentials {
            request = request.bearer_auth(credentials.token()?);
        }
        let response = request.send().await.map_err(|source| NetworkError { source })?;
        let status = response.status();
        if status.is_success() {
            // Once the status is in, the update is stored: a body that cannot be read is a
            // network error that may have reached the hub, which is the truth.
            return Ok(response.text().await.map_err(|source| NetworkError { source })?);
        }
        let headers = response.headers().clone();
        let message = http::message(response).await;
        Err(match status {
            StatusCode::UNAUTHORIZED => {
                PublishError::Unauthorized { message, challenge: http::challenge(&headers) }
            }
            StatusCode::FORBIDDEN => PublishError::Forbidden { message },
            StatusCode::PAYLOAD_TOO_LARGE => PublishError::PayloadTooLarge { message },
            StatusCode::SERVICE_UNAVAILABLE => {
                PublishError::Unavailable { retry_after: http::retry_after(&headers), message }
            }
            status if status.is_server_error() => PublishError::Server { status, message },
            status => PublishError::Rejected { status, message },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_retry_after_only_lengthens_them() {
        let policy = RetryPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000));
        let delays: Vec<u128> = (1..=6).map(|n| policy.delay(n, None).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.delay(1, Some(Duration::from_millis(300))), Duration::from_millis(300));
        assert_eq!(policy.delay(1, Some(Duration::ZERO)), Duration::from_millis(100));
        assert_eq!(policy.delay(3, Some(Duration::from_millis(300))), Duration::from_millis(400));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(60))), Duration::from_secs(1));
        assert_eq!(policy.delay(u32::MAX, None), Duration::from_secs(1), "no overflow");
        assert_eq!(RetryPolicy::never().max_attempts, 1);
        assert_eq!(RetryPolicy::default().max_attempts(0).max_attempts, 1);
    }

    #[test]
    fn only_certain_failures_are_retried() {
        let policy = RetryPolicy::default();
        let unavailable = PublishError::Unavailable {
            retry_after: Some(Duration::from_secs(2)),
            message: String::new(),
        };
        assert_eq!(unavailable.retry_after(&policy, 1), Some(Duration::from_secs(2)));
        let server = PublishError::Server {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: String::new(),
        };
        assert_eq!(server.retry_after(&policy, 1), None, "the update may have been stored");
        let rejected =
            PublishError::Rejected { status: StatusCode::BAD_REQUEST, message: String::new() };
        assert_eq!(rejected.retry_after(&policy, 1), None);
        assert_eq!(rejected.status(), Some(StatusCode::BAD_REQUEST));
        assert!(unavailable.to_string().contains("retry after 2s"), "{unavailable}");
    }

    #[test]
    fn builder_checks() {
        let invalid = |url: &str| Publisher::builder(url).build().expect_err("refused");
        assert!(matches!(invalid("not a url"), BuildError::InvalidHubUrl { .. }));
        assert!(matches!(
            invalid("ftp://hub/.well-known/mercure"),
            BuildError::InvalidHubUrl { .. }
        ));
        let line_break = Publisher::builder("http://hub/.well-known/mercure").token("a\nb").build();
        assert!(matches!(line_break, Err(BuildError::InvalidToken)));
        let publisher = Publisher::builder("http://hub/.well-known/mercure")
            .token("secret-token")
            .build()
            .expect("valid");
        assert!(!format!("{publisher:?}").contains("secret-token"), "{publisher:?}");
        assert_eq!(publisher.hub_url().as_str(), "http://hub/.well-known/mercure");
    }
}
