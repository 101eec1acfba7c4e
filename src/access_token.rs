//! Mercure 1.0 access tokens: RFC 9068 JWTs from trusted issuers, whose RFC 9396
//! `authorization_details` grant publishing and subscribing.
//!
//! This module owns the trusted issuers and everything about verifying their tokens; the HTTP
//! layer calls [`TrustedIssuers::verify`] and turns any [`AccessTokenError`] into 401
//! `invalid_token`, and the authorization layer checks topics against the [`AccessGrant`]. Legacy
//! (draft) tokens are [`crate::jwt`]'s business; [`is_access_token`] tells them apart.
//!
//! The rules (protocol notes 3.4):
//!
//! - The header's `typ` must be `at+jwt` or `application/at+jwt` (any case). `jwk`, `jku`, `x5u`
//!   and `x5c` are never read, so a token cannot bring its own key. A `crit` header is refused,
//!   as RFC 7515 requires of extensions one does not understand (this hub understands none).
//! - `iss` must be a configured issuer, and only that issuer's verifier for the role asked
//!   (publisher or subscriber) is used: keys of different issuers are never pooled.
//! - A verifier is either a static key with its one algorithm (the rules of [`crate::jwt`]:
//!   PS* is refused there) or a JWK Set ([`crate::jwks`]) whose algorithms default to
//!   [`JWKS_ALGORITHMS`] (ES512 is missing because jsonwebtoken does not implement it). With a
//!   set, the key is the one named by the header's `kid`; a token without `kid` is accepted only
//!   when exactly one key fits its `alg`.
//! - `exp` is required, `nbf` enforced, both without leeway; `aud` (a string or an array) must
//!   contain the audience the caller expects, the hub's resource identifier. `sub`,
//!   `client_id`, `iat` and `jti` are not required: the conformance token has none of them.
//! - Only `authorization_details` entries of type [`MERCURE_DETAIL_TYPE`] grant anything (the
//!   legacy `mercure` claim is not read). Any malformed Mercure detail invalidates the whole
//!   token, never a partial grant; see [`AccessGrant`].
//!
//! Errors never contain the token or key material.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

pub use crate::jwks::JwksOptions;
use crate::jwks::{self, JwkSetHandle, JwksError, Lookup};
use crate::jwt::{self, JwtVerifier, KeyError, Segments, TokenError};

/// The `type` of the `authorization_details` entries that carry Mercure grants.
pub const MERCURE_DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// The algorithms a JWK Set verifier accepts unless configuration restricts them.
/// ES512 is not among them: jsonwebtoken does not implement it.
pub const JWKS_ALGORITHMS: [&str; 9] =
    ["EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];

/// The most Mercure authorization details one token may carry.
pub const MAX_DETAILS: usize = 100;

/// The most topics, over all its Mercure details, one token may carry.
pub const MAX_TOPICS: usize = 100;

/// How a granted topic pattern matches topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// Byte-for-byte equality (or the `*` wildcard).
    Exact,
    /// A WHATWG URL Pattern.
    UrlPattern,
}

impl MatchType {
    /// The name used in tokens and in `match_<type>` parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Exact => "exact",
            MatchType::UrlPattern => "urlpattern",
        }
    }
}

/// A match type name that is not supported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported match type")]
pub struct UnsupportedMatchType;

impl FromStr for MatchType {
    type Err = UnsupportedMatchType;

    /// Parses `exact` or `urlpattern`, case-sensitively as the spec names them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(MatchType::Exact),
            "urlpattern" => Ok(MatchType::UrlPattern),
            _ => Err(UnsupportedMatchType),
        }
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One topic of a Mercure detail: `{"match": …, "match_type": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicGrant {
    /// The `match` value: a topic, `*`, or a URL pattern; never empty.
    pub pattern: String,
    /// How `pattern` matches (default `exact`).
    pub match_type: MatchType,
}

/// What one Mercure detail with the `subscribe` action grants.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeDetail {
    /// The topics the subscriber may receive private updates of; never empty.
    pub topics: Vec<TopicGrant>,
    /// The detail's `payload`, shared with subscription (presence) events.
    pub payload: Option<Value>,
}

/// What a verified access token grants.
///
/// A token without Mercure details is valid and grants nothing (empty lists).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessGrant {
    /// The token's `iss`, one of the trusted issuers.
    pub issuer: String,
    /// Topics the token may publish to, from every detail with the `publish` action.
    pub publish: Vec<TopicGrant>,
    /// One entry per detail with the `subscribe` action, in token order.
    pub subscribe: Vec<SubscribeDetail>,
    /// `exp`, in seconds since the Unix epoch (subscriber streams end by then).
    pub expires_at: u64,
}

impl AccessGrant {
    /// The payload for a subscription whose matcher is `matcher` (rule 23): that of the first
    /// subscribe detail listing `matcher` itself; failing that, of the first listing `*`.
    ///
    /// The detail found decides, even when it has no payload.
    pub fn subscribe_payload(&self, matcher: &str) -> Option<&Value> {
        let listing = |pattern: &str| {
            self.subscribe.iter().find(|detail| detail.topics.iter().any(|t| t.pattern == pattern))
        };
        listing(matcher).or_else(|| listing("*")).and_then(|detail| detail.payload.as_ref())
    }
}

/// Which of an issuer's verifiers a token is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Tokens presented to publish.
    Publisher,
    /// Tokens presented to subscribe (and to the subscriptions API).
    Subscriber,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        })
    }
}

/// How one role of an issuer verifies signatures, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySpec {
    /// A static key and its one algorithm, with the rules of [`JwtVerifier::new`].
    Key {
        /// An HMAC secret, or a PEM public key or certificate.
        key: String,
        /// The algorithm name (`HS256`, `RS256`, `ES256`, `EdDSA`, …).
        alg: String,
    },
    /// A JWK Set, fetched and refreshed.
    Jwks {
        /// An `https://` or `file://` URL.
        uri: String,
        /// The accepted algorithms, a subset of [`JWKS_ALGORITHMS`]; None for all of them.
        algorithms: Option<Vec<String>>,
    },
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Never the key: it may be a secret.
            KeySpec::Key { alg, .. } => {
                f.debug_struct("Key").field("alg", alg).finish_non_exhaustive()
            }
            KeySpec::Jwks { uri, algorithms } => {
                f.debug_struct("Jwks").field("uri", uri).field("algorithms", algorithms).finish()
            }
        }
    }
}

/// One trusted issuer, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSpec {
    /// The exact `iss` value of its tokens.
    pub issuer: String,
    /// Whether to list it in the protected resource metadata's `authorization_servers`.
    pub authorization_server: bool,
    /// How its publishers' tokens are verified; None: it cannot grant publishing.
    pub publisher: Option<KeySpec>,
    /// How its subscribers' tokens are verified; None: it cannot grant subscribing.
    pub subscriber: Option<KeySpec>,
}

/// Why the trusted issuers cannot be set up; each names the issuer (and role) at fault.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// An issuer with an empty name.
    #[error("a trusted issuer needs a non-empty issuer identifier")]
    EmptyIssuer,
    /// The same issuer configured twice.
    #[error("trusted issuer {issuer:?} is configured twice")]
    DuplicateIssuer {
        /// The issuer.
        issuer: String,
    },
    /// An issuer with neither a publisher nor a subscriber verifier.
    #[error("trusted issuer {issuer:?} needs a publisher or subscriber key")]
    NoVerifier {
        /// The issuer.
        issuer: String,
    },
    /// A static key that cannot be used with its algorithm.
    #[error("trusted issuer {issuer:?}, {role} key: {source}")]
    InvalidKey {
        /// The issuer.
        issuer: String,
        /// The role of the key.
        role: Role,
        /// What is wrong with it (never the key itself).
        source: KeyError,
    },
    /// A JWK Set algorithm name that is not supported.
    #[error(
        "trusted issuer {issuer:?}, {role} JWK Set: unsupported algorithm {alg:?}; \
         expected some of {} (ES512 is not supported)",
        JWKS_ALGORITHMS.join(", ")
    )]
    UnsupportedAlgorithm {
        /// The issuer.
        issuer: String,
        /// The role of the set.
        role: Role,
        /// The configured name.
        alg: String,
    },
    /// An empty list of JWK Set algorithms, which would accept no token.
    #[error("trusted issuer {issuer:?}, {role} JWK Set: the algorithm list is empty")]
    NoAlgorithms {
        /// The issuer.
        issuer: String,
        /// The role of the set.
        role: Role,
    },
    /// A JWK Set source that cannot be used.
    #[error("trusted issuer {issuer:?}, {role} JWK Set: {source}")]
    Jwks {
        /// The issuer.
        issuer: String,
        /// The role of the set.
        role: Role,
        /// What went wrong.
        source: JwksError,
    },
}

/// Why an access token was refused. Every variant means 401 `invalid_token`; the messages are
/// short, never contain the token, and the HTTP layer decides whether to show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessTokenError {
    /// Not a compact JWS with JSON object header and payload, or a header field of the
    /// wrong type.
    #[error("malformed token")]
    Malformed,
    /// The header's `typ` is not `at+jwt`.
    #[error("not an access token")]
    NotAnAccessToken,
    /// The header has `crit`, naming extensions this hub does not implement.
    #[error("unsupported critical header")]
    CriticalHeader,
    /// No string `iss`.
    #[error("missing issuer")]
    MissingIssuer,
    /// `iss` is not a trusted issuer.
    #[error("untrusted issuer")]
    UnknownIssuer,
    /// The issuer is trusted, but not for this role.
    #[error("issuer not trusted for this use")]
    RoleNotTrusted,
    /// The header's `alg` is not accepted by the issuer's verifier (or by the chosen key).
    #[error("unexpected signing algorithm")]
    WrongAlgorithm,
    /// No key of the issuer's JWK Set has the token's `kid` (or fits a token without one).
    #[error("unknown signing key")]
    UnknownKey,
    /// The token has no `kid` and several keys of the set fit its algorithm.
    #[error("ambiguous signing key")]
    AmbiguousKey,
    /// The issuer's JWK Set has not been loaded yet.
    #[error("signing keys unavailable")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// No `exp`.
    #[error("missing expiry")]
    MissingExpiry,
    /// `exp` is not in the future.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet")]
    NotYetValid,
    /// No `aud`.
    #[error("missing audience")]
    MissingAudience,
    /// `aud` does not contain the expected audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A registered claim of the wrong type; the text names it.
    #[error("invalid claims: {0}")]
    InvalidClaims(&'static str),
    /// A malformed Mercure authorization detail; the text says what is wrong.
    #[error("invalid authorization_details: {0}")]
    InvalidAuthorizationDetails(&'static str),
}

impl From<TokenError> for AccessTokenError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Malformed => AccessTokenError::Malformed,
            TokenError::WrongAlgorithm => AccessTokenError::WrongAlgorithm,
            TokenError::BadSignature => AccessTokenError::BadSignature,
            TokenError::Expired => AccessTokenError::Expired,
            TokenError::NotYetValid => AccessTokenError::NotYetValid,
            TokenError::InvalidClaims(what) => AccessTokenError::InvalidClaims(what),
        }
    }
}

/// One role's verifier of one issuer.
#[derive(Clone)]
enum Verifier {
    Static(JwtVerifier),
    Jwks { set: JwkSetHandle, algorithms: Vec<Algorithm> },
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verifier::Static(verifier) => verifier.fmt(f),
            Verifier::Jwks { set, algorithms } => f
                .debug_struct("Jwks")
                .field("uri", &set.uri())
                .field("algorithms", algorithms)
                .finish(),
        }
    }
}

#[derive(Debug)]
struct Issuer {
    authorization_server: bool,
    publisher: Option<Verifier>,
    subscriber: Option<Verifier>,
}

impl Issuer {
    fn verifier(&self, role: Role) -> Option<&Verifier> {
        match role {
            Role::Publisher => self.publisher.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
        }
    }
}

/// The trusted issuers and their verifiers: cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct TrustedIssuers {
    issuers: Arc<HashMap<String, Issuer>>,
    /// Issuer names in configuration order, for stable metadata.
    order: Arc<[String]>,
}

impl fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for name in self.order.iter() {
            map.entry(name, &self.issuers[name]);
        }
        map.finish()
    }
}

impl TrustedIssuers {
    /// Validates every key now (a bad key is a start-up error naming the issuer and role),
    /// and starts one JWK Set fetcher per distinct `jwks_uri`, each on a thread of its own.
    ///
    /// A JWK Set that cannot be fetched yet is not an error: its issuer's tokens are refused
    /// until it loads, and a warning is logged.
    pub fn start(specs: Vec<IssuerSpec>, options: &JwksOptions) -> Result<Self, IssuerError> {
        Self::build(specs, options, jwks::start)
    }

    /// [`TrustedIssuers::start`] with the fetchers on the current runtime (paused time).
    #[cfg(test)]
    fn spawn(specs: Vec<IssuerSpec>, options: &JwksOptions) -> Result<Self, IssuerError> {
        Self::build(specs, options, jwks::spawn)
    }

    fn build(
        specs: Vec<IssuerSpec>,
        options: &JwksOptions,
        start_fetcher: fn(&str, &JwksOptions) -> Result<JwkSetHandle, JwksError>,
    ) -> Result<Self, IssuerError> {
        let mut issuers = HashMap::new();
        let mut order = Vec::new();
        let mut fetchers: HashMap<String, JwkSetHandle> = HashMap::new();
        for spec in specs {
            if spec.issuer.is_empty() {
                return Err(IssuerError::EmptyIssuer);
            }
            if issuers.contains_key(&spec.issuer) {
                return Err(IssuerError::DuplicateIssuer { issuer: spec.issuer });
            }
            if spec.publisher.is_none() && spec.subscriber.is_none() {
                return Err(IssuerError::NoVerifier { issuer: spec.issuer });
            }
            let mut build_verifier = |role: Role, key: Option<KeySpec>| {
                key.map(|key| {
                    verifier(&spec.issuer, role, key, options, &mut fetchers, start_fetcher)
                })
                .transpose()
            };
            let issuer = Issuer {
                authorization_server: spec.authorization_server,
                publisher: build_verifier(Role::Publisher, spec.publisher.clone())?,
                subscriber: build_verifier(Role::Subscriber, spec.subscriber.clone())?,
            };
            order.push(spec.issuer.clone());
            issuers.insert(spec.issuer, issuer);
        }
        Ok(Self { issuers: Arc::new(issuers), order: order.into() })
    }

    /// Verifies an access token presented for `role`, expecting `audience` in its `aud`.
    pub async fn verify(
        &self,
        token: &str,
        role: Role,
        audience: &str,
    ) -> Result<AccessGrant, AccessTokenError> {
        self.verify_at(token, role, audience, jwt::unix_now()).await
    }

    /// [`TrustedIssuers::verify`] at the given time (seconds since the Unix epoch).
    pub async fn verify_at(
        &self,
        token: &str,
        role: Role,
        audience: &str,
        now: u64,
    ) -> Result<AccessGrant, AccessTokenError> {
        let segments = Segments::split(token)?;
        let header = jwt::json_object(segments.header)?;
        if !typ_is_access_token(&header) {
            return Err(AccessTokenError::NotAnAccessToken);
        }
        if header.contains_key("crit") {
            return Err(AccessTokenError::CriticalHeader);
        }
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(AccessTokenError::Malformed);
        };
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(AccessTokenError::Malformed),
        };

        // The issuer must be known before the signature can be checked, since it chooses the
        // key; nothing else in the payload is trusted until then.
        let mut claims = jwt::json_object(segments.payload)?;
        let Some(Value::String(issuer_name)) = claims.get("iss") else {
            return Err(AccessTokenError::MissingIssuer);
        };
        let issuer = self.issuers.get(issuer_name).ok_or(AccessTokenError::UnknownIssuer)?;
        let verifier = issuer.verifier(role).ok_or(AccessTokenError::RoleNotTrusted)?;

        match verifier {
            Verifier::Static(verifier) => {
                // The pin, as for legacy tokens: `none` and HS/RS confusion stop here.
                if alg != verifier.algorithm() {
                    return Err(AccessTokenError::WrongAlgorithm);
                }
                jwt::verify_signature(&segments, verifier.key(), verifier.jwt_algorithm())?;
            }
            Verifier::Jwks { set, algorithms } => {
                let algorithm = Algorithm::from_str(alg)
                    .ok()
                    .filter(|a| algorithms.contains(a))
                    .ok_or(AccessTokenError::WrongAlgorithm)?;
                let key = jwks_key(set, kid, algorithm).await?;
                jwt::verify_signature(&segments, &key, algorithm)?;
            }
        }

        // From here on the claims are the issuer's.
        let expires_at = jwt::numeric_date(claims.get("exp"), "`exp` must be a number")?
            .ok_or(AccessTokenError::MissingExpiry)?;
        if expires_at <= now {
            return Err(AccessTokenError::Expired);
        }
        let not_before = jwt::numeric_date(claims.get("nbf"), "`nbf` must be a number")?;
        if not_before.is_some_and(|nbf| nbf > now) {
            return Err(AccessTokenError::NotYetValid);
        }
        check_audience(claims.get("aud"), audience)?;

        let (publish, subscribe) = authorization_details(claims.get("authorization_details"))
            .map_err(AccessTokenError::InvalidAuthorizationDetails)?;
        let issuer = match claims.remove("iss") {
            Some(Value::String(issuer)) => issuer,
            // Read above; this cannot happen.
            _ => return Err(AccessTokenError::MissingIssuer),
        };
        Ok(AccessGrant { issuer, publish, subscribe, expires_at })
    }

    /// The issuers flagged `authorization_server`, in configuration order.
    pub fn authorization_servers(&self) -> Vec<&str> {
        self.order
            .iter()
            .filter(|name| self.issuers[name.as_str()].authorization_server)
            .map(String::as_str)
            .collect()
    }

    /// Whether no issuer is trusted.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Whether some issuer has a verifier for `role`.
    #[cfg(test)]
    pub fn accepts(&self, role: Role) -> bool {
        self.issuers.values().any(|issuer| issuer.verifier(role).is_some())
    }
}

/// Builds one role's verifier, sharing a fetcher between identical `jwks_uri`s.
fn verifier(
    issuer: &str,
    role: Role,
    spec: KeySpec,
    options: &JwksOptions,
    fetchers: &mut HashMap<String, JwkSetHandle>,
    start_fetcher: fn(&str, &JwksOptions) -> Result<JwkSetHandle, JwksError>,
) -> Result<Verifier, IssuerError> {
    match spec {
        KeySpec::Key { key, alg } => JwtVerifier::new(&key, &alg)
            .map(Verifier::Static)
            .map_err(|source| IssuerError::InvalidKey { issuer: issuer.to_owned(), role, source }),
        KeySpec::Jwks { uri, algorithms } => {
            let names: Vec<&str> = match &algorithms {
                None => JWKS_ALGORITHMS.to_vec(),
                Some(names) => names.iter().map(String::as_str).collect(),
            };
            if names.is_empty() {
                return Err(IssuerError::NoAlgorithms { issuer: issuer.to_owned(), role });
            }
            let algorithms = names
                .into_iter()
                .map(|name| {
                    JWKS_ALGORITHMS
                        .contains(&name)
                        .then(|| Algorithm::from_str(name).ok())
                        .flatten()
                        .ok_or_else(|| IssuerError::UnsupportedAlgorithm {
                            issuer: issuer.to_owned(),
                            role,
                            alg: name.to_owned(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let set =
                match fetchers.get(&uri) {
                    Some(set) => set.clone(),
                    None => {
                        let set = start_fetcher(&uri, options).map_err(|source| {
                            IssuerError::Jwks { issuer: issuer.to_owned(), role, source }
                        })?;
                        fetchers.insert(uri, set.clone());
                        set
                    }
                };
            Ok(Verifier::Jwks { set, algorithms })
        }
    }
}

/// Finds the key of a JWK Set for a token, asking for a refresh when the `kid` is unknown.
async fn jwks_key(
    set: &JwkSetHandle,
    kid: Option<&str>,
    alg: Algorithm,
) -> Result<DecodingKey, AccessTokenError> {
    let known = set.keys();
    let keys = match known.select(kid, alg) {
        // A new `kid` is how key rotation shows; waiting is bounded and rate-limited by the
        // fetcher, and known keys never get here.
        Lookup::Unknown | Lookup::NotLoaded => set.refresh().await,
        _ => known,
    };
    match keys.select(kid, alg) {
        Lookup::Found(key) => Ok(key.decoding_key().clone()),
        Lookup::Unknown => Err(AccessTokenError::UnknownKey),
        Lookup::WrongAlgorithm => Err(AccessTokenError::WrongAlgorithm),
        Lookup::Ambiguous => Err(AccessTokenError::AmbiguousKey),
        Lookup::NotLoaded => Err(AccessTokenError::KeysUnavailable),
    }
}

/// Whether a header's `typ` announces an RFC 9068 access token.
fn typ_is_access_token(header: &Map<String, Value>) -> bool {
    match header.get("typ") {
        Some(Value::String(typ)) => {
            typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
        }
        _ => false,
    }
}

/// Whether a token presents itself as an RFC 9068 access token (its unverified header's
/// `typ`), so the HTTP layer can tell Mercure 1.0 requests from legacy ones. Nothing is
/// verified: the answer only chooses the verifier.
pub fn is_access_token(token: &str) -> bool {
    let header = token.split('.').next().unwrap_or_default();
    jwt::json_object(header).is_ok_and(|header| typ_is_access_token(&header))
}

/// Checks that `aud` (a string or an array of strings) contains `audience`.
fn check_audience(aud: Option<&Value>, audience: &str) -> Result<(), AccessTokenError> {
    const TYPE: &str = "`aud` must be a string or an array of strings";
    let contains = match aud {
        None | Some(Value::Null) => return Err(AccessTokenError::MissingAudience),
        Some(Value::String(aud)) => aud == audience,
        Some(Value::Array(auds)) => {
            let mut contains = false;
            for aud in auds {
                match aud {
                    Value::String(aud) => contains |= aud == audience,
                    _ => return Err(AccessTokenError::InvalidClaims(TYPE)),
                }
            }
            contains
        }
        Some(_) => return Err(AccessTokenError::InvalidClaims(TYPE)),
    };
    if contains {
        Ok(())
    } else {
        Err(AccessTokenError::WrongAudience)
    }
}

/// Reads the Mercure grants of `authorization_details`: publish topics and subscribe details.
///
/// Any malformed Mercure detail fails the whole claim. Entries of other types are skipped, but
/// each entry must still be an object with a string `type`, as RFC 9396 requires.
fn authorization_details(
    value: Option<&Value>,
) -> Result<(Vec<TopicGrant>, Vec<SubscribeDetail>), &'static str> {
    let entries = match value {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("must be an array"),
    };
    let mut publish = Vec::new();
    let mut subscribe = Vec::new();
    let (mut details, mut topics_total) = (0, 0);
    for entry in entries {
        let Value::Object(entry) = entry else {
            return Err("each entry must be an object");
        };
        match entry.get("type") {
            Some(Value::String(kind)) if kind == MERCURE_DETAIL_TYPE => {}
            Some(Value::String(_)) => continue,
            _ => return Err("each entry needs a string `type`"),
        }
        details += 1;
        if details > MAX_DETAILS {
            return Err("too many Mercure details");
        }

        let (mut can_publish, mut can_subscribe) = (false, false);
        match entry.get("actions") {
            Some(Value::Array(actions)) if !actions.is_empty() => {
                for action in actions {
                    match action.as_str() {
                        Some("publish") => can_publish = true,
                        Some("subscribe") => can_subscribe = true,
                        // Unknown actions are for someone else (or a later version).
                        Some(_) => {}
                        None => return Err("`actions` must hold strings"),
                    }
                }
            }
            _ => return Err("`actions` must be a non-empty array"),
        }

        let topics = match entry.get("topics") {
            Some(Value::Array(topics)) if !topics.is_empty() => topics,
            _ => return Err("`topics` must be a non-empty array"),
        };
        topics_total += topics.len();
        if topics_total > MAX_TOPICS {
            return Err("too many topics");
        }
        let topics = topics.iter().map(topic_grant).collect::<Result<Vec<_>, _>>()?;

        if can_publish {
            publish.extend(topics.iter().cloned());
        }
        if can_subscribe {
            let payload = entry.get("payload").filter(|p| !p.is_null()).cloned();
            subscribe.push(SubscribeDetail { topics, payload });
        }
    }
    Ok((publish, subscribe))
}

/// Reads one `{"match": …, "match_type"?: …}` topic object.
fn topic_grant(topic: &Value) -> Result<TopicGrant, &'static str> {
    let Value::Object(topic) = topic else {
        return Err("each topic must be an object");
    };
    let pattern = match topic.get("match") {
        Some(Value::String(pattern)) if !pattern.is_empty() => pattern.clone(),
        _ => return Err("each topic needs a non-empty string `match`"),
    };
    let match_type = match topic.get("match_type") {
        None | Some(Value::Null) => MatchType::Exact,
        Some(Value::String(name)) => name.parse().map_err(|_| "unsupported `match_type`")?,
        Some(_) => return Err("`match_type` must be a string"),
    };
    Ok(TopicGrant { pattern, match_type })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::jwk::Jwk;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use std::time::Duration;

    macro_rules! fixture {
        ($file:literal) => {
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/", $file))
        };
    }

    const RSA_PRIVATE: &str = fixture!("rsa_private.pem");
    const RSA_PUBLIC: &str = fixture!("rsa_public.pem");
    const ES256_PRIVATE: &str = fixture!("es256_private.pem");
    const ES256_PUBLIC: &str = fixture!("es256_public.pem");
    const ED25519_PRIVATE: &str = fixture!("ed25519_private.pem");
    const ED25519_PUBLIC: &str = fixture!("ed25519_public.pem");

    const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";
    const ISSUER: &str = "https://localhost";
    const AUDIENCE: &str = "https://localhost/.well-known/mercure";
    const EXP: u64 = 4_102_444_800;
    const NOW: u64 = 1_700_000_000;

    /// protocol.md 5.2, verbatim.
    const CONFORMANCE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJhdWQiOiJodHRwczovL2xvY2FsaG9zdC8ud2VsbC1rbm93bi9tZXJjdXJlIiwiaXNzIjoiaHR0cHM6Ly9sb2NhbGhvc3QiLCJhdXRob3JpemF0aW9uX2RldGFpbHMiOlt7InR5cGUiOiJodHRwczovL21lcmN1cmUucm9ja3MvYXV0aG9yaXphdGlvbi1kZXRhaWwiLCJhY3Rpb25zIjpbInB1Ymxpc2giXSwidG9waWNzIjpbeyJtYXRjaCI6IioifV19LHsidHlwZSI6Imh0dHBzOi8vbWVyY3VyZS5yb2Nrcy9hdXRob3JpemF0aW9uLWRldGFpbCIsImFjdGlvbnMiOlsic3Vic2NyaWJlIl0sInRvcGljcyI6W3sibWF0Y2giOiIqIn1dfV0sImV4cCI6NDEwMjQ0NDgwMH0.z_S8IP5WZsCK8h3pcq0PB5zvJE0OdTrGA70khAYJQy4";

    fn key(key: &str, alg: &str) -> KeySpec {
        KeySpec::Key { key: key.to_owned(), alg: alg.to_owned() }
    }

    fn issuer(name: &str, both: KeySpec) -> IssuerSpec {
        IssuerSpec {
            issuer: name.to_owned(),
            authorization_server: false,
            publisher: Some(both.clone()),
            subscriber: Some(both),
        }
    }

    fn trusted(specs: Vec<IssuerSpec>) -> TrustedIssuers {
        TrustedIssuers::start(specs, &JwksOptions::default()).expect("valid issuers")
    }

    fn hs_issuers() -> TrustedIssuers {
        trusted(vec![issuer(ISSUER, key(SECRET, "HS256"))])
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs raw header and claims JSON, so that any header can be tested.
    fn raw(header: &Value, claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("signing works");
        format!("{message}.{signature}")
    }

    fn at_header(alg: Algorithm) -> Header {
        let mut header = Header::new(alg);
        header.typ = Some("at+jwt".to_owned());
        header
    }

    fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
        jsonwebtoken::encode(header, claims, key).expect("signing works")
    }

    fn secret() -> EncodingKey {
        EncodingKey::from_secret(SECRET.as_bytes())
    }

    fn hs256(claims: &Value) -> String {
        sign(&at_header(Algorithm::HS256), claims, &secret())
    }

    fn detail(actions: Value, topics: Value) -> Value {
        json!({"type": MERCURE_DETAIL_TYPE, "actions": actions, "topics": topics})
    }

    fn with_details(details: Value) -> Value {
        json!({"iss": ISSUER, "aud": AUDIENCE, "exp": EXP, "authorization_details": details})
    }

    fn all_rights() -> Value {
        with_details(json!([detail(json!(["publish", "subscribe"]), json!([{"match": "*"}]))]))
    }

    fn star() -> Vec<TopicGrant> {
        vec![TopicGrant { pattern: "*".to_owned(), match_type: MatchType::Exact }]
    }

    async fn verify(
        issuers: &TrustedIssuers,
        token: &str,
    ) -> Result<AccessGrant, AccessTokenError> {
        issuers.verify_at(token, Role::Publisher, AUDIENCE, NOW).await
    }

    #[tokio::test]
    async fn the_conformance_token_is_accepted() {
        let issuers = hs_issuers();
        for role in [Role::Publisher, Role::Subscriber] {
            let grant = issuers.verify(CONFORMANCE_TOKEN, role, AUDIENCE).await.expect("valid");
            assert_eq!(grant.issuer, ISSUER);
            assert_eq!(grant.publish, star());
            assert_eq!(grant.subscribe, vec![SubscribeDetail { topics: star(), payload: None }]);
            assert_eq!(grant.expires_at, EXP);
        }
        assert!(is_access_token(CONFORMANCE_TOKEN));
    }

    #[tokio::test]
    async fn typ_must_announce_an_access_token() {
        let issuers = hs_issuers();
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"] {
            let token = raw(
                &json!({"alg": "HS256", "typ": typ}),
                &all_rights(),
                Algorithm::HS256,
                &secret(),
            );
            assert!(verify(&issuers, &token).await.is_ok(), "{typ}");
            assert!(is_access_token(&token), "{typ}");
        }
        let refused = [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "typ": "JWT"}),
            json!({"alg": "HS256", "typ": "at+jwt "}),
            json!({"alg": "HS256", "typ": ["at+jwt"]}),
            json!({"alg": "HS256", "typ": "jwt+at"}),
        ];
        for header in refused {
            let token = raw(&header, &all_rights(), Algorithm::HS256, &secret());
            assert_eq!(
                verify(&issuers, &token).await,
                Err(AccessTokenError::NotAnAccessToken),
                "{header}"
            );
            assert!(!is_access_token(&token), "{header}");
        }
        for garbage in ["", "a.b.c", "....", "e30", "bnVsbA.e30.x"] {
            assert!(!is_access_token(garbage));
        }
    }

    #[tokio::test]
    async fn crit_headers_are_refused() {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "crit": ["exp"], "exp": 1});
        let token = raw(&header, &all_rights(), Algorithm::HS256, &secret());
        assert_eq!(verify(&hs_issuers(), &token).await, Err(AccessTokenError::CriticalHeader));
    }

    #[tokio::test]
    async fn issuer_must_be_trusted() {
        let issuers = hs_issuers();
        let mut claims = all_rights();
        claims["iss"] = json!("https://evil.example");
        assert_eq!(verify(&issuers, &hs256(&claims)).await, Err(AccessTokenError::UnknownIssuer));
        claims["iss"] = json!("https://localhost/");
        assert_eq!(verify(&issuers, &hs256(&claims)).await, Err(AccessTokenError::UnknownIssuer));
        claims["iss"] = json!(["https://localhost"]);
        assert_eq!(verify(&issuers, &hs256(&claims)).await, Err(AccessTokenError::MissingIssuer));
        claims.as_object_mut().expect("object").remove("iss");
        assert_eq!(verify(&issuers, &hs256(&claims)).await, Err(AccessTokenError::MissingIssuer));
        let none = trusted(vec![]);
        assert!(none.is_empty());
        assert_eq!(verify(&none, CONFORMANCE_TOKEN).await, Err(AccessTokenError::UnknownIssuer));
    }

    #[tokio::test]
    async fn keys_of_other_issuers_are_never_used() {
        let issuers = trusted(vec![
            issuer("https://a.example", key("secret of a", "HS256")),
            issuer("https://b.example", key("secret of b", "HS256")),
        ]);
        let mut claims = all_rights();
        claims["iss"] = json!("https://a.example");
        let signed_by_b =
            sign(&at_header(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"secret of b"));
        assert_eq!(verify(&issuers, &signed_by_b).await, Err(AccessTokenError::BadSignature));
        let signed_by_a =
            sign(&at_header(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"secret of a"));
        assert_eq!(
            verify(&issuers, &signed_by_a).await.expect("a's key").issuer,
            "https://a.example"
        );
    }

    #[tokio::test]
    async fn the_role_chooses_the_verifier() {
        let issuers = trusted(vec![IssuerSpec {
            issuer: ISSUER.to_owned(),
            authorization_server: true,
            publisher: Some(key("publisher secret", "HS256")),
            subscriber: None,
        }]);
        assert!(issuers.accepts(Role::Publisher));
        assert!(!issuers.accepts(Role::Subscriber));
        assert_eq!(issuers.authorization_servers(), vec![ISSUER]);
        let token = sign(
            &at_header(Algorithm::HS256),
            &all_rights(),
            &EncodingKey::from_secret(b"publisher secret"),
        );
        assert!(issuers.verify_at(&token, Role::Publisher, AUDIENCE, NOW).await.is_ok());
        assert_eq!(
            issuers.verify_at(&token, Role::Subscriber, AUDIENCE, NOW).await,
            Err(AccessTokenError::RoleNotTrusted)
        );

        // Different keys per role: the subscriber key does not verify publishers.
        let issuers = trusted(vec![IssuerSpec {
            issuer: ISSUER.to_owned(),
            authorization_server: false,
            publisher: Some(key("publisher secret", "HS256")),
            subscriber: Some(key(SECRET, "HS256")),
        }]);
        assert!(issuers.authorization_servers().is_empty());
        assert_eq!(
            verify(&issuers, &hs256(&all_rights())).await,
            Err(AccessTokenError::BadSignature)
        );
        assert!(issuers
            .verify_at(&hs256(&all_rights()), Role::Subscriber, AUDIENCE, NOW)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn audience_must_contain_the_resource() {
        let issuers = hs_issuers();
        let cases = [
            (json!(AUDIENCE), Ok(())),
            (json!(["https://other", AUDIENCE]), Ok(())),
            (json!("https://localhost/.well-known/mercure/"), Err(AccessTokenError::WrongAudience)),
            (json!("https://other"), Err(AccessTokenError::WrongAudience)),
            (json!(["https://other"]), Err(AccessTokenError::WrongAudience)),
            (json!([]), Err(AccessTokenError::WrongAudience)),
            (json!(null), Err(AccessTokenError::MissingAudience)),
            (
                json!([AUDIENCE, 1]),
                Err(AccessTokenError::InvalidClaims(
                    "`aud` must be a string or an array of strings",
                )),
            ),
            (
                json!({"aud": AUDIENCE}),
                Err(AccessTokenError::InvalidClaims(
                    "`aud` must be a string or an array of strings",
                )),
            ),
        ];
        for (aud, expected) in cases {
            let mut claims = all_rights();
            claims["aud"] = aud.clone();
            assert_eq!(verify(&issuers, &hs256(&claims)).await.map(|_| ()), expected, "{aud}");
        }
        let mut claims = all_rights();
        claims.as_object_mut().expect("object").remove("aud");
        assert_eq!(verify(&issuers, &hs256(&claims)).await, Err(AccessTokenError::MissingAudience));
    }

    #[tokio::test]
    async fn exp_is_required_and_enforced_with_nbf() {
        let issuers = hs_issuers();
        let with = |name: &str, value: Value| {
            let mut claims = all_rights();
            claims[name] = value;
            hs256(&claims)
        };
        let mut no_exp = all_rights();
        no_exp.as_object_mut().expect("object").remove("exp");
        assert_eq!(verify(&issuers, &hs256(&no_exp)).await, Err(AccessTokenError::MissingExpiry));
        assert_eq!(
            verify(&issuers, &with("exp", json!(null))).await,
            Err(AccessTokenError::MissingExpiry)
        );
        assert_eq!(
            verify(&issuers, &with("exp", json!(NOW - 1))).await,
            Err(AccessTokenError::Expired)
        );
        assert_eq!(
            verify(&issuers, &with("exp", json!(NOW))).await,
            Err(AccessTokenError::Expired)
        );
        assert_eq!(
            verify(&issuers, &with("exp", json!(NOW + 1))).await.expect("valid").expires_at,
            NOW + 1
        );
        assert!(matches!(
            verify(&issuers, &with("exp", json!("4102444800"))).await,
            Err(AccessTokenError::InvalidClaims(_))
        ));
        assert_eq!(
            verify(&issuers, &with("nbf", json!(NOW + 1))).await,
            Err(AccessTokenError::NotYetValid)
        );
        assert!(verify(&issuers, &with("nbf", json!(NOW))).await.is_ok());
        // Against the real clock too.
        let expired = with("exp", json!(jwt::unix_now() - 10));
        assert_eq!(
            issuers.verify(&expired, Role::Publisher, AUDIENCE).await,
            Err(AccessTokenError::Expired)
        );
    }

    #[tokio::test]
    async fn other_registered_claims_are_not_required() {
        let issuers = hs_issuers();
        let mut claims = all_rights();
        for (name, value) in [
            ("sub", json!("user")),
            ("client_id", json!("c")),
            ("iat", json!(NOW)),
            ("jti", json!("id")),
        ] {
            claims[name] = value;
        }
        assert!(verify(&issuers, &hs256(&claims)).await.is_ok());
    }

    #[tokio::test]
    async fn every_malformed_mercure_detail_invalidates_the_token() {
        let issuers = hs_issuers();
        let topics = || json!([{"match": "https://example.com/a"}]);
        let many_details: Vec<Value> =
            (0..=MAX_DETAILS).map(|_| detail(json!(["publish"]), topics())).collect();
        let many_topics: Vec<Value> =
            (0..=MAX_TOPICS).map(|i| json!({"match": format!("/t/{i}")})).collect();
        let split_topics: Vec<Value> =
            (0..2).map(|_| detail(json!(["subscribe"]), json!(many_topics[..51]))).collect();
        let cases = [
            ("not an array", json!({"type": MERCURE_DETAIL_TYPE})),
            ("a string entry", json!(["publish"])),
            ("an entry without type", json!([{"actions": ["publish"], "topics": topics()}])),
            ("a non-string type", json!([{"type": 1, "actions": ["publish"], "topics": topics()}])),
            ("no actions", json!([{"type": MERCURE_DETAIL_TYPE, "topics": topics()}])),
            ("empty actions", json!([detail(json!([]), topics())])),
            ("actions as a string", json!([detail(json!("publish"), topics())])),
            ("a non-string action", json!([detail(json!(["publish", 1]), topics())])),
            ("a null action", json!([detail(json!(["publish", null]), topics())])),
            ("no topics", json!([{"type": MERCURE_DETAIL_TYPE, "actions": ["publish"]}])),
            ("empty topics", json!([detail(json!(["publish"]), json!([]))])),
            ("topics as an object", json!([detail(json!(["publish"]), json!({"match": "*"}))])),
            ("a bare string topic", json!([detail(json!(["publish"]), json!(["*"]))])),
            ("a null topic", json!([detail(json!(["publish"]), json!([{"match": "*"}, null]))])),
            (
                "a topic without match",
                json!([detail(json!(["publish"]), json!([{"match_type": "exact"}]))]),
            ),
            ("an empty match", json!([detail(json!(["publish"]), json!([{"match": ""}]))])),
            ("a non-string match", json!([detail(json!(["publish"]), json!([{"match": 1}]))])),
            (
                "an unsupported match_type",
                json!([detail(json!(["publish"]), json!([{"match": "*", "match_type": "regex"}]))]),
            ),
            (
                "a match_type in capitals",
                json!([detail(json!(["publish"]), json!([{"match": "*", "match_type": "Exact"}]))]),
            ),
            (
                "a non-string match_type",
                json!([detail(json!(["publish"]), json!([{"match": "*", "match_type": 1}]))]),
            ),
            ("101 details", json!(many_details)),
            ("101 topics in one detail", json!([detail(json!(["publish"]), json!(many_topics))])),
            ("102 topics over two details", json!(split_topics)),
            // A broken detail after a good one still invalidates everything.
            (
                "a good detail then a bad one",
                json!([detail(json!(["publish"]), topics()), detail(json!([]), topics())]),
            ),
        ];
        for (case, details) in cases {
            let result = verify(&issuers, &hs256(&with_details(details))).await;
            assert!(
                matches!(result, Err(AccessTokenError::InvalidAuthorizationDetails(_))),
                "{case}: {result:?}"
            );
        }

        // The limits themselves are accepted.
        let max_details: Vec<Value> =
            (0..MAX_DETAILS).map(|_| detail(json!(["publish"]), topics())).collect();
        let grant =
            verify(&issuers, &hs256(&with_details(json!(max_details)))).await.expect("100 details");
        assert_eq!(grant.publish.len(), MAX_DETAILS);
        let grant = verify(
            &issuers,
            &hs256(&with_details(json!([detail(
                json!(["subscribe"]),
                json!(many_topics[..MAX_TOPICS])
            )]))),
        )
        .await
        .expect("100 topics");
        assert_eq!(grant.subscribe[0].topics.len(), MAX_TOPICS);
    }

    #[tokio::test]
    async fn other_detail_types_and_unknown_actions_are_ignored() {
        let issuers = hs_issuers();
        let details = json!([
            {"type": "https://example.com/payment", "actions": "anything", "topics": 42},
            detail(json!(["read", "publish", "delete"]), json!([{"match": "https://example.com/a"}])),
            detail(json!(["delete"]), json!([{"match": "https://example.com/b"}])),
        ]);
        let grant = verify(&issuers, &hs256(&with_details(details))).await.expect("valid");
        assert_eq!(
            grant.publish,
            vec![TopicGrant {
                pattern: "https://example.com/a".to_owned(),
                match_type: MatchType::Exact
            }]
        );
        assert!(grant.subscribe.is_empty());

        // Many details of other types do not count towards the limit.
        let others: Vec<Value> = (0..=MAX_DETAILS).map(|_| json!({"type": "other"})).collect();
        assert!(verify(&issuers, &hs256(&with_details(json!(others)))).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_without_mercure_details_grants_nothing() {
        let issuers = hs_issuers();
        let mut claims = with_details(json!(null));
        for details in [json!(null), json!([]), json!([{"type": "other"}])] {
            claims["authorization_details"] = details;
            let grant = verify(&issuers, &hs256(&claims)).await.expect("valid");
            assert!(grant.publish.is_empty() && grant.subscribe.is_empty());
        }
        claims.as_object_mut().expect("object").remove("authorization_details");
        // The legacy claim is not read for access tokens.
        claims["mercure"] = json!({"publish": ["*"], "subscribe": ["*"]});
        let grant = verify(&issuers, &hs256(&claims)).await.expect("valid");
        assert!(grant.publish.is_empty() && grant.subscribe.is_empty());
    }

    #[tokio::test]
    async fn match_types_and_payloads_are_read() {
        let issuers = hs_issuers();
        let details = json!([
            {"type": MERCURE_DETAIL_TYPE, "actions": ["subscribe"], "payload": {"user": "bob"},
             "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}, {"match": "/a", "match_type": null}]},
            {"type": MERCURE_DETAIL_TYPE, "actions": ["subscribe", "publish"], "payload": "default",
             "topics": [{"match": "*", "match_type": "exact"}]},
            {"type": MERCURE_DETAIL_TYPE, "actions": ["subscribe"], "payload": 3, "topics": [{"match": "/a"}]},
        ]);
        let grant = verify(&issuers, &hs256(&with_details(details))).await.expect("valid");
        assert_eq!(grant.publish, star());
        assert_eq!(grant.subscribe.len(), 3);
        assert_eq!(grant.subscribe[0].topics[0].match_type, MatchType::UrlPattern);
        assert_eq!(grant.subscribe[0].topics[1].match_type, MatchType::Exact);
        assert_eq!(
            grant.subscribe_payload("https://example.com/books/:id"),
            Some(&json!({"user": "bob"}))
        );
        // The first detail listing the matcher wins over a later one.
        assert_eq!(grant.subscribe_payload("/a"), Some(&json!({"user": "bob"})));
        assert_eq!(grant.subscribe_payload("/unlisted"), Some(&json!("default")));
        assert_eq!(grant.subscribe_payload("*"), Some(&json!("default")));

        let no_star = json!([{"type": MERCURE_DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "/a"}]}]);
        let grant = verify(&issuers, &hs256(&with_details(no_star))).await.expect("valid");
        assert_eq!(grant.subscribe_payload("/a"), None);
        assert_eq!(grant.subscribe_payload("/b"), None);
    }

    #[test]
    fn match_type_names() {
        for match_type in [MatchType::Exact, MatchType::UrlPattern] {
            assert_eq!(match_type.as_str().parse::<MatchType>(), Ok(match_type));
            assert_eq!(match_type.to_string(), match_type.as_str());
        }
        assert_eq!("URLPattern".parse::<MatchType>(), Err(UnsupportedMatchType));
        assert_eq!("".parse::<MatchType>(), Err(UnsupportedMatchType));
    }

    #[tokio::test]
    async fn algorithm_confusion_is_impossible() {
        let issuers = trusted(vec![issuer(ISSUER, key(RSA_PUBLIC, "RS256"))]);
        let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA fixture");
        assert!(verify(&issuers, &sign(&at_header(Algorithm::RS256), &all_rights(), &rsa))
            .await
            .is_ok());
        // HS256 keyed with the RSA public key.
        let confused = sign(
            &at_header(Algorithm::HS256),
            &all_rights(),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        );
        assert_eq!(verify(&issuers, &confused).await, Err(AccessTokenError::WrongAlgorithm));
        for alg in ["none", "RS384", "PS256"] {
            let token =
                raw(&json!({"alg": alg, "typ": "at+jwt"}), &all_rights(), Algorithm::RS256, &rsa);
            assert_eq!(
                verify(&issuers, &token).await,
                Err(AccessTokenError::WrongAlgorithm),
                "{alg}"
            );
        }
        let no_alg = raw(&json!({"typ": "at+jwt"}), &all_rights(), Algorithm::RS256, &rsa);
        assert_eq!(verify(&issuers, &no_alg).await, Err(AccessTokenError::Malformed));
    }

    #[tokio::test]
    async fn keys_in_the_token_header_are_ignored() {
        let issuers = hs_issuers();
        let attacker = b"the attacker's own secret";
        let mut header = at_header(Algorithm::HS256);
        header.jwk = Some(
            Jwk::from_encoding_key(&EncodingKey::from_secret(attacker), Algorithm::HS256)
                .expect("jwk"),
        );
        header.jku = Some("https://evil.example/jwks.json".to_owned());
        header.x5u = Some("https://evil.example/cert.pem".to_owned());
        let token = sign(&header, &all_rights(), &EncodingKey::from_secret(attacker));
        assert_eq!(verify(&issuers, &token).await, Err(AccessTokenError::BadSignature));
    }

    #[tokio::test]
    async fn garbage_is_refused_without_panics_or_leaks() {
        let issuers = hs_issuers();
        let token = hs256(&all_rights());
        let (message, _) = token.rsplit_once('.').expect("three segments");
        let cases = [
            String::new(),
            "a.b".to_owned(),
            "a.b.c.d".to_owned(),
            "!.!.!".to_owned(),
            format!("{message}.AAAA"),
            format!("{message}."),
            format!("{message}x.sig"),
            raw(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": 5}),
                &all_rights(),
                Algorithm::HS256,
                &secret(),
            ),
            format!("{}.{}.c2ln", b64(br#"{"alg":"HS256","typ":"at+jwt"}"#), b64(b"[1]")),
        ];
        for case in &cases {
            let error = verify(&issuers, case).await.expect_err("refused");
            let message = error.to_string();
            for part in case.split('.').filter(|p| p.len() > 3) {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn bad_configuration_is_a_start_up_error_naming_issuer_and_role() {
        let options = JwksOptions::default();
        let error = |specs: Vec<IssuerSpec>| {
            TrustedIssuers::start(specs, &options).expect_err("refused").to_string()
        };
        let message = error(vec![IssuerSpec {
            issuer: "https://a".to_owned(),
            authorization_server: false,
            publisher: Some(key(SECRET, "HS256")),
            subscriber: Some(key("not a pem", "RS256")),
        }]);
        assert!(
            message.starts_with("trusted issuer \"https://a\", subscriber key: RS256 needs"),
            "{message}"
        );
        let message = error(vec![issuer("https://a", key(RSA_PUBLIC, "PS256"))]);
        assert!(
            message.contains("publisher key") && message.contains("only supported with a JWK Set"),
            "{message}"
        );
        let message = error(vec![issuer("https://a", key("", "HS256"))]);
        assert!(!message.contains(SECRET));

        let jwks = |algorithms: Option<Vec<&str>>| KeySpec::Jwks {
            uri: "file:///nonexistent/jwks.json".to_owned(),
            algorithms: algorithms.map(|a| a.into_iter().map(str::to_owned).collect()),
        };
        for alg in ["ES512", "HS256", "none", "es256"] {
            let message = error(vec![issuer("https://a", jwks(Some(vec!["ES256", alg])))]);
            assert!(message.contains(&format!("unsupported algorithm {alg:?}")), "{message}");
            assert!(message.contains("ES512 is not supported"), "{message}");
        }
        let message = error(vec![issuer("https://a", jwks(Some(vec![])))]);
        assert!(message.contains("algorithm list is empty"), "{message}");
        for uri in
            ["http://example.com/jwks.json", "ftp://x/y", "not a url", "file://host/jwks.json"]
        {
            let spec = KeySpec::Jwks { uri: uri.to_owned(), algorithms: None };
            let message = error(vec![issuer("https://a", spec)]);
            assert!(
                message.starts_with("trusted issuer \"https://a\", publisher JWK Set: jwks_uri"),
                "{message}"
            );
        }
        let with_ca =
            JwksOptions { ca_file: Some("/nonexistent/ca.pem".into()), ..JwksOptions::default() };
        let spec =
            KeySpec::Jwks { uri: "https://example.com/jwks.json".to_owned(), algorithms: None };
        let message = TrustedIssuers::start(vec![issuer("https://a", spec)], &with_ca)
            .expect_err("no CA")
            .to_string();
        assert!(message.contains("/nonexistent/ca.pem"), "{message}");

        assert_eq!(
            error(vec![issuer("", key(SECRET, "HS256"))]),
            "a trusted issuer needs a non-empty issuer identifier"
        );
        let message = error(vec![
            issuer("https://a", key(SECRET, "HS256")),
            issuer("https://a", key(SECRET, "HS256")),
        ]);
        assert!(message.contains("configured twice"), "{message}");
        let message = error(vec![IssuerSpec {
            issuer: "https://a".to_owned(),
            authorization_server: true,
            publisher: None,
            subscriber: None,
        }]);
        assert!(message.contains("needs a publisher or subscriber key"), "{message}");
    }

    #[test]
    fn debug_output_has_no_secret() {
        let spec = issuer(ISSUER, key(SECRET, "HS256"));
        assert!(!format!("{spec:?}").contains(SECRET));
        let issuers = trusted(vec![spec]);
        let debug = format!("{issuers:?}");
        assert!(
            !debug.contains(SECRET) && debug.contains("HS256") && debug.contains(ISSUER),
            "{debug}"
        );
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<TrustedIssuers>();
        shareable::<AccessTokenError>();
    }

    // JWK Sets: keys written to a file:// set, fetchers on the test's runtime (paused time).

    /// A JWK (public) for `public_pem`, with `kid`, and `alg` when given.
    fn jwk(
        public_pem: &str,
        family: Algorithm,
        alg: Option<Algorithm>,
        kid: Option<&str>,
    ) -> Value {
        let key = match family {
            Algorithm::RS256 => DecodingKey::from_rsa_pem(public_pem.as_bytes()),
            Algorithm::ES256 => DecodingKey::from_ec_pem(public_pem.as_bytes()),
            _ => DecodingKey::from_ed_pem(public_pem.as_bytes()),
        }
        .expect("public key");
        let mut jwk = Jwk::from_decoding_key(&key, alg).expect("jwk");
        jwk.common.key_id = kid.map(str::to_owned);
        serde_json::to_value(jwk).expect("serialisable")
    }

    struct JwksFile {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
    }

    impl JwksFile {
        fn new(keys: &[Value]) -> Self {
            let dir = tempfile::tempdir().expect("temporary directory");
            let file = Self { path: dir.path().join("jwks.json"), _dir: dir };
            file.write(keys);
            file
        }

        fn write(&self, keys: &[Value]) {
            std::fs::write(&self.path, json!({"keys": keys}).to_string()).expect("write JWKS");
        }

        fn uri(&self) -> String {
            format!("file://{}", self.path.display())
        }
    }

    fn jwks_options() -> JwksOptions {
        JwksOptions {
            ca_file: None,
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(5),
        }
    }

    fn jwks_issuers(uri: &str, algorithms: Option<Vec<&str>>) -> TrustedIssuers {
        let spec = KeySpec::Jwks {
            uri: uri.to_owned(),
            algorithms: algorithms.map(|a| a.into_iter().map(str::to_owned).collect()),
        };
        TrustedIssuers::spawn(vec![issuer(ISSUER, spec)], &jwks_options()).expect("valid issuers")
    }

    fn signed(alg: Algorithm, kid: Option<&str>, private: &EncodingKey) -> String {
        let mut header = at_header(alg);
        header.kid = kid.map(str::to_owned);
        sign(&header, &all_rights(), private)
    }

    fn rsa() -> EncodingKey {
        EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).expect("RSA fixture")
    }
    fn es256() -> EncodingKey {
        EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).expect("ES256 fixture")
    }
    fn ed25519() -> EncodingKey {
        EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("Ed25519 fixture")
    }

    fn fixture_set() -> Vec<Value> {
        vec![
            jwk(RSA_PUBLIC, Algorithm::RS256, None, Some("rsa")),
            jwk(ES256_PUBLIC, Algorithm::ES256, Some(Algorithm::ES256), Some("ec")),
            jwk(ED25519_PUBLIC, Algorithm::EdDSA, Some(Algorithm::EdDSA), Some("ed")),
        ]
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_keys_verify_rsa_ecdsa_and_eddsa_tokens() {
        let file = JwksFile::new(&fixture_set());
        let issuers = jwks_issuers(&file.uri(), None);
        let cases = [
            (Algorithm::RS256, "rsa", rsa()),
            (Algorithm::RS512, "rsa", rsa()),
            (Algorithm::PS256, "rsa", rsa()),
            (Algorithm::ES256, "ec", es256()),
            (Algorithm::EdDSA, "ed", ed25519()),
        ];
        for (alg, kid, private) in &cases {
            let grant = verify(&issuers, &signed(*alg, Some(kid), private)).await;
            assert_eq!(grant.expect("valid").publish, star(), "{alg:?}");
        }
        // The JWK's own `alg` binds it: the ES256 key has one, and the RSA key may not
        // verify an ECDSA signature whatever the header says.
        assert_eq!(
            verify(&issuers, &signed(Algorithm::ES256, Some("rsa"), &es256())).await,
            Err(AccessTokenError::WrongAlgorithm)
        );
        assert_eq!(
            verify(&issuers, &signed(Algorithm::EdDSA, Some("ec"), &ed25519())).await,
            Err(AccessTokenError::WrongAlgorithm)
        );
        // A known kid with another key's signature.
        assert_eq!(
            verify(
                &issuers,
                &signed(
                    Algorithm::ES256,
                    Some("ec"),
                    &EncodingKey::from_ec_pem(
                        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                            .expect("key")
                            .serialize_pem()
                            .as_bytes()
                    )
                    .expect("key")
                )
            )
            .await,
            Err(AccessTokenError::BadSignature)
        );
        // HS256 is never accepted from a set, nor `none`.
        let hs = sign(
            &{
                let mut h = at_header(Algorithm::HS256);
                h.kid = Some("rsa".to_owned());
                h
            },
            &all_rights(),
            &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        );
        assert_eq!(verify(&issuers, &hs).await, Err(AccessTokenError::WrongAlgorithm));
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_algorithms_can_be_restricted() {
        let file = JwksFile::new(&fixture_set());
        let issuers = jwks_issuers(&file.uri(), Some(vec!["ES256"]));
        assert!(verify(&issuers, &signed(Algorithm::ES256, Some("ec"), &es256())).await.is_ok());
        assert_eq!(
            verify(&issuers, &signed(Algorithm::RS256, Some("rsa"), &rsa())).await,
            Err(AccessTokenError::WrongAlgorithm)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_tokens_without_kid_need_exactly_one_fitting_key() {
        let file = JwksFile::new(&fixture_set());
        let issuers = jwks_issuers(&file.uri(), None);
        assert!(verify(&issuers, &signed(Algorithm::ES256, None, &es256())).await.is_ok());
        assert!(verify(&issuers, &signed(Algorithm::EdDSA, None, &ed25519())).await.is_ok());

        let mut two_ec = fixture_set();
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        two_ec.push(jwk(&other.public_key_pem(), Algorithm::ES256, None, Some("ec2")));
        let file = JwksFile::new(&two_ec);
        let issuers = jwks_issuers(&file.uri(), None);
        assert_eq!(
            verify(&issuers, &signed(Algorithm::ES256, None, &es256())).await,
            Err(AccessTokenError::AmbiguousKey)
        );
        assert!(verify(&issuers, &signed(Algorithm::ES256, Some("ec"), &es256())).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_keys_not_for_signatures_are_skipped() {
        let mut enc = jwk(ES256_PUBLIC, Algorithm::ES256, None, Some("enc"));
        enc["use"] = json!("enc");
        let mut sig = jwk(ED25519_PUBLIC, Algorithm::EdDSA, None, Some("sig"));
        sig["use"] = json!("sig");
        let file = JwksFile::new(&[enc, sig]);
        let issuers = jwks_issuers(&file.uri(), None);
        assert_eq!(
            verify(&issuers, &signed(Algorithm::ES256, Some("enc"), &es256())).await,
            Err(AccessTokenError::UnknownKey)
        );
        assert!(verify(&issuers, &signed(Algorithm::EdDSA, Some("sig"), &ed25519())).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_bringing_its_own_jwk_is_refused() {
        let file = JwksFile::new(&fixture_set());
        let issuers = jwks_issuers(&file.uri(), None);
        let attacker = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let private = EncodingKey::from_ed_pem(attacker.serialize_pem().as_bytes()).expect("key");
        let own: Jwk = serde_json::from_value(jwk(
            &attacker.public_key_pem(),
            Algorithm::EdDSA,
            Some(Algorithm::EdDSA),
            Some("mine"),
        ))
        .expect("jwk");
        for kid in [Some("mine"), Some("ed"), None] {
            let mut header = at_header(Algorithm::EdDSA);
            header.kid = kid.map(str::to_owned);
            header.jwk = Some(own.clone());
            header.jku = Some("https://evil.example/jwks.json".to_owned());
            let token = sign(&header, &all_rights(), &private);
            let expected = if kid == Some("mine") {
                AccessTokenError::UnknownKey
            } else {
                AccessTokenError::BadSignature
            };
            assert_eq!(verify(&issuers, &token).await, Err(expected), "{kid:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn jwks_rotation_is_picked_up_and_refreshes_are_rate_limited() {
        let first = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let second = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let third = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let public =
            |key: &rcgen::KeyPair, alg, kid| jwk(&key.public_key_pem(), alg, None, Some(kid));
        let private = |key: &rcgen::KeyPair| key.serialize_pem();
        let token_a = signed(
            Algorithm::ES256,
            Some("a"),
            &EncodingKey::from_ec_pem(private(&first).as_bytes()).expect("key"),
        );
        let token_b = signed(
            Algorithm::ES256,
            Some("b"),
            &EncodingKey::from_ec_pem(private(&second).as_bytes()).expect("key"),
        );
        let token_c = signed(
            Algorithm::EdDSA,
            Some("c"),
            &EncodingKey::from_ed_pem(private(&third).as_bytes()).expect("key"),
        );

        let file = JwksFile::new(&[public(&first, Algorithm::ES256, "a")]);
        let issuers = jwks_issuers(&file.uri(), None);
        let Verifier::Jwks { set, .. } =
            issuers.issuers[ISSUER].publisher.clone().expect("publisher")
        else {
            panic!("a JWK Set verifier");
        };
        assert!(verify(&issuers, &token_a).await.is_ok());
        assert_eq!(set.fetches(), 1);
        assert!(verify(&issuers, &token_a).await.is_ok());
        assert_eq!(set.fetches(), 1, "a known key never fetches");

        // Rotation: b appears in the file; the first token naming it triggers a fetch.
        file.write(&[
            public(&first, Algorithm::ES256, "a"),
            public(&second, Algorithm::ES256, "b"),
        ]);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(verify(&issuers, &token_b).await.is_ok());
        assert_eq!(set.fetches(), 2);

        // c appears at once, but within min_refresh_interval of the last fetch: no new fetch.
        file.write(&[
            public(&second, Algorithm::ES256, "b"),
            public(&third, Algorithm::EdDSA, "c"),
        ]);
        assert_eq!(verify(&issuers, &token_c).await, Err(AccessTokenError::UnknownKey));
        assert_eq!(verify(&issuers, &token_c).await, Err(AccessTokenError::UnknownKey));
        assert_eq!(set.fetches(), 2, "unknown kids within the interval cost no fetch");
        assert!(verify(&issuers, &token_a).await.is_ok(), "old keys stay until the next fetch");

        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(verify(&issuers, &token_c).await.is_ok());
        assert_eq!(set.fetches(), 3);
        assert_eq!(
            verify(&issuers, &token_a).await,
            Err(AccessTokenError::UnknownKey),
            "a was withdrawn"
        );

        // The periodic refresh.
        tokio::time::sleep(Duration::from_secs(301)).await;
        assert_eq!(
            set.fetches(),
            4,
            "a's lookup came within the interval: only the periodic fetch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_set_missing_at_start_refuses_tokens_until_it_loads() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("later.json");
        let issuers = jwks_issuers(&format!("file://{}", path.display()), None);
        let token = signed(Algorithm::ES256, Some("ec"), &es256());
        assert_eq!(verify(&issuers, &token).await, Err(AccessTokenError::KeysUnavailable));

        std::fs::write(&path, json!({"keys": fixture_set()}).to_string()).expect("write JWKS");
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(verify(&issuers, &token).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn one_fetcher_per_distinct_uri() {
        let file = JwksFile::new(&fixture_set());
        let spec = KeySpec::Jwks { uri: file.uri(), algorithms: None };
        let issuers = TrustedIssuers::spawn(
            vec![issuer("https://a", spec.clone()), issuer("https://b", spec)],
            &jwks_options(),
        )
        .expect("valid issuers");
        let handles: Vec<JwkSetHandle> = ["https://a", "https://b"]
            .iter()
            .flat_map(|name| {
                let issuer = &issuers.issuers[*name];
                [issuer.publisher.clone(), issuer.subscriber.clone()]
            })
            .map(|verifier| match verifier {
                Some(Verifier::Jwks { set, .. }) => set,
                _ => panic!("a JWK Set verifier"),
            })
            .collect();
        let mut claims = all_rights();
        claims["iss"] = json!("https://b");
        let mut header = at_header(Algorithm::ES256);
        header.kid = Some("ec".to_owned());
        assert!(verify(&issuers, &sign(&header, &claims, &es256())).await.is_ok());
        assert!(handles.iter().all(|h| h.fetches() == 1), "one fetcher shared by four verifiers");
    }

    // JWK Sets over HTTPS, from a small server with a CA of its own.

    struct JwksServer {
        url: String,
        ca: tempfile::NamedTempFile,
        requests: Arc<std::sync::atomic::AtomicUsize>,
    }

    async fn jwks_server(body: String) -> JwksServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().expect("server key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&leaf_key, &issuer)
            .expect("server certificate");

        let mut ca = tempfile::NamedTempFile::new().expect("CA file");
        std::io::Write::write_all(&mut ca, ca_cert.pem().as_bytes()).expect("write CA");

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
            )
            .expect("TLS configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!(
            "https://127.0.0.1:{}/jwks.json",
            listener.local_addr().expect("address").port()
        );
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, body, counter) = (acceptor.clone(), body.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else { return };
                    let mut request = Vec::new();
                    let mut buffer = [0; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\n\
                         Cache-Control: public, max-age=60\r\nContent-Length: {}\r\n\
                         Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksServer { url, ca, requests }
    }

    #[tokio::test]
    async fn jwks_over_https_with_a_ca_file() {
        let server = jwks_server(json!({"keys": fixture_set()}).to_string()).await;
        let options =
            JwksOptions { ca_file: Some(server.ca.path().to_owned()), ..JwksOptions::default() };
        let spec = KeySpec::Jwks { uri: server.url.clone(), algorithms: None };
        // The real fetcher, on a thread of its own.
        let issuers =
            TrustedIssuers::start(vec![issuer(ISSUER, spec)], &options).expect("valid issuers");
        for (alg, kid, private) in [
            (Algorithm::RS256, "rsa", rsa()),
            (Algorithm::ES256, "ec", es256()),
            (Algorithm::EdDSA, "ed", ed25519()),
        ] {
            let result =
                issuers.verify(&signed(alg, Some(kid), &private), Role::Subscriber, AUDIENCE).await;
            assert!(result.is_ok(), "{alg:?}: {result:?}");
        }
        assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn jwks_over_https_needs_a_trusted_certificate() {
        let server = jwks_server(json!({"keys": fixture_set()}).to_string()).await;
        let spec = KeySpec::Jwks { uri: server.url.clone(), algorithms: None };
        let issuers = TrustedIssuers::start(vec![issuer(ISSUER, spec)], &JwksOptions::default())
            .expect("valid issuers");
        let token = signed(Algorithm::ES256, Some("ec"), &es256());
        assert_eq!(
            issuers.verify(&token, Role::Publisher, AUDIENCE).await,
            Err(AccessTokenError::KeysUnavailable)
        );
        assert_eq!(server.requests.load(std::sync::atomic::Ordering::SeqCst), 0);
    }
}
