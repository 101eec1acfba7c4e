//! [`BuildError`]: why a [`PublisherBuilder`](crate::PublisherBuilder) or a
//! [`SubscriberBuilder`](crate::SubscriberBuilder) refused its settings. The errors of using
//! the built clients are [`PublishError`](crate::PublishError) and
//! [`SubscribeError`](crate::SubscribeError), each beside its client.

use crate::token::MintError;

/// Why a publisher or a subscriber cannot be built. Nothing was sent to the hub.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The hub URL is not an absolute `http` or `https` URL.
    #[error("invalid hub URL {url:?}: {reason}")]
    InvalidHubUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token request cannot be minted with the key.
    #[error("cannot mint a token: {0}")]
    Token(#[from] MintError),
    /// The token is not a valid HTTP header value (a line break, a control character).
    #[error("the token holds characters an Authorization header cannot carry")]
    InvalidToken,
    /// A subscriber without a topic or matcher would receive nothing (the hub answers 400).
    #[error(
        "a subscription needs at least one selector: draft-07 topics (topic) or Mercure 1.0 \
         matchers (match_exact, match_urlpattern)"
    )]
    NoSelector,
    /// Draft-07 topics and Mercure 1.0 matchers in one subscription (the hub answers 400).
    #[error(
        "a subscription uses one protocol: draft-07 topics (topic) or Mercure 1.0 matchers \
         (match_exact, match_urlpattern), not both"
    )]
    MixedSelectors,
    /// A selector the hub would refuse with 400.
    #[error("selector {selector:?}: {reason}")]
    InvalidSelector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token is for the other protocol than the selectors (the hub answers 400).
    #[error(
        "the token is {token}, but the selectors are {selectors}: a Mercure 1.0 subscription \
         (matchers) needs an RFC 9068 access token, a draft-07 one (topics) a token with a \
         mercure claim"
    )]
    TokenProtocol {
        /// The token's protocol.
        token: &'static str,
        /// The selectors' protocol.
        selectors: &'static str,
    },
    /// A setting with a value that would make every attempt fail (a zero timeout, ...).
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidSetting {
        /// The builder method that set it.
        setting: &'static str,
        /// What is wrong with the value.
        reason: &'static str,
    },
    /// The default HTTP client could not be made (the system's TLS roots could not be read).
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Parses a hub URL given to a builder.
pub(crate) fn hub_url(text: &str) -> Result<url::Url, BuildError> {
    let invalid = |reason: String| BuildError::InvalidHubUrl { url: text.to_owned(), reason };
    let url = url::Url::parse(text).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme is {}: use http or https", url.scheme())));
    }
    Ok(url)
}
