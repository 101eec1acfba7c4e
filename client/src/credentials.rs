//! The token a publisher or subscriber sends: one given by the caller, or one minted from a
//! [`SigningKey`] and a [`TokenRequest`] and minted again shortly before it expires.
//!
//! Shared (behind an `Arc`) by the clones of a [`Publisher`](crate::Publisher) and the streams of
//! a [`Subscriber`](crate::Subscriber); the lock is never held across an `.await`. `Debug` never
//! shows a token or a key.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderValue;

use crate::error::BuildError;
use crate::token::{self, Format, MintError, SigningKey, TokenRequest, ACCESS_TOKEN_TYP};

/// The credentials a builder was given, checked when it builds.
pub(crate) enum TokenSetting {
    /// A token as is.
    Given(String),
    /// A key and a request to mint tokens from.
    Minted(Box<(SigningKey, TokenRequest)>),
}

impl fmt::Debug for TokenSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Given(_) => f.write_str("Given(..)"),
            Self::Minted(minted) => {
                f.debug_tuple("Minted").field(&minted.0).field(&minted.1).finish()
            }
        }
    }
}

impl TokenSetting {
    /// Checks the setting: a given token must fit in a header, a request must be mintable.
    pub(crate) fn check(self) -> Result<Credentials, BuildError> {
        match self {
            Self::Given(token) => {
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| BuildError::InvalidToken)?;
                Ok(Credentials::given(token))
            }
            Self::Minted(minted) => {
                let (key, request) = *minted;
                Ok(Credentials::minted(key, request)?)
            }
        }
    }
}

/// A token source.
#[derive(Clone)]
pub(crate) struct Credentials(Arc<Source>);

enum Source {
    Given(String),
    Minted(Box<Minter>),
}

/// What mints the tokens, and the last one minted.
struct Minter {
    key: SigningKey,
    request: TokenRequest,
    current: Mutex<Option<Minted>>,
}

/// A minted token and when to replace it (never: `None`).
struct Minted {
    token: String,
    renew_at: Option<Instant>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Source::Given(_) => f.write_str("Credentials::Given(..)"),
            Source::Minted(minter) => f
                .debug_struct("Credentials::Minted")
                .field("algorithm", &minter.key.algorithm())
                .field("format", &minter.request.format())
                .finish_non_exhaustive(),
        }
    }
}

impl Credentials {
    /// A token given as is.
    pub(crate) fn given(token: String) -> Self {
        Self(Arc::new(Source::Given(token)))
    }

    /// Tokens minted from `key` and `request`; one is minted now, so that a request that
    /// cannot be minted is refused when the client is built rather than at its first use.
    pub(crate) fn minted(key: SigningKey, request: TokenRequest) -> Result<Self, MintError> {
        let minter = Minter { key, request, current: Mutex::new(None) };
        let credentials = Self(Arc::new(Source::Minted(Box::new(minter))));
        credentials.token()?;
        Ok(credentials)
    }

    /// The token to send now.
    pub(crate) fn token(&self) -> Result<String, MintError> {
        let (key, request, current) = match &*self.0 {
            Source::Given(token) => return Ok(token.clone()),
            Source::Minted(minter) => (&minter.key, &minter.request, &minter.current),
        };
        // A poisoned lock only means another thread panicked while replacing the token: the
        // cached value is still a whole token or none.
        let mut current = current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let fresh = |minted: &&Minted| minted.renew_at.is_none_or(|at| now < at);
        if let Some(minted) = current.as_ref().filter(fresh) {
            return Ok(minted.token.clone());
        }
        let token = token::mint(request, key)?;
        // A token without `exp`, or one too far away for an `Instant`, is never renewed.
        let renew_at = request.lifetime().and_then(|lifetime| {
            now.checked_add(lifetime.saturating_sub(renewal_margin(lifetime)))
        });
        *current = Some(Minted { token: token.clone(), renew_at });
        Ok(token)
    }

    /// Whether the tokens are Mercure 1.0 access tokens (`typ: at+jwt`), draft-07 ones, or
    /// unknown (a given token whose header cannot be read).
    pub(crate) fn is_access_token(&self) -> Option<bool> {
        match &*self.0 {
            Source::Minted(minter) => Some(minter.request.format() == Format::Rfc9068),
            Source::Given(token) => {
                let header = jsonwebtoken::decode_header(token).ok()?;
                Some(header.typ.is_some_and(|typ| typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYP)))
            }
        }
    }
}

/// How long before its expiry a minted token is replaced: a tenth of its lifetime, between 2 s
/// (the hub's clock may be a little ahead, and `exp` is rounded to the second) and one minute.
fn renewal_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Selector;

    fn request(lifetime: Option<Duration>) -> TokenRequest {
        TokenRequest::new(Format::Legacy).publish(Selector::Exact("*".into())).expires_in(lifetime)
    }

    #[test]
    fn a_minted_token_is_reused_until_shortly_before_it_expires() {
        let key = SigningKey::new("HS256", b"secret").expect("key");
        let hour = Credentials::minted(key.clone(), request(Some(Duration::from_secs(3600))))
            .expect("mintable");
        assert_eq!(hour.token().expect("token"), hour.token().expect("token"), "cached");
        // A lifetime within the margin is renewed at each use (an access token has a random
        // jti, so two of them differ even within one second).
        let short_lived = TokenRequest::new(Format::Rfc9068)
            .publish(Selector::Exact("*".into()))
            .expires_in(Some(Duration::from_secs(1)));
        let short = Credentials::minted(key.clone(), short_lived).expect("ok");
        assert_ne!(short.token().expect("token"), short.token().expect("token"), "fresh jti");
        let forever = Credentials::minted(key, request(None)).expect("mintable");
        assert_eq!(forever.token().expect("token"), forever.token().expect("token"));
        assert_eq!(forever.is_access_token(), Some(false));
        assert!(!format!("{forever:?}").contains("eyJ"), "no token in Debug: {forever:?}");
    }

    #[test]
    fn renewal_margins() {
        assert_eq!(renewal_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(renewal_margin(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(renewal_margin(Duration::from_secs(5)), Duration::from_secs(2));
    }

    #[test]
    fn the_protocol_of_a_given_token_is_read_from_its_header() {
        let key = SigningKey::new("HS256", b"secret").expect("key");
        let access = token::mint(
            &TokenRequest::new(Format::Rfc9068).publish(Selector::Exact("*".into())),
            &key,
        )
        .expect("mint");
        assert_eq!(Credentials::given(access).is_access_token(), Some(true));
        assert_eq!(Credentials::given("not a jwt".into()).is_access_token(), None);
        assert_eq!(format!("{:?}", Credentials::given("secret".into())), "Credentials::Given(..)");
    }
}
